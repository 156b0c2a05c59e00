//! The one diagnostic type every stage reports user mistakes with, and its renderers.
//!
//! A [`Diagnostic`] is plain data: a stable code, a severity, a one-line message, labels on
//! byte ranges of the spec file, a help and notes. Rendering lives in separate files, one per
//! output format (terminal, JSON lines, GitHub annotations); the language server reads the
//! same data.

pub mod codes;
mod github;
mod human;
mod json;
mod source;

pub use crate::text::{LineIndex, Span};
pub use github::render_github;
pub use human::{render_human, HumanStyle};
pub use json::{render_json, JsonDiagnostic, JsonSuggestion};
pub use source::SourceFile;

use std::fmt;

/// Whether a diagnostic stops the compile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// Stops the compile; `strata check` exits 1.
    Error,
    /// Reported, but the compile goes on.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// A message attached to a span of the spec file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    /// Where in the file.
    pub span: Span,
    /// What to say there (may be empty).
    pub message: String,
    /// The primary label marks the offending characters; secondary ones explain.
    pub primary: bool,
}

/// A machine-applicable fix: replace the characters of `span` with `replacement`.
///
/// Constructors add one where their help already proposes a concrete edit (a did-you-mean
/// name, `pad=same`, the class count); editors offer it as a code action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Suggestion {
    /// The characters to replace (empty for an insertion).
    pub span: Span,
    /// The new text.
    pub replacement: String,
    /// What the edit does, for a menu (`replace with \`conv\``).
    pub title: String,
}

/// One problem found in a spec (or in the data it names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Stable code such as `strata::layer::unknown` (see [`codes`]).
    pub code: &'static str,
    /// Error or warning.
    pub severity: Severity,
    /// One line, lowercase, no final period.
    pub message: String,
    /// Primary label first, then secondary labels.
    pub labels: Vec<Label>,
    /// The likely fix, if there is one.
    pub help: Option<String>,
    /// Extra lines of explanation.
    pub notes: Vec<String>,
    /// Machine-applicable edits that carry out the help, if it proposes a concrete one.
    pub suggestions: Vec<Suggestion>,
}

impl Diagnostic {
    /// An error with `code` and `message` and no labels yet.
    pub fn error(code: &'static str, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            code,
            severity: Severity::Error,
            message: message.into(),
            labels: Vec::new(),
            help: None,
            notes: Vec::new(),
            suggestions: Vec::new(),
        }
    }

    /// A warning with `code` and `message` and no labels yet.
    pub fn warning(code: &'static str, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, message)
        }
    }

    /// Adds the primary label.
    pub fn with_primary(mut self, span: Span, message: impl Into<String>) -> Diagnostic {
        self.labels.insert(
            0,
            Label {
                span,
                message: message.into(),
                primary: true,
            },
        );
        self
    }

    /// Adds a secondary label.
    pub fn with_secondary(mut self, span: Span, message: impl Into<String>) -> Diagnostic {
        self.labels.push(Label {
            span,
            message: message.into(),
            primary: false,
        });
        self
    }

    /// Sets the help line.
    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    /// Adds a note line.
    pub fn with_note(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(note.into());
        self
    }

    /// Adds a machine-applicable edit: replace `span` with `replacement`.
    pub fn with_suggestion(
        mut self,
        span: Span,
        replacement: impl Into<String>,
        title: impl Into<String>,
    ) -> Diagnostic {
        self.suggestions.push(Suggestion {
            span,
            replacement: replacement.into(),
            title: title.into(),
        });
        self
    }

    /// Adds the did-you-mean edit for a word at `span`: replace it with `best`.
    pub fn with_replacement(self, span: Span, best: &str) -> Diagnostic {
        self.with_suggestion(span, best, format!("replace with `{best}`"))
    }

    /// The primary label, if any.
    pub fn primary(&self) -> Option<&Label> {
        self.labels.iter().find(|label| label.primary)
    }

    /// Whether this diagnostic is an error.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Whether any of `diagnostics` is an error.
pub fn has_errors(diagnostics: &[Diagnostic]) -> bool {
    diagnostics.iter().any(Diagnostic::is_error)
}
