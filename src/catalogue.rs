//! The one layer catalogue: every layer kind and activation declared once — name, aliases,
//! shorthand, arguments with types and defaults, Keras class and doc line. The resolver, the
//! summary, the language server (hover, completion) and the docs all read these declarations.

/// What a layer kind is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LayerKind {
    /// Batch normalisation.
    BatchNorm,
    /// 2-D convolution (grouped with `groups`).
    Conv,
    /// Depthwise convolution.
    DepthwiseConv,
    /// Separable convolution: depthwise, then pointwise.
    SeparableConv,
    /// Max pooling.
    MaxPool,
    /// Average pooling.
    AvgPool,
    /// Global average pooling.
    GlobalAvgPool,
    /// Global max pooling.
    GlobalMaxPool,
    /// Flatten to one dimension.
    Flatten,
    /// Fully connected.
    Dense,
    /// Dropout (training only).
    Dropout,
    /// Passes its input on (a skip branch).
    Identity,
    /// A merge of branches.
    Merge(MergeKind),
    /// An activation function as a stage or suffix.
    Activation(ActivationKind),
}

/// How a merge combines its branches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MergeKind {
    /// Element-wise sum; every branch ends in the same shape.
    Add,
    /// Channels (or features) side by side.
    Concat,
    /// Element-wise product; an image may be multiplied by a per-channel vector.
    Mul,
}

/// The activation functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ActivationKind {
    /// max(x, 0).
    Relu,
    /// min(max(x, 0), 6).
    Relu6,
    /// 1 / (1 + e^-x).
    Sigmoid,
    /// Hyperbolic tangent.
    Tanh,
    /// Normalised exponentials over the features.
    Softmax,
    /// Gaussian error linear unit (exact, as Keras's default).
    Gelu,
    /// x for x > 0, alpha·x otherwise.
    LeakyRelu,
    /// x · sigmoid(x).
    Silu,
    /// x · relu6(x + 3) / 6.
    HardSwish,
    /// relu6(x + 3) / 6.
    HardSigmoid,
    /// x for x > 0, alpha · (e^x − 1) otherwise.
    Elu,
}

/// What the number after a layer name means (`conv3`, `dense128`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShorthandRole {
    /// The layer takes no shorthand.
    None,
    /// A window size: `3` (square) or `2x3`; fills the named argument.
    Window(&'static str),
    /// A count (units); fills the named argument.
    Count(&'static str),
}

/// The type of an argument's value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ArgType {
    /// A whole number in `min..=max`.
    Int {
        /// Smallest allowed.
        min: u64,
        /// Largest allowed.
        max: u64,
    },
    /// A number in the range; `max_open` excludes `max`.
    Float {
        /// Smallest allowed (inclusive).
        min: f64,
        /// Largest allowed.
        max: f64,
        /// Whether `max` itself is excluded.
        max_open: bool,
    },
    /// `true` or `false`.
    Bool,
    /// One of the words.
    Choice(&'static [&'static str]),
    /// A window or stride: `3` or `2x3`, each at least 1.
    Window,
}

/// One argument of a layer kind.
#[derive(Clone, Copy, Debug)]
pub struct ArgDecl {
    /// The argument's name.
    pub name: &'static str,
    /// The type of its value.
    pub ty: ArgType,
    /// The default as written in the language, or `None` when required (`stride` of a pool
    /// defaults to its size, written `"size"`).
    pub default: Option<&'static str>,
    /// What it means.
    pub doc: &'static str,
}

/// One layer kind.
#[derive(Clone, Copy, Debug)]
pub struct LayerDecl {
    /// What it is.
    pub kind: LayerKind,
    /// The main name.
    pub name: &'static str,
    /// Other names for it.
    pub aliases: &'static [&'static str],
    /// What its shorthand fills.
    pub shorthand: ShorthandRole,
    /// Its arguments; positional ones in order first.
    pub args: &'static [ArgDecl],
    /// How many of `args` may be given by position.
    pub n_positional: usize,
    /// The Keras class it matches, shown in the summary.
    pub keras: &'static str,
    /// One line of documentation.
    pub doc: &'static str,
    /// How its parameters are counted, as Keras counts them (`-` for none).
    pub param_rule: &'static str,
}

impl LayerDecl {
    /// The declaration of argument `name`.
    pub fn arg(&self, name: &str) -> Option<&'static ArgDecl> {
        self.args.iter().find(|arg| arg.name == name)
    }

    /// The main name followed by the aliases.
    pub fn names(&self) -> impl Iterator<Item = &'static str> {
        std::iter::once(self.name).chain(self.aliases.iter().copied())
    }

    /// Whether this is an activation.
    pub fn is_activation(&self) -> bool {
        matches!(self.kind, LayerKind::Activation(_))
    }

    /// Whether this is a merge, whose items are branches.
    pub fn is_merge(&self) -> bool {
        matches!(self.kind, LayerKind::Merge(_))
    }
}

const PAD: ArgType = ArgType::Choice(&["valid", "same"]);
pub const SIZE_MAX: u64 = 1 << 16;
const COUNT_MAX: u64 = 1 << 24;

const fn int(min: u64, max: u64) -> ArgType {
    ArgType::Int { min, max }
}

const fn float(min: f64, max: f64, max_open: bool) -> ArgType {
    ArgType::Float { min, max, max_open }
}

const fn arg(
    name: &'static str,
    ty: ArgType,
    default: Option<&'static str>,
    doc: &'static str,
) -> ArgDecl {
    ArgDecl {
        name,
        ty,
        default,
        doc,
    }
}

const fn activation(kind: ActivationKind, name: &'static str, doc: &'static str) -> LayerDecl {
    LayerDecl {
        kind: LayerKind::Activation(kind),
        name,
        aliases: &[],
        shorthand: ShorthandRole::None,
        args: &[],
        n_positional: 0,
        keras: "Activation",
        doc,
        param_rule: "-",
    }
}

const fn merge(
    kind: MergeKind,
    name: &'static str,
    keras: &'static str,
    doc: &'static str,
) -> LayerDecl {
    LayerDecl {
        kind: LayerKind::Merge(kind),
        name,
        aliases: &[],
        shorthand: ShorthandRole::None,
        args: &[],
        n_positional: 0,
        keras,
        doc,
        param_rule: "-",
    }
}

const fn plain(
    kind: LayerKind,
    name: &'static str,
    keras: &'static str,
    doc: &'static str,
) -> LayerDecl {
    LayerDecl {
        kind,
        name,
        aliases: &[],
        shorthand: ShorthandRole::None,
        args: &[],
        n_positional: 0,
        keras,
        doc,
        param_rule: "-",
    }
}

const POOL_ARGS: &[ArgDecl] = &[
    arg(
        "size",
        ArgType::Window,
        Some("2"),
        "pool window: `2` or `2x3`",
    ),
    arg(
        "stride",
        ArgType::Window,
        Some("size"),
        "step between windows (default: the size)",
    ),
    arg(
        "pad",
        PAD,
        Some("valid"),
        "`valid` (no padding) or `same` (output = ceil(input / stride))",
    ),
];

const STRIDE: ArgDecl = arg(
    "stride",
    ArgType::Window,
    Some("1"),
    "step between windows: `2` or `2x1`",
);
const CONV_PAD: ArgDecl = arg(
    "pad",
    PAD,
    Some("valid"),
    "`valid` (no padding) or `same` (Keras's padding; even kernels pad 0 before, 1 after)",
);
const BIAS: ArgDecl = arg(
    "bias",
    ArgType::Bool,
    Some("true"),
    "whether to add a bias per output channel",
);
const KERNEL: ArgDecl = arg(
    "kernel",
    ArgType::Window,
    None,
    "kernel size: `3` or `3x3` (or the shorthand, `conv3`)",
);
const MULTIPLIER: ArgDecl = arg(
    "multiplier",
    int(1, COUNT_MAX),
    Some("1"),
    "depthwise outputs per input channel",
);

/// Every layer kind and activation.
pub const LAYERS: &[LayerDecl] = &[
    LayerDecl {
        kind: LayerKind::BatchNorm,
        name: "bn",
        aliases: &["batchnorm"],
        shorthand: ShorthandRole::None,
        args: &[
            arg(
                "momentum",
                float(0.0, 1.0, true),
                Some("0.99"),
                "weight of the old moving statistics",
            ),
            arg(
                "eps",
                float(1e-12, 1.0, false),
                Some("0.001"),
                "added to the variance",
            ),
        ],
        n_positional: 0,
        keras: "BatchNormalization",
        doc: "batch normalisation per channel (per feature on flat input)",
        param_rule: "4*c (2*c moving statistics, not trainable)",
    },
    LayerDecl {
        kind: LayerKind::Conv,
        name: "conv",
        aliases: &[],
        shorthand: ShorthandRole::Window("kernel"),
        args: &[
            arg(
                "filters",
                int(1, COUNT_MAX),
                None,
                "number of output channels",
            ),
            KERNEL,
            STRIDE,
            CONV_PAD,
            BIAS,
            arg(
                "groups",
                int(1, COUNT_MAX),
                Some("1"),
                "channel groups: input channels and filters split into independent parts",
            ),
        ],
        n_positional: 2,
        keras: "Conv2D",
        doc: "2-D convolution",
        param_rule: "k_h*k_w*(c_in/groups)*filters + filters",
    },
    LayerDecl {
        kind: LayerKind::DepthwiseConv,
        name: "dwconv",
        aliases: &["depthwiseconv"],
        shorthand: ShorthandRole::Window("kernel"),
        args: &[KERNEL, MULTIPLIER, STRIDE, CONV_PAD, BIAS],
        n_positional: 1,
        keras: "DepthwiseConv2D",
        doc: "depthwise convolution: each channel convolved with `multiplier` kernels of its own",
        param_rule: "k_h*k_w*c*m + c*m",
    },
    LayerDecl {
        kind: LayerKind::SeparableConv,
        name: "sepconv",
        aliases: &["separableconv"],
        shorthand: ShorthandRole::Window("kernel"),
        args: &[
            arg(
                "filters",
                int(1, COUNT_MAX),
                None,
                "number of output channels",
            ),
            KERNEL,
            MULTIPLIER,
            STRIDE,
            CONV_PAD,
            BIAS,
        ],
        n_positional: 2,
        keras: "SeparableConv2D",
        doc: "separable convolution: depthwise, then a 1x1 convolution to `filters`, as one layer",
        param_rule: "k_h*k_w*c*m + c*m*filters + filters",
    },
    LayerDecl {
        kind: LayerKind::MaxPool,
        name: "pool",
        aliases: &["maxpool"],
        shorthand: ShorthandRole::Window("size"),
        args: POOL_ARGS,
        n_positional: 1,
        keras: "MaxPooling2D",
        doc: "max pooling",
        param_rule: "-",
    },
    LayerDecl {
        kind: LayerKind::AvgPool,
        name: "avgpool",
        aliases: &[],
        shorthand: ShorthandRole::Window("size"),
        args: POOL_ARGS,
        n_positional: 1,
        keras: "AveragePooling2D",
        doc: "average pooling",
        param_rule: "-",
    },
    LayerDecl {
        kind: LayerKind::GlobalAvgPool,
        name: "gap",
        aliases: &["globalavgpool"],
        shorthand: ShorthandRole::None,
        args: &[],
        n_positional: 0,
        keras: "GlobalAveragePooling2D",
        doc: "global average pooling to one value per channel",
        param_rule: "-",
    },
    LayerDecl {
        aliases: &["globalmaxpool"],
        ..plain(
            LayerKind::GlobalMaxPool,
            "gmp",
            "GlobalMaxPooling2D",
            "global max pooling to one value per channel",
        )
    },
    LayerDecl {
        kind: LayerKind::Flatten,
        name: "flatten",
        aliases: &[],
        shorthand: ShorthandRole::None,
        args: &[],
        n_positional: 0,
        keras: "Flatten",
        doc: "to one dimension (inserted implicitly before `dense` on image input)",
        param_rule: "-",
    },
    LayerDecl {
        kind: LayerKind::Dense,
        name: "dense",
        aliases: &[],
        shorthand: ShorthandRole::Count("units"),
        args: &[
            arg(
                "units",
                int(1, COUNT_MAX),
                None,
                "number of outputs (or the shorthand `dense128`)",
            ),
            arg(
                "bias",
                ArgType::Bool,
                Some("true"),
                "whether to add a bias per unit",
            ),
        ],
        n_positional: 1,
        keras: "Dense",
        doc: "fully connected",
        param_rule: "in*units + units",
    },
    LayerDecl {
        kind: LayerKind::Dropout,
        name: "dropout",
        aliases: &[],
        shorthand: ShorthandRole::None,
        args: &[arg(
            "rate",
            float(0.0, 1.0, true),
            None,
            "fraction of inputs set to 0 while training",
        )],
        n_positional: 1,
        keras: "Dropout",
        doc: "dropout during training only",
        param_rule: "-",
    },
    plain(
        LayerKind::Identity,
        "identity",
        "Identity",
        "passes its input on (a skip branch of a merge)",
    ),
    merge(
        MergeKind::Add,
        "add",
        "Add",
        "the sum of its branches, which end in the same shape",
    ),
    merge(
        MergeKind::Concat,
        "concat",
        "Concatenate",
        "its branches side by side: channels of images of one size, or flat features",
    ),
    merge(
        MergeKind::Mul,
        "mul",
        "Multiply",
        "the product of its branches: the same shape, or an image times a vector per channel",
    ),
    activation(ActivationKind::Relu, "relu", "max(x, 0)"),
    activation(ActivationKind::Relu6, "relu6", "min(max(x, 0), 6)"),
    activation(ActivationKind::Sigmoid, "sigmoid", "1 / (1 + exp(-x))"),
    activation(ActivationKind::Tanh, "tanh", "hyperbolic tangent"),
    activation(
        ActivationKind::Softmax,
        "softmax",
        "class probabilities; the last layer of a classifier",
    ),
    activation(
        ActivationKind::Gelu,
        "gelu",
        "Gaussian error linear unit (exact)",
    ),
    LayerDecl {
        args: &[arg(
            "alpha",
            float(0.0, 1e6, false),
            Some("0.3"),
            "slope for negative inputs",
        )],
        n_positional: 1,
        ..activation(
            ActivationKind::LeakyRelu,
            "leakyrelu",
            "x if x > 0 else alpha * x",
        )
    },
    LayerDecl {
        aliases: &["swish"],
        ..activation(ActivationKind::Silu, "silu", "x * sigmoid(x)")
    },
    activation(
        ActivationKind::HardSwish,
        "hardswish",
        "x * relu6(x + 3) / 6",
    ),
    activation(
        ActivationKind::HardSigmoid,
        "hardsigmoid",
        "relu6(x + 3) / 6",
    ),
    LayerDecl {
        args: &[arg(
            "alpha",
            float(0.0, 1e6, false),
            Some("1.0"),
            "scale of the negative part",
        )],
        n_positional: 1,
        ..activation(
            ActivationKind::Elu,
            "elu",
            "x if x > 0 else alpha * (exp(x) - 1)",
        )
    },
];

/// The declaration for a name or alias.
pub fn lookup(name: &str) -> Option<&'static LayerDecl> {
    LAYERS
        .iter()
        .find(|decl| decl.names().any(|known| known == name))
}

/// The declaration of a kind.
pub fn decl_of(kind: LayerKind) -> &'static LayerDecl {
    LAYERS
        .iter()
        .find(|decl| decl.kind == kind)
        .expect("INVARIANT: every LayerKind has a declaration in LAYERS")
}

/// The declaration whose Keras class is `name` (`Conv2D`, `MaxPooling2D`), for a user who
/// writes Keras's names; activations (all `Activation` in Keras) are left out.
pub fn by_keras_name(name: &str) -> Option<&'static LayerDecl> {
    LAYERS
        .iter()
        .filter(|decl| !decl.is_activation())
        .find(|decl| decl.keras.eq_ignore_ascii_case(name))
}

/// Every name and alias, for suggestions and completion.
pub fn all_names() -> Vec<&'static str> {
    LAYERS.iter().flat_map(LayerDecl::names).collect()
}

/// The names of the activations, for suggestions after a layer.
pub fn activation_names() -> Vec<&'static str> {
    LAYERS
        .iter()
        .filter(|decl| decl.is_activation())
        .map(|decl| decl.name)
        .collect()
}
