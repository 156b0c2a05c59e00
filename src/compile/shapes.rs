//! Keras-compatible shape rules, and shape inference over the expanded graph: every layer's
//! output from its inputs, the implicit flatten before `dense` on an image, merges' rules, and
//! parameter counts from each op's layout. Every size is checked against [`MAX_VALUES`].

use super::expand::Pending;
use crate::catalogue::decl_of;
use crate::diagnostics::{codes, Diagnostic};
use crate::ir::{
    layout, Edge, Layer, MergeKind, Op, Origin, Padding, ParamCount, Shape, Source, MAX_VALUES,
};
use crate::text::Span;

/// Output size along one axis: valid `floor((in - k) / s) + 1`, same `ceil(in / s)`.
/// `None` when the window does not fit (the size would reach 0).
pub fn window_out(input: usize, window: usize, stride: usize, pad: Padding) -> Option<usize> {
    match pad {
        Padding::Valid if window > input => None,
        Padding::Valid => Some((input - window) / stride.max(1) + 1),
        Padding::Same => Some(input.div_ceil(stride.max(1))),
    }
}

/// Why a layer cannot take its input.
#[derive(Clone, Debug, PartialEq, Eq)]
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
    /// A grouped convolution whose channels do not split into its groups.
    Groups {
        /// The input channels.
        channels: usize,
        /// The filters.
        filters: usize,
        /// The groups.
        groups: usize,
    },
    /// A merge whose branches end in shapes it cannot combine.
    Mismatch(MergeKind),
}

/// The output shape of a one-input `op` on `input`. A dense layer needs flat input (the
/// inference loop inserts the flatten).
pub fn output_shape(op: &Op, input: Shape) -> Result<Shape, ShapeError> {
    let image = |height, width, channels| Shape::Image {
        height,
        width,
        channels,
    };
    let shape = match (*op, input) {
        (Op::BatchNorm { .. } | Op::Dropout { .. } | Op::Activation(_) | Op::Identity, shape) => {
            shape
        }
        (Op::Merge(_), shape) => shape,
        (
            Op::Conv {
                filters,
                kernel,
                stride,
                pad,
                groups,
                ..
            },
            Shape::Image {
                height,
                width,
                channels,
            },
        ) => {
            if groups > 1 && (channels % groups != 0 || filters % groups != 0) {
                return Err(ShapeError::Groups {
                    channels,
                    filters,
                    groups,
                });
            }
            let (h, w) = windows(height, width, kernel, stride, pad)?;
            image(h, w, filters)
        }
        (
            Op::DepthwiseConv {
                multiplier,
                kernel,
                stride,
                pad,
                ..
            },
            Shape::Image {
                height,
                width,
                channels,
            },
        ) => {
            let (h, w) = windows(height, width, kernel, stride, pad)?;
            image(
                h,
                w,
                channels
                    .checked_mul(multiplier)
                    .ok_or(ShapeError::TooLarge)?,
            )
        }
        (
            Op::SeparableConv {
                filters,
                kernel,
                stride,
                pad,
                ..
            },
            Shape::Image { height, width, .. },
        ) => {
            let (h, w) = windows(height, width, kernel, stride, pad)?;
            image(h, w, filters)
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
            image(h, w, channels)
        }
        (Op::GlobalPool { .. }, Shape::Image { channels, .. }) => Shape::Flat(channels),
        (Op::Flatten, shape) => Shape::Flat(checked_len(shape)?),
        (Op::Dense { units, .. }, Shape::Flat(_)) => Shape::Flat(units),
        (Op::Dense { .. }, Shape::Image { .. }) => return Err(ShapeError::NeedsImage),
        (
            Op::Conv { .. }
            | Op::DepthwiseConv { .. }
            | Op::SeparableConv { .. }
            | Op::Pool { .. }
            | Op::GlobalPool { .. },
            Shape::Flat(_),
        ) => return Err(ShapeError::NeedsImage),
    };
    checked_len(shape)?;
    Ok(shape)
}

/// The output shape of a merge of `inputs`: `add` needs one shape; `concat` images of one
/// height and width (channels add up) or flat vectors (lengths add up); `mul` one shape, or
/// images of one shape times flat vectors of their channel count.
pub fn merge_shape(kind: MergeKind, inputs: &[Shape]) -> Result<Shape, ShapeError> {
    let mismatch = Err(ShapeError::Mismatch(kind));
    let Some(first) = inputs.first().copied() else {
        return mismatch;
    };
    let shape = match kind {
        MergeKind::Add => {
            if inputs.iter().any(|shape| *shape != first) {
                return mismatch;
            }
            first
        }
        MergeKind::Concat => match first {
            Shape::Image { height, width, .. } => {
                let mut channels = 0usize;
                for shape in inputs {
                    match *shape {
                        Shape::Image {
                            height: h,
                            width: w,
                            channels: c,
                        } if (h, w) == (height, width) => {
                            channels = channels.checked_add(c).ok_or(ShapeError::TooLarge)?
                        }
                        _ => return mismatch,
                    }
                }
                Shape::Image {
                    height,
                    width,
                    channels,
                }
            }
            Shape::Flat(_) => {
                let mut len = 0usize;
                for shape in inputs {
                    match *shape {
                        Shape::Flat(n) => len = len.checked_add(n).ok_or(ShapeError::TooLarge)?,
                        Shape::Image { .. } => return mismatch,
                    }
                }
                Shape::Flat(len)
            }
        },
        MergeKind::Mul => {
            let image = inputs
                .iter()
                .find(|shape| matches!(shape, Shape::Image { .. }))
                .copied();
            let out = image.unwrap_or(first);
            let fits = |shape: &Shape| match (shape, out) {
                (Shape::Image { .. }, _) => *shape == out,
                (Shape::Flat(n), Shape::Image { channels, .. }) => *n == channels,
                (Shape::Flat(n), Shape::Flat(m)) => *n == m,
            };
            if !inputs.iter().all(fits) {
                return mismatch;
            }
            out
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

/// The number of values of `shape`, or `TooLarge` past [`MAX_VALUES`].
pub fn checked_len(shape: Shape) -> Result<usize, ShapeError> {
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
    len.filter(|len| *len <= MAX_VALUES)
        .ok_or(ShapeError::TooLarge)
}

/// Parameters of `op` on `input`, as Keras counts them, from the op's layout.
pub fn params(op: &Op, input: Shape) -> Result<ParamCount, ShapeError> {
    let mut count = ParamCount::default();
    for spec in layout(op, input).map_err(|_| ShapeError::TooLarge)? {
        let len = spec.len() as u64;
        if spec.trainable {
            count.trainable += len;
        } else {
            count.non_trainable += len;
        }
    }
    Ok(count)
}

/// Infers shapes through `pending` from `input`. Stops at the first layer whose shape fails
/// (reported) or that did not resolve; returns the layers inferred so far and whether all were.
pub fn infer(
    pending: Vec<Pending>,
    input: Shape,
    diagnostics: &mut Vec<Diagnostic>,
) -> (Vec<Layer>, bool) {
    let mut inference = Inference {
        layers: Vec::with_capacity(pending.len()),
        placed: Vec::with_capacity(pending.len()),
        flattened_at: Vec::with_capacity(pending.len()),
        input,
    };
    for item in pending {
        match inference.place(item) {
            Ok(()) => {}
            Err(None) => return (inference.layers, false),
            Err(Some(diagnostic)) => {
                diagnostics.push(*diagnostic);
                return (inference.layers, false);
            }
        }
    }
    (inference.layers, true)
}

/// Shape inference's state: the layers made so far, and for each pending layer where it was
/// placed and where its data was first flattened.
struct Inference {
    layers: Vec<Layer>,
    placed: Vec<usize>,
    flattened_at: Vec<Option<Span>>,
    input: Shape,
}

/// `Err(None)`: stop without a new diagnostic (the layer did not resolve, already reported).
type Placed = Result<(), Option<Box<Diagnostic>>>;

impl Inference {
    /// The edge and flatten site of a pending source.
    fn edge(&self, source: Source) -> Option<(Edge, Option<Span>)> {
        match source {
            Source::Input => Some((
                Edge {
                    source: Source::Input,
                    shape: self.input,
                },
                None,
            )),
            Source::Layer(idx) => {
                let placed = *self.placed.get(idx)?;
                let layer = self.layers.get(placed)?;
                Some((
                    Edge {
                        source: Source::Layer(placed),
                        shape: layer.output,
                    },
                    self.flattened_at.get(idx).copied().flatten(),
                ))
            }
        }
    }

    fn place(&mut self, item: Pending) -> Placed {
        let op = item.op.ok_or(None)?;
        let mut edges = Vec::with_capacity(item.inputs.len());
        let mut flattened_at = None;
        for source in &item.inputs {
            let (edge, flat) = self.edge(*source).ok_or(None)?;
            edges.push(edge);
            flattened_at = flattened_at.or(flat);
        }
        if matches!(op, Op::Dense { .. }) {
            if let [edge] = edges.as_mut_slice() {
                if matches!(edge.shape, Shape::Image { .. }) {
                    let origin = Origin {
                        implicit: true,
                        ..item.origin.clone()
                    };
                    let flat = Shape::Flat(edge.shape.len());
                    *edge = self.push(
                        Op::Flatten,
                        None,
                        vec![*edge],
                        flat,
                        ParamCount::default(),
                        origin,
                    );
                }
            }
        }
        let shapes = || -> Vec<Shape> { edges.iter().map(|edge| edge.shape).collect() };
        let first = edges.first().map_or(self.input, |edge| edge.shape);
        let output = match op {
            Op::Merge(kind) => merge_shape(kind, &shapes()),
            _ => output_shape(&op, first),
        };
        let failed = |err| Some(Box::new(shape_error(err, &item, &shapes(), flattened_at)));
        let output = output.map_err(failed)?;
        let params = params(&op, first).map_err(failed)?;
        if matches!(op, Op::Flatten | Op::GlobalPool { .. } | Op::Dense { .. }) {
            flattened_at = flattened_at.or(Some(item.origin.span));
        }
        self.push(op, item.activation, edges, output, params, item.origin);
        self.placed.push(self.layers.len() - 1);
        self.flattened_at.push(flattened_at);
        Ok(())
    }

    fn push(
        &mut self,
        op: Op,
        activation: Option<crate::ir::Activation>,
        inputs: Vec<Edge>,
        output: Shape,
        params: ParamCount,
        origin: Origin,
    ) -> Edge {
        let index = self.layers.len();
        self.layers.push(Layer {
            index,
            name: String::new(),
            op,
            activation,
            inputs,
            output,
            params,
            origin,
        });
        Edge {
            source: Source::Layer(index),
            shape: output,
        }
    }
}

fn shape_error(
    err: ShapeError,
    item: &Pending,
    inputs: &[Shape],
    flattened_at: Option<Span>,
) -> Diagnostic {
    let where_ = item.origin.context_before_verb();
    let written = &item.origin.text;
    let input = inputs.first().copied().unwrap_or(Shape::Flat(0));
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
                Some(
                    Op::Conv { kernel, .. }
                    | Op::DepthwiseConv { kernel, .. }
                    | Op::SeparableConv { kernel, .. },
                ) => format!("{}x{} kernel", kernel.0, kernel.1),
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
                "`{written}`{where_} on {input} makes more than {MAX_VALUES} values or parameters"
            ),
        )
        .with_primary(item.origin.span, "too large")
        .with_help("use fewer units or filters, or pool before it"),
        ShapeError::Groups {
            channels,
            filters,
            groups,
        } => Diagnostic::error(
            codes::LAYER_ARGUMENT,
            format!(
                "`{written}`{where_} splits {channels} input channels and {filters} filters into {groups} groups"
            ),
        )
        .with_primary(
            item.origin.span,
            format!("{channels} channels and {filters} filters must both divide by {groups}"),
        )
        .with_help("choose `groups` that divides both the input channels and the filters"),
        ShapeError::Mismatch(kind) => mismatch(kind, item, inputs),
    };
    if let Some(reading) = &item.reading {
        diagnostic = diagnostic.with_note(reading.clone());
    }
    for (span, label) in item.origin.frame_labels() {
        diagnostic = diagnostic.with_secondary(span, label);
    }
    diagnostic
}

/// `strata::shape::mismatch`: a label on each branch with the shape it ends in.
fn mismatch(kind: MergeKind, item: &Pending, inputs: &[Shape]) -> Diagnostic {
    let name = decl_of(crate::catalogue::LayerKind::Merge(kind)).name;
    let shapes: Vec<String> = inputs.iter().map(Shape::to_string).collect();
    let (rule, help) = match kind {
        MergeKind::Add => (
            "needs every branch to end in the same shape",
            "make the branches agree: a 1x1 `conv` with the right filters and stride on the skip branch is the usual fix",
        ),
        MergeKind::Concat => (
            "needs images of one height and width, or flat vectors",
            "pool or stride the branches to one height and width (channels may differ)",
        ),
        MergeKind::Mul => (
            "needs one shape, or an image and a vector with one value per channel",
            "end the gating branch in `dense(c) sigmoid` with `c` the image's channels",
        ),
    };
    let mut diagnostic = Diagnostic::error(
        codes::SHAPE_MISMATCH,
        format!(
            "`{name}`{} {rule}, but its branches end in {}",
            item.origin.context(),
            crate::suggest::either(&shapes)
        ),
    )
    .with_primary(
        item.origin.name_span,
        format!("`{name}` of {}", shapes.join(", ")),
    );
    for (idx, (span, shape)) in item.branches.iter().zip(inputs).enumerate() {
        diagnostic =
            diagnostic.with_secondary(*span, format!("branch {} ends in {shape}", idx + 1));
    }
    diagnostic.with_help(help)
}

fn vanished_help(diagnostic: Diagnostic, item: &Pending) -> Diagnostic {
    let kind = item.op.map(|op| decl_of(op.kind()).name).unwrap_or("layer");
    let innermost = item
        .origin
        .frames
        .iter()
        .rev()
        .find(|frame| frame.count > 1);
    let diagnostic = match innermost {
        Some(frame) if frame.repetition > 1 => {
            let fit = frame.repetition - 1;
            let fits = if fit == 1 {
                "only 1 repetition fits".to_string()
            } else {
                format!("only {fit} repetitions fit")
            };
            diagnostic
                .with_help(format!(
                    "{fits}: write `x{fit}`, or give the {kind} `pad=same`"
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
    if origin.implicit || origin.text.contains("pad") || origin.text.ends_with('…') {
        return None;
    }
    let end = origin.span.end();
    if origin.text.ends_with("()") {
        Some((
            Span::new(end.saturating_sub(1), end.saturating_sub(1)),
            "pad=same".to_string(),
        ))
    } else if origin.text.ends_with(')') {
        Some((
            Span::new(end.saturating_sub(1), end.saturating_sub(1)),
            ", pad=same".to_string(),
        ))
    } else {
        Some((Span::new(end, end), "(pad=same)".to_string()))
    }
}
