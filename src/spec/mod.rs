//! Spec files: YAML text → [`SpecFile`] with the span of every key and value.
//!
//! serde_yaml validates the YAML and converts scalars to typed values; the span tree of
//! [`yaml`] (built from saphyr-parser's event markers) gives positions. Loading never fails on
//! user mistakes: it returns what it could read together with the diagnostics it found.

mod keys;
mod load;
pub mod scalar;
mod schema;
mod typed;
pub mod yaml;

pub use keys::{
    KeyDoc, DATA_KEYS, EARLY_STOPPING_KEYS, MONITORS, REDUCE_LR_KEYS, TOP_KEYS, TRAIN_KEYS,
};
pub use load::load;
pub use scalar::MappedText;
pub use schema::{schema, schema_text};

use crate::diagnostics::Span;
use crate::syntax::ast::{Ident, Value};
use std::collections::BTreeMap;

/// A spec file as read, before the model text is parsed.
#[derive(Clone, Debug)]
pub struct SpecFile {
    /// `name`, or the file stem given to [`load`].
    pub name: String,
    /// `input`: height, width, channels.
    pub input: Option<InputShape>,
    /// `classes`, if given.
    pub classes: Option<u64>,
    /// `defaults`: per layer kind, the arguments it gets when the model omits them.
    pub defaults: Vec<LayerDefaults>,
    /// `model`: the layer-stack text mapped to file offsets.
    pub model: Option<MappedText>,
    /// `train`.
    pub train: TrainConfig,
    /// `data`.
    pub data: DataConfig,
    /// Spans of keys and values by dotted path: `train.lr` is the value, `train.lr:key` the key.
    pub spans: BTreeMap<String, Span>,
}

impl SpecFile {
    /// The span of the value at a dotted path (`classes`, `train.loss`), if the file has it.
    pub fn value_span(&self, path: &str) -> Option<Span> {
        self.spans.get(path).copied()
    }

    /// The span of the key at a dotted path, if the file has it.
    pub fn key_span(&self, path: &str) -> Option<Span> {
        self.spans.get(&format!("{path}:key")).copied()
    }
}

/// The input shape of the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InputShape {
    /// Height in pixels.
    pub height: u64,
    /// Width in pixels.
    pub width: u64,
    /// 1 (grayscale) or 3 (rgb).
    pub channels: u64,
}

/// The default arguments of one layer kind, from `defaults:`.
#[derive(Clone, Debug)]
pub struct LayerDefaults {
    /// The layer name as written (`conv`).
    pub layer: Ident,
    /// `name = value` pairs.
    pub args: Vec<(Ident, Value)>,
}

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
