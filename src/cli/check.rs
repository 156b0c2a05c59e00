//! `strata check SPEC…`: compile each spec and print its diagnostics.

use super::output::{file_stem, read_spec, DiagnosticPrinter, OutputFormat};
use super::{EXIT_ERROR, EXIT_OK, EXIT_USAGE};
use crate::compile::compile;
use crate::suggest::grouped;
use std::path::PathBuf;

/// Runs the command; returns the exit status.
pub fn run(specs: &[PathBuf], format: OutputFormat, deny_warnings: bool) -> u8 {
    let mut printer = DiagnosticPrinter::new(format);
    let mut io_failed = false;
    for path in specs {
        let Some(source) = read_spec(path) else {
            io_failed = true;
            continue;
        };
        let compiled = compile(&source.text, &file_stem(path));
        printer.print(&compiled.diagnostics, &source);
        if let (OutputFormat::Human { .. }, Some(model)) = (format, &compiled.model) {
            println!(
                "ok: {} ({} layers, {} params)",
                source.name,
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
