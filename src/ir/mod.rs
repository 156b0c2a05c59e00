//! The checked model IR: a graph of layers in expansion order (a merge's branches left to
//! right, then the merge), each with its resolved operation, the layers it reads, its output
//! shape, its parameter count and where it came from in the spec. Expansion order is a
//! topological order, so every layer's inputs come before it, and the last layer is the
//! model's output. The IR is the only thing the backend, the summary, the language server and
//! the trainer read.

mod layout;
mod op;
mod origin;

pub use layout::{layout, Init, LayoutError, ParamSpec};
pub use op::{Activation, Head, MergeKind, Op, Padding, PoolKind};
pub use origin::{Frame, FrameKind, Origin};

use crate::settings::{DataConfig, TrainConfig};

/// A checked model.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    /// The model's name.
    pub name: String,
    /// The input shape (always an image).
    pub input: Shape,
    /// The class count: `classes:`, or the head's (its units for softmax, 2 for `dense1
    /// sigmoid`).
    pub classes: usize,
    /// What the last layer outputs, and so which loss trains it.
    pub head: Head,
    /// The layers in expansion order, implicit flattens included.
    pub layers: Vec<Layer>,
    /// Training settings (the loss resolved from the head).
    pub train: TrainConfig,
    /// Data settings (paths as written, relative to the spec file).
    pub data: DataConfig,
    /// Parameter totals.
    pub params: ParamCount,
}

impl Model {
    /// Whether every layer reads only the layer before it (or the input, for the first): a
    /// plain stack.
    pub fn is_chain(&self) -> bool {
        self.layers.iter().all(Layer::reads_previous)
    }

    /// The name of a tensor the layers read: a layer's name, or `input`.
    pub fn source_name(&self, source: Source) -> &str {
        match source {
            Source::Input => "input",
            Source::Layer(idx) => self.layers.get(idx).map_or("?", |layer| &layer.name),
        }
    }
}

/// A tensor a layer reads: the model's input, or the output of an earlier layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// The model's input.
    Input,
    /// The output of the layer with this index.
    Layer(usize),
}

/// One input of a layer: where it comes from and its shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edge {
    /// The producer.
    pub source: Source,
    /// The shape it has.
    pub shape: Shape,
}

/// A tensor shape without the batch axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shape {
    /// An image: height, width, channels.
    Image {
        /// Rows.
        height: usize,
        /// Columns.
        width: usize,
        /// Channels.
        channels: usize,
    },
    /// A flat vector of features.
    Flat(usize),
}

impl Shape {
    /// The number of values. The compiler checks every shape it makes against
    /// [`crate::ir::MAX_VALUES`], so this does not overflow for shapes in a checked model;
    /// it saturates for others.
    pub fn len(&self) -> usize {
        match *self {
            Shape::Image {
                height,
                width,
                channels,
            } => height.saturating_mul(width).saturating_mul(channels),
            Shape::Flat(n) => n,
        }
    }

    /// Whether the shape holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Height, width and channels; a flat shape is `1 x 1 x n`.
    pub fn hwc(&self) -> (usize, usize, usize) {
        match *self {
            Shape::Image {
                height,
                width,
                channels,
            } => (height, width, channels),
            Shape::Flat(n) => (1, 1, n),
        }
    }

    /// Channels of an image, or features of a flat shape.
    pub fn features(&self) -> usize {
        match *self {
            Shape::Image { channels, .. } => channels,
            Shape::Flat(n) => n,
        }
    }

    /// The dimensions as a list: `[h, w, c]` or `[n]`.
    pub fn dims(&self) -> Vec<usize> {
        match *self {
            Shape::Image {
                height,
                width,
                channels,
            } => vec![height, width, channels],
            Shape::Flat(n) => vec![n],
        }
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shape::Image {
                height,
                width,
                channels,
            } => write!(f, "{height}x{width}x{channels}"),
            Shape::Flat(n) => write!(f, "{n}"),
        }
    }
}

/// The most values one image may have at any layer, and the most parameters one layer may
/// have: 2^31, so that every size fits an `i32` index as well as a `usize`.
pub const MAX_VALUES: usize = 1 << 31;

/// Trainable and non-trainable parameter counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ParamCount {
    /// Updated by the optimiser.
    pub trainable: u64,
    /// Moving statistics.
    pub non_trainable: u64,
}

impl ParamCount {
    /// Both together.
    pub fn total(&self) -> u64 {
        self.trainable.saturating_add(self.non_trainable)
    }

    /// The sum, or `None` when it overflows.
    pub fn checked_add(self, other: ParamCount) -> Option<ParamCount> {
        Some(ParamCount {
            trainable: self.trainable.checked_add(other.trainable)?,
            non_trainable: self.non_trainable.checked_add(other.non_trainable)?,
        })
    }
}

/// One layer of the checked model.
#[derive(Clone, Debug, PartialEq)]
pub struct Layer {
    /// Position in the summary (0-based); names checkpoint tensors `layers.<index>.…`.
    pub index: usize,
    /// Unique name such as `conv_3`.
    pub name: String,
    /// The operation.
    pub op: Op,
    /// The suffix activation (`conv3 relu`, `add(…) relu`), applied after the op.
    pub activation: Option<Activation>,
    /// What it reads, in order: one input, or a merge's branches left to right.
    // INVARIANT: never empty; every source is the input or an earlier layer.
    pub inputs: Vec<Edge>,
    /// Output shape.
    pub output: Shape,
    /// Parameter counts.
    pub params: ParamCount,
    /// Where it came from.
    pub origin: Origin,
}

impl Layer {
    /// The shape of the first input (the only one, except for merges).
    pub fn input(&self) -> Shape {
        self.inputs.first().map_or(self.output, |edge| edge.shape)
    }

    /// The activation the layer ends with: its suffix, or itself when it is an activation
    /// stage.
    pub fn final_activation(&self) -> Option<Activation> {
        match self.op {
            Op::Activation(activation) => Some(activation),
            Op::Conv { .. }
            | Op::DepthwiseConv { .. }
            | Op::SeparableConv { .. }
            | Op::Dense { .. }
            | Op::Pool { .. }
            | Op::GlobalPool { .. }
            | Op::BatchNorm { .. }
            | Op::Dropout { .. }
            | Op::Flatten
            | Op::Identity
            | Op::Merge(_) => self.activation,
        }
    }

    /// Whether the layer reads exactly the layer before it (or the input, for the first).
    pub fn reads_previous(&self) -> bool {
        let previous = match self.index {
            0 => Source::Input,
            idx => Source::Layer(idx - 1),
        };
        matches!(self.inputs.as_slice(), [edge] if edge.source == previous)
    }

    /// The parameters of the layer as its op lays them out.
    pub fn layout(&self) -> Vec<ParamSpec> {
        // INVARIANT: the compiler computed `params` from this same layout and refused layers
        // whose layout overflows, so it does not fail for a layer of a checked model.
        layout(&self.op, self.input()).unwrap_or_default()
    }
}
