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
    KeyDoc { key: "model", doc: "the layer stack, e.g. `bn -> (conv2x2 relu -> pool2)x7 -> dense2 softmax`" },
    KeyDoc { key: "train", doc: "training settings: optimizer, lr, epochs, batch_size, loss, seed" },
    KeyDoc { key: "data", doc: "image folders: train, validation or validation_split, rescale" },
];

/// Keys of `train:`.
pub const TRAIN_KEYS: &[KeyDoc] = &[
    KeyDoc {
        key: "optimizer",
        doc: "adam | sgd | rmsprop (default adam)",
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
        doc: "categorical_crossentropy (the default and only loss)",
    },
    KeyDoc {
        key: "seed",
        doc: "seed for shuffling, initialisation and dropout (default 0)",
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
];

/// The key names of a key table.
pub fn names(keys: &'static [KeyDoc]) -> Vec<&'static str> {
    keys.iter().map(|key| key.key).collect()
}
