//! Completion from the text before the cursor: layer names and aliases, activations, argument
//! names and values inside a call's parentheses, spec keys (top level, `train:`, `data:`) and
//! the values of choice keys. Works on half-written files, so it reads the text, not the IR.

use super::document::Document;
use crate::catalogue::{lookup, ArgType, LayerDecl, LAYERS};
use crate::spec::{
    KeyDoc, DATA_KEYS, EARLY_STOPPING_KEYS, MONITORS, REDUCE_LR_KEYS, TOP_KEYS, TRAIN_KEYS,
};
use lsp_types::{CompletionItem, CompletionItemKind};

/// The completion items at byte `offset` of `document`.
pub fn completion(document: &Document, offset: usize) -> Vec<CompletionItem> {
    let text = &document.text;
    let offset = floor_boundary(text, offset.min(text.len()));
    let line_start = text[..offset].rfind('\n').map_or(0, |idx| idx + 1);
    let line = &text[line_start..offset];
    if line.contains('#') {
        // The cursor is in a comment.
        return Vec::new();
    }
    match model_prefix(text, line_start, offset) {
        Some(model) => model_items(&model),
        None => key_items(text, line_start, line),
    }
}

/// The model text from its start to the cursor, comments removed, when the cursor is inside
/// the value of the top-level `model:` key.
fn model_prefix(text: &str, line_start: usize, offset: usize) -> Option<String> {
    let (top_start, top_line) = top_level_line(text, line_start)?;
    let model_start = top_start + "model:".len();
    if !top_line.starts_with("model:") || offset < model_start {
        return None;
    }
    let prefix = text.get(model_start..offset)?;
    let prefix = prefix.trim_start_matches([' ', '|', '>', '-', '+', '"', '\'']);
    let without_comments: Vec<&str> = prefix
        .split('\n')
        .map(|line| line.split('#').next().unwrap_or_default())
        .collect();
    Some(without_comments.join("\n"))
}

/// The nearest line at or above `line_start` that starts in column 0 (not a comment or blank).
fn top_level_line(text: &str, line_start: usize) -> Option<(usize, &str)> {
    let mut start = line_start;
    loop {
        let end = text[start..]
            .find('\n')
            .map_or(text.len(), |idx| start + idx);
        let line = &text[start..end];
        let top = line
            .chars()
            .next()
            .is_some_and(|ch| !ch.is_whitespace() && ch != '#');
        if top {
            return Some((start, line));
        }
        if start == 0 {
            return None;
        }
        start = text[..start - 1].rfind('\n').map_or(0, |idx| idx + 1);
    }
}

fn model_items(model: &str) -> Vec<CompletionItem> {
    let word_len = model
        .chars()
        .rev()
        .take_while(|ch| ch.is_ascii_alphanumeric() || *ch == '_')
        .count();
    let before = &model[..model.len() - word_len];
    if let Some(open) = unclosed_paren(before) {
        let callee = callee_name(&before[..open]);
        if let Some(decl) = callee.and_then(lookup) {
            return argument_items(decl, &before[open + 1..]);
        }
    }
    let previous = before.trim_end();
    let after_layer = before.len() > previous.len()
        && previous
            .chars()
            .last()
            .is_some_and(|ch| ch.is_ascii_alphanumeric() || ch == ')')
        && !previous.ends_with("->");
    if after_layer && !ends_with_group(previous) {
        let mut items = layer_items(true);
        items.push(item("->", CompletionItemKind::OPERATOR, "the next stage"));
        items
    } else {
        layer_items(false)
    }
}

/// The byte index of the innermost `(` not closed before the end of `text`.
fn unclosed_paren(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (idx, byte) in text.bytes().enumerate().rev() {
        match byte {
            b')' => depth += 1,
            b'(' if depth == 0 => return Some(idx),
            b'(' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// The layer name right before a `(`: `conv` in `conv2x2(`; `None` for a group's `(`.
fn callee_name(before_paren: &str) -> Option<&str> {
    let word_start = before_paren
        .char_indices()
        .rev()
        .find(|(_, ch)| !(ch.is_ascii_alphanumeric() || *ch == '_'))
        .map_or(0, |(idx, ch)| idx + ch.len_utf8());
    let word = &before_paren[word_start..];
    let name_len = word
        .find(|ch: char| ch.is_ascii_digit())
        .unwrap_or(word.len());
    let name = &word[..name_len];
    (!name.is_empty()).then_some(name)
}

/// Whether `text` ends with a group's `)` or `)xN` rather than a call's arguments.
fn ends_with_group(text: &str) -> bool {
    let trimmed = text.trim_end_matches(|ch: char| ch.is_ascii_digit());
    let trimmed = trimmed.strip_suffix('x').unwrap_or(trimmed);
    let Some(inner) = trimmed.strip_suffix(')') else {
        return false;
    };
    unclosed_paren(inner).is_some_and(|open| callee_name(&inner[..open]).is_none())
}

fn argument_items(decl: &LayerDecl, inside: &str) -> Vec<CompletionItem> {
    let segment = inside.rsplit(',').next().unwrap_or(inside);
    if let Some((name, _)) = segment.split_once('=') {
        let Some(arg) = decl.arg(name.trim()) else {
            return Vec::new();
        };
        let words: &[&str] = match arg.ty {
            ArgType::Bool => &["true", "false"],
            ArgType::Choice(words) => words,
            _ => &[],
        };
        return words
            .iter()
            .map(|word| item(word, CompletionItemKind::ENUM_MEMBER, arg.doc))
            .collect();
    }
    decl.args
        .iter()
        .map(|arg| {
            let detail = match arg.default {
                Some(default) => format!("{} (default {default})", arg.doc),
                None => arg.doc.to_string(),
            };
            CompletionItem {
                insert_text: Some(format!("{}=", arg.name)),
                ..item(arg.name, CompletionItemKind::PROPERTY, &detail)
            }
        })
        .collect()
}

fn layer_items(activations_only: bool) -> Vec<CompletionItem> {
    LAYERS
        .iter()
        .filter(|decl| !activations_only || decl.is_activation())
        .flat_map(|decl| {
            let kind = if decl.is_activation() {
                CompletionItemKind::FUNCTION
            } else {
                CompletionItemKind::CLASS
            };
            decl.names().map(move |name| item(name, kind, decl.doc))
        })
        .collect()
}

fn key_items(text: &str, line_start: usize, line: &str) -> Vec<CompletionItem> {
    let indented = line.starts_with([' ', '\t']);
    let section = if indented || line.contains('{') {
        top_level_line(text, line_start)
            .and_then(|(_, top)| top.split(':').next())
            .unwrap_or_default()
    } else {
        ""
    };
    let segment = line.rsplit([',', '{']).next().unwrap_or(line);
    if section == "defaults" {
        if let Some(decl) = enclosing_key(text, line_start, line).and_then(lookup) {
            return defaults_argument_items(decl, segment);
        }
    }
    if let Some((key, _)) = segment.split_once(':') {
        return value_items(key.trim());
    }
    let nested = match section {
        "train" => enclosing_key(text, line_start, line),
        _ => None,
    };
    let table: &[KeyDoc] = match (section, nested) {
        ("train", Some("early_stopping")) => EARLY_STOPPING_KEYS,
        ("train", Some("reduce_lr_on_plateau")) => REDUCE_LR_KEYS,
        (section, _) => match section {
            "" => TOP_KEYS,
            "train" => TRAIN_KEYS,
            "data" => DATA_KEYS,
            "defaults" => {
                return LAYERS
                    .iter()
                    .filter(|decl| !decl.args.is_empty())
                    .map(|decl| item(decl.name, CompletionItemKind::CLASS, decl.doc))
                    .collect()
            }
            _ => return Vec::new(),
        },
    };
    table
        .iter()
        .map(|key| CompletionItem {
            insert_text: Some(format!("{}: ", key.key)),
            ..item(key.key, CompletionItemKind::PROPERTY, key.doc)
        })
        .collect()
}

/// The key of the nested mapping the cursor is in (the layer of `defaults:`, or
/// `early_stopping` under `train:`): `conv` on a line
/// `  conv: { fi` or on a line under `  conv:`.
fn enclosing_key<'a>(text: &'a str, line_start: usize, line: &'a str) -> Option<&'a str> {
    let indent = line.len() - line.trim_start().len();
    if let Some((layer, _)) = line.split_once('{') {
        let layer = layer.trim().trim_end_matches(':').trim();
        return (indent > 0 && !layer.is_empty()).then_some(layer);
    }
    // Block style: the nearest line above with less indentation, if it is not `defaults:`.
    let mut start = line_start;
    while start > 0 {
        start = text[..start - 1].rfind('\n').map_or(0, |idx| idx + 1);
        let above = text[start..].lines().next().unwrap_or_default();
        let above_indent = above.len() - above.trim_start().len();
        if !above.trim().is_empty() && above_indent < indent {
            return (above_indent > 0).then(|| above.trim().trim_end_matches(':').trim());
        }
    }
    None
}

fn defaults_argument_items(decl: &LayerDecl, segment: &str) -> Vec<CompletionItem> {
    let segment = segment.trim_start();
    let as_call = match segment.split_once(':') {
        Some((name, value)) => format!("{}={value}", name.trim()),
        None => segment.to_string(),
    };
    argument_items(decl, &as_call)
        .into_iter()
        .map(|mut item| {
            if let Some(insert) = &mut item.insert_text {
                *insert = insert.replace('=', ": ");
            }
            item
        })
        .collect()
}

fn value_items(key: &str) -> Vec<CompletionItem> {
    let words: &[&str] = match key {
        "optimizer" => &["adam", "sgd", "rmsprop"],
        "loss" => &["categorical_crossentropy", "binary_crossentropy"],
        "nesterov" | "early_stopping" | "reduce_lr_on_plateau" => &["true", "false"],
        "monitor" => MONITORS,
        _ => &[],
    };
    words
        .iter()
        .map(|word| item(word, CompletionItemKind::ENUM_MEMBER, ""))
        .collect()
}

fn item(label: &str, kind: CompletionItemKind, detail: &str) -> CompletionItem {
    CompletionItem {
        label: label.to_string(),
        kind: Some(kind),
        detail: (!detail.is_empty()).then(|| detail.to_string()),
        ..CompletionItem::default()
    }
}

fn floor_boundary(text: &str, mut offset: usize) -> usize {
    while offset > 0 && !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(text: &str) -> Vec<String> {
        let uri = "file:///specs/a.yaml".parse().unwrap();
        let document = Document::new(&uri, text.to_string(), 1);
        completion(&document, text.len())
            .into_iter()
            .map(|item| item.label)
            .collect()
    }

    #[test]
    fn completes_by_context() {
        let layers = labels("input: 8x8x3\nmodel: bn -> co");
        assert!(layers.contains(&"conv".to_string()) && layers.contains(&"batchnorm".to_string()));
        let activations = labels("model: conv3(8) ");
        assert!(activations.contains(&"relu".to_string()));
        assert!(!activations.contains(&"conv".to_string()));
        assert_eq!(labels("model: conv3(8, pad="), ["valid", "same"]);
        assert_eq!(labels("model: (dense2(bias="), ["true", "false"]);
        assert!(labels("model: conv3(8, st").contains(&"stride".to_string()));
        assert!(labels("model: (conv3 -> ").contains(&"pool".to_string()));
        assert!(labels("input: 8x8x3\ntrain:\n  ep").contains(&"epochs".to_string()));
        assert!(labels("data:\n  va").contains(&"validation_split".to_string()));
        assert!(labels("cl").contains(&"classes".to_string()));
        assert_eq!(labels("train: { optimizer: "), ["adam", "sgd", "rmsprop"]);
        assert!(labels("model: |\n  bn # a comment\n  -> ").contains(&"dense".to_string()));
        assert!(labels("defaults:\n  co").contains(&"conv".to_string()));
        assert!(labels("defaults:\n  conv: { filters: 8, p").contains(&"pad".to_string()));
        assert_eq!(labels("defaults:\n  conv: { pad: "), ["valid", "same"]);
        assert_eq!(labels("defaults:\n  dense:\n    bias: "), ["true", "false"]);
        assert!(labels("defaults:\n  dense:\n    u").contains(&"units".to_string()));
        assert!(labels("train:\n  ea").contains(&"early_stopping".to_string()));
        assert!(labels("train:\n  early_stopping:\n    pa").contains(&"patience".to_string()));
        assert!(labels("train:\n  reduce_lr_on_plateau:\n    f").contains(&"factor".to_string()));
        assert!(labels("train:\n  early_stopping: { monitor: ").contains(&"val_loss".to_string()));
    }
}
