//! Training and data settings: the `train:` and `data:` sections of a spec with Keras's
//! defaults filled in. The spec loader fills them, the IR carries them, and the trainer and the
//! optimiser read them; they are plain data and use no other module.

/// The optimisers a spec may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Adam (β 0.9 / 0.999, ε 1e-7, as Keras).
    Adam,
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
}

impl Default for DataConfig {
    fn default() -> DataConfig {
        DataConfig {
            train: None,
            validation: None,
            validation_split: None,
            rescale: 1.0 / 255.0,
        }
    }
}
