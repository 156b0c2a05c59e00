//! strata's forward pass on the five graph example specs (`specs/examples/{resnet_small,
//! mobilenetv2_small,inception_small,se_sepconv,densenet_small}.yaml`) against Keras.
//!
//! `tests/data/reference_graph_forward.json` is written by `scripts/reference_graph_forward.py`
//! (see its header): per model, every checkpoint tensor as a formula
//! `f32(offset + scale * sin(a*k + b + c*k*k))` over its row-major index `k` in strata's
//! checkpoint layout, the input images as the same kind of formula (NHWC, already in [0, 1]),
//! the arguments of the Keras layers, and Keras's probabilities computed in float64 from the
//! same f32 weights and images. This test regenerates the weights and images, checks that the
//! reference describes the model strata compiles (tensor names and shapes, layer arguments,
//! the regenerated values' sums), builds the network from the checkpoint and compares
//! `predict` with Keras within the file's tolerance (2e-4).

use crate::common;

use serde_json::{json, Value};
use strata::backend::checkpoint::{expected_tensors, Checkpoint, NamedTensor};
use strata::backend::network::Network;
use strata::ir::{Head, Model, Op, PoolKind};

fn reference() -> Value {
    let path = common::root().join("tests/data/reference_graph_forward.json");
    let text = std::fs::read_to_string(&path).expect("tests/data/reference_graph_forward.json");
    serde_json::from_str(&text).expect("reference json")
}

fn f64_of(value: &Value, key: &str) -> f64 {
    value[key]
        .as_f64()
        .unwrap_or_else(|| panic!("`{key}` is not a number in {value}"))
}

fn dims(value: &Value) -> Vec<usize> {
    value
        .as_array()
        .expect("a shape")
        .iter()
        .map(|d| d.as_u64().expect("a dimension") as usize)
        .collect()
}

/// The reference's formula: `n` values `f32(offset + scale * sin(((a*k) + b) + (c*(k*k))))`,
/// evaluated in f64 in exactly this order (as the Python script does), rounded once.
fn formula(n: usize, entry: &Value) -> Vec<f32> {
    let (a, b, c) = (f64_of(entry, "a"), f64_of(entry, "b"), f64_of(entry, "c"));
    let (scale, offset) = (f64_of(entry, "scale"), f64_of(entry, "offset"));
    (0..n)
        .map(|k| {
            let k = k as f64;
            (offset + scale * (a * k + b + c * (k * k)).sin()) as f32
        })
        .collect()
}

/// Checks the regenerated values against the sum the script recorded: a wrong formula, order
/// or parameter moves it far more than the tolerance (summation order and the 12 digits the
/// file keeps account for ~1e-12 of it).
fn check_sum(what: &str, values: &[f32], entry: &Value) {
    let sum: f64 = values.iter().map(|v| f64::from(*v)).sum();
    let want = f64_of(entry, "sum");
    let tolerance = 1e-8 * values.len().max(1) as f64;
    assert!(
        (sum - want).abs() <= tolerance,
        "{what}: the regenerated values sum to {sum}, the reference's to {want}"
    );
}

/// The arguments of `op` under the names `keras_layers` uses.
fn op_arguments(op: &Op) -> Value {
    let pair = |(h, w): (usize, usize)| json!([h, w]);
    match *op {
        Op::Conv {
            filters,
            kernel,
            stride,
            pad,
            bias,
            groups,
        } => json!({"op": "conv", "filters": filters, "kernel": pair(kernel),
                    "stride": pair(stride), "pad": pad.name(), "bias": bias, "groups": groups}),
        Op::DepthwiseConv {
            multiplier,
            kernel,
            stride,
            pad,
            bias,
        } => json!({"op": "dwconv", "multiplier": multiplier, "kernel": pair(kernel),
                    "stride": pair(stride), "pad": pad.name(), "bias": bias}),
        Op::SeparableConv {
            filters,
            multiplier,
            kernel,
            stride,
            pad,
            bias,
        } => json!({"op": "sepconv", "filters": filters, "multiplier": multiplier,
                    "kernel": pair(kernel), "stride": pair(stride), "pad": pad.name(),
                    "bias": bias}),
        Op::Dense { units, bias } => json!({"op": "dense", "units": units, "bias": bias}),
        Op::BatchNorm { momentum, eps } => json!({"op": "bn", "eps": eps, "momentum": momentum}),
        Op::Pool {
            kind,
            size,
            stride,
            pad,
        } => json!({"op": if kind == PoolKind::Max { "pool" } else { "avgpool" },
                    "size": pair(size), "stride": pair(stride), "pad": pad.name()}),
        Op::GlobalPool { kind } => {
            json!({"op": if kind == PoolKind::Avg { "gap" } else { "globalmaxpool" }})
        }
        ref other => json!({ "op": format!("{other:?}") }),
    }
}

/// Every argument the Keras layer has equals strata's (floats to 1e-12 relative).
fn check_arguments(example: &str, model: &Model, keras_layers: &Value) {
    let entries = keras_layers.as_array().expect("keras_layers");
    assert!(!entries.is_empty(), "{example}: no keras_layers");
    for entry in entries {
        let index = entry["index"].as_u64().expect("index") as usize;
        let layer = &model.layers[index];
        let ours = op_arguments(&layer.op);
        for (key, want) in entry.as_object().expect("an object") {
            if key == "index" || key == "keras" {
                continue;
            }
            let got = &ours[key.as_str()];
            let same = match (got.as_f64(), want.as_f64()) {
                (Some(g), Some(w)) => (g - w).abs() <= 1e-12 * w.abs().max(1e-300),
                _ => got == want,
            };
            assert!(
                same,
                "{example}: layer {index} `{}`: `{key}` is {got} in strata, {want} in Keras's {} \
                 ({ours} against {entry})",
                layer.name, entry["keras"]
            );
        }
    }
}

/// Everything about one example; see the module documentation.
fn check_model(example: &str) {
    let reference = reference();
    let tolerance = f64_of(&reference, "tolerance");
    let entry = reference["models"]
        .as_array()
        .expect("models")
        .iter()
        .find(|m| m["example"] == example)
        .unwrap_or_else(|| panic!("{example} is not in the reference"));
    let spec_path = entry["spec"].as_str().expect("spec");
    let text = std::fs::read_to_string(common::root().join(spec_path)).expect("the spec file");
    let compiled = strata::compile(&text, example);
    let model = compiled
        .model
        .unwrap_or_else(|| panic!("{spec_path}: {:?}", compiled.diagnostics));

    // The reference describes this model.
    let classes: Vec<String> = entry["classes"]
        .as_array()
        .expect("classes")
        .iter()
        .map(|c| c.as_str().expect("a class name").to_string())
        .collect();
    assert_eq!(model.classes, classes.len(), "{example}: classes");
    let head = if model.head == Head::Sigmoid {
        "sigmoid"
    } else {
        "softmax"
    };
    assert_eq!(entry["head"], head, "{example}: head");
    let described: Vec<(String, Vec<usize>)> = entry["tensors"]
        .as_array()
        .expect("tensors")
        .iter()
        .map(|t| {
            (
                t["name"].as_str().expect("name").to_string(),
                dims(&t["shape"]),
            )
        })
        .collect();
    assert_eq!(
        described,
        expected_tensors(&model),
        "{example}: the reference's tensors are not the checkpoint strata expects"
    );
    check_arguments(example, &model, &entry["keras_layers"]);

    // Weights and images from the formula.
    let tensors: Vec<NamedTensor> = entry["tensors"]
        .as_array()
        .expect("tensors")
        .iter()
        .map(|t| {
            let name = t["name"].as_str().expect("name").to_string();
            let shape = dims(&t["shape"]);
            let data = formula(shape.iter().product(), t);
            check_sum(&name, &data, t);
            NamedTensor { name, shape, data }
        })
        .collect();
    let inputs = &entry["inputs"];
    assert_eq!(
        dims(&inputs["shape"]),
        model.input.dims(),
        "{example}: input"
    );
    let per_image = model.input.len();
    let mut images = Vec::new();
    for (n, image) in inputs["images"]
        .as_array()
        .expect("images")
        .iter()
        .enumerate()
    {
        let values = formula(per_image, image);
        check_sum(&format!("image {n}"), &values, image);
        images.extend(values);
    }
    let count = images.len() / per_image;
    let expected: Vec<Vec<f64>> = entry["probabilities"]
        .as_array()
        .expect("probabilities")
        .iter()
        .map(|row| {
            row.as_array()
                .expect("a row")
                .iter()
                .map(|p| p.as_f64().expect("a probability"))
                .collect()
        })
        .collect();
    assert_eq!(expected.len(), count, "{example}: one row per image");

    let checkpoint = Checkpoint {
        tensors,
        spec: text.clone(),
        classes,
        extra: Default::default(),
    };
    let mut network = Network::from_checkpoint(&model, &checkpoint)
        .unwrap_or_else(|err| panic!("{example}: {err}"));
    let got = network.predict(images, count);
    assert_eq!(got.len(), count, "{example}: one row per image");
    let mut worst = 0.0f64;
    for (n, (row, want)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(row.len(), want.len(), "{example}: image {n}: classes");
        for (g, w) in row.iter().zip(want) {
            worst = worst.max((f64::from(*g) - w).abs());
        }
    }
    eprintln!(
        "graph_parity {example}: max |strata - keras| = {worst:.3e} over {count} images \
         (tolerance {tolerance:e}; Keras float32 against float64: {:.3e})",
        f64_of(entry, "float32_vs_float64_max_abs_diff")
    );
    for (n, (row, want)) in got.iter().zip(&expected).enumerate() {
        for (g, w) in row.iter().zip(want) {
            assert!(
                (f64::from(*g) - w).abs() <= tolerance,
                "{example}: image {n}: strata {row:?}, Keras {want:?} (max error {worst:.3e})"
            );
        }
    }
}

#[test]
fn resnet_small_matches_keras() {
    check_model("resnet_small");
}

#[test]
fn mobilenetv2_small_matches_keras() {
    check_model("mobilenetv2_small");
}

#[test]
fn inception_small_matches_keras() {
    check_model("inception_small");
}

#[test]
fn se_sepconv_matches_keras() {
    check_model("se_sepconv");
}

#[test]
fn densenet_small_matches_keras() {
    check_model("densenet_small");
}

#[test]
fn the_reference_covers_the_five_examples() {
    let reference = reference();
    let examples: Vec<&str> = reference["models"]
        .as_array()
        .expect("models")
        .iter()
        .map(|m| m["example"].as_str().expect("example"))
        .collect();
    assert_eq!(
        examples,
        [
            "resnet_small",
            "mobilenetv2_small",
            "inception_small",
            "se_sepconv",
            "densenet_small"
        ]
    );
    assert!(f64_of(&reference, "tolerance") <= 2e-4);
}
