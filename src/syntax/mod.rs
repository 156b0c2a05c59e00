//! The layer-stack language: model and block text → [`ast::Chain`], block keys →
//! [`ast::Signature`], with spans in the spec file.
//!
//! pest does the parsing (`grammar/strata.pest`). Before pest runs, a linear scan checks the
//! parentheses: unbalanced ones get a precise diagnostic, and nesting deeper than
//! [`MAX_NESTING`] is refused, so that neither pest, the tree builder nor the compiler's
//! recursion can overflow the stack.

pub mod ast;
mod build;
mod errors;

use crate::diagnostics::{codes, Diagnostic};
use crate::text::MappedText;

/// The deepest nesting of parentheses (groups, merges, argument lists) the parser accepts.
pub const MAX_NESTING: usize = 64;

/// The pest parser generated from the grammar file.
#[derive(pest_derive::Parser)]
#[grammar = "../grammar/strata.pest"]
pub struct StrataParser;

/// Parses a model or block body. Returns the chain when it parses, else one
/// `strata::syntax::parse` diagnostic (pest does not recover, so one syntax error per text).
pub fn parse(model: &MappedText) -> Result<ast::Chain, Diagnostic> {
    check_parentheses(model)?;
    let pairs = <StrataParser as pest::Parser<Rule>>::parse(Rule::model, &model.text)
        .map_err(|err| errors::from_pest(model, &err))?;
    build::model(model, pairs)
}

/// Parses a block signature (`down(f, stride=2)`), or says why it does not parse.
pub fn parse_signature(key: &MappedText) -> Result<ast::Signature, Diagnostic> {
    check_parentheses(key).map_err(|diagnostic| Diagnostic {
        code: codes::BLOCK_SIGNATURE,
        ..diagnostic
    })?;
    let pairs = <StrataParser as pest::Parser<Rule>>::parse(Rule::signature, &key.text)
        .map_err(|err| errors::signature_error(key, &err))?;
    build::signature(key, pairs).ok_or_else(|| errors::empty_signature(key))
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
                        format!("parentheses nest more than {MAX_NESTING} deep"),
                    )
                    .with_primary(model.span(idx, idx + 1), "too deep here")
                    .with_help(
                        "flatten the groups (a repeat `(…)xN` does not need nesting), or move \
                         a deep branch into a block under `blocks:`",
                    ));
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
            .with_help("add the `)` that closes it")),
        None => Ok(()),
    }
}
