//! The one literal parser: the words and numbers a spec writes as argument values, in the
//! layer language (`20`, `0.5`, `3x3`, `1/255`, `same`), in `defaults:` and in the
//! catalogue's defaults.

/// A literal value as written.
#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    /// A whole number (`20`).
    Int(u64),
    /// A number with a point or exponent (`0.3`, `1e-3`).
    Float(f64),
    /// Two whole numbers joined by `x` (`3x3`).
    Pair(u64, u64),
    /// A fraction of whole numbers (`1/255`).
    Fraction(u64, u64),
    /// A bare word (`same`, `true`).
    Word(String),
}

impl Literal {
    /// The value as the user would write it, for messages.
    pub fn display(&self) -> String {
        match self {
            Literal::Int(value) => value.to_string(),
            Literal::Float(value) => value.to_string(),
            Literal::Pair(first, second) => format!("{first}x{second}"),
            Literal::Fraction(num, den) => format!("{num}/{den}"),
            Literal::Word(word) => word.clone(),
        }
    }
}

/// Reads `text` as a literal: a whole number, a number, `AxB`, `A/B`, else a word. Whole
/// numbers too large for `u64` saturate (range checks report them); numbers too large for
/// `f64` are infinite.
pub fn parse_literal(text: &str) -> Literal {
    let text = text.trim();
    let whole = |digits: &str| -> Option<u64> {
        if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        Some(digits.parse().unwrap_or(u64::MAX))
    };
    if let Some(int) = whole(text) {
        return Literal::Int(int);
    }
    let two = |sep: char| {
        let (first, second) = text.split_once(sep)?;
        Some((whole(first.trim())?, whole(second.trim())?))
    };
    if let Some((first, second)) = two('x').or_else(|| two('X')) {
        return Literal::Pair(first, second);
    }
    if let Some((num, den)) = two('/') {
        return Literal::Fraction(num, den);
    }
    let looks_numeric = text
        .trim_start_matches(['-', '+'])
        .starts_with(|ch: char| ch.is_ascii_digit() || ch == '.');
    match text.parse::<f64>() {
        Ok(number) if looks_numeric => Literal::Float(number),
        _ => Literal::Word(text.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_literal, Literal};

    #[test]
    fn reads_every_literal_form() {
        assert_eq!(parse_literal("20"), Literal::Int(20));
        assert_eq!(parse_literal("0.5"), Literal::Float(0.5));
        assert_eq!(parse_literal("1e-3"), Literal::Float(1e-3));
        assert_eq!(parse_literal("-1"), Literal::Float(-1.0));
        assert_eq!(parse_literal("3x5"), Literal::Pair(3, 5));
        assert_eq!(parse_literal("1/255"), Literal::Fraction(1, 255));
        assert_eq!(parse_literal("same"), Literal::Word("same".into()));
        assert_eq!(parse_literal("inf"), Literal::Word("inf".into()));
        assert_eq!(
            parse_literal("99999999999999999999999"),
            Literal::Int(u64::MAX)
        );
    }
}
