//! `strata summary SPEC`: the Keras-style table, or its JSON. A model whose shapes all check
//! but whose head (or a later check) fails still gets its table, then the diagnostics, so a
//! backbone can be looked at before it has a classifier.

use super::output::{file_stem, outln, read_spec, DiagnosticPrinter, OutputFormat};
use super::{EXIT_ERROR, EXIT_OK, EXIT_USAGE};
use crate::compile::compile;
use crate::summary::{render_table, to_json};
use crate::text::escape_control;
use std::path::Path;

/// Runs the command; returns the exit status.
pub fn run(path: &Path, format: OutputFormat) -> u8 {
    let mut printer = DiagnosticPrinter::new(format);
    let source = match read_spec(path, &mut printer) {
        Ok(source) => source,
        Err(code) => return code,
    };
    let compiled = compile(&source.text, &file_stem(path));
    let Some(model) = compiled.summary_model() else {
        printer.print(&compiled.diagnostics, &source);
        return EXIT_ERROR;
    };
    let status = if compiled.has_errors() {
        EXIT_ERROR
    } else {
        EXIT_OK
    };
    match format {
        OutputFormat::Json => match serde_json::to_string(&to_json(&model)) {
            Ok(json) => outln!("{json}"),
            Err(err) => {
                eprintln!("error: {err}");
                return EXIT_USAGE;
            }
        },
        // The model's name comes from the spec (`name:`, or the file name): its control
        // characters are escaped, and any left in the table's other text, line by line.
        _ => {
            let mut shown = model.clone();
            shown.name = escape_control(&model.name).into_owned();
            for line in render_table(&shown).lines() {
                outln!("{}", escape_control(line));
            }
        }
    }
    printer.print(&compiled.diagnostics, &source);
    status
}
