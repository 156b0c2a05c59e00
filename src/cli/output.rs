//! Prints diagnostics in the chosen format: human (stderr), JSON lines or GitHub
//! annotations (stdout), with the control characters of names from the data escaped; reads
//! spec files (bounded); writes standard output without the panic `print!` has when it
//! cannot ([`outln!`], [`out!`]).

use super::{FormatArg, EXIT_ERROR, EXIT_OK, EXIT_USAGE};
use crate::diagnostics::{
    render_github, render_human, render_json, Diagnostic, HumanStyle, Severity, SourceFile,
};
use crate::spec::{read_spec_file, SpecReadError};
use crate::text::{escape_control, is_terminal_control};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

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

    /// Prints `diagnostics` of `source`. For a terminal (`human`) or a workflow log (`github`),
    /// control characters in the texts (a class or file name from the data) are escaped first;
    /// JSON escapes them itself.
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
                    let (diagnostic, source) = escaped(diagnostic, source);
                    let text = render_human(&diagnostic, &source, style);
                    // Nowhere is left to report a failure to write to stderr.
                    let _ = std::io::stderr().lock().write_all(text.as_bytes());
                }
                OutputFormat::Json => outln!("{}", render_json(diagnostic, source)),
                OutputFormat::Github => {
                    let (diagnostic, source) = escaped(diagnostic, source);
                    outln!("{}", render_github(&diagnostic, &source));
                }
            }
        }
    }
}

/// `diagnostic` and the name of `source` with their control characters escaped. The source
/// text keeps its byte offsets, which the labels point at: each control character other than a
/// line break or a tab becomes as many `?` as it has bytes.
fn escaped(diagnostic: &Diagnostic, source: &SourceFile) -> (Diagnostic, SourceFile) {
    let escape = |text: &str| escape_control(text).into_owned();
    let mut diagnostic = diagnostic.clone();
    diagnostic.message = escape(&diagnostic.message);
    for label in &mut diagnostic.labels {
        label.message = escape(&label.message);
    }
    diagnostic.help = diagnostic.help.as_deref().map(escape);
    for note in &mut diagnostic.notes {
        *note = escape(note);
    }
    let text = if source.text.chars().any(hidden_in_source) {
        let mut text = String::with_capacity(source.text.len());
        for c in source.text.chars() {
            if hidden_in_source(c) {
                text.extend(std::iter::repeat_n('?', c.len_utf8()));
            } else {
                text.push(c);
            }
        }
        text.into()
    } else {
        source.text.clone()
    };
    let source = SourceFile {
        name: escape(&source.name),
        text,
    };
    (diagnostic, source)
}

/// A character of a spec's text that would act on the terminal rather than show: a control
/// character other than a line break or a tab, or a bidirectional override.
fn hidden_in_source(c: char) -> bool {
    !matches!(c, '\n' | '\r' | '\t') && is_terminal_control(c)
}

/// Reads a spec file (bounded by [`read_spec_file`]); on failure prints why and returns the
/// exit status: 1 for a file over the size limit (its `strata::spec::too_large` diagnostic,
/// counted by `printer`), 2 for one that cannot be read or is not UTF-8.
pub fn read_spec(path: &Path, printer: &mut DiagnosticPrinter) -> Result<SourceFile, u8> {
    match read_spec_file(path) {
        Ok(text) => Ok(SourceFile::new(path.display().to_string(), text)),
        Err(SpecReadError::TooLarge { diagnostic, source }) => {
            printer.print(&[diagnostic], &source);
            Err(EXIT_ERROR)
        }
        Err(err) => {
            eprintln!("error: {err}");
            Err(EXIT_USAGE)
        }
    }
}

/// Set once writing to standard output failed.
static STDOUT_FAILED: AtomicBool = AtomicBool::new(false);

/// Writes `text` to standard output without panicking where `print!` would (`> /dev/full`,
/// a closed pipe when `SIGPIPE` is ignored): the first failure is reported on stderr, naming
/// standard output, later writes are skipped, and [`exit_status`] makes the status 2.
pub fn write_stdout(text: &str) {
    if STDOUT_FAILED.load(Ordering::Relaxed) {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    if let Err(err) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        STDOUT_FAILED.store(true, Ordering::Relaxed);
        let _ = writeln!(
            std::io::stderr(),
            "error: cannot write to standard output: {err}"
        );
    }
}

/// The exit status of a command that returned `status`: 2 where it succeeded but its output
/// could not be written.
pub fn exit_status(status: u8) -> u8 {
    if status == EXIT_OK && STDOUT_FAILED.load(Ordering::Relaxed) {
        EXIT_USAGE
    } else {
        status
    }
}

/// `println!` through [`write_stdout`]: never panics.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::output::write_stdout(&format!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` through [`write_stdout`]: never panics.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::output::write_stdout(&format!($($arg)*))
    };
}

pub(crate) use {out, outln};

/// A path as human output shows it, control characters escaped.
pub fn shown(path: &Path) -> String {
    escape_control(&path.display().to_string()).into_owned()
}

/// Why `out` cannot be written as a new file, checked before any work: its folder is missing,
/// or it is a folder itself (`example` is a file name to suggest, such as `grid.png`).
pub fn check_out_file(out: &Path, example: &str) -> Result<(), String> {
    if out.is_dir() {
        return Err(format!(
            "it is a folder; give a file name such as `{example}`"
        ));
    }
    let folder = out.parent().filter(|dir| !dir.as_os_str().is_empty());
    if let Some(folder) = folder.filter(|folder| !folder.is_dir()) {
        return Err(format!("the folder `{}` does not exist", shown(folder)));
    }
    Ok(())
}

/// The file stem, the default model name.
pub fn file_stem(path: &Path) -> String {
    path.file_stem().map_or_else(
        || "model".to_string(),
        |stem| stem.to_string_lossy().into_owned(),
    )
}

/// Prints the memory check ([`crate::train::memory::check`]) of `pass` on `batch` images of
/// `model`: a warning when it may not fit, and `Err` with exit status 1 when it cannot.
pub(super) fn check_memory(
    model: &crate::ir::Model,
    batch: usize,
    pass: crate::train::memory::Pass,
    printer: &mut DiagnosticPrinter,
    source: &SourceFile,
) -> Result<(), u8> {
    use crate::train::memory;
    let Some(diagnostic) = memory::check(model, batch, pass, memory::available()) else {
        return Ok(());
    };
    let refused = diagnostic.is_error();
    printer.print(&[diagnostic], source);
    if refused {
        Err(super::EXIT_ERROR)
    } else {
        Ok(())
    }
}
