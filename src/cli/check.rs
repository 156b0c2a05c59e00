//! `strata check SPEC…`: compile each spec and print its diagnostics.

use super::output::{file_stem, outln, read_spec, DiagnosticPrinter, OutputFormat};
use super::{EXIT_ERROR, EXIT_OK, EXIT_USAGE};
use crate::compile::compile;
use crate::suggest::grouped;
use crate::text::escape_control;
use std::path::PathBuf;

/// Runs the command; returns the exit status.
pub fn run(specs: &[PathBuf], format: OutputFormat, deny_warnings: bool) -> u8 {
    let mut printer = DiagnosticPrinter::new(format);
    let mut io_failed = false;
    for path in specs {
        let source = match read_spec(path, &mut printer) {
            Ok(source) => source,
            Err(code) => {
                io_failed |= code == EXIT_USAGE;
                continue;
            }
        };
        let compiled = compile(&source.text, &file_stem(path));
        printer.print(&compiled.diagnostics, &source);
        if let (OutputFormat::Human { .. }, Some(model)) = (format, &compiled.model) {
            outln!(
                "ok: {} ({} layers, {} params)",
                escape_control(&source.name),
                model.layers.len(),
                grouped(model.params.total())
            );
        }
    }
    if matches!(format, OutputFormat::Human { .. }) && (printer.errors + printer.warnings) > 0 {
        eprintln!(
            "{} error(s), {} warning(s)",
            printer.errors, printer.warnings
        );
    }
    if printer.errors > 0 || (deny_warnings && printer.warnings > 0) {
        EXIT_ERROR
    } else if io_failed {
        EXIT_USAGE
    } else {
        EXIT_OK
    }
}
