//! Completion from the text before the cursor: layer names and aliases, activations, the
//! spec's blocks, argument names and values inside a call's parentheses (a block's parameters
//! inside a block call's), branches inside a merge's, the enclosing block's parameters as
//! values inside a block body, spec keys (top level, `train:`, `data:`) and the values of choice
//! keys. Works on half-written files, so it reads the text, not the IR: the blocks come from a
//! light scan of the `blocks:` section ([`scan`](super::scan)).

use super::document::Document;
use super::scan::{scan_blocks, ScannedBlock};
use crate::catalogue::{lookup, ArgType, LayerDecl, LAYERS};
use crate::spec::{
    KeyDoc, AUGMENT_KEYS, DATA_KEYS, EARLY_STOPPING_KEYS, MONITORS, REDUCE_LR_KEYS, SCHEDULES,
    SCHEDULE_KEYS, TOP_KEYS, TRAIN_KEYS,
};
use lsp_types::{CompletionItem, CompletionItemKind, Documentation, MarkupContent, MarkupKind};

/// What the layer-language text at the cursor may name besides the catalogue.
struct Context<'a> {
    /// The document's text.
    text: &'a str,
    /// The spec's blocks, as scanned.
    blocks: Vec<ScannedBlock<'a>>,
    /// The position in `blocks` of the block whose body holds the cursor.
    current: Option<usize>,
}

impl Context<'_> {
    /// The block named `name`.
    fn block(&self, name: &str) -> Option<&ScannedBlock<'_>> {
        self.blocks.iter().find(|block| block.name == name)
    }

    /// The block whose body holds the cursor.
    fn current(&self) -> Option<&ScannedBlock<'_>> {
        self.current.and_then(|idx| self.blocks.get(idx))
    }
}

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
    if let Some(model) = model_prefix(text, line_start, offset) {
        let context = Context {
            text,
            blocks: scan_blocks(text),
            current: None,
        };
        return model_items(&model, &context);
    }
    if let Some((current, body)) = body_prefix(text, line_start, offset) {
        let context = Context {
            text,
            blocks: scan_blocks(text),
            current: Some(current),
        };
        return model_items(&body, &context);
    }
    key_items(text, line_start, line)
}

/// The text of a block body from its start to the cursor, comments removed, with the block's
/// position in the scan, when the cursor is inside a body of `blocks:`.
fn body_prefix(text: &str, line_start: usize, offset: usize) -> Option<(usize, String)> {
    let (_, top_line) = top_level_line(text, line_start)?;
    let key = top_line.split(':').next().unwrap_or_default();
    if key.trim_end() != "blocks" {
        return None;
    }
    let blocks = scan_blocks(text);
    let current = blocks
        .iter()
        .rposition(|block| block.body.start <= offset && offset <= block.body.end)?;
    let prefix = text.get(blocks[current].body.start..offset)?;
    Some((current, without_comments(prefix)))
}

/// A scalar's text without its leading indicators and spaces, and without `#` comments.
fn without_comments(prefix: &str) -> String {
    let prefix = prefix.trim_start_matches([' ', '|', '>', '-', '+', '"', '\'']);
    let lines: Vec<&str> = prefix
        .split('\n')
        .map(|line| line.split('#').next().unwrap_or_default())
        .collect();
    lines.join("\n")
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
    Some(without_comments(prefix))
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

/// What a call's name refers to, for the items inside its parentheses.
enum Callee<'b> {
    /// A layer, activation or merge of the catalogue.
    Catalogue(&'static LayerDecl),
    /// A block of the spec.
    Block(&'b ScannedBlock<'b>),
}

fn model_items(model: &str, context: &Context<'_>) -> Vec<CompletionItem> {
    let word_len = model
        .chars()
        .rev()
        .take_while(|ch| ch.is_ascii_alphanumeric() || *ch == '_')
        .count();
    let before = &model[..model.len() - word_len];
    if let Some(open) = unclosed_paren(before) {
        let inside = &before[open + 1..];
        match callee(&before[..open], context) {
            Some(Callee::Block(block)) => return block_argument_items(block, inside, context),
            Some(Callee::Catalogue(decl)) if !decl.is_merge() => {
                let mut items = argument_items(decl, inside);
                items.extend(parameter_items(context));
                return items;
            }
            // A merge's items are branches, a group's a chain: complete them as a chain.
            Some(Callee::Catalogue(_)) | None => {}
        }
    }
    let previous = before.trim_end();
    let after_layer = before.len() > previous.len()
        && previous
            .chars()
            .last()
            .is_some_and(|ch| ch.is_ascii_alphanumeric() || ch == ')')
        && !previous.ends_with("->");
    let mut items = if after_layer && !ends_with_group(previous) {
        layer_items(true)
    } else {
        let mut items = layer_items(false);
        items.extend(block_items(context));
        items
    };
    // A parameter may stand for a layer or an activation (`conv3 act`).
    items.extend(parameter_items(context));
    if after_layer && !ends_with_group(previous) {
        items.push(item("->", CompletionItemKind::OPERATOR, "the next stage"));
    }
    items
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

/// The word right before a `(`: `conv2x2` in `conv2x2(`; empty for a group's `(`.
fn word_before(before_paren: &str) -> &str {
    let word_start = before_paren
        .char_indices()
        .rev()
        .find(|(_, ch)| !(ch.is_ascii_alphanumeric() || *ch == '_'))
        .map_or(0, |(idx, ch)| idx + ch.len_utf8());
    &before_paren[word_start..]
}

/// The layer name right before a `(`: `conv` in `conv2x2(`; `None` for a group's `(`.
fn callee_name(before_paren: &str) -> Option<&str> {
    let word = word_before(before_paren);
    let name_len = word
        .find(|ch: char| ch.is_ascii_digit())
        .unwrap_or(word.len());
    let name = &word[..name_len];
    (!name.is_empty()).then_some(name)
}

/// What the call before a `(` names, looked up as the compiler does: the whole word first
/// (`relu6`, `stage2`), then the name before a shorthand (`conv` of `conv3`).
fn callee<'b>(before_paren: &str, context: &'b Context<'b>) -> Option<Callee<'b>> {
    let word = word_before(before_paren);
    let by = |name: &str| {
        lookup(name)
            .map(Callee::Catalogue)
            .or_else(|| context.block(name).map(Callee::Block))
    };
    by(word).or_else(|| callee_name(before_paren).and_then(by))
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

/// The items of a block call's parentheses: the parameters not given yet (`stride=`), or
/// inside a body the enclosing block's parameters as values.
fn block_argument_items(
    block: &ScannedBlock<'_>,
    inside: &str,
    context: &Context<'_>,
) -> Vec<CompletionItem> {
    let segments = top_level_segments(inside);
    let (current, given) = segments.split_last().unwrap_or((&"", &[]));
    if current.contains('=') {
        // The value of a named argument.
        return parameter_items(context);
    }
    let positional = given
        .iter()
        .filter(|segment| !segment.contains('=') && !segment.trim().is_empty())
        .count();
    let named: Vec<&str> = given
        .iter()
        .filter_map(|segment| segment.split_once('=').map(|(name, _)| name.trim()))
        .collect();
    let signature = block.signature_with_defaults();
    let mut items: Vec<CompletionItem> = block
        .params
        .iter()
        .enumerate()
        .filter(|(idx, param)| *idx >= positional && !named.contains(&param.name))
        .map(|(_, param)| {
            let detail = match param.default {
                Some(default) => format!("parameter of `{signature}` (default {default})"),
                None => format!("parameter of `{signature}`"),
            };
            CompletionItem {
                insert_text: Some(format!("{}=", param.name)),
                ..item(param.name, CompletionItemKind::PROPERTY, &detail)
            }
        })
        .collect();
    items.extend(parameter_items(context));
    items
}

/// The items of `text` separated by commas outside parentheses.
fn top_level_segments(text: &str) -> Vec<&str> {
    let mut segments = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (idx, byte) in text.bytes().enumerate() {
        match byte {
            b'(' => depth += 1,
            b')' => depth = depth.saturating_sub(1),
            b',' if depth == 0 => {
                segments.push(&text[start..idx]);
                start = idx + 1;
            }
            _ => {}
        }
    }
    segments.push(&text[start..]);
    segments
}

/// The spec's blocks, as layer names (the enclosing block left out: it may not call itself).
fn block_items(context: &Context<'_>) -> Vec<CompletionItem> {
    let current = context.current().map(|block| block.name);
    let mut seen: Vec<&str> = Vec::new();
    let mut items = Vec::new();
    for block in &context.blocks {
        if Some(block.name) == current || seen.contains(&block.name) {
            continue;
        }
        seen.push(block.name);
        let body = context
            .text
            .get(block.body.clone())
            .map(without_comments)
            .unwrap_or_default();
        let body = body.split_whitespace().collect::<Vec<_>>().join(" ");
        let documentation = format!(
            "**block** `{}`\n\n`{}`",
            block.signature_with_defaults(),
            crate::compile::expand::shorten(&body)
        );
        items.push(CompletionItem {
            documentation: Some(Documentation::MarkupContent(MarkupContent {
                kind: MarkupKind::Markdown,
                value: documentation,
            })),
            ..item(block.name, CompletionItemKind::MODULE, &block.signature())
        });
    }
    items
}

/// The parameters of the block whose body holds the cursor, as values.
fn parameter_items(context: &Context<'_>) -> Vec<CompletionItem> {
    let Some(block) = context.current() else {
        return Vec::new();
    };
    block
        .params
        .iter()
        .map(|param| {
            let detail = match param.default {
                Some(default) => format!("parameter of `{}` (default {default})", block.name),
                None => format!("parameter of `{}`", block.name),
            };
            item(param.name, CompletionItemKind::VARIABLE, &detail)
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
        ("train", Some("schedule")) => SCHEDULE_KEYS,
        (section, _) => match section {
            "" => TOP_KEYS,
            "train" => TRAIN_KEYS,
            "data" => DATA_KEYS,
            "augment" => AUGMENT_KEYS,
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
        "optimizer" => &["adam", "adamw", "sgd", "rmsprop"],
        "loss" => &["categorical_crossentropy", "binary_crossentropy"],
        "nesterov" | "early_stopping" | "reduce_lr_on_plateau" | "sync_bn" => &["true", "false"],
        "kind" => SCHEDULES,
        "flip" => &["horizontal", "vertical", "both"],
        "class_weight" => &["balanced"],
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
        assert_eq!(
            labels("train: { optimizer: "),
            ["adam", "adamw", "sgd", "rmsprop"]
        );
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

    #[test]
    fn completes_blocks_and_their_parameters() {
        let blocks =
            "blocks:\n  se(c, r=16): mul(identity, gap -> dense(c/r) relu -> dense(c) sigmoid)\n";
        // Block style: names at a stage, parameters in a call, both while the model is typed.
        assert!(labels(&format!("{blocks}model: conv3(8) -> ")).contains(&"se".to_string()));
        assert_eq!(
            labels(&format!("{blocks}model: conv3(8) -> se(")),
            ["c", "r"]
        );
        assert_eq!(labels(&format!("{blocks}model: conv3(8) -> se(8, ")), ["r"]);
        assert_eq!(
            labels(&format!("{blocks}model: se(c=8, r=")),
            Vec::<String>::new()
        );
        // Flow style, in a body: the conv's arguments and the block's parameters.
        let flow = labels("blocks: { a(f, k=3): conv(");
        assert!(flow.contains(&"filters".to_string()), "{flow:?}");
        assert!(
            flow.contains(&"f".to_string()) && flow.contains(&"k".to_string()),
            "{flow:?}"
        );
        // A `|` body over several lines, after a comment line.
        let body = labels("blocks:\n  b(f): |\n    # stem\n    conv3(f) -> add(identity, ");
        assert!(body.contains(&"identity".to_string()) && body.contains(&"f".to_string()));
        assert!(!body.contains(&"b".to_string()), "{body:?}");
        // Past the `blocks:` section, the model again.
        let model = labels("blocks:\n  b(f): conv3(f)\nmodel: ");
        assert!(model.contains(&"b".to_string()) && !model.contains(&"f".to_string()));
    }
}
