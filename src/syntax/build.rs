//! pest pairs → AST, rebasing every span onto the spec file as it is made.

use super::ast::{
    Arg, Chain, Group, Ident, LayerCall, LayerStage, Repeat, Shorthand, Stage, Value, ValueKind,
};
use super::Rule;
use crate::diagnostics::{codes, Diagnostic, Span};
use crate::spec::MappedText;
use pest::iterators::{Pair, Pairs};

/// Builds the model's chain from the pairs of `Rule::model`.
pub fn model(text: &MappedText, mut pairs: Pairs<'_, Rule>) -> Result<Chain, Diagnostic> {
    let chain = pairs
        .next()
        .and_then(|model| {
            model
                .into_inner()
                .find(|pair| pair.as_rule() == Rule::chain)
        })
        .ok_or_else(|| Diagnostic::error(codes::SYNTAX_PARSE, "the model is empty"))?;
    Ok(Builder { text }.chain(chain))
}

struct Builder<'a> {
    text: &'a MappedText,
}

impl Builder<'_> {
    /// The pair's span without the whitespace and comments pest's implicit `WHITESPACE` and
    /// `COMMENT` leave at its end (`call = { head ~ args? }` takes the space after `dense2` in
    /// `dense2 softmax` when there are no arguments).
    fn span(&self, pair: &Pair<'_, Rule>) -> Span {
        let span = pair.as_span();
        let content = trim_trailing(pair.as_str());
        self.text.span(span.start(), span.start() + content.len())
    }

    fn chain(&self, pair: Pair<'_, Rule>) -> Chain {
        let span = self.span(&pair);
        let stages = pair
            .into_inner()
            .filter_map(|stage| match stage.as_rule() {
                Rule::group => Some(Stage::Group(self.group(stage))),
                Rule::layer_stage => Some(Stage::Layer(Box::new(self.layer_stage(stage)))),
                _ => None,
            })
            .collect();
        Chain { stages, span }
    }

    fn group(&self, pair: Pair<'_, Rule>) -> Group {
        let span = self.span(&pair);
        let mut chain = None;
        let mut repeat = None;
        for inner in pair.into_inner() {
            match inner.as_rule() {
                Rule::chain => chain = Some(self.chain(inner)),
                Rule::repeat => {
                    let count = inner
                        .clone()
                        .into_inner()
                        .next()
                        .and_then(|digits| digits.as_str().parse().ok());
                    repeat = Some(Repeat {
                        count,
                        span: self.span(&inner),
                    });
                }
                _ => {}
            }
        }
        let chain = chain.unwrap_or(Chain {
            stages: Vec::new(),
            span,
        });
        Group {
            chain,
            repeat,
            span,
        }
    }

    fn layer_stage(&self, pair: Pair<'_, Rule>) -> LayerStage {
        let span = self.span(&pair);
        let mut calls = pair.into_inner().map(|call| self.call(call));
        let layer = calls.next().unwrap_or_else(|| LayerCall {
            name: Ident {
                text: String::new(),
                span,
            },
            shorthand: None,
            args: Vec::new(),
            args_span: None,
            span,
        });
        LayerStage {
            layer,
            activation: calls.next(),
            span,
        }
    }

    fn call(&self, pair: Pair<'_, Rule>) -> LayerCall {
        let span = self.span(&pair);
        let mut name = Ident {
            text: String::new(),
            span,
        };
        let mut shorthand = None;
        let mut args = Vec::new();
        let mut args_span = None;
        for inner in pair.into_inner() {
            match inner.as_rule() {
                Rule::head => {
                    for part in inner.into_inner() {
                        match part.as_rule() {
                            Rule::name | Rule::word => name = self.ident(&part),
                            Rule::shorthand => shorthand = Some(self.shorthand(part)),
                            _ => {}
                        }
                    }
                }
                Rule::args => {
                    args_span = Some(self.span(&inner));
                    args = inner.into_inner().map(|arg| self.arg(arg)).collect();
                }
                _ => {}
            }
        }
        LayerCall {
            name,
            shorthand,
            args,
            args_span,
            span,
        }
    }

    fn ident(&self, pair: &Pair<'_, Rule>) -> Ident {
        Ident {
            text: pair.as_str().to_string(),
            span: self.span(pair),
        }
    }

    fn shorthand(&self, pair: Pair<'_, Rule>) -> Shorthand {
        let span = self.span(&pair);
        let mut ints = pair.into_inner().map(|int| saturating_int(int.as_str()));
        Shorthand {
            first: ints.next().unwrap_or(0),
            second: ints.next(),
            span,
        }
    }

    fn arg(&self, pair: Pair<'_, Rule>) -> Arg {
        let span = self.span(&pair);
        let mut name = None;
        let mut value = Value {
            kind: ValueKind::Name(String::new()),
            span,
        };
        for inner in pair.into_inner() {
            match inner.as_rule() {
                Rule::arg_name => name = Some(self.ident(&inner)),
                _ => value = self.value(inner),
            }
        }
        Arg { name, value, span }
    }

    fn value(&self, pair: Pair<'_, Rule>) -> Value {
        let span = self.span(&pair);
        let text = pair.as_str();
        let two = |pair: Pair<'_, Rule>| {
            let mut ints = pair.into_inner().map(|int| saturating_int(int.as_str()));
            (ints.next().unwrap_or(0), ints.next().unwrap_or(0))
        };
        let kind = match pair.as_rule() {
            Rule::pair => {
                let (first, second) = two(pair);
                ValueKind::Pair(first, second)
            }
            Rule::fraction => {
                let (num, den) = two(pair);
                ValueKind::Fraction(num, den)
            }
            Rule::number => match text.parse::<u64>() {
                Ok(int) => ValueKind::Int(int),
                Err(_) => ValueKind::Float(text.parse().unwrap_or(f64::INFINITY)),
            },
            _ => ValueKind::Name(text.to_string()),
        };
        Value { kind, span }
    }
}

/// Whole-number digits as `u64`, saturating at `u64::MAX` (range checks report it).
fn saturating_int(digits: &str) -> u64 {
    digits.parse().unwrap_or(u64::MAX)
}

/// `text` without trailing whitespace and trailing `#` comments.
fn trim_trailing(text: &str) -> &str {
    let mut text = text.trim_end();
    loop {
        let line_start = text.rfind('\n').map_or(0, |idx| idx + 1);
        match text[line_start..].find('#') {
            Some(hash) => text = text[..line_start + hash].trim_end(),
            None => return text,
        }
    }
}
