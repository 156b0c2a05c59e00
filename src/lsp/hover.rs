//! Hover: a layer's kind, resolved arguments, shapes and parameters; what a group expands to;
//! what a spec key means. Everything is read from the catalogue, the key tables and the IR.

use super::document::Document;
use super::locate::{defaults_key_at, key_at, layers_of_call, layers_of_group, node_at, ModelNode};
use crate::catalogue::{lookup, LayerDecl};
use crate::ir::{Activation, Layer, Op, Padding, PoolKind};
use crate::spec::{KeyDoc, DATA_KEYS, EARLY_STOPPING_KEYS, REDUCE_LR_KEYS, TOP_KEYS, TRAIN_KEYS};
use crate::syntax::ast::{Group, LayerCall};
use lsp_types::{Hover, HoverContents, MarkupContent, MarkupKind};

/// The hover at byte `offset` of `document`, if there is something to say.
pub fn hover(document: &Document, offset: usize) -> Option<Hover> {
    let compiled = &document.compiled;
    let (markdown, span) = match compiled.ast.as_ref().and_then(|ast| node_at(ast, offset)) {
        Some(ModelNode::Layer(call)) => (layer_hover(call, &compiled.layers), call.span),
        Some(ModelNode::Activation(layer, activation)) => {
            (activation_hover(layer, activation), activation.span)
        }
        Some(ModelNode::Group(group)) => (group_hover(group, &compiled.layers), group.span),
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

fn layer_hover(call: &LayerCall, layers: &[Layer]) -> String {
    let Some(decl) = lookup(&call.name.text) else {
        return format!("`{}` is not a layer or activation", call.name.text);
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
        out.push_str(&format!(", then `{}`", activation_text(activation)));
    }
    let args = resolved_args(&first.op);
    if !args.is_empty() {
        out.push_str("\n\n| argument | value |\n|---|---|\n");
        for (name, value) in args {
            out.push_str(&format!("| `{name}` | `{value}` |\n"));
        }
    }
    out.push_str(&format!(
        "\n**shape** {} → {}  \n**params** {}",
        first.input,
        first.output,
        params_text(first)
    ));
    if made.len() > 1 {
        let last = made[made.len() - 1];
        out.push_str(&format!(
            "\n\n{} copies (one per repetition); the last: {} → {}",
            made.len(),
            last.input,
            last.output
        ));
    }
    out
}

fn activation_hover(layer: &LayerCall, activation: &LayerCall) -> String {
    match lookup(&activation.name.text) {
        Some(decl) => format!(
            "{}\n\nactivation applied to the output of `{}`",
            title(decl),
            layer.name.text
        ),
        None => format!("`{}` is not an activation", activation.name.text),
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
        first.input,
        last.output,
        made.iter().map(|layer| layer.params.total()).sum::<u64>()
    ));
    out
}

fn same_repetition(layer: &Layer, first: &Layer, group: &Group) -> bool {
    let repetition = |layer: &Layer| {
        layer
            .origin
            .repeats
            .iter()
            .find(|frame| frame.group_span == group.span)
            .map(|frame| frame.repetition)
    };
    repetition(layer) == repetition(first)
}

fn stage_text(layer: &Layer) -> String {
    match layer.activation {
        Some(activation) => format!("{} {}", layer.origin.text, activation_text(activation)),
        None => layer.origin.text.clone(),
    }
}

fn activation_text(activation: Activation) -> String {
    match activation {
        Activation::LeakyRelu { alpha } => format!("leakyrelu(alpha={alpha})"),
        other => other.name().to_string(),
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

/// The arguments of a resolved op, defaults filled in, as the language writes them.
pub fn resolved_args(op: &Op) -> Vec<(&'static str, String)> {
    let window = |(h, w): (usize, usize)| format!("{h}x{w}");
    let pad = |pad: Padding| match pad {
        Padding::Valid => "valid".to_string(),
        Padding::Same => "same".to_string(),
    };
    match *op {
        Op::BatchNorm { momentum, eps } => {
            vec![("momentum", momentum.to_string()), ("eps", eps.to_string())]
        }
        Op::Conv {
            filters,
            kernel,
            stride,
            pad: padding,
            bias,
        } => vec![
            ("filters", filters.to_string()),
            ("kernel", window(kernel)),
            ("stride", window(stride)),
            ("pad", pad(padding)),
            ("bias", bias.to_string()),
        ],
        Op::Pool {
            kind: PoolKind::Max | PoolKind::Avg,
            size,
            stride,
            pad: padding,
        } => vec![
            ("size", window(size)),
            ("stride", window(stride)),
            ("pad", pad(padding)),
        ],
        Op::Dense { units, bias } => {
            vec![("units", units.to_string()), ("bias", bias.to_string())]
        }
        Op::Dropout { rate } => vec![("rate", rate.to_string())],
        Op::Activation(Activation::LeakyRelu { alpha }) => vec![("alpha", alpha.to_string())],
        Op::GlobalAvgPool | Op::Flatten | Op::Activation(_) => Vec::new(),
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
