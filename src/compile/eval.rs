//! Argument expressions: literals, block parameters and `+ - * /` evaluated in a scope, with
//! exact rational arithmetic so that `c/r` is a whole number exactly when it divides.

use crate::diagnostics::{codes, Diagnostic};
use crate::syntax::ast::{BinaryOp, Expr, ExprKind};
use crate::text::{Literal, Span};

/// An evaluated value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A rational number `num / den` in lowest terms, `den` > 0; a whole number when `den` is 1.
    Number(i64, i64),
    /// A number written with a point or exponent, or computed from one.
    Float(f64),
    /// Two whole numbers joined by `x` (`3x3`).
    Pair(u64, u64),
    /// A word (`same`, `relu6`).
    Word(String),
}

impl Value {
    /// The value as the language would write it.
    pub fn display(&self) -> String {
        match self {
            Value::Number(num, 1) => num.to_string(),
            Value::Number(num, den) => format!("{num}/{den}"),
            Value::Float(value) => format!("{value:?}"),
            Value::Pair(first, second) => format!("{first}x{second}"),
            Value::Word(word) => word.clone(),
        }
    }

    /// The value of a literal; a fraction is divided exactly.
    pub fn from_literal(literal: &Literal) -> Value {
        match literal {
            Literal::Int(int) => match i64::try_from(*int) {
                Ok(int) => Value::Number(int, 1),
                Err(_) => Value::Float(*int as f64),
            },
            Literal::Float(float) => Value::Float(*float),
            Literal::Pair(first, second) => Value::Pair(*first, *second),
            Literal::Fraction(num, den) => match (i64::try_from(*num), i64::try_from(*den)) {
                (Ok(num), Ok(den)) if den != 0 => {
                    rational(num, den).unwrap_or(Value::Float(f64::NAN))
                }
                _ => Value::Float(*num as f64 / *den as f64),
            },
            Literal::Word(word) => Value::Word(word.clone()),
        }
    }
}

/// A value with where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluated {
    /// The value.
    pub value: Value,
    /// The expression's characters (in the text being expanded: the model or a block body).
    pub span: Span,
    /// When the value came through a block parameter: the parameter's name and where its value
    /// was written (the call's argument, or the signature's default).
    pub given: Option<(String, Span)>,
}

/// A block parameter's bound value.
#[derive(Clone, Debug, PartialEq)]
pub struct Bound {
    /// The value.
    pub value: Value,
    /// Where it was written: the call's argument or the signature's default.
    pub span: Span,
}

/// The parameters in scope while a block body expands; empty for the model itself. A block
/// has a handful of parameters, so a list in binding order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scope {
    params: Vec<(String, Bound)>,
}

impl Scope {
    /// Binds `name`, replacing its value if it is bound.
    pub fn bind(&mut self, name: &str, bound: Bound) {
        match self.params.iter_mut().find(|(known, _)| known == name) {
            Some((_, known)) => *known = bound,
            None => self.params.push((name.to_string(), bound)),
        }
    }

    /// The value bound to `name`, if it is a parameter.
    pub fn get(&self, name: &str) -> Option<&Bound> {
        self.params
            .iter()
            .find(|(known, _)| known == name)
            .map(|(_, bound)| bound)
    }

    /// The names in scope, for suggestions.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.params.iter().map(|(name, _)| name.as_str())
    }

    /// The names in scope with their values, in binding order.
    pub fn values(&self) -> impl ExactSizeIterator<Item = (&str, &Value)> {
        self.params
            .iter()
            .map(|(name, bound)| (name.as_str(), &bound.value))
    }
}

/// Evaluates `expr` in `scope`. Errors are `strata::layer::argument` diagnostics at the
/// offending characters.
pub fn evaluate(expr: &Expr, scope: &Scope) -> Result<Evaluated, Box<Diagnostic>> {
    match &expr.kind {
        ExprKind::Literal(Literal::Word(word)) => Ok(evaluate_word(word, expr.span, scope)),
        ExprKind::Literal(literal) => Ok(plain(Value::from_literal(literal), expr.span)),
        ExprKind::Negate(operand) => {
            let inner = evaluate(operand, scope)?;
            let value = match inner.value {
                Value::Number(num, den) => num
                    .checked_neg()
                    .map(|num| Value::Number(num, den))
                    .ok_or_else(|| too_large(expr.span))?,
                Value::Float(value) => Value::Float(-value),
                other => return Err(not_a_number(&other, inner.span)),
            };
            Ok(plain(value, expr.span))
        }
        ExprKind::Binary(op, lhs, rhs) => {
            let lhs = evaluate(lhs, scope)?;
            let rhs = evaluate(rhs, scope)?;
            let value = arithmetic(*op, &lhs, &rhs, expr.span)?;
            Ok(plain(value, expr.span))
        }
    }
}

/// The value of the word `word` written at `span`: a parameter's value, or the word itself.
pub fn evaluate_word(word: &str, span: Span, scope: &Scope) -> Evaluated {
    match scope.get(word) {
        Some(bound) => Evaluated {
            value: bound.value.clone(),
            span,
            given: Some((word.to_string(), bound.span)),
        },
        None => plain(Value::Word(word.to_string()), span),
    }
}

fn plain(value: Value, span: Span) -> Evaluated {
    Evaluated {
        value,
        span,
        given: None,
    }
}

fn arithmetic(
    op: BinaryOp,
    lhs: &Evaluated,
    rhs: &Evaluated,
    span: Span,
) -> Result<Value, Box<Diagnostic>> {
    match (&lhs.value, &rhs.value) {
        (Value::Number(a, b), Value::Number(c, d)) => {
            let (a, b, c, d) = (*a, *b, *c, *d);
            let result = match op {
                BinaryOp::Add => a
                    .checked_mul(d)
                    .zip(c.checked_mul(b))
                    .and_then(|(x, y)| x.checked_add(y))
                    .zip(b.checked_mul(d)),
                BinaryOp::Sub => a
                    .checked_mul(d)
                    .zip(c.checked_mul(b))
                    .and_then(|(x, y)| x.checked_sub(y))
                    .zip(b.checked_mul(d)),
                BinaryOp::Mul => a.checked_mul(c).zip(b.checked_mul(d)),
                BinaryOp::Div if c == 0 => return Err(division_by_zero(rhs.span)),
                BinaryOp::Div => a.checked_mul(d).zip(b.checked_mul(c)),
            };
            result
                .and_then(|(num, den)| rational(num, den))
                .ok_or_else(|| too_large(span))
        }
        (Value::Number(..) | Value::Float(_), Value::Number(..) | Value::Float(_)) => {
            let (x, y) = (as_f64(&lhs.value), as_f64(&rhs.value));
            if op == BinaryOp::Div && y == 0.0 {
                return Err(division_by_zero(rhs.span));
            }
            Ok(Value::Float(match op {
                BinaryOp::Add => x + y,
                BinaryOp::Sub => x - y,
                BinaryOp::Mul => x * y,
                BinaryOp::Div => x / y,
            }))
        }
        (Value::Number(..) | Value::Float(_), other) => Err(not_a_number(other, rhs.span)),
        (other, _) => Err(not_a_number(other, lhs.span)),
    }
}

/// `num / den` in lowest terms with a positive denominator, or `None` on overflow.
fn rational(num: i64, den: i64) -> Option<Value> {
    let divisor = gcd(num.unsigned_abs(), den.unsigned_abs()).max(1);
    let divisor = i64::try_from(divisor).ok()?;
    let (mut num, mut den) = (num / divisor, den / divisor);
    if den < 0 {
        num = num.checked_neg()?;
        den = den.checked_neg()?;
    }
    Some(Value::Number(num, den))
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// A number as `f64`.
pub fn as_f64(value: &Value) -> f64 {
    match value {
        Value::Number(num, den) => *num as f64 / *den as f64,
        Value::Float(value) => *value,
        Value::Pair(..) | Value::Word(_) => f64::NAN,
    }
}

fn not_a_number(value: &Value, span: Span) -> Box<Diagnostic> {
    Box::new(
        Diagnostic::error(
            codes::LAYER_ARGUMENT,
            format!("`{}` is not a number", value.display()),
        )
        .with_primary(span, "arithmetic needs numbers here")
        .with_help("only numbers and parameters bound to numbers can be added, subtracted, multiplied or divided"),
    )
}

fn division_by_zero(span: Span) -> Box<Diagnostic> {
    Box::new(
        Diagnostic::error(codes::LAYER_ARGUMENT, "division by zero")
            .with_primary(span, "this is 0")
            .with_help("divide by a number other than 0"),
    )
}

fn too_large(span: Span) -> Box<Diagnostic> {
    Box::new(
        Diagnostic::error(codes::LAYER_ARGUMENT, "a number too large to compute with")
            .with_primary(span, "overflows")
            .with_help("use smaller numbers"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::MappedText;

    fn eval(text: &str, scope: &Scope) -> Result<Value, String> {
        let mapped = MappedText::verbatim(&format!("conv({text})"), 0);
        let chain = crate::syntax::parse(&mapped).map_err(|d| d.message)?;
        let crate::syntax::ast::Stage::Call(stage) = &chain.stages[0] else {
            return Err("not a call".into());
        };
        match &stage.call.args[0].value {
            crate::syntax::ast::ArgValue::Expr(expr) => evaluate(expr, scope)
                .map(|e| e.value)
                .map_err(|d| d.message),
            crate::syntax::ast::ArgValue::Branch(_) => Err("branch".into()),
        }
    }

    #[test]
    fn arithmetic_is_exact_and_follows_precedence() {
        let mut scope = Scope::default();
        scope.bind(
            "f",
            Bound {
                value: Value::Number(64, 1),
                span: Span::default(),
            },
        );
        assert_eq!(eval("f*4", &scope), Ok(Value::Number(256, 1)));
        assert_eq!(eval("f/16", &scope), Ok(Value::Number(4, 1)));
        assert_eq!(eval("f/3", &scope), Ok(Value::Number(64, 3)));
        assert_eq!(eval("(f+16)/2-1", &scope), Ok(Value::Number(39, 1)));
        assert_eq!(eval("2+3*4", &scope), Ok(Value::Number(14, 1)));
        assert_eq!(eval("-f", &scope), Ok(Value::Number(-64, 1)));
        assert_eq!(eval("1/255", &scope), Ok(Value::Number(1, 255)));
        assert_eq!(eval("0.5*f", &scope), Ok(Value::Float(32.0)));
        assert!(eval("f/0", &scope).is_err_and(|m| m.contains("division by zero")));
        assert!(eval("same*2", &scope).is_err_and(|m| m.contains("not a number")));
        assert!(eval("9223372036854775807*2", &scope).is_err_and(|m| m.contains("too large")));
    }
}
