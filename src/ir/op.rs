//! Resolved operations: every layer kind of the catalogue with its arguments checked and its
//! defaults filled in.

pub use crate::catalogue::MergeKind;
use crate::catalogue::{decl_of, ActivationKind, LayerKind};

/// `valid` or `same` padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Padding {
    /// No padding.
    Valid,
    /// Keras's `same`: output = ceil(input / stride), extra padding after.
    Same,
}

impl Padding {
    /// The word the language writes.
    pub fn name(self) -> &'static str {
        match self {
            Padding::Valid => "valid",
            Padding::Same => "same",
        }
    }
}

/// Max or average pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PoolKind {
    /// Maximum of the window.
    Max,
    /// Mean of the window's valid elements.
    Avg,
}

/// A resolved activation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    /// max(x, 0).
    Relu,
    /// min(max(x, 0), 6).
    Relu6,
    /// Logistic.
    Sigmoid,
    /// tanh.
    Tanh,
    /// Softmax over the features (over the channels of an image).
    Softmax,
    /// Exact GELU.
    Gelu,
    /// Leaky ReLU with its slope.
    LeakyRelu {
        /// Slope for negative inputs.
        alpha: f64,
    },
    /// x · sigmoid(x) (Keras `silu`, alias `swish`).
    Silu,
    /// x · relu6(x + 3) / 6.
    HardSwish,
    /// relu6(x + 3) / 6 (Keras 3's `hard_sigmoid`).
    HardSigmoid,
    /// x for x > 0, alpha · (exp(x) − 1) otherwise.
    Elu {
        /// Scale of the negative part.
        alpha: f64,
    },
}

impl Activation {
    /// The catalogue kind.
    pub fn kind(&self) -> ActivationKind {
        match self {
            Activation::Relu => ActivationKind::Relu,
            Activation::Relu6 => ActivationKind::Relu6,
            Activation::Sigmoid => ActivationKind::Sigmoid,
            Activation::Tanh => ActivationKind::Tanh,
            Activation::Softmax => ActivationKind::Softmax,
            Activation::Gelu => ActivationKind::Gelu,
            Activation::LeakyRelu { .. } => ActivationKind::LeakyRelu,
            Activation::Silu => ActivationKind::Silu,
            Activation::HardSwish => ActivationKind::HardSwish,
            Activation::HardSigmoid => ActivationKind::HardSigmoid,
            Activation::Elu { .. } => ActivationKind::Elu,
        }
    }

    /// The name as written in the language.
    pub fn name(&self) -> &'static str {
        decl_of(LayerKind::Activation(self.kind())).name
    }

    /// The activation as the language writes it, arguments included (`leakyrelu(alpha=0.1)`).
    pub fn text(&self) -> String {
        match self {
            Activation::LeakyRelu { alpha } | Activation::Elu { alpha } => {
                format!("{}(alpha={alpha})", self.name())
            }
            other => other.name().to_string(),
        }
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
    /// 2-D convolution, grouped when `groups` > 1.
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
        /// Channel groups: input and output channels split into this many independent parts.
        groups: usize,
    },
    /// Depthwise convolution: each input channel convolved with `multiplier` kernels of its
    /// own.
    DepthwiseConv {
        /// Output channels per input channel.
        multiplier: usize,
        /// Kernel height and width.
        kernel: (usize, usize),
        /// Vertical and horizontal stride.
        stride: (usize, usize),
        /// Padding.
        pad: Padding,
        /// Whether there is a bias (one per output channel).
        bias: bool,
    },
    /// Separable convolution: a depthwise convolution, then a 1x1 convolution to `filters`.
    SeparableConv {
        /// Output channels.
        filters: usize,
        /// Depthwise output channels per input channel.
        multiplier: usize,
        /// Kernel height and width of the depthwise part.
        kernel: (usize, usize),
        /// Vertical and horizontal stride.
        stride: (usize, usize),
        /// Padding.
        pad: Padding,
        /// Whether there is a bias (one per filter).
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
    /// Global average or max pooling to one value per channel.
    GlobalPool {
        /// Max or average.
        kind: PoolKind,
    },
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
    /// Passes its input on.
    Identity,
    /// Combines its inputs (a merge's branches).
    Merge(MergeKind),
    /// An activation stage.
    Activation(Activation),
}

impl Op {
    /// The catalogue kind.
    pub fn kind(&self) -> LayerKind {
        match self {
            Op::BatchNorm { .. } => LayerKind::BatchNorm,
            Op::Conv { .. } => LayerKind::Conv,
            Op::DepthwiseConv { .. } => LayerKind::DepthwiseConv,
            Op::SeparableConv { .. } => LayerKind::SeparableConv,
            Op::Pool {
                kind: PoolKind::Max,
                ..
            } => LayerKind::MaxPool,
            Op::Pool {
                kind: PoolKind::Avg,
                ..
            } => LayerKind::AvgPool,
            Op::GlobalPool {
                kind: PoolKind::Avg,
            } => LayerKind::GlobalAvgPool,
            Op::GlobalPool {
                kind: PoolKind::Max,
            } => LayerKind::GlobalMaxPool,
            Op::Flatten => LayerKind::Flatten,
            Op::Dense { .. } => LayerKind::Dense,
            Op::Dropout { .. } => LayerKind::Dropout,
            Op::Identity => LayerKind::Identity,
            Op::Merge(kind) => LayerKind::Merge(*kind),
            Op::Activation(activation) => LayerKind::Activation(activation.kind()),
        }
    }

    /// The resolved arguments as the language writes them, defaults filled in, for hover and
    /// documentation (`filters 32`, `kernel 3x3`, …).
    pub fn arguments(&self) -> Vec<(&'static str, String)> {
        let window = |(h, w): (usize, usize)| format!("{h}x{w}");
        match *self {
            Op::BatchNorm { momentum, eps } => {
                vec![("momentum", momentum.to_string()), ("eps", eps.to_string())]
            }
            Op::Conv {
                filters,
                kernel,
                stride,
                pad,
                bias,
                groups,
            } => vec![
                ("filters", filters.to_string()),
                ("kernel", window(kernel)),
                ("stride", window(stride)),
                ("pad", pad.name().to_string()),
                ("bias", bias.to_string()),
                ("groups", groups.to_string()),
            ],
            Op::DepthwiseConv {
                multiplier,
                kernel,
                stride,
                pad,
                bias,
            } => vec![
                ("kernel", window(kernel)),
                ("multiplier", multiplier.to_string()),
                ("stride", window(stride)),
                ("pad", pad.name().to_string()),
                ("bias", bias.to_string()),
            ],
            Op::SeparableConv {
                filters,
                multiplier,
                kernel,
                stride,
                pad,
                bias,
            } => vec![
                ("filters", filters.to_string()),
                ("kernel", window(kernel)),
                ("multiplier", multiplier.to_string()),
                ("stride", window(stride)),
                ("pad", pad.name().to_string()),
                ("bias", bias.to_string()),
            ],
            Op::Pool {
                size, stride, pad, ..
            } => vec![
                ("size", window(size)),
                ("stride", window(stride)),
                ("pad", pad.name().to_string()),
            ],
            Op::Dense { units, bias } => {
                vec![("units", units.to_string()), ("bias", bias.to_string())]
            }
            Op::Dropout { rate } => vec![("rate", rate.to_string())],
            Op::Activation(Activation::LeakyRelu { alpha } | Activation::Elu { alpha }) => {
                vec![("alpha", alpha.to_string())]
            }
            Op::Activation(_) | Op::GlobalPool { .. } | Op::Flatten | Op::Identity => Vec::new(),
            Op::Merge(_) => Vec::new(),
        }
    }
}

/// What the model's last layer outputs, and so the loss that trains it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Head {
    /// One softmax probability per class; categorical cross-entropy.
    Softmax,
    /// One sigmoid probability of the second class (in sorted order); binary cross-entropy,
    /// as Keras's `class_mode="binary"`.
    Sigmoid,
}
