//! pest pairs → AST, rebasing every span onto the spec file as it is made.

use super::ast::{
    Arg, ArgValue, BinaryOp, Call, CallStage, Chain, Expr, ExprKind, Group, Param, Repeat,
    Shorthand, Signature, Stage,
};
use super::Rule;
use crate::diagnostics::{codes, Diagnostic};
use crate::text::{parse_literal, Ident, Literal, MappedText, Span};
use pest::iterators::{Pair, Pairs};

/// Builds the chain from the pairs of `Rule::model`.
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

/// Builds a block signature from the pairs of `Rule::signature`.
pub fn signature(text: &MappedText, mut pairs: Pairs<'_, Rule>) -> Option<Signature> {
    let pair = pairs.next()?;
    let builder = Builder { text };
    let span = builder.span(&pair);
    let mut name = None;
    let mut params = Vec::new();
    for inner in pair.into_inner() {
        match inner.as_rule() {
            Rule::word => name = Some(builder.ident(&inner)),
            Rule::params => {
                params = inner
                    .into_inner()
                    .map(|param| builder.param(param))
                    .collect()
            }
            _ => {}
        }
    }
    Some(Signature {
        name: name?,
        params,
        span,
    })
}

struct Builder<'a> {
    text: &'a MappedText,
}

impl Builder<'_> {
    /// The pair's span in the file, without the trailing whitespace and comments that pest
    /// includes when an optional part after them is absent.
    fn span(&self, pair: &Pair<'_, Rule>) -> Span {
        let start = pair.as_span().start();
        self.text.span(start, start + content_len(pair.as_str()))
    }

    fn chain(&self, pair: Pair<'_, Rule>) -> Chain {
        let span = self.span(&pair);
        let stages = pair
            .into_inner()
            .filter_map(|stage| match stage.as_rule() {
                Rule::group => Some(Stage::Group(self.group(stage))),
                Rule::call_stage => Some(Stage::Call(Box::new(self.call_stage(stage)))),
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
                Rule::repeat => repeat = Some(self.repeat(inner)),
                _ => {}
            }
        }
        Group {
            chain: chain.unwrap_or(Chain {
                stages: Vec::new(),
                span,
            }),
            repeat,
            span,
        }
    }

    fn repeat(&self, pair: Pair<'_, Rule>) -> Repeat {
        let count = pair
            .clone()
            .into_inner()
            .next()
            .and_then(|digits| digits.as_str().parse().ok());
        Repeat {
            count,
            span: self.span(&pair),
        }
    }

    fn call_stage(&self, pair: Pair<'_, Rule>) -> CallStage {
        let span = self.span(&pair);
        let mut call = None;
        let mut repeat = None;
        let mut activation = None;
        for inner in pair.into_inner() {
            match inner.as_rule() {
                Rule::call => call = Some(self.call(inner)),
                Rule::repeat => repeat = Some(self.repeat(inner)),
                Rule::activation => activation = inner.into_inner().next().map(|c| self.call(c)),
                _ => {}
            }
        }
        CallStage {
            call: call.unwrap_or_else(|| self.empty_call(span)),
            repeat,
            activation,
            span,
        }
    }

    fn empty_call(&self, span: Span) -> Call {
        let ident = Ident {
            text: String::new(),
            span,
        };
        Call {
            name: ident.clone(),
            word: ident,
            shorthand: None,
            args: Vec::new(),
            args_span: None,
            span,
        }
    }

    fn call(&self, pair: Pair<'_, Rule>) -> Call {
        let span = self.span(&pair);
        let mut call = self.empty_call(span);
        for inner in pair.into_inner() {
            match inner.as_rule() {
                Rule::head => {
                    call.word = self.ident(&inner);
                    for part in inner.into_inner() {
                        match part.as_rule() {
                            Rule::name | Rule::word => call.name = self.ident(&part),
                            Rule::shorthand => call.shorthand = Some(self.shorthand(part)),
                            _ => {}
                        }
                    }
                }
                Rule::args => {
                    call.args_span = Some(self.span(&inner));
                    call.args = inner.into_inner().map(|arg| self.arg(arg)).collect();
                }
                _ => {}
            }
        }
        call
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
        let rule = pair.as_rule();
        let mut inner = pair.into_inner();
        match rule {
            Rule::named => {
                let name = inner.next().map(|name| self.ident(&name));
                let value = inner
                    .next()
                    .map_or_else(|| self.word_expr("", span), |expr| self.expr(expr));
                Arg {
                    name,
                    value: ArgValue::Expr(value),
                    span,
                }
            }
            Rule::value => Arg {
                name: None,
                value: ArgValue::Expr(
                    inner
                        .next()
                        .map_or_else(|| self.word_expr("", span), |expr| self.expr(expr)),
                ),
                span,
            },
            _ => Arg {
                name: None,
                value: ArgValue::Branch(inner.next().map_or_else(
                    || Chain {
                        stages: Vec::new(),
                        span,
                    },
                    |chain| self.chain(chain),
                )),
                span,
            },
        }
    }

    fn word_expr(&self, word: &str, span: Span) -> Expr {
        Expr {
            kind: ExprKind::Literal(Literal::Word(word.to_string())),
            span,
        }
    }

    /// An `expr` or `term` pair: operands folded left to right.
    fn expr(&self, pair: Pair<'_, Rule>) -> Expr {
        let span = self.span(&pair);
        match pair.as_rule() {
            Rule::expr | Rule::term => {
                let mut inner = pair.into_inner();
                let Some(first) = inner.next() else {
                    return self.word_expr("", span);
                };
                let mut lhs = self.expr(first);
                while let (Some(op), Some(rhs)) = (inner.next(), inner.next()) {
                    let op = match op.as_str().trim() {
                        "+" => BinaryOp::Add,
                        "-" => BinaryOp::Sub,
                        "*" => BinaryOp::Mul,
                        _ => BinaryOp::Div,
                    };
                    let rhs = self.expr(rhs);
                    let span = lhs.span.cover(rhs.span);
                    lhs = Expr {
                        kind: ExprKind::Binary(op, Box::new(lhs), Box::new(rhs)),
                        span,
                    };
                }
                lhs
            }
            Rule::paren => match pair.into_inner().next() {
                Some(inner) => Expr {
                    span,
                    ..self.expr(inner)
                },
                None => self.word_expr("", span),
            },
            Rule::negate => {
                let operand = pair
                    .into_inner()
                    .next()
                    .map_or_else(|| self.word_expr("", span), |inner| self.expr(inner));
                Expr {
                    kind: ExprKind::Negate(Box::new(operand)),
                    span,
                }
            }
            _ => Expr {
                kind: ExprKind::Literal(parse_literal(pair.as_str())),
                span,
            },
        }
    }

    fn param(&self, pair: Pair<'_, Rule>) -> Param {
        let span = self.span(&pair);
        let mut inner = pair.into_inner();
        let name = inner.next().map_or_else(
            || Ident {
                text: String::new(),
                span,
            },
            |word| self.ident(&word),
        );
        let default = inner.next().map(|expr| self.expr(expr));
        Param {
            name,
            default,
            span,
        }
    }
}

/// The length of `text` up to the end of its last character that is not whitespace or comment.
///
/// A `#` starts a comment that runs to the end of its line. Read from the end, line by line,
/// so that the spans of a long chain's nodes do not each cost a pass over all of it.
fn content_len(text: &str) -> usize {
    let mut rest = text;
    loop {
        let line_start = rest.rfind('\n').map_or(0, |idx| idx + 1);
        let line = &rest[line_start..];
        let code = line.find('#').map_or(line, |hash| &line[..hash]);
        if let Some((idx, ch)) = code
            .char_indices()
            .rev()
            .find(|(_, ch)| !ch.is_whitespace())
        {
            return line_start + idx + ch.len_utf8();
        }
        if line_start == 0 {
            return 0;
        }
        rest = &rest[..line_start - 1];
    }
}

/// Whole-number digits as `u64`, saturating at `u64::MAX` (range checks report it).
fn saturating_int(digits: &str) -> u64 {
    digits.parse().unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::content_len;

    /// The forward reading `content_len` must agree with.
    fn forward(text: &str) -> usize {
        let mut end = 0;
        let mut in_comment = false;
        for (idx, ch) in text.char_indices() {
            match ch {
                '\n' => in_comment = false,
                _ if in_comment => {}
                '#' => in_comment = true,
                ch if ch.is_whitespace() => {}
                ch => end = idx + ch.len_utf8(),
            }
        }
        end
    }

    #[test]
    fn content_ends_before_trailing_whitespace_and_comments() {
        for text in [
            "",
            " ",
            "\n",
            "#",
            "# only a comment",
            "conv3",
            "conv3   ",
            "conv3 # c",
            "conv3 # c\n",
            "conv3 # c\n  # d\n\n",
            "a#b\nc",
            "a # b\r\n  c\r\n",
            "dense(é) \u{a0}\u{2003}# 🚀\n\t",
            "x\n# é\n#\n",
            "(conv3 -> bn)x2   # é 🚀\n  -> relu",
            "\n\n  bn",
        ] {
            assert_eq!(content_len(text), forward(text), "{text:?}");
        }
    }
}
