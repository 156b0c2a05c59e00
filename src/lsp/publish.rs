//! Diagnostics for the editor: the checker's [`Diagnostic`]s as LSP diagnostics, with UTF-16
//! ranges, severity, code, a link to the code's documentation and related information for the
//! secondary labels.

use super::convert::Positions;
use super::document::Document;
use crate::diagnostics::{Diagnostic, Severity};
use lsp_types::{
    CodeDescription, DiagnosticRelatedInformation, DiagnosticSeverity, Location, NumberOrString,
    PublishDiagnosticsParams, Uri,
};

/// Where `docs/diagnostics.md` is published; each code's link is this plus `#` and the code's
/// anchor. This is the one place that names it: set `STRATA_DOCS_URL` when building to point
/// the links elsewhere (a fork, a mirror, a docs site); see docs/editors.md.
pub const DIAGNOSTICS_DOCS_URL: &str = match option_env!("STRATA_DOCS_URL") {
    Some(url) => url,
    None => "https://github.com/strata-ml/strata/blob/main/docs/diagnostics.md",
};

/// The link to the documentation of `code`: the section of docs/diagnostics.md whose heading is
/// the code, with GitHub's heading anchor (lowercase, `:` dropped).
pub fn docs_link(code: &str) -> String {
    format!("{DIAGNOSTICS_DOCS_URL}#{}", anchor(code))
}

/// GitHub's anchor for a heading: lowercase, spaces to `-`, punctuation other than `-` and `_`
/// dropped (`strata::layer::unknown` → `stratalayerunknown`).
pub fn anchor(heading: &str) -> String {
    heading
        .chars()
        .filter_map(|ch| match ch {
            ' ' => Some('-'),
            '-' | '_' => Some(ch),
            ch if ch.is_alphanumeric() => Some(ch.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// The `textDocument/publishDiagnostics` parameters for a document.
pub fn publish_params(uri: &Uri, document: &Document) -> PublishDiagnosticsParams {
    let diagnostics = document
        .compiled
        .diagnostics
        .iter()
        .map(|diagnostic| to_lsp(uri, document, diagnostic))
        .collect();
    PublishDiagnosticsParams::new(uri.clone(), diagnostics, Some(document.version))
}

/// One checker diagnostic as an LSP diagnostic.
pub fn to_lsp(uri: &Uri, document: &Document, diagnostic: &Diagnostic) -> lsp_types::Diagnostic {
    let text = &document.text;
    let range = diagnostic
        .primary()
        .map(|label| document.index.range(text, label.span))
        .unwrap_or_default();
    let related: Vec<DiagnosticRelatedInformation> = diagnostic
        .labels
        .iter()
        .filter(|label| !label.primary)
        .map(|label| DiagnosticRelatedInformation {
            location: Location::new(uri.clone(), document.index.range(text, label.span)),
            message: label.message.clone(),
        })
        .collect();
    let href = docs_link(diagnostic.code).parse().ok();
    lsp_types::Diagnostic {
        range,
        severity: Some(match diagnostic.severity {
            Severity::Error => DiagnosticSeverity::ERROR,
            Severity::Warning => DiagnosticSeverity::WARNING,
        }),
        code: Some(NumberOrString::String(diagnostic.code.to_string())),
        code_description: href.map(|href| CodeDescription { href }),
        source: Some("strata".to_string()),
        message: message_text(diagnostic),
        related_information: (!related.is_empty()).then_some(related),
        tags: None,
        data: None,
    }
}

/// The message, the primary label's text and the help, as editors show one block.
fn message_text(diagnostic: &Diagnostic) -> String {
    let mut message = diagnostic.message.clone();
    if let Some(label) = diagnostic
        .primary()
        .filter(|label| !label.message.is_empty())
    {
        message.push_str(&format!(": {}", label.message));
    }
    if let Some(help) = &diagnostic.help {
        message.push_str(&format!("\nhelp: {help}"));
    }
    for note in &diagnostic.notes {
        message.push_str(&format!("\nnote: {note}"));
    }
    message
}
