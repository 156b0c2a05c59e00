//! Walks the span tree of a spec file into a [`SpecFile`], reporting unknown keys, missing
//! keys and invalid values at their characters.

use super::keys::{
    names, AUGMENT_KEYS, DATA_KEYS, EARLY_STOPPING_KEYS, KEY_NOTES, MONITORS, REDUCE_LR_KEYS,
    SCHEDULES, SCHEDULE_KEYS, TOP_KEYS, TRAIN_KEYS,
};
use super::typed::{describe, invalid_value, number_in, typed};
use super::yaml::{bom_len, duplicate_key, parse_tree, syntax_error, Node, TreeError};
use super::{BlockSource, DefaultArg, InputShape, LayerDefaults, SpecFile};
use crate::diagnostics::{codes, Diagnostic};
use crate::settings::{ClassWeight, DataConfig, EarlyStopping, ReduceLr, Schedule, TrainConfig};
use crate::suggest;
use crate::text::{parse_literal, Ident, MappedText, Span};
use saphyr_parser::ScalarStyle;

/// Reads a spec file's `text`. `default_name` (the file stem) names the model when the file
/// has no `name`. Returns the spec when the file is a YAML mapping, and every diagnostic
/// found; missing keys leave their fields `None`.
pub fn load(text: &str, default_name: &str) -> (Option<SpecFile>, Vec<Diagnostic>) {
    if let Err(diagnostic) = super::guard::check(text) {
        return (None, vec![diagnostic]);
    }
    // The span tree first: it stops at the first level too deep, where serde_yaml would read
    // the whole text (in time that grows faster than its length) before refusing it.
    let tree = match parse_tree(text) {
        Err(TreeError::TooDeep(diagnostic)) => return (None, vec![diagnostic]),
        tree => tree.map_err(TreeError::into_diagnostic),
    };
    let body_start = bom_len(text);
    if let Err(err) = serde_yaml::from_str::<serde_yaml::Value>(&text[body_start..]) {
        // serde_yaml gives a duplicate key no position; the span tree has both keys.
        if let Some(diagnostic) = tree.as_ref().ok().and_then(duplicate_key) {
            return (None, vec![diagnostic]);
        }
        return (None, vec![serde_syntax_error(text, body_start, &err)]);
    }
    let root = match tree {
        Ok(root) => root,
        Err(diagnostic) => return (None, vec![diagnostic]),
    };
    let mut loader = Loader {
        spec: SpecFile {
            name: default_name.to_string(),
            input: None,
            classes: None,
            defaults: Vec::new(),
            blocks: Vec::new(),
            model: None,
            train: TrainConfig::default(),
            data: DataConfig::default(),
            spans: Default::default(),
        },
        diagnostics: Vec::new(),
        text,
    };
    match root {
        Some(Node::Map { entries, .. }) => loader.top(&entries),
        Some(other) if !other.is_null() => {
            let found = describe(&other);
            loader.diagnostics.push(
                invalid_value(
                    &other,
                    "a spec file must be a mapping of keys".to_string(),
                    format!("found {found}"),
                )
                .with_help("start with `input: 224x224x3` and `model: …` lines"),
            );
            return (None, loader.diagnostics);
        }
        _ => {}
    }
    loader.require_keys();
    (Some(loader.spec), loader.diagnostics)
}

/// Turns serde_yaml's error into a `strata::yaml::syntax` diagnostic at its location;
/// serde_yaml read the text after its first `body_start` bytes (a byte-order mark).
fn serde_syntax_error(text: &str, body_start: usize, err: &serde_yaml::Error) -> Diagnostic {
    let mut offset = err.location().map_or(body_start, |location| {
        (body_start + location.index()).min(text.len())
    });
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let detail = err.to_string();
    let detail = detail
        .split(" at line ")
        .next()
        .unwrap_or(&detail)
        .to_string();
    syntax_error(&detail, Span::new(offset, offset))
}

/// The walk's state.
struct Loader<'a> {
    spec: SpecFile,
    diagnostics: Vec<Diagnostic>,
    text: &'a str,
}

impl Loader<'_> {
    fn top(&mut self, entries: &[(Node, Node)]) {
        for (key, value) in entries {
            let Some(name) = self.key_name(key, "", &names(TOP_KEYS)) else {
                continue;
            };
            self.record(&name, key, value);
            let result = match name.as_str() {
                "name" => typed::<String>(value, "name", "text").map(|v| self.spec.name = v),
                "input" => input_shape(value).map(|v| self.spec.input = Some(v)),
                "classes" => {
                    number_in(value, "classes", "a whole number of at least 2", |n| n >= 2)
                        .map(|v| self.spec.classes = Some(v))
                }
                "defaults" => self.defaults(value),
                "blocks" => self.blocks(value),
                "model" => {
                    scalar_text(self.text, value, "model").map(|v| self.spec.model = Some(v))
                }
                "train" => self.section(value, "train", TRAIN_KEYS, Self::train_key),
                "data" => self.section(value, "data", DATA_KEYS, Self::data_key),
                "augment" => self.section(value, "augment", AUGMENT_KEYS, Self::augment_key),
                _ => Ok(()),
            };
            if let Err(diagnostic) = result {
                self.diagnostics.push(*diagnostic);
            }
        }
        self.check_validation_choice();
        self.check_schedule_choice();
    }

    /// The key's text if it is one of `known`; otherwise reports it and returns `None`.
    fn key_name(&mut self, key: &Node, section: &str, known: &[&'static str]) -> Option<String> {
        let text = key.as_scalar().unwrap_or_default().to_string();
        if known.contains(&text.as_str()) {
            return Some(text);
        }
        let place = if section.is_empty() {
            String::new()
        } else {
            format!(" in `{section}`")
        };
        let mut diagnostic = Diagnostic::error(
            codes::SPEC_UNKNOWN_KEY,
            format!("unknown key `{text}`{place}"),
        )
        .with_primary(key.span(), "not a key of the spec format");
        let note = KEY_NOTES
            .iter()
            .find(|(key, _)| *key == text)
            .map(|(_, note)| note.to_string());
        diagnostic.help = note
            .or_else(|| suggest::help_for(&text, known))
            .or_else(|| Some(format!("the keys{place} are {}", suggest::one_of(known))));
        if let Some(best) = suggest::did_you_mean(&text, known.iter().copied()) {
            if best.certain {
                diagnostic = diagnostic.with_replacement(key.span(), best.word);
            }
        }
        self.diagnostics.push(diagnostic);
        None
    }

    fn record(&mut self, path: &str, key: &Node, value: &Node) {
        self.spec.spans.insert(format!("{path}:key"), key.span());
        self.spec.spans.insert(path.to_string(), value.span());
    }

    /// Walks a nested mapping section, handing each known key to `on_key`.
    fn section(
        &mut self,
        value: &Node,
        section: &str,
        keys: &'static [super::KeyDoc],
        on_key: fn(&mut Self, &str, &Node) -> Result<(), Box<Diagnostic>>,
    ) -> Result<(), Box<Diagnostic>> {
        if value.is_null() {
            return Ok(());
        }
        let Node::Map { entries, .. } = value else {
            return Err(not_a_mapping(value, section));
        };
        for (key, item) in entries {
            let Some(name) = self.key_name(key, section, &names(keys)) else {
                continue;
            };
            self.record(&format!("{section}.{name}"), key, item);
            if let Err(diagnostic) = on_key(self, &name, item) {
                self.diagnostics.push(*diagnostic);
            }
        }
        Ok(())
    }

    fn train_key(&mut self, key: &str, value: &Node) -> Result<(), Box<Diagnostic>> {
        match key {
            "early_stopping" => {
                if switched_on(value, key, "{ monitor: val_loss, patience: 3 }")? {
                    self.spec.train.early_stopping = Some(EarlyStopping::default());
                    self.nested(value, key, EARLY_STOPPING_KEYS, Self::early_stopping_key);
                }
                return Ok(());
            }
            "reduce_lr_on_plateau" => {
                if switched_on(value, key, "{ factor: 0.5, patience: 2 }")? {
                    self.spec.train.reduce_lr = Some(ReduceLr::default());
                    self.nested(value, key, REDUCE_LR_KEYS, Self::reduce_lr_key);
                }
                return Ok(());
            }
            "schedule" => return self.schedule(value),
            "class_weight" => {
                // The class names' spans, for the check against the data's classes when
                // training starts.
                if let Node::Map { entries, .. } = value {
                    for (name, weight) in entries {
                        if let Some(text) = name.as_scalar() {
                            self.record(&format!("train.class_weight.{text}"), name, weight);
                        }
                    }
                }
                self.spec.train.class_weight = class_weight(value)?;
                return Ok(());
            }
            _ => {}
        }
        let train = &mut self.spec.train;
        match key {
            "optimizer" => {
                train.optimizer = choice(value, "optimizer", &["adam", "adamw", "sgd", "rmsprop"])?
            }
            "weight_decay" => {
                train.weight_decay = Some(number_in(
                    value,
                    "weight_decay",
                    "a number in [0, 1)",
                    |v: f64| (0.0..1.0).contains(&v),
                )?)
            }
            "label_smoothing" => {
                train.label_smoothing =
                    number_in(value, "label_smoothing", "a number in [0, 1)", |v: f64| {
                        (0.0..1.0).contains(&v)
                    })?
            }
            "sync_bn" => train.sync_bn = typed(value, "sync_bn", "`true` or `false`")?,
            "lr" => train.lr = number_in(value, "lr", LR_RANGE, |v: f64| v > 0.0 && v <= MAX_LR)?,
            "momentum" => {
                train.momentum = number_in(value, "momentum", "a number in [0, 1)", |v: f64| {
                    (0.0..1.0).contains(&v)
                })?
            }
            "nesterov" => train.nesterov = typed(value, "nesterov", "`true` or `false`")?,
            "epochs" => {
                train.epochs =
                    number_in(value, "epochs", "a whole number of at least 1", |v: u64| {
                        v >= 1
                    })?
            }
            "batch_size" => {
                train.batch_size = number_in(
                    value,
                    "batch_size",
                    "a whole number of at least 1",
                    |v: u64| v >= 1,
                )?
            }
            "loss" => {
                train.loss = choice(
                    value,
                    "loss",
                    &["categorical_crossentropy", "binary_crossentropy"],
                )?
            }
            "seed" => train.seed = typed(value, "seed", "a whole number of at least 0")?,
            _ => {}
        }
        Ok(())
    }

    /// Walks a mapping nested in `train:` (`early_stopping`); a `true` or empty value has no
    /// keys to walk.
    fn nested(
        &mut self,
        value: &Node,
        key: &str,
        keys: &'static [super::KeyDoc],
        on_key: fn(&mut Self, &str, &Node) -> Result<(), Box<Diagnostic>>,
    ) {
        if matches!(value, Node::Map { .. }) {
            let section = format!("train.{key}");
            if let Err(diagnostic) = self.section(value, &section, keys, on_key) {
                self.diagnostics.push(*diagnostic);
            }
        }
    }

    /// `train.schedule`: a kind's name alone (`cosine`, with its defaults) or a mapping with
    /// `kind:` and that kind's settings.
    fn schedule(&mut self, value: &Node) -> Result<(), Box<Diagnostic>> {
        let kind_node = match value {
            Node::Map { entries, .. } => entries
                .iter()
                .find(|(key, _)| key.as_scalar() == Some("kind"))
                .map(|(_, kind)| kind),
            _ => Some(value),
        };
        let Some(kind_node) = kind_node else {
            return Err(Box::new(
                invalid_value(
                    value,
                    "`schedule` needs a `kind`".to_string(),
                    "no `kind:` in this mapping".to_string(),
                )
                .with_help(format!(
                    "write `schedule: {{ kind: cosine, warmup_epochs: 2 }}`; the kinds are {}",
                    suggest::one_of(SCHEDULES)
                )),
            ));
        };
        /// The kinds as serde reads them.
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "lowercase")]
        enum Kind {
            Constant,
            Cosine,
            Step,
            Exponential,
        }
        self.spec.train.schedule = match choice(kind_node, "schedule", SCHEDULES)? {
            Kind::Constant => Schedule::Constant,
            Kind::Cosine => Schedule::Cosine {
                warmup_epochs: 0.0,
                alpha: 0.0,
            },
            Kind::Step => Schedule::Step {
                every: 10,
                factor: 0.5,
            },
            Kind::Exponential => Schedule::Exponential { rate: 0.9 },
        };
        if matches!(value, Node::Map { .. }) {
            let section = "train.schedule".to_string();
            if let Err(diagnostic) =
                self.section(value, &section, SCHEDULE_KEYS, Self::schedule_key)
            {
                self.diagnostics.push(*diagnostic);
            }
        }
        Ok(())
    }

    fn schedule_key(&mut self, key: &str, value: &Node) -> Result<(), Box<Diagnostic>> {
        let schedule = &mut self.spec.train.schedule;
        let fraction = |key: &str| {
            number_in(value, key, "a number in (0, 1]", |v: f64| {
                v > 0.0 && v <= 1.0
            })
        };
        match (key, schedule) {
            ("kind", _) => {}
            ("warmup_epochs", Schedule::Cosine { warmup_epochs, .. }) => {
                *warmup_epochs = non_negative(value, key)?
            }
            ("alpha", Schedule::Cosine { alpha, .. }) => {
                *alpha = number_in(value, key, "a number in [0, 1]", |v: f64| {
                    (0.0..=1.0).contains(&v)
                })?
            }
            ("every", Schedule::Step { every, .. }) => {
                *every = number_in(value, key, "a whole number of at least 1", |v: u64| v >= 1)?
            }
            ("factor", Schedule::Step { factor, .. }) => *factor = fraction(key)?,
            ("rate", Schedule::Exponential { rate }) => *rate = fraction(key)?,
            (_, schedule) => {
                let kind = schedule.name();
                let applies = match key {
                    "warmup_epochs" | "alpha" => "cosine",
                    "every" | "factor" => "step",
                    _ => "exponential",
                };
                return Err(Box::new(
                    invalid_value(
                        value,
                        format!("`{key}` is a setting of the `{applies}` schedule"),
                        format!("this schedule is `{kind}`"),
                    )
                    .with_help(format!(
                        "remove `{key}`, or write `kind: {applies}` to use it"
                    )),
                ));
            }
        }
        Ok(())
    }

    fn augment_key(&mut self, key: &str, value: &Node) -> Result<(), Box<Diagnostic>> {
        let augment = &mut self.spec.data.augment;
        let factor = |key: &str, below_one: bool| -> Result<f64, Box<Diagnostic>> {
            if below_one {
                number_in(value, key, "a number in [0, 1)", |v: f64| {
                    (0.0..1.0).contains(&v)
                })
            } else {
                number_in(value, key, "a number in [0, 1]", |v: f64| {
                    (0.0..=1.0).contains(&v)
                })
            }
        };
        match key {
            "flip" => {
                augment.flip = if value.is_null() || value.as_scalar() == Some("false") {
                    None
                } else {
                    Some(choice(value, "flip", &["horizontal", "vertical", "both"])?)
                }
            }
            "rotation" => augment.rotation = factor(key, false)?,
            "zoom" => augment.zoom = factor(key, true)?,
            "translation" => augment.translation = factor(key, false)?,
            "contrast" => augment.contrast = factor(key, false)?,
            "brightness" => augment.brightness = factor(key, false)?,
            _ => {}
        }
        Ok(())
    }

    fn early_stopping_key(&mut self, key: &str, value: &Node) -> Result<(), Box<Diagnostic>> {
        let Some(settings) = self.spec.train.early_stopping.as_mut() else {
            return Ok(());
        };
        match key {
            "monitor" => settings.monitor = choice(value, "monitor", MONITORS)?,
            "patience" => settings.patience = typed(value, "patience", WHOLE)?,
            "min_delta" => settings.min_delta = non_negative(value, "min_delta")?,
            _ => {}
        }
        Ok(())
    }

    fn reduce_lr_key(&mut self, key: &str, value: &Node) -> Result<(), Box<Diagnostic>> {
        let Some(settings) = self.spec.train.reduce_lr.as_mut() else {
            return Ok(());
        };
        match key {
            "monitor" => settings.monitor = choice(value, "monitor", MONITORS)?,
            "factor" => {
                settings.factor = number_in(
                    value,
                    "factor",
                    "a number between 0 and 1 (the rate is multiplied by it)",
                    |v: f64| v > 0.0 && v < 1.0,
                )?
            }
            "patience" => settings.patience = typed(value, "patience", WHOLE)?,
            "min_delta" => settings.min_delta = non_negative(value, "min_delta")?,
            "cooldown" => settings.cooldown = typed(value, "cooldown", WHOLE)?,
            "min_lr" => {
                settings.min_lr = number_in(value, "min_lr", "a number from 0 to 10", |v: f64| {
                    (0.0..=MAX_LR).contains(&v)
                })?
            }
            _ => {}
        }
        Ok(())
    }

    fn data_key(&mut self, key: &str, value: &Node) -> Result<(), Box<Diagnostic>> {
        let data = &mut self.spec.data;
        match key {
            "train" => data.train = Some(typed(value, "train", "a folder path")?),
            "validation" => data.validation = Some(typed(value, "validation", "a folder path")?),
            "validation_split" => {
                data.validation_split = Some(number_in(
                    value,
                    "validation_split",
                    "a number between 0 and 1",
                    |v: f64| v > 0.0 && v < 1.0,
                )?)
            }
            "rescale" => data.rescale = rescale(value)?,
            "cache_mb" => data.cache_mb = Some(typed(value, "cache_mb", WHOLE)?),
            _ => {}
        }
        Ok(())
    }

    fn defaults(&mut self, value: &Node) -> Result<(), Box<Diagnostic>> {
        if value.is_null() {
            return Ok(());
        }
        let Node::Map { entries, .. } = value else {
            return Err(not_a_mapping(value, "defaults"));
        };
        for (layer, args) in entries {
            let layer = ident(layer);
            let Node::Map {
                entries: arg_entries,
                ..
            } = args
            else {
                let message = format!("`defaults.{}` must be a mapping of arguments", layer.text);
                let found = format!("found {}", describe(args));
                self.diagnostics.push(
                    invalid_value(args, message, found)
                        .with_help(format!("write `{}: {{ name: value }}`", layer.text)),
                );
                continue;
            };
            let mut args = Vec::new();
            for (name, value) in arg_entries {
                match value {
                    Node::Scalar { value: text, .. } => args.push(DefaultArg {
                        name: ident(name),
                        value: parse_literal(text),
                        span: value.span(),
                    }),
                    _ => self.diagnostics.push(
                        invalid_value(
                            value,
                            format!(
                                "`defaults.{}.{}` must be a single value",
                                layer.text,
                                name.as_scalar().unwrap_or_default()
                            ),
                            format!("found {}", describe(value)),
                        )
                        .with_help("write it like `pad: same` or `filters: 32`"),
                    ),
                }
            }
            self.spec.defaults.push(LayerDefaults { layer, args });
        }
        Ok(())
    }

    /// `blocks:`: a mapping of signature keys to bodies, each kept as text mapped to the file
    /// (the compiler parses them).
    fn blocks(&mut self, value: &Node) -> Result<(), Box<Diagnostic>> {
        if value.is_null() {
            return Ok(());
        }
        let Node::Map { entries, .. } = value else {
            return Err(Box::new(
                invalid_value(
                    value,
                    "`blocks` must be a mapping of block signatures to bodies".to_string(),
                    format!("found {}", describe(value)),
                )
                .with_help("write `blocks:` then lines like `  basic(f): conv3(f) -> bn relu`"),
            ));
        };
        for (key, body) in entries {
            let signature = match scalar_text(self.text, key, "a block signature") {
                Ok(signature) => signature,
                Err(diagnostic) => {
                    self.diagnostics.push(*diagnostic);
                    continue;
                }
            };
            let body_text = match scalar_text(self.text, body, "a block body") {
                Ok(text) => Some(text),
                Err(diagnostic) => {
                    self.diagnostics.push(*diagnostic);
                    None
                }
            };
            self.spec.blocks.push(BlockSource {
                signature,
                signature_span: key.span(),
                body: body_text,
                body_span: body.span(),
            });
        }
        Ok(())
    }

    fn check_validation_choice(&mut self) {
        let data = &self.spec.data;
        if data.validation.is_some() && data.validation_split.is_some() {
            let span = self
                .spec
                .value_span("data.validation_split")
                .unwrap_or_default();
            let other = self.spec.key_span("data.validation").unwrap_or_default();
            self.diagnostics.push(
                Diagnostic::error(
                    codes::SPEC_INVALID_VALUE,
                    "`validation` and `validation_split` are both given",
                )
                .with_primary(span, "a split of the training folder")
                .with_secondary(other, "a validation folder")
                .with_help("keep one of the two"),
            );
        }
    }

    /// Keras cannot lower the rate on a plateau while a schedule sets it each step; neither can
    /// strata.
    fn check_schedule_choice(&mut self) {
        let train = &self.spec.train;
        if train.reduce_lr.is_some() && train.schedule != Schedule::Constant {
            let span = self.spec.value_span("train.schedule").unwrap_or_default();
            let other = self
                .spec
                .key_span("train.reduce_lr_on_plateau")
                .unwrap_or_default();
            self.diagnostics.push(
                Diagnostic::error(
                    codes::SPEC_INVALID_VALUE,
                    "`schedule` and `reduce_lr_on_plateau` both set the learning rate",
                )
                .with_primary(span, "sets the rate every step")
                .with_secondary(other, "lowers the rate on a plateau")
                .with_help("keep one of the two"),
            );
        }
    }

    fn require_keys(&mut self) {
        for (key, present, example) in [
            (
                "input",
                self.spec.input.is_some() || self.spec.spans.contains_key("input"),
                "input: 224x224x3",
            ),
            (
                "model",
                self.spec.model.is_some() || self.spec.spans.contains_key("model"),
                "model: bn -> dense2 softmax",
            ),
        ] {
            if !present {
                self.diagnostics.push(
                    Diagnostic::error(codes::SPEC_MISSING_KEY, format!("missing key `{key}`"))
                        .with_primary(Span::new(0, 0), format!("this spec has no `{key}`"))
                        .with_help(format!("add a line `{example}`")),
                );
            }
        }
    }
}

/// An `invalid_value` for a section that is not a mapping.
fn not_a_mapping(value: &Node, section: &str) -> Box<Diagnostic> {
    Box::new(
        invalid_value(
            value,
            format!("`{section}` must be a mapping of keys"),
            format!("found {}", describe(value)),
        )
        .with_help(format!(
            "write `{section}:` followed by indented `key: value` lines"
        )),
    )
}

/// The largest `lr` and `min_lr`. Rates above 1 already diverge for every optimizer here; the
/// bound keeps a typo such as `lr: 1e39` (infinite in 32 bits) from reaching the trainer.
const MAX_LR: f64 = 10.0;

/// What `lr` must be.
const LR_RANGE: &str = "a positive number up to 10";

/// The largest `rescale`: pixels (at most 255) then stay below 255,000, so that their squares
/// summed over a whole batch (batch norm's variance) stay far inside `f32` range.
const MAX_RESCALE: f64 = 1000.0;

/// The largest weight of a class in the loss.
const MAX_CLASS_WEIGHT: f64 = 1e6;

/// What a count such as `patience` must be.
const WHOLE: &str = "a whole number of at least 0";

/// A number of at least 0 (`min_delta`, `min_lr`).
fn non_negative(value: &Node, key: &str) -> Result<f64, Box<Diagnostic>> {
    number_in(value, key, "a number of at least 0", |v: f64| {
        v >= 0.0 && v.is_finite()
    })
}

/// Whether an optional feature of `train:` such as `early_stopping` is on: a mapping of its
/// settings, an empty value or `true` turn it on with Keras's defaults; `false` leaves it off.
fn switched_on(value: &Node, key: &str, example: &str) -> Result<bool, Box<Diagnostic>> {
    match value {
        Node::Map { .. } => Ok(true),
        _ if value.is_null() => Ok(true),
        _ => typed::<bool>(
            value,
            &format!("train.{key}"),
            "a mapping of settings, `true` or `false`",
        )
        .map_err(|mut diagnostic| {
            diagnostic.help = Some(format!("write `{key}: {example}`"));
            diagnostic
        }),
    }
}

/// `input`: `HxWxC` text or a list `[H, W, C]`.
fn input_shape(value: &Node) -> Result<InputShape, Box<Diagnostic>> {
    let dims: Option<Vec<u64>> = match value {
        Node::Seq { items, .. } => items
            .iter()
            .map(|item| typed::<u64>(item, "input", "").ok())
            .collect(),
        Node::Scalar { value: text, .. } => text
            .split(['x', 'X'])
            .map(|part| part.trim().parse().ok())
            .collect(),
        Node::Map { .. } => None,
    };
    let bad = |label: String| {
        Box::new(
            invalid_value(
                value,
                "`input` must be height x width x channels".to_string(),
                label,
            )
            .with_help("write it like `224x224x3`; channels are 1 (grayscale) or 3 (rgb)"),
        )
    };
    match dims.as_deref() {
        Some(&[height, width, channels]) => {
            if height == 0 || width == 0 {
                Err(bad("height and width must be at least 1".to_string()))
            } else if channels != 1 && channels != 3 {
                Err(bad(format!(
                    "{channels} channels: images have 1 (grayscale) or 3 (rgb)"
                )))
            } else {
                Ok(InputShape {
                    height,
                    width,
                    channels,
                })
            }
        }
        _ => Err(bad(format!("found {}", describe(value)))),
    }
}

/// A text scalar in any style (`model`, a block's signature or body), mapped to file offsets;
/// `what` names it in the message when the node is not text.
fn scalar_text(text: &str, value: &Node, what: &str) -> Result<MappedText, Box<Diagnostic>> {
    match value {
        Node::Scalar {
            value: decoded,
            style,
            span,
        } if !value.is_null() => {
            let inner = match style {
                ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => Span::new(
                    span.offset + 1,
                    span.end().saturating_sub(1).max(span.offset + 1),
                ),
                _ => *span,
            };
            Ok(MappedText::new(text, inner, decoded))
        }
        _ => {
            let (message, help) = match what {
                "model" => (
                    "`model` must be the layer-stack text".to_string(),
                    "write it like `model: bn -> conv3(32) relu -> pool2 -> dense10 softmax`",
                ),
                _ => (
                    format!("{what} must be text"),
                    "write a block like `basic(f): conv3(f) -> bn relu`",
                ),
            };
            Err(Box::new(
                invalid_value(value, message, format!("found {}", describe(value))).with_help(help),
            ))
        }
    }
}

/// A text value that must be one of `options` (serde converts it to the enum).
fn choice<T: serde::de::DeserializeOwned>(
    value: &Node,
    key: &str,
    options: &[&'static str],
) -> Result<T, Box<Diagnostic>> {
    typed(value, key, &format!("one of {}", suggest::one_of(options))).map_err(|mut diagnostic| {
        let written = value.as_scalar().unwrap_or_default();
        if let Some(help) = suggest::help_for(written, options) {
            diagnostic.help = Some(help);
        }
        match suggest::did_you_mean(written, options.iter().copied()) {
            Some(best) if best.certain => {
                Box::new(diagnostic.with_replacement(value.span(), best.word))
            }
            _ => diagnostic,
        }
    })
}

/// `train.class_weight`: `balanced`, or a mapping of class names to positive weights.
fn class_weight(value: &Node) -> Result<Option<ClassWeight>, Box<Diagnostic>> {
    let bad = |found: String| {
        Box::new(
            invalid_value(
                value,
                "`class_weight` must be `balanced` or a mapping of class names to weights"
                    .to_string(),
                found,
            )
            .with_help("write `class_weight: balanced` or `class_weight: { cat: 1.0, dog: 2.5 }`"),
        )
    };
    match value {
        _ if value.is_null() => Ok(None),
        Node::Scalar { value: text, .. } if text == "balanced" => Ok(Some(ClassWeight::Balanced)),
        Node::Map { entries, .. } => {
            let mut weights = Vec::with_capacity(entries.len());
            for (name, weight) in entries {
                let Some(name) = name.as_scalar() else {
                    return Err(bad(format!("a class name that is {}", describe(name))));
                };
                let weight = number_in(
                    weight,
                    &format!("class_weight.{name}"),
                    "a positive number up to 1000000",
                    |v: f64| v > 0.0 && v <= MAX_CLASS_WEIGHT,
                )?;
                weights.push((name.to_string(), weight));
            }
            Ok(Some(ClassWeight::ByName(weights)))
        }
        _ => Err(bad(format!("found {}", describe(value)))),
    }
}

/// `rescale`: a positive number or a fraction `a/b`.
fn rescale(value: &Node) -> Result<f64, Box<Diagnostic>> {
    let parsed = typed::<f64>(value, "rescale", "a number").ok().or_else(|| {
        let (num, den) = value.as_scalar()?.split_once('/')?;
        let (num, den): (f64, f64) = (num.trim().parse().ok()?, den.trim().parse().ok()?);
        (den != 0.0).then_some(num / den)
    });
    match parsed {
        Some(factor) if factor > 0.0 && factor <= MAX_RESCALE => Ok(factor),
        _ => {
            let found = match parsed {
                Some(_) => format!("{} is out of range", value.as_scalar().unwrap_or_default()),
                None => format!("found {}", describe(value)),
            };
            Err(Box::new(
                invalid_value(
                    value,
                    "`rescale` must be a positive number or a fraction up to 1000".to_string(),
                    found,
                )
                .with_help("write `rescale: 1/255` to map pixels to [0, 1]"),
            ))
        }
    }
}

/// A scalar node as an identifier (for keys of `defaults`).
fn ident(node: &Node) -> Ident {
    Ident {
        text: node.as_scalar().unwrap_or_default().to_string(),
        span: node.span(),
    }
}
