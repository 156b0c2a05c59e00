//! `strata summary SPEC`: the Keras-style table, or its JSON. A model whose shapes all check
//! but whose head (or a later check) fails still gets its table, then the diagnostics, so a
//! backbone can be looked at before it has a classifier.

use super::output::{file_stem, read_spec, DiagnosticPrinter, OutputFormat};
use super::{EXIT_ERROR, EXIT_OK, EXIT_USAGE};
use crate::compile::compile;
use crate::summary::{render_table, to_json};
use std::path::Path;

/// Runs the command; returns the exit status.
pub fn run(path: &Path, format: OutputFormat) -> u8 {
    let Some(source) = read_spec(path) else {
        return EXIT_USAGE;
    };
    let compiled = compile(&source.text, &file_stem(path));
    let mut printer = DiagnosticPrinter::new(format);
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
            Ok(json) => println!("{json}"),
            Err(err) => {
                eprintln!("error: {err}");
                return EXIT_USAGE;
            }
        },
        _ => print!("{}", render_table(&model)),
    }
    printer.print(&compiled.diagnostics, &source);
    status
}
