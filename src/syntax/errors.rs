//! pest's parse errors as `strata::syntax::parse` diagnostics with readable expectations.

use super::Rule;
use crate::diagnostics::{codes, Diagnostic};
use crate::suggest;
use crate::text::MappedText;
use pest::error::{ErrorVariant, InputLocation};

/// The diagnostic for a pest error in the model text.
pub fn from_pest(model: &MappedText, err: &pest::error::Error<Rule>) -> Diagnostic {
    let (start, end) = match err.location {
        InputLocation::Pos(pos) => (pos, pos),
        InputLocation::Span((start, end)) => (start, end),
    };
    let found = describe_found(&model.text, start);
    let before = model.text[..start.min(model.text.len())].trim_end();
    let expected = match &err.variant {
        _ if before.ends_with(['(', ',']) && inside_arguments(before) => {
            "an argument (a value, `name=value` or a branch)".to_string()
        }
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
            Rule::stage
            | Rule::call_stage
            | Rule::call
            | Rule::head
            | Rule::name
            | Rule::word
            | Rule::branch
            | Rule::activation => "a layer name",
            Rule::group | Rule::args | Rule::paren | Rule::params => "`(`",
            Rule::repeat => "a repeat `xN`",
            Rule::named | Rule::arg_name | Rule::value | Rule::param => "an argument",
            Rule::expr | Rule::term | Rule::negate => "a value",
            Rule::add_op | Rule::mul_op => "an operator",
            Rule::pair | Rule::number | Rule::int | Rule::count => "a number",
            Rule::shorthand => "a shorthand such as `3` or `2x2`",
            _ => "more text",
        };
        if !words.contains(&word) {
            words.push(word);
        }
    }
    if words.is_empty() {
        "something else".to_string()
    } else {
        suggest::either(&words)
    }
}

/// The diagnostic for a block key that is not a signature.
pub fn signature_error(key: &MappedText, err: &pest::error::Error<Rule>) -> Diagnostic {
    let start = match err.location {
        InputLocation::Pos(pos) => pos,
        InputLocation::Span((start, _)) => start,
    };
    let found = describe_found(&key.text, start);
    let end = next_token_end(&key.text, start);
    Diagnostic::error(
        codes::BLOCK_SIGNATURE,
        format!("`{}` is not a block signature: unexpected {found}", key.text.trim()),
    )
    .with_primary(key.span(start, end), "unexpected here")
    .with_help("a block is declared as `name(param, param=default): body`, e.g. `basic(f, stride=1): conv3(f, stride=stride) -> bn relu`")
}

/// The diagnostic for an empty block key.
pub fn empty_signature(key: &MappedText) -> Diagnostic {
    Diagnostic::error(codes::BLOCK_SIGNATURE, "a block without a name")
        .with_primary(key.span(0, key.text.len()), "no name here")
        .with_help("write `name(param, …): body`")
}

/// A likely fix for a parse error at `pos`.
fn help_for(text: &str, pos: usize) -> String {
    let before = text[..pos.min(text.len())].trim_end();
    if inside_arguments(before) {
        "arguments look like `conv3(32, stride=2, pad=same)`: values, then `name=value`; \
         branches like `add(identity, conv3(32) -> bn)`"
            .to_string()
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
