//! Warnings about models that compile but are likely wrong. Each lint is named after what it
//! flags. Layers expanded from one place in the text warn once.

use crate::diagnostics::{codes, Diagnostic};
use crate::ir::{Activation, Layer, Op, Source};
use crate::suggest::grouped;
use crate::text::{LineIndex, MappedText};

/// Dense layers with more input features than this get a warning.
pub const HUGE_DENSE_INPUT: usize = 100_000;

/// Runs every lint over the inferred layers.
pub fn lint(layers: &[Layer], diagnostics: &mut Vec<Diagnostic>) {
    let mut consumers: Vec<Vec<usize>> = vec![Vec::new(); layers.len()];
    for layer in layers {
        for edge in &layer.inputs {
            if let Source::Layer(idx) = edge.source {
                if let Some(list) = consumers.get_mut(idx) {
                    list.push(layer.index);
                }
            }
        }
    }
    for (layer, consumers) in layers.iter().zip(&consumers) {
        let previous = match layer.inputs.as_slice() {
            [edge] => match edge.source {
                Source::Layer(idx) => layers.get(idx),
                Source::Input => None,
            },
            _ => None,
        };
        let next = consumers.iter().filter_map(|idx| layers.get(*idx));
        softmax_not_last(layer, next, diagnostics);
        consecutive_activations(previous, layer, diagnostics);
        huge_dense_input(layer, diagnostics);
    }
}

/// Warns when a `#` in a folded or plain `model:` (or block body) swallows what was written on
/// the lines after it: YAML joins those lines into one, and the comment runs to its end.
pub fn folded_comment(text: &MappedText, index: &LineIndex, diagnostics: &mut Vec<Diagnostic>) {
    if !text.text.contains('#') {
        return;
    }
    let mut from = 0;
    while let Some(found) = text.text[from..].find('#') {
        let hash = from + found;
        let line_end = text.text[hash..]
            .find('\n')
            .map_or(text.text.len(), |idx| hash + idx);
        let hash_line = index.line_of(text.span(hash, hash + 1).offset).0;
        let swallowed = text.text[hash..line_end]
            .char_indices()
            .filter(|(_, ch)| !ch.is_whitespace())
            .map(|(idx, _)| hash + idx)
            .find(|&at| index.line_of(text.span(at, at + 1).offset).0 != hash_line);
        if let Some(start) = swallowed {
            let comment = text.span(hash, hash + 1);
            diagnostics.push(
                Diagnostic::warning(
                    codes::LINT_FOLDED_COMMENT,
                    "a comment hides the lines after it: YAML folds them into its line",
                )
                .with_primary(text.span(start, line_end), "ignored: part of the comment")
                .with_secondary(comment, "the comment starts here")
                .with_help("use a literal block (`model: |`), where each line keeps its own comment, or remove the comment"),
            );
        }
        from = line_end.max(hash + 1);
        if from >= text.text.len() {
            break;
        }
    }
}

/// Softmax read by a layer (an activation right after it is flagged by
/// [`consecutive_activations`] instead).
fn softmax_not_last<'a>(
    layer: &Layer,
    mut next: impl Iterator<Item = &'a Layer>,
    diagnostics: &mut Vec<Diagnostic>,
) {
    if layer.final_activation() != Some(Activation::Softmax)
        || !next.any(|next| !matches!(next.op, Op::Activation(_)))
    {
        return;
    }
    diagnostics.push(
        Diagnostic::warning(
            codes::LINT_SOFTMAX_NOT_LAST,
            "softmax before the last layer",
        )
        .with_primary(
            layer.origin.span,
            "softmax here squashes features that later layers read",
        )
        .with_help("use `relu` inside the model and `softmax` only on the last layer"),
    );
}

fn consecutive_activations(
    previous: Option<&Layer>,
    layer: &Layer,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let (Some(previous), Op::Activation(current)) = (previous, layer.op) else {
        return;
    };
    let Some(before) = previous.final_activation() else {
        return;
    };
    // Across a block's boundary the repetition is the caller's doing in one call only (a
    // block that starts with `relu` is fine after a layer without one); warn only when both
    // were written in the same place.
    let spans = |layer: &Layer| -> Vec<crate::text::Span> {
        layer.origin.frames.iter().map(|frame| frame.span).collect()
    };
    if spans(previous) != spans(layer) {
        return;
    }
    let diagnostic = if before == Activation::Softmax {
        Diagnostic::warning(
            codes::LINT_ACTIVATION_AFTER_SOFTMAX,
            format!("`{}` after softmax", current.name()),
        )
        .with_primary(layer.origin.span, "applied to probabilities")
        .with_secondary(previous.origin.span, "softmax here")
        .with_help(format!(
            "remove `{}`: softmax is the output",
            current.name()
        ))
    } else {
        Diagnostic::warning(
            codes::LINT_DOUBLE_ACTIVATION,
            format!(
                "two activations in a row: `{}` then `{}`",
                before.name(),
                current.name()
            ),
        )
        .with_primary(layer.origin.span, "second activation")
        .with_secondary(
            previous.origin.span,
            format!("already activated with `{}`", before.name()),
        )
        .with_help("keep one of them")
    };
    diagnostics.push(diagnostic);
}

fn huge_dense_input(layer: &Layer, diagnostics: &mut Vec<Diagnostic>) {
    let Op::Dense { .. } = layer.op else {
        return;
    };
    let features = layer.input().len();
    if features <= HUGE_DENSE_INPUT {
        return;
    }
    diagnostics.push(
        Diagnostic::warning(
            codes::LINT_HUGE_DENSE_INPUT,
            format!(
                "a dense layer on {} flattened features ({} parameters)",
                grouped(features as u64),
                grouped(layer.params.total())
            ),
        )
        .with_primary(
            layer.origin.span,
            format!("{} inputs", grouped(features as u64)),
        )
        .with_help("pool or `gap` before it to shrink the input"),
    );
}
