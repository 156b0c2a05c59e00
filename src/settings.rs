//! Training and data settings: the `train:` and `data:` sections of a spec with Keras's
//! defaults filled in. The spec loader fills them, the IR carries them, and the trainer and the
//! optimiser read them; they are plain data and use no other module.

/// The optimisers a spec may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Adam (β 0.9 / 0.999, ε 1e-7, as Keras).
    Adam,
    /// Adam with decoupled weight decay (Keras's `AdamW`: weight decay 0.004 by default).
    Adamw,
    /// Stochastic gradient descent, with optional momentum and Nesterov.
    Sgd,
    /// RMSprop (ρ 0.9, ε 1e-7, as Keras).
    Rmsprop,
}

/// The losses a spec may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossKind {
    /// Cross-entropy over one-hot classes; the head ends in softmax.
    CategoricalCrossentropy,
    /// Cross-entropy of one probability (the second class's); the head is `dense1 sigmoid`.
    BinaryCrossentropy,
}

impl LossKind {
    /// The name as written in a spec.
    pub fn name(self) -> &'static str {
        match self {
            LossKind::CategoricalCrossentropy => "categorical_crossentropy",
            LossKind::BinaryCrossentropy => "binary_crossentropy",
        }
    }
}

/// The `train:` section, with Keras's defaults where a key is absent.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// Which optimiser.
    pub optimizer: OptimizerKind,
    /// Learning rate.
    pub lr: f64,
    /// SGD momentum (0 = none).
    pub momentum: f64,
    /// SGD Nesterov momentum.
    pub nesterov: bool,
    /// Number of epochs.
    pub epochs: u64,
    /// Images per batch.
    pub batch_size: u64,
    /// The loss.
    pub loss: LossKind,
    /// Seed for shuffling, initialisation and dropout.
    pub seed: u64,
    /// `early_stopping:`, if given.
    pub early_stopping: Option<EarlyStopping>,
    /// `reduce_lr_on_plateau:`, if given.
    pub reduce_lr: Option<ReduceLr>,
    /// `weight_decay:` as written; [`TrainConfig::weight_decay`] gives the one in effect.
    pub weight_decay: Option<f64>,
    /// Label smoothing in [0, 1): targets become `y (1 - s) + s / k` (k classes; 2 for a
    /// binary head), as Keras's cross-entropy losses compute them.
    pub label_smoothing: f64,
    /// How the learning rate changes from step to step.
    pub schedule: Schedule,
    /// Per-class weights of each image's loss, if given.
    pub class_weight: Option<ClassWeight>,
    /// Data-parallel runs only: batch-norm statistics over all ranks.
    pub sync_bn: bool,
}

impl TrainConfig {
    /// The decoupled weight decay in effect: `weight_decay` if written, else Keras's default
    /// for the optimiser (0.004 for AdamW, none for the others).
    pub fn weight_decay(&self) -> f64 {
        match (self.weight_decay, self.optimizer) {
            (Some(decay), _) => decay,
            (None, OptimizerKind::Adamw) => 0.004,
            (None, _) => 0.0,
        }
    }
}

/// A learning-rate schedule (`train.schedule`), applied per optimiser step as Keras's
/// `LearningRateSchedule`s are. Periods are written in epochs and turned into steps with the
/// number of batches per epoch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Schedule {
    /// The learning rate stays `lr` (reduce-on-plateau may still lower it).
    Constant,
    /// Linear warm-up from 0 to `lr` over `warmup_epochs`, then cosine decay to `alpha * lr`
    /// at the end of the last epoch (Keras's `CosineDecay` with `warmup_target = lr`).
    Cosine {
        /// Epochs of linear warm-up (may be fractional; 0 for none).
        warmup_epochs: f64,
        /// The final learning rate as a fraction of `lr`.
        alpha: f64,
    },
    /// The rate is multiplied by `factor` every `every` epochs (Keras's `ExponentialDecay`
    /// with `staircase=True`).
    Step {
        /// Epochs between drops.
        every: u64,
        /// The multiplier at each drop, in (0, 1].
        factor: f64,
    },
    /// The rate is multiplied by `rate` per epoch, smoothly from step to step (Keras's
    /// `ExponentialDecay` with `decay_steps` = steps per epoch).
    Exponential {
        /// The multiplier per epoch, in (0, 1].
        rate: f64,
    },
}

impl Schedule {
    /// The schedule's name as written in `kind:`.
    pub fn name(&self) -> &'static str {
        match self {
            Schedule::Constant => "constant",
            Schedule::Cosine { .. } => "cosine",
            Schedule::Step { .. } => "step",
            Schedule::Exponential { .. } => "exponential",
        }
    }
}

/// `train.class_weight`: how much each class's images count in the loss, as Keras's
/// `class_weight` argument of `fit` weighs them.
#[derive(Clone, Debug, PartialEq)]
pub enum ClassWeight {
    /// `n_images / (n_classes * n_images_of_class)` for each class (scikit-learn's
    /// `compute_class_weight("balanced")`), counted on the training images.
    Balanced,
    /// A weight per class name, as written; classes not named weigh 1. The names are checked
    /// against the data's classes when training starts.
    ByName(Vec<(String, f64)>),
}

/// `augment.flip`: which mirror images `RandomFlip` may produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flip {
    /// Left-right mirrors.
    Horizontal,
    /// Upside-down mirrors.
    Vertical,
    /// Both at once (a half turn) with probability one half, as Keras 3's
    /// `horizontal_and_vertical` draws one decision for the two axes.
    Both,
}

/// The `augment:` section: random transforms of training images, each as Keras's
/// preprocessing layer of the same name computes it. A factor of 0 (the default) leaves that
/// transform out.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AugmentConfig {
    /// `RandomFlip`.
    pub flip: Option<Flip>,
    /// `RandomRotation`: ± this fraction of a full turn, fill mode reflect, bilinear.
    pub rotation: f64,
    /// `RandomZoom`: ± this fraction of height and width (both by the same factor).
    pub zoom: f64,
    /// `RandomTranslation`: ± this fraction of height and of width.
    pub translation: f64,
    /// `RandomContrast`: contrast factor in `[1 - c, 1 + c]` around each channel's mean.
    pub contrast: f64,
    /// `RandomBrightness`: ± this fraction of the pixel range added to every value.
    pub brightness: f64,
}

impl AugmentConfig {
    /// Whether any transform is on.
    pub fn is_active(&self) -> bool {
        self.flip.is_some()
            || [
                self.rotation,
                self.zoom,
                self.translation,
                self.contrast,
                self.brightness,
            ]
            .iter()
            .any(|factor| *factor > 0.0)
    }
}

/// A metric of the epoch line that early stopping or reduce-on-plateau watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Monitor {
    /// Validation loss (falls when better).
    ValLoss,
    /// Validation accuracy (rises when better).
    ValAccuracy,
    /// Training loss.
    Loss,
    /// Training accuracy.
    Accuracy,
}

impl Monitor {
    /// The name as written in a spec and in the history.
    pub fn name(self) -> &'static str {
        match self {
            Monitor::ValLoss => "val_loss",
            Monitor::ValAccuracy => "val_accuracy",
            Monitor::Loss => "loss",
            Monitor::Accuracy => "accuracy",
        }
    }

    /// Whether a larger value is better (accuracies), as Keras's `mode="auto"` decides.
    pub fn higher_is_better(self) -> bool {
        matches!(self, Monitor::ValAccuracy | Monitor::Accuracy)
    }

    /// Whether the metric needs validation data.
    pub fn needs_validation(self) -> bool {
        matches!(self, Monitor::ValLoss | Monitor::ValAccuracy)
    }
}

/// `train.early_stopping:` with Keras's `EarlyStopping` defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EarlyStopping {
    /// The watched metric.
    pub monitor: Monitor,
    /// Epochs without improvement before stopping.
    pub patience: u64,
    /// The least change that counts as an improvement.
    pub min_delta: f64,
}

impl Default for EarlyStopping {
    fn default() -> EarlyStopping {
        EarlyStopping {
            monitor: Monitor::ValLoss,
            patience: 0,
            min_delta: 0.0,
        }
    }
}

/// `train.reduce_lr_on_plateau:` with Keras's `ReduceLROnPlateau` defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReduceLr {
    /// The watched metric.
    pub monitor: Monitor,
    /// The learning rate is multiplied by this.
    pub factor: f64,
    /// Epochs without improvement before lowering.
    pub patience: u64,
    /// The least change that counts as an improvement.
    pub min_delta: f64,
    /// Epochs after a lowering during which no counting happens.
    pub cooldown: u64,
    /// The floor of the learning rate.
    pub min_lr: f64,
}

impl Default for ReduceLr {
    fn default() -> ReduceLr {
        ReduceLr {
            monitor: Monitor::ValLoss,
            factor: 0.1,
            patience: 10,
            min_delta: 1e-4,
            cooldown: 0,
            min_lr: 0.0,
        }
    }
}

impl Default for TrainConfig {
    fn default() -> TrainConfig {
        TrainConfig {
            optimizer: OptimizerKind::Adam,
            lr: 0.001,
            momentum: 0.0,
            nesterov: false,
            epochs: 10,
            batch_size: 32,
            loss: LossKind::CategoricalCrossentropy,
            seed: 0,
            early_stopping: None,
            reduce_lr: None,
            weight_decay: None,
            label_smoothing: 0.0,
            schedule: Schedule::Constant,
            class_weight: None,
            sync_bn: false,
        }
    }
}

/// The `data:` section. Paths are as written: relative to the spec file's folder.
#[derive(Clone, Debug, PartialEq)]
pub struct DataConfig {
    /// Training images: one subfolder per class.
    pub train: Option<String>,
    /// Validation images, same layout.
    pub validation: Option<String>,
    /// Fraction of the training images held out for validation instead.
    pub validation_split: Option<f64>,
    /// Factor each pixel value is multiplied by.
    pub rescale: f64,
    /// Budget of the decoded-image cache in MiB, if written (`--cache-mb` overrides it).
    pub cache_mb: Option<u64>,
    /// The spec's top-level `augment:` section: random transforms of training images.
    pub augment: AugmentConfig,
}

impl Default for DataConfig {
    fn default() -> DataConfig {
        DataConfig {
            train: None,
            validation: None,
            validation_split: None,
            rescale: 1.0 / 255.0,
            cache_mb: None,
            augment: AugmentConfig::default(),
        }
    }
}
