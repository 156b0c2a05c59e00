//! Hover: a layer's kind, resolved arguments, shapes and parameters (for a layer expanded
//! several times, each form it takes); a merge's branch shapes; what a group or a block call
//! expands to; a block's signature and its calls; a block parameter; what a spec key means.
//! Everything is read from the catalogue, the blocks, the key tables and the IR.

use super::convert::Positions;
use super::definition::{called_block, reference_at, Target};
use super::document::Document;
use super::locate::{
    block_name_at, defaults_key_at, expansions, is_call_of, key_at, layers_of_call, node_in_spec,
    Expansion, ModelNode,
};
use crate::catalogue::{lookup, LayerDecl};
use crate::compile::blocks::Block;
use crate::compile::expand::shorten;
use crate::ir::{Frame, FrameKind, Layer, ParamCount, Shape};
use crate::spec::{
    KeyDoc, AUGMENT_KEYS, DATA_KEYS, EARLY_STOPPING_KEYS, REDUCE_LR_KEYS, SCHEDULE_KEYS, TOP_KEYS,
    TRAIN_KEYS,
};
use crate::syntax::ast::{ArgValue, Call, Group, Param};
use crate::text::folded;
use lsp_types::{Hover, HoverContents, MarkupContent, MarkupKind};

/// The most rows a table of forms or calls shows.
const MAX_ROWS: usize = 8;

/// What a hover reads besides the node under the cursor.
struct Ctx<'a> {
    /// The spec file's text.
    text: &'a str,
    /// The layers whose shapes are known.
    layers: &'a [Layer],
    /// The block whose body holds the node, if any.
    in_block: Option<&'a Block>,
}

/// The hover at byte `offset` of `document`, if there is something to say.
pub fn hover(document: &Document, offset: usize) -> Option<Hover> {
    let compiled = &document.compiled;
    let node = node_in_spec(compiled, offset);
    let ctx = Ctx {
        text: &document.text,
        layers: &compiled.layers,
        in_block: node.and_then(|(_, block)| block),
    };
    let parameter = reference_at(compiled, offset).and_then(|reference| match reference.target {
        Target::Param(block, param) => Some((block, param, reference.span)),
        Target::Block(_) => None,
    });
    let (markdown, span) = match (parameter, node) {
        (Some((block, param, span)), _) => (parameter_hover(&ctx, block, param), span),
        (None, Some((ModelNode::Call(call), _))) => match called_block(&compiled.blocks, call) {
            Some(block) => (block_call_hover(&ctx, block, call), call.word.span),
            None if lookup(&call.word.text).is_some_and(LayerDecl::is_merge) => {
                (merge_hover(&ctx, call), call.word.span)
            }
            None => (layer_hover(&ctx, call), call.span),
        },
        (None, Some((ModelNode::Activation(layer, activation), _))) => {
            (activation_hover(layer, activation), activation.span)
        }
        (None, Some((ModelNode::Group(group), _))) => (group_hover(&ctx, group), group.span),
        (None, None) => match block_name_at(compiled, offset) {
            Some(block) => (block_hover(&ctx, block), block.signature.name.span),
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
        },
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

/// Why a node has no layers: its block is never called, or an error stopped shape inference
/// before it.
fn no_shapes(ctx: &Ctx<'_>) -> String {
    match ctx.in_block {
        Some(block) if !block.usable => format!(
            "shape unknown: block `{}` is not expanded (its calls loop back to it or nest too \
             deep; see its diagnostic)",
            block.name()
        ),
        Some(block) if !is_called(ctx.layers, block) => format!(
            "shape unknown: block `{}` is not called (or an error stops shape inference before \
             its first call)",
            block.name()
        ),
        _ => "shape unknown: an earlier error stops shape inference".to_string(),
    }
}

/// Whether some layer was expanded inside a call of `block`.
fn is_called(layers: &[Layer], block: &Block) -> bool {
    layers.iter().any(|layer| {
        layer
            .origin
            .frames
            .iter()
            .any(|frame| is_call_of(frame, block.name()))
    })
}

/// The place that made a copy, innermost first: the block calls (as written) and the
/// repetitions that enclose it: `` `basic(e)` in `down(16)` ``, `repetition 2 of 7`; `the
/// model` when nothing encloses it.
fn site_text(frames: &[Frame]) -> String {
    let parts: Vec<String> = frames
        .iter()
        .rev()
        .filter_map(|frame| match frame.kind {
            FrameKind::Call { .. } => Some(format!("`{}`", frame.text)),
            FrameKind::Repeat if frame.count > 1 => Some(format!(
                "repetition {} of {}",
                frame.repetition, frame.count
            )),
            FrameKind::Repeat => None,
        })
        .collect();
    if parts.is_empty() {
        "the model".to_string()
    } else {
        parts.join(" in ")
    }
}

/// The places that made the copies of one form, each once with its number of copies:
/// `` `basic(e)` in `down(16)`, `basic(32)` ×2 ``.
fn sites_text<'a>(frames: impl IntoIterator<Item = &'a [Frame]>) -> String {
    const MAX_SITES: usize = 3;
    let sites = group(frames.into_iter().map(|frames| (site_text(frames), ())));
    let mut shown: Vec<String> = sites
        .iter()
        .take(MAX_SITES)
        .map(|(site, copies)| match copies.len() {
            1 => site.clone(),
            n => format!("{site} ×{n}"),
        })
        .collect();
    if sites.len() > MAX_SITES {
        shown.push(format!("… {} more", sites.len() - MAX_SITES));
    }
    shown.join(", ")
}

/// Items grouped by a key, in order of first appearance.
fn group<K: PartialEq, T>(items: impl IntoIterator<Item = (K, T)>) -> Vec<(K, Vec<T>)> {
    let mut groups: Vec<(K, Vec<T>)> = Vec::new();
    for (key, value) in items {
        match groups.iter_mut().find(|(known, _)| *known == key) {
            Some((_, members)) => members.push(value),
            None => groups.push((key, vec![value])),
        }
    }
    groups
}

/// A table's closing line when rows were left out.
fn more_rows(shown: usize, total: usize, what: &str) -> String {
    if total > shown {
        format!("\n… and {} more {what}", total - shown)
    } else {
        String::new()
    }
}

/// A layer: its kind, its arguments, shapes and parameters. A layer expanded several times
/// (in a repeat, or in a block body called with different arguments) shows each form it
/// takes, with how many copies take it.
fn layer_hover(ctx: &Ctx<'_>, call: &Call) -> String {
    let Some(decl) = lookup(&call.word.text).or_else(|| lookup(&call.name.text)) else {
        return format!("`{}` is not a layer, activation or block", call.word.text);
    };
    let mut out = title(decl);
    let made = layers_of_call(ctx.layers, call.span);
    let Some(first) = made.first() else {
        out.push_str(&format!("\n\n{}\n\n", no_shapes(ctx)));
        out.push_str(&declared_args(decl));
        return out;
    };
    out.push_str(&format!("\n\n`{}` as `{}`", first.origin.text, first.name));
    if let Some(last) = made.last().filter(|_| made.len() > 1) {
        out.push_str(&format!(" … `{}`", last.name));
    }
    if let Some(activation) = first.activation {
        out.push_str(&format!(", then `{}`", activation.text()));
    }
    // The forms: arguments, activation, shapes and parameters, one per distinct copy.
    let forms = group(made.iter().map(|layer| {
        let key = (
            layer.op.arguments(),
            layer.activation.map(|activation| activation.text()),
            inputs_text(layer),
            layer.output,
            layer.params,
        );
        (key, *layer)
    }));
    let args = first.op.arguments();
    let varies = |idx: usize| {
        forms
            .iter()
            .any(|((other, ..), _)| other.get(idx).map(|(_, v)| v) != args.get(idx).map(|(_, v)| v))
    };
    let common: Vec<&(&str, String)> = args
        .iter()
        .enumerate()
        .filter(|(idx, _)| !varies(*idx))
        .map(|(_, arg)| arg)
        .collect();
    if !common.is_empty() {
        out.push_str("\n\n| argument | value |\n|---|---|\n");
        for (name, value) in common {
            out.push_str(&format!("| `{name}` | `{value}` |\n"));
        }
    }
    if forms.len() == 1 {
        out.push_str(&format!(
            "\n**shape** {} → {}  \n**params** {}",
            inputs_text(first),
            first.output,
            params_text(first.params)
        ));
        if made.len() > 1 {
            out.push_str(&format!(
                "\n\n{} copies (one per repetition or block call), all alike",
                made.len()
            ));
        }
        return out;
    }
    let varying: Vec<usize> = (0..args.len()).filter(|idx| varies(*idx)).collect();
    let activation_varies = forms
        .iter()
        .any(|((_, activation, ..), _)| *activation != forms[0].0 .1);
    out.push_str(&format!(
        "\n\n{} copies (one per repetition or block call) in {} forms:\n\n| copies | from |",
        made.len(),
        forms.len()
    ));
    for idx in &varying {
        out.push_str(&format!(" `{}` |", args[*idx].0));
    }
    if activation_varies {
        out.push_str(" activation |");
    }
    out.push_str(" shape | params |\n|---|---|");
    out.push_str(&"---|".repeat(varying.len() + usize::from(activation_varies) + 2));
    out.push('\n');
    for ((form_args, activation, inputs, output, params), copies) in forms.iter().take(MAX_ROWS) {
        out.push_str(&format!(
            "| {} | {} |",
            copies.len(),
            sites_text(copies.iter().map(|layer| &layer.origin.frames[..]))
        ));
        for idx in &varying {
            let value = form_args.get(*idx).map_or("", |(_, value)| value.as_str());
            out.push_str(&format!(" `{value}` |"));
        }
        if activation_varies {
            out.push_str(&format!(" {} |", activation.as_deref().unwrap_or("–")));
        }
        out.push_str(&format!(
            " {inputs} → {output} | {} |\n",
            params_text(*params)
        ));
    }
    out.push_str(&more_rows(MAX_ROWS, forms.len(), "forms"));
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

/// A merge: what it does, and the shape each branch ends in → the shape it makes.
fn merge_hover(ctx: &Ctx<'_>, call: &Call) -> String {
    let Some(decl) = lookup(&call.word.text) else {
        return format!("`{}` is not a merge", call.word.text);
    };
    let mut out = title(decl);
    let branches: Vec<String> = call
        .args
        .iter()
        .filter(|arg| arg.name.is_none())
        .filter_map(|arg| match &arg.value {
            ArgValue::Branch(branch) => Some(shorten(&folded(ctx.text, branch.span, "…"))),
            ArgValue::Expr(_) => None,
        })
        .collect();
    let made = layers_of_call(ctx.layers, call.span);
    let Some(first) = made.first() else {
        out.push_str(&format!(
            "\n\n{} branches; {}",
            branches.len(),
            no_shapes(ctx)
        ));
        return out;
    };
    let forms = group(made.iter().map(|layer| {
        let inputs: Vec<Shape> = layer.inputs.iter().map(|edge| edge.shape).collect();
        ((inputs, layer.output), *layer)
    }));
    let then = first
        .activation
        .map(|activation| format!(", then `{}`", activation.text()))
        .unwrap_or_default();
    if let [((inputs, output), _)] = forms.as_slice() {
        out.push_str("\n\n| branch | shape |\n|---|---|\n");
        for (idx, shape) in inputs.iter().enumerate() {
            let branch = branches.get(idx).map_or("", String::as_str);
            out.push_str(&format!("| {} `{branch}` | {shape} |\n", idx + 1));
        }
        out.push_str(&format!(
            "\n**shape** {} → {output}{then}",
            inputs_text(first)
        ));
        if made.len() > 1 {
            out.push_str(&format!(
                "\n\n{} copies (one per repetition or block call), all alike",
                made.len()
            ));
        }
        return out;
    }
    out.push_str("\n\nbranches: ");
    let listed: Vec<String> = branches
        .iter()
        .enumerate()
        .map(|(idx, branch)| format!("{} `{branch}`", idx + 1))
        .collect();
    out.push_str(&listed.join(", "));
    out.push_str(&format!(
        "{then}\n\n{} copies (one per repetition or block call) in {} forms:\n\n\
         | copies | from | branches → shape |\n|---|---|---|\n",
        made.len(),
        forms.len()
    ));
    for ((inputs, output), copies) in forms.iter().take(MAX_ROWS) {
        let shapes: Vec<String> = inputs.iter().map(Shape::to_string).collect();
        out.push_str(&format!(
            "| {} | {} | ({}) → {output} |\n",
            copies.len(),
            sites_text(copies.iter().map(|layer| &layer.origin.frames[..])),
            shapes.join(", ")
        ));
    }
    out.push_str(&more_rows(MAX_ROWS, forms.len(), "forms"));
    out
}

/// The signature as written, defaults included: `basic(f, stride=1)`.
fn signature_text(ctx: &Ctx<'_>, block: &Block) -> String {
    let written = folded(ctx.text, block.signature.span, "");
    if written.starts_with(block.name()) {
        written
    } else {
        block.signature_text()
    }
}

/// A block call: the signature, how many calls and layers, the shape in → out and the
/// parameters of the call (all its repetitions). A call inside another block's body is
/// expanded once per call of that block; each form is shown.
fn block_call_hover(ctx: &Ctx<'_>, block: &Block, call: &Call) -> String {
    let mut out = format!("**block** `{}`", signature_text(ctx, block));
    let made = expansions(
        ctx.layers,
        |frame| frame.span == call.span && matches!(frame.kind, FrameKind::Call { .. }),
        false,
    );
    let Some(first) = made.first() else {
        let reason = match ctx.in_block {
            Some(outer) if !outer.usable || !is_called(ctx.layers, outer) => no_shapes(ctx),
            _ if !block.usable => format!(
                "`{}` is not expanded (its calls loop back to it or nest too deep; see its \
                 diagnostic)",
                block.name()
            ),
            _ => "shape unknown: an error stops shape inference before this call".to_string(),
        };
        out.push_str(&format!("\n\n{reason}"));
        return out;
    };
    let calls = first.frame.count;
    let n_layers = first.layers.len();
    out.push_str(&format!("\n\n`{}`", first.frame.text));
    if calls > 1 {
        out.push_str(&format!(
            " x{calls}: {calls} calls → {n_layers} layers ({} per call)",
            per_call(n_layers, calls)
        ));
    } else {
        out.push_str(&format!(" → {n_layers} layers"));
    }
    out.push_str(&expansions_text(&made));
    out
}

/// The shape in → out and the parameters of the expansions of one call or group: once when
/// they are alike, else one row per form with the calls that made it.
fn expansions_text(made: &[Expansion<'_>]) -> String {
    let forms = group(made.iter().map(|expansion| {
        let key = (expansion.input(), expansion.output(), expansion.params());
        (key, expansion)
    }));
    if let [((input, output, params), _)] = forms.as_slice() {
        let mut out = format!(
            "\n\n**shape** {} → {}  \n**params** {}",
            shape_text(*input),
            shape_text(*output),
            params_text(*params)
        );
        if made.len() > 1 {
            out.push_str(&format!(
                "\n\nexpanded {} times (once per call of the block it is in), all alike",
                made.len()
            ));
        }
        return out;
    }
    let mut out = format!(
        "\n\nexpanded {} times (once per call of the block it is in) in {} forms:\n\n\
         | copies | from | shape | params |\n|---|---|---|---|\n",
        made.len(),
        forms.len()
    );
    for ((input, output, params), copies) in forms.iter().take(MAX_ROWS) {
        out.push_str(&format!(
            "| {} | {} | {} → {} | {} |\n",
            copies.len(),
            sites_text(copies.iter().map(|expansion| expansion.outer)),
            shape_text(*input),
            shape_text(*output),
            params_text(*params)
        ));
    }
    out.push_str(&more_rows(MAX_ROWS, forms.len(), "forms"));
    out
}

/// `8`, or `8 on average` when the layers do not divide evenly among the calls.
fn per_call(layers: usize, calls: usize) -> String {
    if calls > 0 && layers.is_multiple_of(calls) {
        (layers / calls).to_string()
    } else {
        format!("{:.1} on average", layers as f64 / calls.max(1) as f64)
    }
}

fn shape_text(shape: Option<Shape>) -> String {
    shape.map_or_else(|| "?".to_string(), |shape| shape.to_string())
}

/// A block's signature under the cursor: its parameters with their defaults, its body, and
/// its calls in this model with their shapes and the layers they expand to.
fn block_hover(ctx: &Ctx<'_>, block: &Block) -> String {
    let mut out = format!("**block** `{}`\n", signature_text(ctx, block));
    for param in &block.signature.params {
        match &param.default {
            Some(default) => out.push_str(&format!(
                "\n- `{}` = `{}`",
                param.name.text,
                folded(ctx.text, default.span, "…")
            )),
            None => out.push_str(&format!("\n- `{}` (required)", param.name.text)),
        }
    }
    let body = folded(ctx.text, block.body_span, "");
    if !body.is_empty() {
        let body: String = if body.chars().count() > 200 {
            body.chars().take(199).collect::<String>() + "…"
        } else {
            body
        };
        out.push_str(&format!(
            "\n\n`{}`",
            body.trim_start_matches(['|', '>', ' '])
        ));
    }
    if !block.usable {
        out.push_str(
            "\n\nnot expanded: its calls loop back to it or nest too deep (see its diagnostic)",
        );
        return out;
    }
    let calls = expansions(ctx.layers, |frame| is_call_of(frame, block.name()), true);
    if calls.is_empty() {
        out.push_str("\n\nnot called in this model (or an error stops shape inference first)");
        return out;
    }
    let total: usize = calls.iter().map(|call| call.layers.len()).sum();
    out.push_str(&format!(
        "\n\n{} call{} in this model, {} layers each ({total} in all)",
        calls.len(),
        if calls.len() == 1 { "" } else { "s" },
        per_call(total, calls.len())
    ));
    let rows = group(calls.iter().map(|call: &Expansion<'_>| {
        // The call and the calls that enclose it (`basic(e)` in `down(16)`).
        let frames = call
            .layers
            .first()
            .map_or(&[][..], |layer| &layer.origin.frames[..=call.outer.len()]);
        let key = (
            site_text(frames),
            call.input(),
            call.output(),
            call.params(),
        );
        (key, call)
    }));
    out.push_str("\n\n| call | copies | shape | params |\n|---|---|---|---|\n");
    for ((site, input, output, params), copies) in rows.iter().take(MAX_ROWS) {
        out.push_str(&format!(
            "| {site} | {} | {} → {} | {} |\n",
            copies.len(),
            shape_text(*input),
            shape_text(*output),
            params_text(*params)
        ));
    }
    out.push_str(&more_rows(MAX_ROWS, rows.len(), "rows"));
    out
}

/// A parameter used in a block's body (or in a later default): where it is declared.
fn parameter_hover(ctx: &Ctx<'_>, block: &Block, param: &Param) -> String {
    let mut out = format!(
        "**parameter** `{}` of block `{}`",
        param.name.text,
        signature_text(ctx, block)
    );
    match &param.default {
        Some(default) => out.push_str(&format!(
            "\n\ndefault `{}`",
            folded(ctx.text, default.span, "…")
        )),
        None => out.push_str("\n\nrequired: every call gives it"),
    }
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

/// A group: what one expansion makes (all its repetitions; the first repetition's stages),
/// its shape in → out and parameters; in a block body, each expansion's.
fn group_hover(ctx: &Ctx<'_>, group: &Group) -> String {
    let count = group.repeat.as_ref().and_then(|repeat| repeat.count);
    let mut out = match count {
        Some(count) => format!("**group** x{count}"),
        None => "**group**".to_string(),
    };
    let made = expansions(
        ctx.layers,
        |frame| frame.span == group.span && frame.kind == FrameKind::Repeat,
        false,
    );
    let Some(first) = made.first() else {
        out.push_str(&format!("\n\n{}", no_shapes(ctx)));
        return out;
    };
    let Some(first_layer) = first.layers.first() else {
        return out;
    };
    let first_repetition: Vec<String> = first
        .layers
        .iter()
        .take_while(|layer| same_repetition(layer, first_layer, group))
        .filter(|layer| !layer.origin.implicit)
        .map(|layer| stage_text(layer))
        .collect();
    out.push_str(&format!(
        " → {} layers: {} …",
        first.layers.len(),
        first_repetition.join(", "),
    ));
    out.push_str(&expansions_text(&made));
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

fn params_text(params: ParamCount) -> String {
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
        ["train", "schedule", key] => find(SCHEDULE_KEYS, key),
        ["data", key] => find(DATA_KEYS, key),
        ["augment", key] => find(AUGMENT_KEYS, key),
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
