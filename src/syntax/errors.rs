//! pest's parse errors as `strata::syntax::parse` diagnostics with readable expectations.

use super::Rule;
use crate::diagnostics::{codes, Diagnostic};
use crate::spec::MappedText;
use pest::error::{ErrorVariant, InputLocation};

/// The diagnostic for a pest error in the model text.
pub fn from_pest(model: &MappedText, err: &pest::error::Error<Rule>) -> Diagnostic {
    let (start, end) = match err.location {
        InputLocation::Pos(pos) => (pos, pos),
        InputLocation::Span((start, end)) => (start, end),
    };
    let found = describe_found(&model.text, start);
    let expected = match &err.variant {
        ErrorVariant::ParsingError { positives, .. } => expected_list(positives),
        ErrorVariant::CustomError { message } => message.clone(),
    };
    let end = if end > start {
        end
    } else {
        next_token_end(&model.text, start)
    };
    Diagnostic::error(
        codes::SYNTAX_PARSE,
        format!("the model does not parse: expected {expected}, found {found}"),
    )
    .with_primary(model.span(start, end), format!("expected {expected}"))
    .with_help(help_for(&model.text, start))
}

/// What stands at `pos`, for the message.
fn describe_found(text: &str, pos: usize) -> String {
    let rest = &text[pos.min(text.len())..];
    match rest.chars().next() {
        None => "the end of the model".to_string(),
        Some(_) => format!("`{}`", &rest[..next_token_end(rest, 0)]),
    }
}

/// The end of the token starting at `pos` (a word, or one character).
fn next_token_end(text: &str, pos: usize) -> usize {
    let rest = &text[pos.min(text.len())..];
    if rest.starts_with("->") {
        return pos + 2;
    }
    let word_len: usize = rest
        .chars()
        .take_while(|ch| ch.is_alphanumeric() || *ch == '_')
        .map(char::len_utf8)
        .sum();
    let len = if word_len > 0 {
        word_len
    } else {
        rest.chars().next().map_or(0, char::len_utf8)
    };
    pos.min(text.len()) + len
}

/// The rules pest expected, in words, deduplicated.
fn expected_list(positives: &[Rule]) -> String {
    let mut words: Vec<&str> = Vec::new();
    for rule in positives {
        let word = match rule {
            Rule::arrow | Rule::chain | Rule::EOI => "`->`",
            Rule::stage | Rule::layer_stage | Rule::call | Rule::head | Rule::name | Rule::word => {
                "a layer name"
            }
            Rule::group => "`(`",
            Rule::repeat => "a repeat `xN`",
            Rule::args => "`(`",
            Rule::arg | Rule::arg_name => "an argument",
            Rule::pair | Rule::fraction | Rule::number | Rule::int | Rule::count => "a number",
            Rule::shorthand => "a shorthand such as `3` or `2x2`",
            _ => "more text",
        };
        if !words.contains(&word) {
            words.push(word);
        }
    }
    match words.split_last() {
        None => "something else".to_string(),
        Some((last, [])) => (*last).to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// A likely fix for a parse error at `pos`.
fn help_for(text: &str, pos: usize) -> String {
    let before = text[..pos.min(text.len())].trim_end();
    if inside_arguments(before) {
        "arguments look like `conv3(32, stride=2, pad=same)`: values, then `name=value`".to_string()
    } else if before.ends_with("->") {
        "a stage must follow `->`: a layer such as `dense10` or a group `( … )`".to_string()
    } else if before.is_empty() {
        "a model starts with a layer, e.g. `bn -> dense2 softmax`".to_string()
    } else {
        "stages are joined by `->`, e.g. `conv3 relu -> pool2`".to_string()
    }
}

/// Whether the text before an error ends inside an argument list `name(…`.
fn inside_arguments(before: &str) -> bool {
    let mut opens: Vec<bool> = Vec::new();
    let mut previous = ' ';
    for ch in before.chars() {
        match ch {
            '(' => opens.push(previous.is_alphanumeric()),
            ')' => {
                opens.pop();
            }
            _ => {}
        }
        if !ch.is_whitespace() {
            previous = ch;
        }
    }
    opens.last().copied().unwrap_or(false)
}
