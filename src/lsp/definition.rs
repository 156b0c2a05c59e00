//! Go to definition: from a block call (in the model or in a block's body) to the block's
//! name in `blocks:`, and from a parameter used in a block's body (a word in an expression,
//! a bare stage such as `act`, a lone-word argument such as `f` in `conv3(f)`, or a word in a
//! later parameter's default) to the parameter in the block's signature.
//!
//! Names resolve as the compiler resolves them (`compile/expand.rs`): inside a body, a bare
//! word that names a parameter is the parameter, even when a block has the same name; any
//! other call whose word names a block is a call of that block.

use super::convert::Positions;
use super::document::Document;
use crate::compile::blocks::{Block, Blocks};
use crate::compile::Compiled;
use crate::syntax::ast::{self, ArgValue, Call, Chain, Expr, ExprKind, Param};
use crate::text::{Literal, Span};
use lsp_types::{GotoDefinitionResponse, Location, Uri};

/// What a name in the spec refers to.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    /// A block, by its declaration.
    Block(&'a Block),
    /// A parameter of a block.
    Param(&'a Block, &'a Param),
}

impl Target<'_> {
    /// The characters of the declaration: the block's name, or the parameter's name.
    pub fn span(&self) -> Span {
        match self {
            Target::Block(block) => block.signature.name.span,
            Target::Param(_, param) => param.name.span,
        }
    }
}

/// A use of a block or a parameter: its characters and what it names.
#[derive(Clone, Copy, Debug)]
pub struct Reference<'a> {
    /// The characters of the use (the call's word, or the parameter's word).
    pub span: Span,
    /// What it names.
    pub target: Target<'a>,
}

/// The `textDocument/definition` answer at byte `offset` of `document`.
pub fn definition(uri: &Uri, document: &Document, offset: usize) -> Option<GotoDefinitionResponse> {
    let reference = reference_at(&document.compiled, offset)?;
    let range = document
        .index
        .range(&document.text, reference.target.span());
    Some(GotoDefinitionResponse::Scalar(Location::new(
        uri.clone(),
        range,
    )))
}

/// The use of a block or parameter at `offset`, in the model, in a block body or in a
/// parameter's default.
pub fn reference_at(compiled: &Compiled, offset: usize) -> Option<Reference<'_>> {
    let mut found = None;
    for_each_reference(compiled, &mut |reference| {
        if found.is_none() && reference.span.touches(offset) {
            found = Some(reference);
        }
    });
    found
}

/// Calls `visit` on every use of a block or parameter in the spec: the model's calls, each
/// body's calls and parameter words, and the words of each signature's defaults.
pub fn for_each_reference<'a>(compiled: &'a Compiled, visit: &mut dyn FnMut(Reference<'a>)) {
    if let Some(model) = &compiled.ast {
        chain_references(compiled, model, None, visit);
    }
    for block in &compiled.blocks.list {
        for (idx, param) in block.signature.params.iter().enumerate() {
            if let Some(default) = &param.default {
                // A default may use the parameters before it (`e=f*4`).
                let earlier = &block.signature.params[..idx];
                expr_words(default, &mut |word, span| {
                    if let Some(param) = earlier.iter().find(|param| param.name.text == word) {
                        visit(Reference {
                            span,
                            target: Target::Param(block, param),
                        });
                    }
                });
            }
        }
        if let Some(body) = &block.body {
            chain_references(compiled, body, Some(block), visit);
        }
    }
}

/// The references in `chain`, the model's (`block` is `None`) or a block's body.
fn chain_references<'a>(
    compiled: &'a Compiled,
    chain: &'a Chain,
    block: Option<&'a Block>,
    visit: &mut dyn FnMut(Reference<'a>),
) {
    let param_named = |word: &str| {
        block.and_then(|block| {
            block
                .signature
                .params
                .iter()
                .find(|param| param.name.text == word)
                .map(|param| Target::Param(block, param))
        })
    };
    ast::for_each_call(chain, &mut |call: &'a Call| {
        let bare = call.is_bare() && call.shorthand.is_none();
        let param = if bare {
            param_named(&call.word.text)
        } else {
            None
        };
        if let Some(target) = param {
            visit(Reference {
                span: call.word.span,
                target,
            });
        } else if let Some(callee) = called_block(&compiled.blocks, call) {
            visit(Reference {
                span: call.word.span,
                target: Target::Block(callee),
            });
        }
        for arg in &call.args {
            if let ArgValue::Expr(expr) = &arg.value {
                expr_words(expr, &mut |word, span| {
                    if let Some(target) = param_named(word) {
                        visit(Reference { span, target });
                    }
                });
            }
        }
    });
}

/// The block a call names: its whole word (`stage2`), else its name before a shorthand.
pub fn called_block<'a>(blocks: &'a Blocks, call: &Call) -> Option<&'a Block> {
    blocks.get(&call.word.text).or_else(|| {
        call.shorthand
            .as_ref()
            .and_then(|_| blocks.get(&call.name.text))
    })
}

/// Calls `visit` on every word of an expression (`f` and `r` in `f/r`).
fn expr_words<'a>(expr: &'a Expr, visit: &mut dyn FnMut(&'a str, Span)) {
    match &expr.kind {
        ExprKind::Literal(Literal::Word(word)) => visit(word, expr.span),
        ExprKind::Literal(_) => {}
        ExprKind::Negate(inner) => expr_words(inner, visit),
        ExprKind::Binary(_, lhs, rhs) => {
            expr_words(lhs, visit);
            expr_words(rhs, visit);
        }
    }
}
