//! Keras-compatible shape rules and parameter counts, and shape inference over the expanded
//! layers (with the implicit flatten before `dense` on image input).

use super::expand::Pending;
use crate::catalogue::decl_of;
use crate::diagnostics::{codes, Diagnostic, Span};
use crate::ir::{Layer, Op, Origin, Padding, ParamCount, Shape};

/// The largest number of values one image may have at any layer, and of parameters per layer.
pub const MAX_TENSOR: usize = 1 << 31;

/// Output size along one axis: valid `floor((in - k) / s) + 1`, same `ceil(in / s)`.
/// `None` when the window does not fit (the size would reach 0).
pub fn window_out(input: usize, window: usize, stride: usize, pad: Padding) -> Option<usize> {
    match pad {
        Padding::Valid if window > input => None,
        Padding::Valid => Some((input - window) / stride + 1),
        Padding::Same => Some(input.div_ceil(stride)),
    }
}

/// Why a layer cannot take its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShapeError {
    /// A spatial layer after the input was flattened.
    NeedsImage,
    /// The window does not fit: the output would be `height x width` (0 on some axis).
    Vanished {
        /// The output height (0 when it vanishes).
        height: usize,
        /// The output width.
        width: usize,
    },
    /// Too many values or parameters.
    TooLarge,
}

/// The output shape of `op` on `input`. A dense layer needs flat input (the inference loop
/// inserts the flatten).
pub fn output_shape(op: &Op, input: Shape) -> Result<Shape, ShapeError> {
    let shape = match (*op, input) {
        (Op::BatchNorm { .. } | Op::Dropout { .. } | Op::Activation(_), shape) => shape,
        (
            Op::Conv {
                filters,
                kernel,
                stride,
                pad,
                ..
            },
            Shape::Image { height, width, .. },
        ) => {
            let (h, w) = windows(height, width, kernel, stride, pad)?;
            Shape::Image {
                height: h,
                width: w,
                channels: filters,
            }
        }
        (
            Op::Pool {
                size, stride, pad, ..
            },
            Shape::Image {
                height,
                width,
                channels,
            },
        ) => {
            let (h, w) = windows(height, width, size, stride, pad)?;
            Shape::Image {
                height: h,
                width: w,
                channels,
            }
        }
        (Op::GlobalAvgPool, Shape::Image { channels, .. }) => Shape::Flat(channels),
        (Op::Flatten, shape) => Shape::Flat(checked_len(shape)?),
        (Op::Dense { units, .. }, Shape::Flat(_)) => Shape::Flat(units),
        (Op::Dense { .. }, Shape::Image { .. }) => return Err(ShapeError::NeedsImage),
        (Op::Conv { .. } | Op::Pool { .. } | Op::GlobalAvgPool, Shape::Flat(_)) => {
            return Err(ShapeError::NeedsImage)
        }
    };
    checked_len(shape)?;
    Ok(shape)
}

fn windows(
    height: usize,
    width: usize,
    window: (usize, usize),
    stride: (usize, usize),
    pad: Padding,
) -> Result<(usize, usize), ShapeError> {
    let h = window_out(height, window.0, stride.0, pad);
    let w = window_out(width, window.1, stride.1, pad);
    match (h, w) {
        (Some(h), Some(w)) => Ok((h, w)),
        (h, w) => Err(ShapeError::Vanished {
            height: h.unwrap_or(0),
            width: w.unwrap_or(0),
        }),
    }
}

fn checked_len(shape: Shape) -> Result<usize, ShapeError> {
    let len = match shape {
        Shape::Image {
            height,
            width,
            channels,
        } => height
            .checked_mul(width)
            .and_then(|hw| hw.checked_mul(channels)),
        Shape::Flat(n) => Some(n),
    };
    len.filter(|len| *len <= MAX_TENSOR)
        .ok_or(ShapeError::TooLarge)
}

/// Parameters of `op` on `input`, as Keras counts them.
pub fn params(op: &Op, input: Shape) -> ParamCount {
    let features = match input {
        Shape::Image { channels, .. } => channels,
        Shape::Flat(n) => n,
    } as u64;
    match *op {
        Op::BatchNorm { .. } => ParamCount {
            trainable: 2 * features,
            non_trainable: 2 * features,
        },
        Op::Conv {
            filters,
            kernel,
            bias,
            ..
        } => {
            let filters = filters as u64;
            let weights = (kernel.0 * kernel.1) as u64 * features * filters;
            ParamCount {
                trainable: weights + if bias { filters } else { 0 },
                non_trainable: 0,
            }
        }
        Op::Dense { units, bias } => {
            let units = units as u64;
            ParamCount {
                trainable: input.len() as u64 * units + if bias { units } else { 0 },
                non_trainable: 0,
            }
        }
        _ => ParamCount::default(),
    }
}

/// Infers shapes through `pending` from `input`. Stops at the first layer whose shape fails
/// (reported) or that did not resolve; returns the layers inferred so far and whether all were.
pub fn infer(
    pending: &[Pending],
    input: Shape,
    diagnostics: &mut Vec<Diagnostic>,
) -> (Vec<Layer>, bool) {
    let mut layers: Vec<Layer> = Vec::new();
    let mut shape = input;
    let mut flattened_at: Option<Span> = None;
    for item in pending {
        let Some(op) = item.op else {
            return (layers, false);
        };
        if matches!(op, Op::Dense { .. }) && matches!(shape, Shape::Image { .. }) {
            let origin = Origin {
                implicit: true,
                ..item.origin.clone()
            };
            let flat = Shape::Flat(shape.len());
            layers.push(layer(Op::Flatten, None, shape, flat, origin));
            shape = flat;
        }
        let output = match output_shape(&op, shape) {
            Ok(output) => output,
            Err(err) => {
                diagnostics.push(shape_error(err, item, shape, flattened_at));
                return (layers, false);
            }
        };
        let params = params(&op, shape);
        if params.total() > MAX_TENSOR as u64 {
            diagnostics.push(shape_error(ShapeError::TooLarge, item, shape, flattened_at));
            return (layers, false);
        }
        if matches!(op, Op::Flatten | Op::GlobalAvgPool | Op::Dense { .. })
            && flattened_at.is_none()
        {
            flattened_at = Some(item.origin.span);
        }
        layers.push(layer(
            op,
            item.activation,
            shape,
            output,
            item.origin.clone(),
        ));
        shape = output;
    }
    (layers, true)
}

fn layer(
    op: Op,
    activation: Option<crate::ir::Activation>,
    input: Shape,
    output: Shape,
    origin: Origin,
) -> Layer {
    Layer {
        index: 0,
        name: String::new(),
        op,
        activation,
        input,
        output,
        params: params(&op, input),
        origin,
    }
}

fn shape_error(
    err: ShapeError,
    item: &Pending,
    input: Shape,
    flattened_at: Option<Span>,
) -> Diagnostic {
    let where_ = item.origin.repetition_text();
    let written = &item.origin.text;
    let mut diagnostic = match err {
        ShapeError::NeedsImage => {
            let diagnostic = Diagnostic::error(
                codes::SHAPE_RANK,
                format!("`{written}`{where_} needs an image but gets {input} flat features"),
            )
            .with_primary(item.origin.span, "needs height x width x channels");
            let diagnostic = match flattened_at {
                Some(span) => diagnostic.with_secondary(span, "the input is flattened here"),
                None => diagnostic,
            };
            diagnostic.with_help("move it before the first `flatten`, `gap` or `dense`")
        }
        ShapeError::Vanished { height, width } => {
            let window = match item.op {
                Some(Op::Conv { kernel, .. }) => format!("{}x{} kernel", kernel.0, kernel.1),
                Some(Op::Pool { size, .. }) => format!("{}x{} window", size.0, size.1),
                _ => "window".to_string(),
            };
            let diagnostic = Diagnostic::error(
                codes::SHAPE_VANISHED,
                format!("`{written}`{where_} gets {input} and would output {height}x{width}"),
            )
            .with_primary(
                item.origin.span,
                format!("its {window} does not fit in {input}"),
            );
            vanished_help(diagnostic, item)
        }
        ShapeError::TooLarge => Diagnostic::error(
            codes::SHAPE_VANISHED,
            format!(
                "`{written}`{where_} on {input} makes more than {MAX_TENSOR} values or parameters"
            ),
        )
        .with_primary(item.origin.span, "too large")
        .with_help("use fewer units or filters, or pool before it"),
    };
    for frame in item.origin.repeats.iter().filter(|frame| frame.count > 1) {
        diagnostic = diagnostic.with_secondary(
            frame.count_span,
            format!("repeated {} times here", frame.count),
        );
    }
    diagnostic
}

fn vanished_help(diagnostic: Diagnostic, item: &Pending) -> Diagnostic {
    let kind = item.op.map(|op| decl_of(op.kind()).name).unwrap_or("layer");
    let innermost = item
        .origin
        .repeats
        .iter()
        .rev()
        .find(|frame| frame.count > 1);
    let diagnostic = match innermost {
        Some(frame) if frame.repetition > 1 => {
            let fit = frame.repetition - 1;
            diagnostic
                .with_help(format!(
                    "only {fit} repetitions fit: write `x{fit}`, or give the {kind} `pad=same`"
                ))
                .with_suggestion(
                    frame.count_span,
                    format!("x{fit}"),
                    format!("repeat {fit} times"),
                )
        }
        _ => diagnostic.with_help(format!(
            "give the {kind} `pad=same`, use a smaller window, or a larger input"
        )),
    };
    match pad_same_edit(&item.origin) {
        Some((span, replacement)) => {
            diagnostic.with_suggestion(span, replacement, format!("give the {kind} `pad=same`"))
        }
        None => diagnostic,
    }
}

/// The edit that adds `pad=same` to a layer call: `conv3` → `conv3(pad=same)`,
/// `conv3(20)` → `conv3(20, pad=same)`. `None` when the call already names `pad`.
fn pad_same_edit(origin: &Origin) -> Option<(Span, String)> {
    if origin.implicit || origin.text.contains("pad") {
        return None;
    }
    let end = origin.span.end();
    if origin.text.ends_with(')') {
        Some((
            Span::new(end.saturating_sub(1), end.saturating_sub(1)),
            ", pad=same".to_string(),
        ))
    } else {
        Some((Span::new(end, end), "(pad=same)".to_string()))
    }
}
