//! The syntax tree of the layer-stack language. Every node carries its span in the spec file.

use crate::diagnostics::Span;

/// A name with its span (`conv`, `pad`, `same`).
#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    /// The name as written.
    pub text: String,
    /// Where it is written.
    pub span: Span,
}

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
    /// A layer, with an optional activation suffix (`conv3 relu`).
    Layer(Box<LayerStage>),
    /// A parenthesised chain, optionally repeated (`(…)x7`).
    Group(Group),
}

/// A layer with its activation suffix.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerStage {
    /// The layer call (`conv2x2(20, pad=same)`).
    pub layer: LayerCall,
    /// The suffix activation (`relu` in `conv3 relu`).
    pub activation: Option<LayerCall>,
    /// The stage's characters.
    pub span: Span,
}

/// A layer name with its shorthand and arguments.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerCall {
    /// The layer or activation name.
    pub name: Ident,
    /// `3` or `2x2` right after the name.
    pub shorthand: Option<Shorthand>,
    /// The arguments in parentheses.
    pub args: Vec<Arg>,
    /// The parenthesised argument list, if written.
    pub args_span: Option<Span>,
    /// The call's characters.
    pub span: Span,
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

/// A positional or named argument.
#[derive(Clone, Debug, PartialEq)]
pub struct Arg {
    /// The name before `=`, for a named argument.
    pub name: Option<Ident>,
    /// The value.
    pub value: Value,
    /// The argument's characters.
    pub span: Span,
}

/// A literal value with its span.
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    /// What was written.
    pub kind: ValueKind,
    /// Where.
    pub span: Span,
}

/// The kinds of literal values.
#[derive(Clone, Debug, PartialEq)]
pub enum ValueKind {
    /// A whole number (`20`).
    Int(u64),
    /// A number with a point or exponent, or a negative number (`0.3`, `1e-3`, `-1`).
    Float(f64),
    /// A bare word (`same`, `true`).
    Name(String),
    /// Two whole numbers joined by `x` (`3x3`).
    Pair(u64, u64),
    /// A fraction (`1/255`).
    Fraction(u64, u64),
}

impl ValueKind {
    /// The value as the user would write it, for messages.
    pub fn display(&self) -> String {
        match self {
            ValueKind::Int(value) => value.to_string(),
            ValueKind::Float(value) => value.to_string(),
            ValueKind::Name(name) => name.clone(),
            ValueKind::Pair(first, second) => format!("{first}x{second}"),
            ValueKind::Fraction(num, den) => format!("{num}/{den}"),
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
