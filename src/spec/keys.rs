//! The keys of the spec format with a line of documentation each, read by the loader (for
//! unknown-key suggestions), the language server (hover, completion) and the schema.

/// One key of the spec format.
#[derive(Clone, Copy, Debug)]
pub struct KeyDoc {
    /// The key.
    pub key: &'static str,
    /// What it means, one line.
    pub doc: &'static str,
}

/// Top-level keys.
pub const TOP_KEYS: &[KeyDoc] = &[
    KeyDoc { key: "name", doc: "the model's name (default: the file stem)" },
    KeyDoc { key: "input", doc: "input shape HxWxC, e.g. `224x224x3`; channels 1 (grayscale) or 3 (rgb)" },
    KeyDoc { key: "classes", doc: "number of classes; checked against the last layer and the data" },
    KeyDoc { key: "defaults", doc: "arguments a layer kind gets when the model omits them, e.g. `conv: {filters: 20, pad: same}`" },
    KeyDoc { key: "blocks", doc: "named blocks called like layers: `basic(f, stride=1): add(identity, conv3(f, stride=stride) -> bn relu -> conv3(f) -> bn) relu`" },
    KeyDoc { key: "model", doc: "the layer stack, e.g. `bn -> (conv2x2 relu -> pool2)x7 -> dense2 softmax`" },
    KeyDoc { key: "train", doc: "training settings: optimizer, lr, epochs, batch_size, loss, seed, weight_decay, label_smoothing, schedule, class_weight, early_stopping, reduce_lr_on_plateau" },
    KeyDoc { key: "data", doc: "image folders: train, validation or validation_split, rescale, cache_mb" },
    KeyDoc { key: "augment", doc: "random transforms of training images, as Keras's preprocessing layers: flip, rotation, zoom, translation, contrast, brightness" },
];

/// Keys of `train:`.
pub const TRAIN_KEYS: &[KeyDoc] = &[
    KeyDoc {
        key: "optimizer",
        doc: "adam | adamw | sgd | rmsprop (default adam)",
    },
    KeyDoc {
        key: "lr",
        doc: "learning rate (default 0.001)",
    },
    KeyDoc {
        key: "momentum",
        doc: "SGD momentum (default 0)",
    },
    KeyDoc {
        key: "nesterov",
        doc: "SGD with Nesterov momentum (default false)",
    },
    KeyDoc {
        key: "epochs",
        doc: "number of epochs (default 10)",
    },
    KeyDoc {
        key: "batch_size",
        doc: "images per batch (default 32)",
    },
    KeyDoc {
        key: "loss",
        doc: "categorical_crossentropy for a softmax head, binary_crossentropy for `dense1 sigmoid` (default: the one the head needs)",
    },
    KeyDoc {
        key: "seed",
        doc: "seed for shuffling, initialisation and dropout (default 0)",
    },
    KeyDoc {
        key: "weight_decay",
        doc: "decoupled weight decay, scaled by the learning rate, as Keras 3 applies it to every optimiser (default 0.004 for adamw, else 0)",
    },
    KeyDoc {
        key: "label_smoothing",
        doc: "label smoothing in [0, 1), as Keras's cross-entropy losses (default 0)",
    },
    KeyDoc {
        key: "schedule",
        doc: "learning-rate schedule, per step: `constant`, `{ kind: cosine, warmup_epochs: 2 }`, `{ kind: step, every: 10, factor: 0.5 }` or `{ kind: exponential, rate: 0.9 }`",
    },
    KeyDoc {
        key: "class_weight",
        doc: "weight of each class's images in the loss: `balanced` or a map by class name, e.g. `{ cat: 1.0, dog: 2.5 }`",
    },
    KeyDoc {
        key: "sync_bn",
        doc: "data-parallel runs only: batch-norm statistics over all ranks (default false)",
    },
    KeyDoc {
        key: "early_stopping",
        doc: "stop when a metric stops improving, as Keras's EarlyStopping: `{ monitor: val_loss, patience: 3 }`",
    },
    KeyDoc {
        key: "reduce_lr_on_plateau",
        doc: "lower the learning rate when a metric stops improving, as Keras's ReduceLROnPlateau: `{ factor: 0.5, patience: 2 }`",
    },
];

/// Keys people bring from Keras that strata has no use for, with what to do instead.
pub const KEY_NOTES: &[(&str, &str)] = &[(
    "restore_best_weights",
    "strata keeps the weights of the epoch with the lowest validation loss in the run folder's `best.safetensors`, which `predict` and `evaluate` read",
)];

/// Keys of `train.schedule:` (which apply depends on `kind`).
pub const SCHEDULE_KEYS: &[KeyDoc] = &[
    KeyDoc {
        key: "kind",
        doc: "constant | cosine | step | exponential",
    },
    KeyDoc {
        key: "warmup_epochs",
        doc: "cosine: epochs of linear warm-up from 0 to `lr` (default 0)",
    },
    KeyDoc {
        key: "alpha",
        doc: "cosine: the final learning rate as a fraction of `lr` (default 0)",
    },
    KeyDoc {
        key: "every",
        doc: "step: epochs between drops (default 10)",
    },
    KeyDoc {
        key: "factor",
        doc: "step: the rate is multiplied by this at each drop, in (0, 1] (default 0.5)",
    },
    KeyDoc {
        key: "rate",
        doc: "exponential: the rate is multiplied by this per epoch, in (0, 1] (default 0.9)",
    },
];

/// The schedule kinds.
pub const SCHEDULES: &[&str] = &["constant", "cosine", "step", "exponential"];

/// Keys of `augment:` (Keras's preprocessing layers).
pub const AUGMENT_KEYS: &[KeyDoc] = &[
    KeyDoc {
        key: "flip",
        doc: "horizontal | vertical | both (RandomFlip)",
    },
    KeyDoc {
        key: "rotation",
        doc: "± this fraction of a full turn, in [0, 1] (RandomRotation, fill reflect)",
    },
    KeyDoc {
        key: "zoom",
        doc: "± this fraction of the size, in [0, 1) (RandomZoom, fill reflect)",
    },
    KeyDoc {
        key: "translation",
        doc: "± this fraction of height and width, in [0, 1] (RandomTranslation, fill reflect)",
    },
    KeyDoc {
        key: "contrast",
        doc: "contrast factor drawn in [1 - c, 1 + c], c in [0, 1] (RandomContrast)",
    },
    KeyDoc {
        key: "brightness",
        doc: "± this fraction of the pixel range added, in [0, 1] (RandomBrightness)",
    },
];

/// The metrics `monitor` may name.
pub const MONITORS: &[&str] = &["val_loss", "val_accuracy", "loss", "accuracy"];

/// Keys of `train.early_stopping:` (Keras's `EarlyStopping` arguments and defaults).
pub const EARLY_STOPPING_KEYS: &[KeyDoc] = &[
    KeyDoc {
        key: "monitor",
        doc: "val_loss | val_accuracy | loss | accuracy (default val_loss); accuracies must rise, losses fall",
    },
    KeyDoc {
        key: "patience",
        doc: "epochs without improvement before the run stops (default 0: the first one)",
    },
    KeyDoc {
        key: "min_delta",
        doc: "the least change that counts as an improvement (default 0)",
    },
];

/// Keys of `train.reduce_lr_on_plateau:` (Keras's `ReduceLROnPlateau` arguments and defaults).
pub const REDUCE_LR_KEYS: &[KeyDoc] = &[
    KeyDoc {
        key: "monitor",
        doc: "val_loss | val_accuracy | loss | accuracy (default val_loss); accuracies must rise, losses fall",
    },
    KeyDoc {
        key: "factor",
        doc: "the learning rate is multiplied by this, in (0, 1) (default 0.1)",
    },
    KeyDoc {
        key: "patience",
        doc: "epochs without improvement before the learning rate is lowered (default 10)",
    },
    KeyDoc {
        key: "min_delta",
        doc: "the least change that counts as an improvement (default 0.0001)",
    },
    KeyDoc {
        key: "cooldown",
        doc: "epochs to wait after lowering before counting again (default 0)",
    },
    KeyDoc {
        key: "min_lr",
        doc: "the learning rate is never lowered below this (default 0)",
    },
];

/// Keys of `data:`.
pub const DATA_KEYS: &[KeyDoc] = &[
    KeyDoc {
        key: "train",
        doc: "folder of training images, one subfolder per class (relative to the spec file)",
    },
    KeyDoc {
        key: "validation",
        doc: "folder of validation images, same layout",
    },
    KeyDoc {
        key: "validation_split",
        doc: "fraction of the training images held out for validation, in (0, 1)",
    },
    KeyDoc {
        key: "rescale",
        doc: "factor for pixel values: a number or a fraction (default 1/255)",
    },
    KeyDoc {
        key: "cache_mb",
        doc: "budget of the decoded-image cache in MiB (default: a fraction of the machine's memory; `--cache-mb` overrides it)",
    },
];

/// The key names of a key table.
pub fn names(keys: &'static [KeyDoc]) -> Vec<&'static str> {
    keys.iter().map(|key| key.key).collect()
}
