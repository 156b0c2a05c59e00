//! The head check: the last layer against the loss and the class count.

use crate::diagnostics::{codes, Diagnostic, Span};
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
        let plain_layer = last.activation.is_none() && !matches!(last.op, Op::Activation(_));
        let insert_at = Span::new(last.origin.span.end(), last.origin.span.end());
        let diagnostic = Diagnostic::error(
            codes::MODEL_HEAD,
            "the model does not end in softmax, which categorical_crossentropy expects",
        )
        .with_primary(
            last.origin.span,
            "the last layer outputs unnormalised values",
        )
        .with_help(format!("add ` softmax` after `{}`", last.origin.text));
        diagnostics.push(if plain_layer && !last.origin.implicit {
            diagnostic.with_suggestion(insert_at, " softmax", "add ` softmax`")
        } else {
            diagnostic
        });
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
            if let Some(span) = units_shorthand_span(units_layer) {
                diagnostic = diagnostic.with_suggestion(
                    span,
                    format!("dense{classes}"),
                    format!("write `dense{classes}`"),
                );
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

/// The characters of `dense` and its units shorthand (`dense2` in `dense2(bias=false)`), or of
/// the whole call when it is `dense(2)`; `None` when the units are written another way.
fn units_shorthand_span(layer: &Layer) -> Option<Span> {
    let origin = &layer.origin;
    if !matches!(layer.op, Op::Dense { .. }) || origin.implicit {
        return None;
    }
    let name_len = origin.name_span.len;
    let rest = origin.text.get(name_len..)?;
    let n_digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if n_digits > 0 {
        return Some(Span::new(
            origin.name_span.offset,
            origin.name_span.end() + n_digits,
        ));
    }
    let positional_only = rest.strip_prefix('(')?.strip_suffix(')')?;
    positional_only
        .trim()
        .bytes()
        .all(|byte| byte.is_ascii_digit())
        .then_some(origin.span)
}
