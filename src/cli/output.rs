//! Prints diagnostics in the chosen format: human (stderr), JSON lines or GitHub
//! annotations (stdout).

use super::FormatArg;
use crate::diagnostics::{
    render_github, render_human, render_json, Diagnostic, HumanStyle, Severity, SourceFile,
};
use std::io::IsTerminal;
use std::path::Path;

/// How a command prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// For people; fancy when stderr is a terminal.
    Human {
        /// Colour and Unicode art.
        fancy: bool,
    },
    /// JSON on stdout.
    Json,
    /// Workflow annotations on stdout.
    Github,
}

impl OutputFormat {
    /// The format for a `--format` value, looking at the terminal and `NO_COLOR`.
    pub fn from_arg(arg: FormatArg) -> OutputFormat {
        match arg {
            FormatArg::Human | FormatArg::Onnx => OutputFormat::Human {
                fancy: std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
            },
            FormatArg::Json => OutputFormat::Json,
            FormatArg::Github => OutputFormat::Github,
        }
    }
}

/// Prints diagnostics and counts them.
#[derive(Debug)]
pub struct DiagnosticPrinter {
    format: OutputFormat,
    /// Errors printed so far.
    pub errors: usize,
    /// Warnings printed so far.
    pub warnings: usize,
}

impl DiagnosticPrinter {
    /// A printer for `format`.
    pub fn new(format: OutputFormat) -> DiagnosticPrinter {
        DiagnosticPrinter {
            format,
            errors: 0,
            warnings: 0,
        }
    }

    /// Prints `diagnostics` of `source`.
    pub fn print(&mut self, diagnostics: &[Diagnostic], source: &SourceFile) {
        for diagnostic in diagnostics {
            match diagnostic.severity {
                Severity::Error => self.errors += 1,
                Severity::Warning => self.warnings += 1,
            }
            match self.format {
                OutputFormat::Human { fancy } => {
                    let style = if fancy {
                        HumanStyle::Fancy
                    } else {
                        HumanStyle::Plain
                    };
                    eprint!("{}", render_human(diagnostic, source, style));
                }
                OutputFormat::Json => println!("{}", render_json(diagnostic, source)),
                OutputFormat::Github => println!("{}", render_github(diagnostic, source)),
            }
        }
    }
}

/// Reads a spec file; on failure prints the I/O error and returns `None`.
pub fn read_spec(path: &Path) -> Option<SourceFile> {
    match std::fs::read_to_string(path) {
        Ok(text) => Some(SourceFile::new(path.display().to_string(), text)),
        Err(err) => {
            eprintln!("error: cannot read `{}`: {err}", path.display());
            None
        }
    }
}

/// The file stem, the default model name.
pub fn file_stem(path: &Path) -> String {
    path.file_stem().map_or_else(
        || "model".to_string(),
        |stem| stem.to_string_lossy().into_owned(),
    )
}
