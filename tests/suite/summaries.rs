//! Summaries of every spec under `specs/` (snapshots), and the seed models' numbers checked
//! against Keras's.

use crate::common;

use strata::ir::{Op, Shape};
use strata::summary::{render_table, to_json};

fn compile_file(path: &str) -> strata::ir::Model {
    let text = std::fs::read_to_string(common::root().join(path)).expect("spec readable");
    let compiled = strata::compile(&text, "spec");
    let errors: Vec<_> = compiled
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .collect();
    assert!(errors.is_empty(), "{path}: {errors:?}");
    compiled.model.expect("model")
}

#[test]
fn every_spec_compiles_and_its_summary_matches_the_snapshot() {
    let files = common::yaml_files(&common::root().join("specs"));
    assert!(files.len() >= 5);
    for path in files {
        let name = common::relative(&path);
        let model = compile_file(&name);
        let snapshot = name
            .trim_start_matches("specs/")
            .trim_end_matches(".yaml")
            .replace('/', "__");
        insta::with_settings!({snapshot_path => "../snapshots/summaries", prepend_module_to_snapshot => false}, {
            insta::assert_snapshot!(snapshot, render_table(&model));
        });
    }
}

fn image(height: usize, width: usize, channels: usize) -> Shape {
    Shape::Image {
        height,
        width,
        channels,
    }
}

#[test]
fn seed_model_totals_equal_keras() {
    for (path, total, trainable) in [
        ("specs/seed/logreg_bn.yaml", 301_070, 301_064),
        ("specs/seed/wide_bn.yaml", 35_114, 35_108),
        ("specs/seed/deep_bn.yaml", 10_034, 10_028),
    ] {
        let model = compile_file(path);
        let json = to_json(&model);
        assert_eq!(
            (
                json.total_params,
                json.trainable_params,
                json.non_trainable_params
            ),
            (total, trainable, 6),
            "{path}"
        );
        assert_eq!(json.input, vec![224, 224, 3]);
    }
}

#[test]
fn wide_bn_shapes_equal_keras() {
    let model = compile_file("specs/seed/wide_bn.yaml");
    let conv = model
        .layers
        .iter()
        .find(|l| matches!(l.op, Op::Conv { .. }))
        .expect("conv");
    let pool = model
        .layers
        .iter()
        .find(|l| matches!(l.op, Op::Pool { .. }))
        .expect("pool");
    assert_eq!(conv.output, image(223, 223, 100));
    assert_eq!(conv.params.total(), 1300);
    assert_eq!(pool.output, image(13, 13, 100));
}

#[test]
fn deep_bn_shapes_equal_keras() {
    let model = compile_file("specs/seed/deep_bn.yaml");
    let pools: Vec<usize> = model
        .layers
        .iter()
        .filter(|l| matches!(l.op, Op::Pool { .. }))
        .map(|l| match l.output {
            Shape::Image { height, .. } => height,
            Shape::Flat(n) => n,
        })
        .collect();
    assert_eq!(pools, vec![112, 56, 28, 14, 7, 3, 1]);
    let dense = model.layers.last().expect("layers");
    assert_eq!(dense.params.total(), 42);
    let flatten = &model.layers[model.layers.len() - 2];
    assert!(flatten.origin.implicit && matches!(flatten.op, Op::Flatten));
    let third_conv = model
        .layers
        .iter()
        .filter(|l| matches!(l.op, Op::Conv { .. }))
        .nth(2)
        .expect("conv");
    assert_eq!(third_conv.origin.frames[0].repetition, 3);
    assert_eq!(third_conv.origin.frames[0].count, 7);
}

#[test]
fn summary_json_has_the_design_shape() {
    let model = compile_file("specs/seed/deep_bn.yaml");
    let value = serde_json::to_value(to_json(&model)).expect("json");
    for key in [
        "name",
        "input",
        "layers",
        "total_params",
        "trainable_params",
        "non_trainable_params",
    ] {
        assert!(value.get(key).is_some(), "missing {key}");
    }
    let first = &value["layers"][0];
    for key in [
        "index",
        "name",
        "kind",
        "output_shape",
        "params",
        "trainable",
    ] {
        assert!(first.get(key).is_some(), "layer missing {key}");
    }
    assert_eq!(
        value["layers"][1]["output_shape"],
        serde_json::json!([224, 224, 20])
    );
    assert_eq!(value["layers"][15]["output_shape"], serde_json::json!([20]));
}
