//! The head check: the last layer against the loss and the class count. A model ends in one
//! softmax probability per class (categorical cross-entropy), or, for two classes, in one
//! sigmoid probability (`dense1 sigmoid`, binary cross-entropy, as Keras's
//! `class_mode="binary"`).

use crate::diagnostics::{codes, Diagnostic, Span};
use crate::ir::{Activation, Head, Layer, Op, Shape};
use crate::settings::LossKind;
use crate::spec::SpecFile;

/// Checks the model's last layer. Returns the class count and the head when it fits.
pub fn check_head(
    layers: &[Layer],
    spec: &SpecFile,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<(usize, Head)> {
    let last = layers.last()?;
    let classes_span = spec.value_span("classes");
    let loss_given = spec
        .value_span("train.loss")
        .map(|span| (spec.train.loss, span));
    let suggestion = spec
        .classes
        .map_or("dense10".to_string(), |classes| format!("dense{classes}"));
    let Shape::Flat(units) = last.output else {
        diagnostics.push(
            Diagnostic::error(
                codes::MODEL_HEAD,
                format!("the model ends in a {} image, but a classifier needs one probability per class", last.output),
            )
            .with_primary(last.origin.span, format!("outputs {}", last.output))
            .with_help(format!("end the model with `-> gap -> {suggestion} softmax` (or `-> flatten -> …`)")),
        );
        return None;
    };
    let final_activation = last.final_activation();
    if final_activation == Some(Activation::Sigmoid) {
        return sigmoid_head(last, units, spec, loss_given, diagnostics);
    }
    if let (Some(Activation::Softmax), Some((LossKind::BinaryCrossentropy, loss_span))) =
        (final_activation, loss_given)
    {
        diagnostics.push(
            Diagnostic::error(
                codes::MODEL_HEAD,
                "binary_crossentropy needs a `dense1 sigmoid` head, but the model ends in softmax",
            )
            .with_primary(last.origin.span, "softmax head")
            .with_secondary(loss_span, "the loss")
            .with_help("remove `loss:` (a softmax head trains with categorical_crossentropy), or end in `dense1 sigmoid`"),
        );
        return None;
    }
    let ends_in_softmax = final_activation == Some(Activation::Softmax);
    if !ends_in_softmax {
        let plain_layer = last.activation.is_none() && !matches!(last.op, Op::Activation(_));
        let insert_at = Span::new(last.origin.span.end(), last.origin.span.end());
        let diagnostic = Diagnostic::error(
            codes::MODEL_HEAD,
            "the model does not end in softmax (or, for two classes, `dense1 sigmoid`)",
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
    let units_layer = units_layer(layers, last);
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
        _ => Some((units, Head::Softmax)),
    }
}

/// A sigmoid head: `dense1 sigmoid` for two classes.
fn sigmoid_head(
    last: &Layer,
    units: usize,
    spec: &SpecFile,
    loss_given: Option<(LossKind, Span)>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<(usize, Head)> {
    if units != 1 {
        let classes = spec.classes.unwrap_or(units as u64);
        diagnostics.push(
            Diagnostic::error(
                codes::MODEL_HEAD,
                format!("the model ends in {units} sigmoid units, but a sigmoid head has one unit for two classes"),
            )
            .with_primary(last.origin.span, format!("{units} sigmoid units"))
            .with_help(format!("for {classes} classes end in `dense{classes} softmax`; for two classes, `dense1 sigmoid`")),
        );
        return None;
    }
    if let Some(classes) = spec.classes.filter(|classes| *classes != 2) {
        let mut diagnostic = Diagnostic::error(
            codes::MODEL_HEAD,
            format!("a `dense1 sigmoid` head tells two classes apart, but `classes` is {classes}"),
        )
        .with_primary(last.origin.span, "one probability: the second class's")
        .with_help(format!("end the model in `dense{classes} softmax`"));
        if let Some(span) = spec.value_span("classes") {
            diagnostic = diagnostic.with_secondary(span, format!("{classes} classes"));
        }
        diagnostics.push(diagnostic);
        return None;
    }
    if let Some((LossKind::CategoricalCrossentropy, loss_span)) = loss_given {
        diagnostics.push(
            Diagnostic::error(
                codes::MODEL_HEAD,
                "categorical_crossentropy needs a softmax head, but the model ends in `dense1 sigmoid`",
            )
            .with_primary(last.origin.span, "sigmoid head")
            .with_secondary(loss_span, "the loss")
            .with_help("write `loss: binary_crossentropy` (or leave `loss:` out), or end in `dense2 softmax`"),
        );
        return None;
    }
    Some((2, Head::Sigmoid))
}

/// The layer whose units the head outputs: the last layer, or the dense layer it reads through
/// activations and dropouts. A merge (`concat(dense1, dense1)`) is its own units layer: no one
/// dense layer decides its width.
fn units_layer<'a>(layers: &'a [Layer], last: &'a Layer) -> &'a Layer {
    let mut layer = last;
    loop {
        match layer.op {
            Op::Activation(_) | Op::Dropout { .. } | Op::Identity => {
                match layer.inputs.as_slice() {
                    [edge] => match edge.source {
                        crate::ir::Source::Layer(idx) => match layers.get(idx) {
                            Some(previous) => layer = previous,
                            None => return layer,
                        },
                        crate::ir::Source::Input => return layer,
                    },
                    _ => return layer,
                }
            }
            Op::BatchNorm { .. }
            | Op::Conv { .. }
            | Op::DepthwiseConv { .. }
            | Op::SeparableConv { .. }
            | Op::Pool { .. }
            | Op::GlobalPool { .. }
            | Op::Flatten
            | Op::Dense { .. }
            | Op::Merge(_) => return layer,
        }
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
