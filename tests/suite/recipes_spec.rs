//! The spec keys of training recipes and augmentation (`train.weight_decay`,
//! `label_smoothing`, `schedule`, `class_weight`, `sync_bn`, `data.cache_mb`, `augment:`):
//! what the loader reads, and the diagnostics for values it refuses.

use strata::settings::{AugmentConfig, ClassWeight, Flip, OptimizerKind, Schedule};

const HEAD: &str = "input: 28x28x1\nmodel: flatten -> dense10 softmax\n";

fn load(rest: &str) -> (strata::spec::SpecFile, Vec<String>) {
    let text = format!("{HEAD}{rest}");
    let (spec, diagnostics) = strata::spec::load(&text, "test");
    let messages = diagnostics.iter().map(|d| d.message.clone()).collect();
    (spec.expect("a mapping loads"), messages)
}

#[test]
fn defaults_leave_every_recipe_off() {
    let (spec, messages) = load("");
    assert!(messages.is_empty(), "{messages:?}");
    assert_eq!(spec.train.weight_decay(), 0.0);
    assert_eq!(spec.train.label_smoothing, 0.0);
    assert_eq!(spec.train.schedule, Schedule::Constant);
    assert_eq!(spec.train.class_weight, None);
    assert!(!spec.train.sync_bn);
    assert_eq!(spec.data.cache_mb, None);
    assert_eq!(spec.data.augment, AugmentConfig::default());
    assert!(!spec.data.augment.is_active());
}

#[test]
fn adamw_defaults_to_keras_weight_decay() {
    let (spec, messages) = load("train: { optimizer: adamw }\n");
    assert!(messages.is_empty(), "{messages:?}");
    assert_eq!(spec.train.optimizer, OptimizerKind::Adamw);
    assert_eq!(spec.train.weight_decay(), 0.004);
    let (spec, _) = load("train: { optimizer: sgd, weight_decay: 0.01 }\n");
    assert_eq!(spec.train.weight_decay(), 0.01);
}

#[test]
fn every_recipe_key_is_read() {
    let (spec, messages) = load(
        "train:\n  label_smoothing: 0.1\n  schedule: { kind: step, every: 3, factor: 0.25 }\n  \
         class_weight: { cat: 1.0, dog: 2.5 }\n  sync_bn: true\ndata:\n  cache_mb: 64\n\
         augment:\n  flip: both\n  rotation: 0.1\n  zoom: 0.2\n  translation: 0.05\n  \
         contrast: 0.3\n  brightness: 0.4\n",
    );
    assert!(messages.is_empty(), "{messages:?}");
    assert_eq!(spec.train.label_smoothing, 0.1);
    assert_eq!(
        spec.train.schedule,
        Schedule::Step {
            every: 3,
            factor: 0.25
        }
    );
    assert_eq!(
        spec.train.class_weight,
        Some(ClassWeight::ByName(vec![
            ("cat".to_string(), 1.0),
            ("dog".to_string(), 2.5)
        ]))
    );
    assert!(spec.train.sync_bn);
    assert_eq!(spec.data.cache_mb, Some(64));
    let augment = spec.data.augment;
    assert_eq!(augment.flip, Some(Flip::Both));
    assert_eq!(
        [
            augment.rotation,
            augment.zoom,
            augment.translation,
            augment.contrast,
            augment.brightness
        ],
        [0.1, 0.2, 0.05, 0.3, 0.4]
    );
    assert!(augment.is_active());
}

#[test]
fn schedules_by_name_take_their_defaults() {
    for (text, expected) in [
        ("constant", Schedule::Constant),
        (
            "cosine",
            Schedule::Cosine {
                warmup_epochs: 0.0,
                alpha: 0.0,
            },
        ),
        (
            "{ kind: cosine, warmup_epochs: 1.5, alpha: 0.1 }",
            Schedule::Cosine {
                warmup_epochs: 1.5,
                alpha: 0.1,
            },
        ),
        ("exponential", Schedule::Exponential { rate: 0.9 }),
        (
            "{ kind: exponential, rate: 0.5 }",
            Schedule::Exponential { rate: 0.5 },
        ),
    ] {
        let (spec, messages) = load(&format!("train: {{ schedule: {text} }}\n"));
        assert!(messages.is_empty(), "{text}: {messages:?}");
        assert_eq!(spec.train.schedule, expected, "{text}");
    }
    let (spec, _) = load("train: { class_weight: balanced }\n");
    assert_eq!(spec.train.class_weight, Some(ClassWeight::Balanced));
}

#[test]
fn bad_recipe_values_are_diagnostics_at_the_value() {
    for (rest, expected) in [
        (
            "train: { optimizer: adamx }\n",
            "`optimizer` must be one of",
        ),
        (
            "train: { weight_decay: 1.5 }\n",
            "`weight_decay` must be a number in [0, 1)",
        ),
        (
            "train: { label_smoothing: -0.1 }\n",
            "`label_smoothing` must be a number in [0, 1)",
        ),
        ("train: { schedule: cosin }\n", "`schedule` must be one of"),
        (
            "train: { schedule: { warmup_epochs: 2 } }\n",
            "`schedule` needs a `kind`",
        ),
        (
            "train: { schedule: { kind: cosine, every: 2 } }\n",
            "`every` is a setting of the `step` schedule",
        ),
        (
            "train: { schedule: { kind: step, factor: 2 } }\n",
            "`factor` must be a number in (0, 1]",
        ),
        (
            "train: { schedule: cosine, reduce_lr_on_plateau: true }\n",
            "`schedule` and `reduce_lr_on_plateau` both set the learning rate",
        ),
        (
            "train: { class_weight: 3 }\n",
            "`class_weight` must be `balanced` or a mapping",
        ),
        (
            "train: { class_weight: { cat: 0 } }\n",
            "`class_weight.cat` must be a positive number",
        ),
        (
            "data: { cache_mb: -1 }\n",
            "`cache_mb` must be a whole number",
        ),
        ("augment: { flip: sideways }\n", "`flip` must be one of"),
        (
            "augment: { rotation: 1.5 }\n",
            "`rotation` must be a number in [0, 1]",
        ),
        (
            "augment: { zoom: 1 }\n",
            "`zoom` must be a number in [0, 1)",
        ),
        (
            "augment: { shear: 0.1 }\n",
            "unknown key `shear` in `augment`",
        ),
    ] {
        let (_, messages) = load(rest);
        assert!(
            messages.iter().any(|m| m.contains(expected)),
            "{rest}: {messages:?}"
        );
    }
}
