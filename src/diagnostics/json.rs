//! JSON Lines rendering (docs/ci.md): one object per diagnostic, byte offsets into the file.

use super::{Diagnostic, LineIndex, SourceFile};
use serde::Serialize;

/// The JSON shape of one diagnostic.
#[derive(Debug, Serialize)]
pub struct JsonDiagnostic {
    /// Stable code.
    pub code: &'static str,
    /// `error` or `warning`.
    pub severity: String,
    /// One-line message.
    pub message: String,
    /// The likely fix, or null.
    pub help: Option<String>,
    /// The spec file's name.
    pub filename: String,
    /// Primary label first.
    pub labels: Vec<JsonLabel>,
    /// Extra lines of explanation; left out when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Machine-applicable edits; left out when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub suggestions: Vec<JsonSuggestion>,
}

/// The JSON shape of one machine-applicable edit.
#[derive(Debug, Serialize)]
pub struct JsonSuggestion {
    /// What the edit does.
    pub title: String,
    /// The text that replaces the span.
    pub replacement: String,
    /// Byte range in the file to replace (length 0 for an insertion).
    pub span: JsonSpan,
}

/// The JSON shape of one label.
#[derive(Debug, Serialize)]
pub struct JsonLabel {
    /// What the label says.
    pub label: String,
    /// Byte range in the file.
    pub span: JsonSpan,
    /// 1-based line of the start.
    pub line: usize,
    /// 1-based column (in characters) of the start.
    pub column: usize,
}

/// A byte range in the JSON shape.
#[derive(Debug, Serialize)]
pub struct JsonSpan {
    /// Byte offset of the start.
    pub offset: usize,
    /// Length in bytes.
    pub length: usize,
}

impl JsonDiagnostic {
    /// The JSON shape of `diagnostic` in `source`.
    pub fn new(diagnostic: &Diagnostic, source: &SourceFile, index: &LineIndex) -> JsonDiagnostic {
        let labels = diagnostic
            .labels
            .iter()
            .map(|label| {
                let (line, column) = index.line_column(&source.text, label.span.offset);
                JsonLabel {
                    label: label.message.clone(),
                    span: JsonSpan {
                        offset: label.span.offset,
                        length: label.span.len,
                    },
                    line,
                    column,
                }
            })
            .collect();
        JsonDiagnostic {
            code: diagnostic.code,
            severity: diagnostic.severity.to_string(),
            message: diagnostic.message.clone(),
            help: diagnostic.help.clone(),
            filename: source.name.clone(),
            labels,
            notes: diagnostic.notes.clone(),
            suggestions: diagnostic
                .suggestions
                .iter()
                .map(|suggestion| JsonSuggestion {
                    title: suggestion.title.clone(),
                    replacement: suggestion.replacement.clone(),
                    span: JsonSpan {
                        offset: suggestion.span.offset,
                        length: suggestion.span.len,
                    },
                })
                .collect(),
        }
    }
}

/// One JSON line for `diagnostic`, without the trailing newline.
pub fn render_json(diagnostic: &Diagnostic, source: &SourceFile) -> String {
    let index = LineIndex::new(&source.text);
    let shape = JsonDiagnostic::new(diagnostic, source, &index);
    serde_json::to_string(&shape)
        .unwrap_or_else(|err| format!("{{\"code\":\"{}\",\"message\":\"{err}\"}}", diagnostic.code))
}
