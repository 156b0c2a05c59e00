//! The head check: the last layer against the loss and the class count.

use crate::diagnostics::{codes, Diagnostic};
use crate::ir::{Activation, Layer, Op, Shape};
use crate::spec::SpecFile;

/// Checks that the model ends in one softmax probability per class. Returns the class count
/// when it does.
pub fn check_head(
    layers: &[Layer],
    spec: &SpecFile,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<usize> {
    let last = layers.last()?;
    let classes_span = spec.value_span("classes");
    let suggestion = spec
        .classes
        .map_or("dense10".to_string(), |classes| format!("dense{classes}"));
    let Shape::Flat(units) = last.output else {
        diagnostics.push(
            Diagnostic::error(
                codes::MODEL_HEAD,
                format!("the model ends in a {} image, but categorical_crossentropy needs one probability per class", last.output),
            )
            .with_primary(last.origin.span, format!("outputs {}", last.output))
            .with_help(format!("end the model with `-> {suggestion} softmax`")),
        );
        return None;
    };
    let ends_in_softmax = last.activation == Some(Activation::Softmax)
        || last.op == Op::Activation(Activation::Softmax);
    if !ends_in_softmax {
        diagnostics.push(
            Diagnostic::error(
                codes::MODEL_HEAD,
                "the model does not end in softmax, which categorical_crossentropy expects",
            )
            .with_primary(
                last.origin.span,
                "the last layer outputs unnormalised values",
            )
            .with_help(format!("add ` softmax` after `{}`", last.origin.text)),
        );
        return None;
    }
    let units_layer = layers
        .iter()
        .rev()
        .find(|layer| matches!(layer.op, Op::Dense { .. }))
        .unwrap_or(last);
    match spec.classes {
        Some(classes) if classes as usize != units => {
            let mut diagnostic = Diagnostic::error(
                codes::MODEL_HEAD,
                format!("the last layer has {units} units but `classes` is {classes}"),
            )
            .with_primary(units_layer.origin.span, format!("{units} units"))
            .with_help(format!(
                "write `dense{classes}` to output one probability per class"
            ));
            if let Some(span) = classes_span {
                diagnostic = diagnostic.with_secondary(span, format!("{classes} classes"));
            }
            diagnostics.push(diagnostic);
            None
        }
        _ if units < 2 => {
            diagnostics.push(
                Diagnostic::error(
                    codes::MODEL_HEAD,
                    format!("softmax over {units} unit always outputs 1"),
                )
                .with_primary(units_layer.origin.span, format!("{units} unit"))
                .with_help(format!("use one unit per class, e.g. `{suggestion}`")),
            );
            None
        }
        _ => Some(units),
    }
}
