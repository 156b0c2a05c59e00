//! The layer-stack language: model text → [`ast::Chain`] with spans in the spec file.
//!
//! pest does the parsing (`grammar/strata.pest`). Before pest runs, a linear scan checks the
//! parentheses: unbalanced ones get a precise diagnostic, and nesting deeper than
//! [`MAX_NESTING`] is refused, so that neither pest nor the tree builder can overflow the stack.

pub mod ast;
mod build;
mod errors;

use crate::diagnostics::{codes, Diagnostic};
use crate::spec::MappedText;

/// The deepest group nesting the parser accepts.
pub const MAX_NESTING: usize = 64;

/// The pest parser generated from the grammar file.
#[derive(pest_derive::Parser)]
#[grammar = "../grammar/strata.pest"]
pub struct StrataParser;

/// Parses the model text. Returns the chain when it parses, else one `strata::syntax::parse`
/// diagnostic (pest does not recover, so one syntax error per model text).
pub fn parse(model: &MappedText) -> Result<ast::Chain, Diagnostic> {
    check_parentheses(model)?;
    let pairs = <StrataParser as pest::Parser<Rule>>::parse(Rule::model, &model.text)
        .map_err(|err| errors::from_pest(model, &err))?;
    build::model(model, pairs)
}

/// Checks that parentheses balance and nest at most [`MAX_NESTING`] deep.
fn check_parentheses(model: &MappedText) -> Result<(), Diagnostic> {
    let mut open: Vec<usize> = Vec::new();
    let mut in_comment = false;
    for (idx, ch) in model.text.char_indices() {
        match ch {
            '\n' => in_comment = false,
            _ if in_comment => {}
            '#' => in_comment = true,
            '(' => {
                open.push(idx);
                if open.len() > MAX_NESTING {
                    return Err(Diagnostic::error(
                        codes::SYNTAX_PARSE,
                        format!("groups nest more than {MAX_NESTING} deep"),
                    )
                    .with_primary(model.span(idx, idx + 1), "too deep here")
                    .with_help("flatten the groups; a repeat `(…)xN` does not need nesting"));
                }
            }
            ')' if open.pop().is_none() => {
                return Err(Diagnostic::error(codes::SYNTAX_PARSE, "unmatched `)`")
                    .with_primary(model.span(idx, idx + 1), "no `(` before it")
                    .with_help("remove it, or add the `(` it closes"));
            }
            _ => {}
        }
    }
    match open.last() {
        Some(&idx) => Err(Diagnostic::error(codes::SYNTAX_PARSE, "unclosed `(`")
            .with_primary(model.span(idx, idx + 1), "this `(` is never closed")
            .with_help("add the `)` that closes the group")),
        None => Ok(()),
    }
}
