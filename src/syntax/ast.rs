//! The syntax tree of the layer-stack language. Every node carries its span in the spec file.
//!
//! The tree says what was written, not what it means: a [`Call`] may turn out to be a layer, a
//! merge (`add`, `concat`, `mul`) or a block, and its items branches or values; the compiler
//! decides by looking the name up.

use crate::text::{Ident, Literal, Span};

/// A chain of stages joined by `->`.
#[derive(Clone, Debug, PartialEq)]
pub struct Chain {
    /// The stages in order.
    pub stages: Vec<Stage>,
    /// The chain's characters.
    pub span: Span,
}

/// One stage of a chain.
#[derive(Clone, Debug, PartialEq)]
pub enum Stage {
    /// A call (layer, merge or block), with its repeat and activation suffix.
    Call(Box<CallStage>),
    /// A parenthesised chain, optionally repeated (`(…)x7`).
    Group(Group),
}

impl Stage {
    /// The stage's characters.
    pub fn span(&self) -> Span {
        match self {
            Stage::Call(stage) => stage.span,
            Stage::Group(group) => group.span,
        }
    }
}

/// A call with its optional repeat and activation suffix: `conv3 relu`, `basic(64)x2`.
#[derive(Clone, Debug, PartialEq)]
pub struct CallStage {
    /// The call (`conv2x2(20, pad=same)`, `add(identity, conv3)`).
    pub call: Call,
    /// The repeat (`x2` in `basic(64)x2`): the whole stage, activation included, is copied.
    pub repeat: Option<Repeat>,
    /// The suffix activation (`relu` in `conv3 relu`).
    pub activation: Option<Call>,
    /// The stage's characters.
    pub span: Span,
}

/// A name with its shorthand and parenthesised items.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    /// The name without its shorthand (`conv` in `conv2x2`).
    pub name: Ident,
    /// The whole word as written before the parentheses (`conv2x2`, `relu6`, `stage2`), so
    /// that a name ending in digits can be looked up whole first.
    pub word: Ident,
    /// `3` or `2x2` right after the name.
    pub shorthand: Option<Shorthand>,
    /// The items in parentheses.
    pub args: Vec<Arg>,
    /// The parenthesised list, if written.
    pub args_span: Option<Span>,
    /// The call's characters.
    pub span: Span,
}

impl Call {
    /// Whether the call is a lone word: no parentheses (`identity`, `same`, `f`).
    pub fn is_bare(&self) -> bool {
        self.args_span.is_none()
    }
}

/// A shorthand: one number, or two joined by `x`.
#[derive(Clone, Debug, PartialEq)]
pub struct Shorthand {
    /// The first number.
    pub first: u64,
    /// The second number after `x`, if any.
    pub second: Option<u64>,
    /// The shorthand's characters.
    pub span: Span,
}

/// One item of a call: positional or named.
#[derive(Clone, Debug, PartialEq)]
pub struct Arg {
    /// The name before `=`, for a named argument.
    pub name: Option<Ident>,
    /// The value or branch.
    pub value: ArgValue,
    /// The item's characters.
    pub span: Span,
}

/// What an item holds.
#[derive(Clone, Debug, PartialEq)]
pub enum ArgValue {
    /// A value or expression (`20`, `f*4`, `3x3`).
    Expr(Expr),
    /// A chain: a merge's branch, or a lone word (`same`, `identity`, `f`) that the compiler
    /// reads as a word value when the callee takes values.
    Branch(Chain),
}

impl ArgValue {
    /// The lone word of a branch that is one bare call without suffixes (`same` in
    /// `pad=same`, `identity`), if it is one.
    pub fn lone_word(&self) -> Option<&Ident> {
        let ArgValue::Branch(chain) = self else {
            return None;
        };
        match chain.stages.as_slice() {
            [Stage::Call(stage)]
                if stage.call.is_bare() && stage.repeat.is_none() && stage.activation.is_none() =>
            {
                Some(&stage.call.word)
            }
            _ => None,
        }
    }
}

/// An expression with its span.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    /// What was written.
    pub kind: ExprKind,
    /// Where.
    pub span: Span,
}

/// The forms of an expression.
#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    /// A number, pair or word (`20`, `0.5`, `3x3`, `same`, or a parameter such as `f`).
    Literal(Literal),
    /// `-x`.
    Negate(Box<Expr>),
    /// `a + b`, `a - b`, `a * b`, `a / b`.
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
}

/// An arithmetic operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    /// `+`.
    Add,
    /// `-`.
    Sub,
    /// `*`.
    Mul,
    /// `/`.
    Div,
}

impl BinaryOp {
    /// The operator as written.
    pub fn symbol(self) -> char {
        match self {
            BinaryOp::Add => '+',
            BinaryOp::Sub => '-',
            BinaryOp::Mul => '*',
            BinaryOp::Div => '/',
        }
    }
}

/// A group: `( chain )` with an optional repeat.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    /// The chain inside the parentheses.
    pub chain: Chain,
    /// The repeat count (`x7`) and its span, if written.
    pub repeat: Option<Repeat>,
    /// The group's characters, from `(` through the repeat.
    pub span: Span,
}

/// A repeat suffix `xN`.
#[derive(Clone, Debug, PartialEq)]
pub struct Repeat {
    /// The count; `None` when the digits overflow.
    pub count: Option<u64>,
    /// The `xN` characters.
    pub span: Span,
}

/// A block's signature: the key of a `blocks:` entry (`down(f, stride=2)`).
#[derive(Clone, Debug, PartialEq)]
pub struct Signature {
    /// The block's name.
    pub name: Ident,
    /// Its parameters in order.
    pub params: Vec<Param>,
    /// The signature's characters.
    pub span: Span,
}

/// One parameter of a block, with its default.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    /// The parameter's name.
    pub name: Ident,
    /// The default (`1` in `stride=1`), if any.
    pub default: Option<Expr>,
    /// The parameter's characters.
    pub span: Span,
}

/// Calls `visit` on every call in `chain`, outermost first: stage calls, activation suffixes
/// and the calls inside a call's branches.
pub fn for_each_call<'a>(chain: &'a Chain, visit: &mut dyn FnMut(&'a Call)) {
    for stage in &chain.stages {
        match stage {
            Stage::Group(group) => for_each_call(&group.chain, visit),
            Stage::Call(stage) => {
                visit(&stage.call);
                for arg in &stage.call.args {
                    if let ArgValue::Branch(branch) = &arg.value {
                        for_each_call(branch, visit);
                    }
                }
                if let Some(activation) = &stage.activation {
                    visit(activation);
                }
            }
        }
    }
}

/// Calls `visit` on every word in `chain` that may name a block parameter: words inside
/// expressions, and bare calls (`act` in `conv3 act`, `f` in `conv3(f)`).
pub fn for_each_word<'a>(chain: &'a Chain, visit: &mut dyn FnMut(&'a str, Span)) {
    for_each_call(chain, &mut |call| {
        if call.shorthand.is_none() {
            visit(&call.word.text, call.word.span);
        }
        for arg in &call.args {
            if let ArgValue::Expr(expr) = &arg.value {
                expr_words(expr, visit);
            }
        }
    });
}

/// Calls `visit` on every word of an expression (`f` and `r` in `f/r`).
pub fn expr_words<'a>(expr: &'a Expr, visit: &mut dyn FnMut(&'a str, Span)) {
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
