//! `strata summary SPEC`: the Keras-style table, or its JSON.

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
    printer.print(&compiled.diagnostics, &source);
    let Some(model) = compiled.model else {
        return EXIT_ERROR;
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
    EXIT_OK
}
