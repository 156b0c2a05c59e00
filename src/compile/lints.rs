//! Warnings about models that compile but are likely wrong. Each lint is named after what it
//! flags. Layers expanded from one place in the text warn once.

use crate::diagnostics::{codes, Diagnostic};
use crate::ir::{Activation, Layer, Op};
use crate::summary::grouped;

/// Dense layers with more input features than this get a warning.
pub const HUGE_DENSE_INPUT: usize = 100_000;

/// Runs every lint over the inferred layers.
pub fn lint(layers: &[Layer], diagnostics: &mut Vec<Diagnostic>) {
    for (idx, layer) in layers.iter().enumerate() {
        let previous = idx.checked_sub(1).map(|prev| &layers[prev]);
        softmax_not_last(layer, layers.get(idx + 1), diagnostics);
        consecutive_activations(previous, layer, diagnostics);
        huge_dense_input(layer, diagnostics);
    }
}

/// The activation a layer ends with: its suffix, or itself when it is an activation stage.
fn final_activation(layer: &Layer) -> Option<Activation> {
    match layer.op {
        Op::Activation(activation) => Some(activation),
        _ => layer.activation,
    }
}

/// Softmax followed by a layer (an activation right after it is flagged by
/// [`consecutive_activations`] instead).
fn softmax_not_last(layer: &Layer, next: Option<&Layer>, diagnostics: &mut Vec<Diagnostic>) {
    let Some(next) = next else {
        return;
    };
    if matches!(next.op, Op::Activation(_)) || final_activation(layer) != Some(Activation::Softmax)
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
    let Some(before) = final_activation(previous) else {
        return;
    };
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
    let features = layer.input.len();
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
