//! Code actions: each machine-applicable [`Suggestion`](crate::diagnostics::Suggestion) of a
//! diagnostic in the requested range becomes a quick fix.

use super::convert::Positions;
use super::document::Document;
use super::locate::touches;
use super::publish::to_lsp;
use crate::diagnostics::Span;
use lsp_types::{
    CodeAction, CodeActionKind, CodeActionOrCommand, Range, TextEdit, Uri, WorkspaceEdit,
};
use std::collections::HashMap;

/// The quick fixes for the diagnostics of `document` that overlap `range`.
pub fn code_actions(uri: &Uri, document: &Document, range: Range) -> Vec<CodeActionOrCommand> {
    let start = document.index.offset(&document.text, range.start);
    let end = document.index.offset(&document.text, range.end);
    let wanted = Span::new(start, end);
    let mut actions = Vec::new();
    for diagnostic in &document.compiled.diagnostics {
        let Some(primary) = diagnostic.primary() else {
            continue;
        };
        if !overlaps(primary.span, wanted) {
            continue;
        }
        let lsp_diagnostic = to_lsp(uri, document, diagnostic);
        for (idx, suggestion) in diagnostic.suggestions.iter().enumerate() {
            let edit = TextEdit::new(
                document.index.range(&document.text, suggestion.span),
                suggestion.replacement.clone(),
            );
            actions.push(CodeActionOrCommand::CodeAction(CodeAction {
                title: suggestion.title.clone(),
                kind: Some(CodeActionKind::QUICKFIX),
                diagnostics: Some(vec![lsp_diagnostic.clone()]),
                edit: Some(WorkspaceEdit {
                    changes: Some(HashMap::from([(uri.clone(), vec![edit])])),
                    ..WorkspaceEdit::default()
                }),
                is_preferred: Some(idx == 0),
                ..CodeAction::default()
            }));
        }
    }
    actions
}

/// Whether two byte ranges share a byte, or a point touches the other range.
fn overlaps(a: Span, b: Span) -> bool {
    touches(a, b.offset) || touches(b, a.offset)
}
