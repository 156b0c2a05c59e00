//! Spec files: YAML text → [`SpecFile`] with the span of every key and value.
//!
//! serde_yaml validates the YAML and converts scalars to typed values; the span tree of
//! [`yaml`] (built from saphyr-parser's event markers) gives positions. Before either parser
//! runs, one linear scan refuses a file over [`MAX_SPEC_BYTES`] or nested deeper than
//! [`MAX_YAML_NESTING`]. Loading never fails on user mistakes: it returns what it could read
//! together with the diagnostics it found. [`read_spec_file`] reads a spec file from disk
//! without ever reading more than that limit.

mod guard;
mod keys;
mod load;
mod read;
mod schema;
mod typed;
pub mod yaml;

pub use guard::{MAX_SPEC_BYTES, MAX_YAML_NESTING};
pub use keys::{
    KeyDoc, AUGMENT_KEYS, DATA_KEYS, EARLY_STOPPING_KEYS, MONITORS, REDUCE_LR_KEYS, SCHEDULES,
    SCHEDULE_KEYS, TOP_KEYS, TRAIN_KEYS,
};
pub use load::load;
pub use read::{read_spec_file, SpecReadError};
pub use schema::{schema, schema_text};

use crate::settings::{DataConfig, TrainConfig};
use crate::text::{Ident, Literal, MappedText, Span};
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
    /// `blocks`: named blocks, in file order.
    pub blocks: Vec<BlockSource>,
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
    /// `name: value` pairs.
    pub args: Vec<DefaultArg>,
}

/// One `name: value` pair of a `defaults:` entry.
#[derive(Clone, Debug)]
pub struct DefaultArg {
    /// The argument's name.
    pub name: Ident,
    /// The value, read by the one literal parser.
    pub value: Literal,
    /// The value's characters.
    pub span: Span,
}

/// One entry of `blocks:` as written: the signature key and the body, each mapped to the file.
#[derive(Clone, Debug)]
pub struct BlockSource {
    /// The key (`basic(f, stride=1)`), decoded and mapped to file offsets.
    pub signature: MappedText,
    /// The key's characters.
    pub signature_span: Span,
    /// The body, in any scalar style, mapped to file offsets; `None` when it is not text
    /// (reported).
    pub body: Option<MappedText>,
    /// The body's characters.
    pub body_span: Span,
}
