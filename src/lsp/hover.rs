//! Hover: a layer's kind, resolved arguments, shapes and parameters; what a group or a block
//! call expands to; a block's signature; what a spec key means. Everything is read from the
//! catalogue, the blocks, the key tables and the IR.

use super::convert::Positions;
use super::document::Document;
use super::locate::{
    block_name_at, defaults_key_at, key_at, layers_of_block_call, layers_of_call, layers_of_group,
    node_in_spec, ModelNode,
};
use crate::catalogue::{lookup, LayerDecl};
use crate::compile::blocks::Block;
use crate::ir::Layer;
use crate::spec::{KeyDoc, DATA_KEYS, EARLY_STOPPING_KEYS, REDUCE_LR_KEYS, TOP_KEYS, TRAIN_KEYS};
use crate::syntax::ast::{Call, Group};
use lsp_types::{Hover, HoverContents, MarkupContent, MarkupKind};

/// The hover at byte `offset` of `document`, if there is something to say.
pub fn hover(document: &Document, offset: usize) -> Option<Hover> {
    let compiled = &document.compiled;
    let (markdown, span) = match node_in_spec(compiled, offset) {
        Some((ModelNode::Call(call), _)) => match compiled.blocks.get(&call.word.text) {
            Some(block) => (
                block_call_hover(block, call, &compiled.layers),
                call.word.span,
            ),
            None => (layer_hover(call, &compiled.layers), call.span),
        },
        Some((ModelNode::Activation(layer, activation), _)) => {
            (activation_hover(layer, activation), activation.span)
        }
        Some((ModelNode::Group(group), _)) => (group_hover(group, &compiled.layers), group.span),
        None if block_name_at(compiled, offset).is_some() => {
            let block = block_name_at(compiled, offset)?;
            (
                block_hover(block, &compiled.layers),
                block.signature.name.span,
            )
        }
        None => {
            let spec = compiled.spec.as_ref()?;
            match key_at(spec, offset) {
                Some(path) => (key_hover(path)?, spec.key_span(path)?),
                None => {
                    let (path, span) = defaults_key_at(spec, offset)?;
                    (key_hover(&path)?, span)
                }
            }
        }
    };
    Some(Hover {
        contents: HoverContents::Markup(MarkupContent {
            kind: MarkupKind::Markdown,
            value: markdown,
        }),
        range: Some(document.index.range(&document.text, span)),
    })
}

fn title(decl: &LayerDecl) -> String {
    let keras = if decl.is_activation() {
        String::new()
    } else {
        format!(" (Keras `{}`)", decl.keras)
    };
    format!("**{}** — {}{keras}", decl.name, decl.doc)
}

fn layer_hover(call: &Call, layers: &[Layer]) -> String {
    let Some(decl) = lookup(&call.word.text).or_else(|| lookup(&call.name.text)) else {
        return format!("`{}` is not a layer, activation or block", call.word.text);
    };
    let mut out = title(decl);
    let made = layers_of_call(layers, call.span);
    let Some(first) = made.first() else {
        out.push_str("\n\nshape unknown: an earlier error stops shape inference\n\n");
        out.push_str(&declared_args(decl));
        return out;
    };
    out.push_str(&format!("\n\n`{}` as `{}`", first.origin.text, first.name));
    if let Some(activation) = first.activation {
        out.push_str(&format!(", then `{}`", activation.text()));
    }
    let args = first.op.arguments();
    if !args.is_empty() {
        out.push_str("\n\n| argument | value |\n|---|---|\n");
        for (name, value) in args {
            out.push_str(&format!("| `{name}` | `{value}` |\n"));
        }
    }
    out.push_str(&format!(
        "\n**shape** {} → {}  \n**params** {}",
        inputs_text(first),
        first.output,
        params_text(first)
    ));
    if made.len() > 1 {
        let last = made[made.len() - 1];
        out.push_str(&format!(
            "\n\n{} copies (one per repetition or block call); the last: {} → {}",
            made.len(),
            inputs_text(last),
            last.output
        ));
    }
    out
}

/// The input shapes of a layer: one, or a merge's branches.
fn inputs_text(layer: &Layer) -> String {
    let shapes: Vec<String> = layer
        .inputs
        .iter()
        .map(|edge| edge.shape.to_string())
        .collect();
    match shapes.as_slice() {
        [one] => one.clone(),
        many => format!("({})", many.join(", ")),
    }
}

/// A block call: the signature, what the call expanded to, shapes and parameters.
fn block_call_hover(block: &Block, call: &Call, layers: &[Layer]) -> String {
    let mut out = format!("**block** `{}`", block.signature_text());
    let made = layers_of_block_call(layers, call.span);
    let (Some(first), Some(last)) = (made.first(), made.last()) else {
        out.push_str("\n\nshape unknown: an error stops shape inference before this call");
        return out;
    };
    let params: u64 = made.iter().map(|layer| layer.params.total()).sum();
    let trainable: u64 = made.iter().map(|layer| layer.params.trainable).sum();
    out.push_str(&format!(
        "\n\n`{}` → {} layers\n\n**shape** {} → {}  \n**params** {}",
        first
            .origin
            .frames
            .iter()
            .find(|frame| frame.span == call.span)
            .map_or(call.word.text.clone(), |frame| frame.text.clone()),
        made.len(),
        first.input(),
        last.output,
        if params == trainable {
            params.to_string()
        } else {
            format!(
                "{params} ({trainable} trainable, {} non-trainable)",
                params - trainable
            )
        }
    ));
    out
}

/// A block's signature under the cursor: its parameters and every call's shapes.
fn block_hover(block: &Block, layers: &[Layer]) -> String {
    let mut out = format!("**block** `{}`", block.signature_text());
    for param in &block.signature.params {
        match &param.default {
            Some(_) => out.push_str(&format!("\n- `{}` (has a default)", param.name.text)),
            None => out.push_str(&format!("\n- `{}`", param.name.text)),
        }
    }
    let calls: Vec<&Layer> = layers
        .iter()
        .filter(|layer| {
            layer.origin.frames.iter().any(|frame| {
                matches!(&frame.kind, crate::ir::FrameKind::Call { block: name } if name == block.name())
            })
        })
        .collect();
    out.push_str(&format!(
        "\n\nexpands to {} layers in this model",
        calls.len()
    ));
    out
}

fn activation_hover(layer: &Call, activation: &Call) -> String {
    match lookup(&activation.word.text) {
        Some(decl) => format!(
            "{}\n\nactivation applied to the output of `{}`",
            title(decl),
            layer.word.text
        ),
        None => format!("`{}` is not an activation", activation.word.text),
    }
}

fn group_hover(group: &Group, layers: &[Layer]) -> String {
    let count = group.repeat.as_ref().and_then(|repeat| repeat.count);
    let made = layers_of_group(layers, group.span);
    let mut out = match count {
        Some(count) => format!("**group** x{count}"),
        None => "**group**".to_string(),
    };
    let (Some(first), Some(last)) = (made.first(), made.last()) else {
        out.push_str(": shapes unknown (an earlier error stops shape inference)");
        return out;
    };
    let first_repetition: Vec<String> = made
        .iter()
        .take_while(|layer| same_repetition(layer, first, group))
        .filter(|layer| !layer.origin.implicit)
        .map(|layer| stage_text(layer))
        .collect();
    out.push_str(&format!(
        " → {} layers: {} …\n\n**shape** {} → {}  \n**params** {}",
        made.len(),
        first_repetition.join(", "),
        first.input(),
        last.output,
        made.iter().map(|layer| layer.params.total()).sum::<u64>()
    ));
    out
}

fn same_repetition(layer: &Layer, first: &Layer, group: &Group) -> bool {
    let repetition = |layer: &Layer| {
        layer
            .origin
            .frames
            .iter()
            .find(|frame| frame.span == group.span)
            .map(|frame| frame.repetition)
    };
    repetition(layer) == repetition(first)
}

fn stage_text(layer: &Layer) -> String {
    match layer.activation {
        Some(activation) => format!("{} {}", layer.origin.text, activation.text()),
        None => layer.origin.text.clone(),
    }
}

fn params_text(layer: &Layer) -> String {
    let params = layer.params;
    if params.non_trainable > 0 {
        format!(
            "{} ({} trainable, {} non-trainable)",
            params.total(),
            params.trainable,
            params.non_trainable
        )
    } else {
        params.total().to_string()
    }
}

fn declared_args(decl: &LayerDecl) -> String {
    decl.args
        .iter()
        .map(|arg| {
            let default = arg.default.unwrap_or("required");
            format!("- `{}` = {default}: {}\n", arg.name, arg.doc)
        })
        .collect()
}

/// The documentation of the spec key at a dotted path.
fn key_hover(path: &str) -> Option<String> {
    let segments: Vec<&str> = path.split('.').collect();
    let find = |table: &[KeyDoc], key: &str| {
        table
            .iter()
            .find(|doc| doc.key == key)
            .map(|doc| format!("**{path}** — {}", doc.doc))
    };
    match segments.as_slice() {
        [key] => find(TOP_KEYS, key),
        ["train", key] => find(TRAIN_KEYS, key),
        ["train", "early_stopping", key] => find(EARLY_STOPPING_KEYS, key),
        ["train", "reduce_lr_on_plateau", key] => find(REDUCE_LR_KEYS, key),
        ["data", key] => find(DATA_KEYS, key),
        ["defaults", layer] => lookup(layer).map(|decl| {
            format!(
                "**defaults for `{}`** — {}\n\n{}",
                decl.name,
                decl.doc,
                declared_args(decl)
            )
        }),
        ["defaults", layer, arg] => {
            let decl = lookup(layer)?.arg(arg)?;
            Some(format!("**{path}** — {}", decl.doc))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::key_hover;

    #[test]
    fn nested_train_keys_have_documentation() {
        let patience = key_hover("train.early_stopping.patience").unwrap_or_default();
        assert!(patience.starts_with("**train.early_stopping.patience** — epochs without"));
        let factor = key_hover("train.reduce_lr_on_plateau.factor").unwrap_or_default();
        assert!(factor.contains("multiplied"), "{factor}");
        assert_eq!(key_hover("train.early_stopping.factor"), None);
    }
}
