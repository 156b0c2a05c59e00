//! The checked model IR (DESIGN §3): a flat list of layers with resolved arguments, shapes,
//! parameter counts and provenance. It is the only thing the backend, the summary, the
//! language server and the trainer read.

use crate::catalogue::{decl_of, ActivationKind, LayerKind};
use crate::diagnostics::Span;
use crate::spec::{DataConfig, TrainConfig};

/// A checked model.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    /// The model's name.
    pub name: String,
    /// The input shape (always an image).
    pub input: Shape,
    /// The class count: `classes:` or the last layer's units.
    pub classes: usize,
    /// The layers in order, implicit flattens included.
    pub layers: Vec<Layer>,
    /// Training settings.
    pub train: TrainConfig,
    /// Data settings (paths as written, relative to the spec file).
    pub data: DataConfig,
    /// Parameter totals.
    pub params: ParamCount,
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
    /// The number of values.
    pub fn len(&self) -> usize {
        match *self {
            Shape::Image {
                height,
                width,
                channels,
            } => height * width * channels,
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
        self.trainable + self.non_trainable
    }
}

impl std::ops::Add for ParamCount {
    type Output = ParamCount;
    fn add(self, other: ParamCount) -> ParamCount {
        ParamCount {
            trainable: self.trainable + other.trainable,
            non_trainable: self.non_trainable + other.non_trainable,
        }
    }
}

/// `valid` or `same` padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Padding {
    /// No padding.
    Valid,
    /// Keras's `same`: output = ceil(input / stride), extra padding after.
    Same,
}

/// A resolved activation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    /// max(x, 0).
    Relu,
    /// Logistic.
    Sigmoid,
    /// tanh.
    Tanh,
    /// Softmax over the features.
    Softmax,
    /// Exact GELU.
    Gelu,
    /// Leaky ReLU with its slope.
    LeakyRelu {
        /// Slope for negative inputs.
        alpha: f64,
    },
}

impl Activation {
    /// The catalogue kind.
    pub fn kind(&self) -> ActivationKind {
        match self {
            Activation::Relu => ActivationKind::Relu,
            Activation::Sigmoid => ActivationKind::Sigmoid,
            Activation::Tanh => ActivationKind::Tanh,
            Activation::Softmax => ActivationKind::Softmax,
            Activation::Gelu => ActivationKind::Gelu,
            Activation::LeakyRelu { .. } => ActivationKind::LeakyRelu,
        }
    }

    /// The name as written in the language.
    pub fn name(&self) -> &'static str {
        decl_of(LayerKind::Activation(self.kind())).name
    }
}

/// A layer's operation with every argument resolved.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Op {
    /// Batch normalisation.
    BatchNorm {
        /// Moving-average momentum.
        momentum: f64,
        /// Variance epsilon.
        eps: f64,
    },
    /// 2-D convolution.
    Conv {
        /// Output channels.
        filters: usize,
        /// Kernel height and width.
        kernel: (usize, usize),
        /// Vertical and horizontal stride.
        stride: (usize, usize),
        /// Padding.
        pad: Padding,
        /// Whether there is a bias.
        bias: bool,
    },
    /// Max or average pooling.
    Pool {
        /// Max or average.
        kind: PoolKind,
        /// Window height and width.
        size: (usize, usize),
        /// Vertical and horizontal stride.
        stride: (usize, usize),
        /// Padding.
        pad: Padding,
    },
    /// Global average pooling.
    GlobalAvgPool,
    /// Flatten in channel, row, column order.
    Flatten,
    /// Fully connected.
    Dense {
        /// Outputs.
        units: usize,
        /// Whether there is a bias.
        bias: bool,
    },
    /// Dropout.
    Dropout {
        /// Fraction dropped while training.
        rate: f64,
    },
    /// An activation stage.
    Activation(Activation),
}

/// Max or average pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PoolKind {
    /// Maximum of the window.
    Max,
    /// Mean of the window's valid elements.
    Avg,
}

impl Op {
    /// The catalogue kind.
    pub fn kind(&self) -> LayerKind {
        match self {
            Op::BatchNorm { .. } => LayerKind::BatchNorm,
            Op::Conv { .. } => LayerKind::Conv,
            Op::Pool {
                kind: PoolKind::Max,
                ..
            } => LayerKind::MaxPool,
            Op::Pool {
                kind: PoolKind::Avg,
                ..
            } => LayerKind::AvgPool,
            Op::GlobalAvgPool => LayerKind::GlobalAvgPool,
            Op::Flatten => LayerKind::Flatten,
            Op::Dense { .. } => LayerKind::Dense,
            Op::Dropout { .. } => LayerKind::Dropout,
            Op::Activation(activation) => LayerKind::Activation(activation.kind()),
        }
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
    /// The suffix activation (`conv3 relu`), applied after the op.
    pub activation: Option<Activation>,
    /// Input shape.
    pub input: Shape,
    /// Output shape.
    pub output: Shape,
    /// Parameter counts.
    pub params: ParamCount,
    /// Where it came from.
    pub origin: Origin,
}

/// Where a layer came from in the spec file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    /// The layer call as written, whitespace folded (`conv2x2(20)`); for messages.
    pub text: String,
    /// The layer call's characters (for an implicit flatten: the dense layer that needs it).
    pub span: Span,
    /// The layer name's characters.
    pub name_span: Span,
    /// The enclosing repeat groups, outermost first.
    pub repeats: Vec<RepeatFrame>,
    /// Whether the compiler inserted it (an implicit flatten).
    pub implicit: bool,
}

/// One enclosing repeat group of a layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RepeatFrame {
    /// The group's characters.
    pub group_span: Span,
    /// The `xN` characters (the group's span when it has none).
    pub count_span: Span,
    /// Which repetition (1-based).
    pub repetition: usize,
    /// How many repetitions.
    pub count: usize,
}

impl Origin {
    /// `in repetition 7 of 8` (outermost first), or an empty string outside groups.
    pub fn repetition_text(&self) -> String {
        let parts: Vec<String> = self
            .repeats
            .iter()
            .filter(|frame| frame.count > 1)
            .map(|frame| format!("repetition {} of {}", frame.repetition, frame.count))
            .collect();
        if parts.is_empty() {
            String::new()
        } else {
            format!(" in {}", parts.join(", "))
        }
    }
}
