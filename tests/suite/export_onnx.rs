//! `strata export --format onnx` checked without Python: every spec under `specs/` with random
//! weights (random batch-norm statistics and biases too), a spec that uses every op and
//! activation, and small models trained by the binary, exported and run with tract; tract's
//! probabilities must equal strata's forward pass (and `strata predict`) within 1e-5. Then the
//! metadata, and the error paths of the command.

use crate::common;

use common::run::{strata, text};
use prost::Message;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};
use strata::backend::checkpoint::{self, Checkpoint, NamedTensor};
use strata::backend::network::Network;
use strata::backend::params;
use strata::data::image::load_bytes;
use strata::data::{load_image, ImageSpec};
use strata::export::proto::ModelProto;
use strata::export::{to_onnx, OnnxOptions};
use strata::ir::Model;
use tract_onnx::prelude::*;

/// The largest difference allowed between a probability from tract and from strata.
pub(crate) const TOLERANCE: f32 = 1e-5;
/// The largest relative difference allowed: a 1000-class model's probabilities are near 1e-3,
/// where 1e-5 alone would let a wrong export through. Seen: at most 6.4e-6 (ResNet50).
pub(crate) const RELATIVE_TOLERANCE: f32 = 1e-4;

/// Every op and activation of the language, with a binary sigmoid head
/// (`scripts/onnx_check.py` runs it through ONNX Runtime too).
const EVERY_OP: &str = include_str!("../fixtures/export/every_op.yaml");

/// A batch of `count` random images of `model`'s input, values in [0, 1).
fn random_images(model: &Model, count: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..count * model.input.len()).map(|_| rng.gen()).collect()
}

/// Keras-initialised tensors with random biases and batch-norm statistics, so that every
/// parameter's layout shows in the output.
fn random_tensors(model: &Model, seed: u64) -> Vec<NamedTensor> {
    let network = Network::new(model, seed);
    let mut tensors = params::to_tensors(model, &network.params);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xB1A5);
    for tensor in &mut tensors {
        let range = match tensor.name.rsplit('.').next() {
            Some("bias" | "beta" | "moving_mean") => -0.3..0.3,
            Some("gamma" | "moving_variance") => 0.5..1.5,
            _ => continue,
        };
        for value in &mut tensor.data {
            *value = rng.gen_range(range.clone());
        }
    }
    tensors
}

/// strata's probabilities for `images`, with the parameters `tensors`.
fn strata_probabilities(model: &Model, tensors: &[NamedTensor], images: &[f32]) -> Vec<f32> {
    let checkpoint = Checkpoint {
        tensors: tensors.to_vec(),
        spec: String::new(),
        classes: class_names(model),
        extra: Default::default(),
    };
    let mut network = Network::from_checkpoint(model, &checkpoint).expect("tensors fit");
    let count = images.len() / model.input.len();
    network.predict(images.to_vec(), count).concat()
}

fn class_names(model: &Model) -> Vec<String> {
    (0..model.classes)
        .map(|idx| format!("class{idx}"))
        .collect()
}

/// tract's output for `input` (a tensor of the model's input shape with the batch axis).
fn tract_output(onnx: &[u8], input: Tensor) -> Vec<f32> {
    let shape: Vec<usize> = input.shape().to_vec();
    let fact = InferenceFact::dt_shape(input.datum_type(), shape);
    let runnable = tract_onnx::onnx()
        .model_for_read(&mut std::io::Cursor::new(onnx))
        .expect("tract reads the model")
        .with_input_fact(0, fact)
        .expect("input fact")
        .into_optimized()
        .expect("tract optimises the model")
        .into_runnable()
        .expect("runnable");
    let outputs = runnable
        .run(tvec!(input.into()))
        .expect("tract runs the model");
    let view = outputs[0]
        .to_plain_array_view::<f32>()
        .expect("float output");
    view.iter().copied().collect()
}

fn float_input(model: &Model, images: &[f32]) -> Tensor {
    let (h, w, c) = model.input.hwc();
    let count = images.len() / model.input.len();
    tract_ndarray::Array4::from_shape_vec((count, h, w, c), images.to_vec())
        .expect("shape")
        .into()
}

/// The largest `|a - b| / max(|a|, 1e-6)`.
fn max_relative(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / x.abs().max(1e-6))
        .fold(0.0, f32::max)
}

fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "output lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Exports `spec_text` with random weights and compares tract with strata on two images;
/// returns the largest absolute and relative differences.
pub(crate) fn random_weights_difference(spec_text: &str, name: &str) -> (f32, f32) {
    let model = strata::compile(spec_text, name)
        .model
        .expect("spec compiles");
    let tensors = random_tensors(&model, 7);
    let images = random_images(&model, 2, 11);
    let expected = strata_probabilities(&model, &tensors, &images);
    let onnx = to_onnx(
        &model,
        &tensors,
        &class_names(&model),
        OnnxOptions::default(),
    )
    .expect("exports");
    let got = tract_output(&onnx, float_input(&model, &images));
    (
        max_difference(&expected, &got),
        max_relative(&expected, &got),
    )
}

#[test]
fn every_spec_under_specs_matches_tract() {
    let mut report = Vec::new();
    for path in common::yaml_files(&common::root().join("specs")) {
        let text = std::fs::read_to_string(&path).expect("readable spec");
        let name = common::relative(&path);
        let (difference, relative) = random_weights_difference(&text, &name);
        report.push(format!(
            "{name}: max |tract - strata| = {difference:.2e} (relative {relative:.2e})"
        ));
        assert!(
            difference <= TOLERANCE && relative <= RELATIVE_TOLERANCE,
            "{}",
            report.join("\n")
        );
    }
    eprintln!("{}", report.join("\n"));
}

#[test]
fn every_op_and_activation_matches_tract() {
    let (difference, relative) = random_weights_difference(EVERY_OP, "every-op");
    eprintln!("every-op: max |tract - strata| = {difference:.2e} (relative {relative:.2e})");
    assert!(difference <= TOLERANCE && relative <= RELATIVE_TOLERANCE);
}

#[test]
fn raw_input_is_rescaled_in_the_graph() {
    let model = strata::compile(EVERY_OP, "every-op")
        .model
        .expect("compiles");
    let tensors = random_tensors(&model, 3);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let pixels: Vec<u8> = (0..2 * model.input.len()).map(|_| rng.gen()).collect();
    let rescale = model.data.rescale as f32;
    let images: Vec<f32> = pixels.iter().map(|&p| f32::from(p) * rescale).collect();
    let expected = strata_probabilities(&model, &tensors, &images);
    let options = OnnxOptions { raw_input: true };
    let onnx = to_onnx(&model, &tensors, &class_names(&model), options).expect("exports");
    let (h, w, c) = model.input.hwc();
    let input: Tensor = tract_ndarray::Array4::from_shape_vec((2, h, w, c), pixels)
        .expect("shape")
        .into();
    let got = tract_output(&onnx, input);
    assert!(max_difference(&expected, &got) <= TOLERANCE);
}

#[test]
fn the_model_carries_its_metadata_and_a_symbolic_batch() {
    let model = strata::compile(EVERY_OP, "every-op")
        .model
        .expect("compiles");
    let tensors = random_tensors(&model, 1);
    let classes = vec!["cat".to_string(), "dog".to_string()];
    let bytes = to_onnx(&model, &tensors, &classes, OnnxOptions::default()).expect("exports");
    let onnx = ModelProto::decode(bytes.as_slice()).expect("decodes");
    assert_eq!(onnx.opset_import[0].version, Some(17));
    let meta: std::collections::HashMap<String, String> = onnx
        .metadata_props
        .iter()
        .map(|entry| (entry.key().to_string(), entry.value().to_string()))
        .collect();
    assert_eq!(meta["strata.classes"], r#"["cat","dog"]"#);
    assert_eq!(meta["strata.input_shape"], "[12,14,3]");
    assert_eq!(meta["strata.input_layout"], "NHWC");
    assert_eq!(meta["strata.rescale"], (1.0f64 / 255.0).to_string());
    assert_eq!(meta["strata.raw_input"], "false");
    assert_eq!(meta["strata.version"], env!("CARGO_PKG_VERSION"));
    let graph = onnx.graph.expect("graph");
    let ops: Vec<&str> = graph.node.iter().map(|node| node.op_type()).collect();
    assert!(!ops.contains(&"Dropout"), "{ops:?}");
    assert!(ops.contains(&"BatchNormalization"), "{ops:?}");
    let batch_dims: Vec<String> = [&graph.input[0], &graph.output[0]]
        .iter()
        .map(|info| format!("{:?}", info.r#type))
        .collect();
    for dims in batch_dims {
        assert!(dims.contains("DimParam(\"N\")"), "{dims}");
    }
}

#[test]
fn tensors_that_do_not_fit_are_refused() {
    let model = strata::compile(EVERY_OP, "every-op")
        .model
        .expect("compiles");
    let mut tensors = random_tensors(&model, 1);
    tensors.retain(|tensor| tensor.name != "layers.1.bias");
    tensors[0].shape = vec![1];
    let err = to_onnx(
        &model,
        &tensors,
        &class_names(&model),
        OnnxOptions::default(),
    )
    .expect_err("refused");
    let message = err.to_string();
    assert!(
        message.contains("`layers.1.bias` [8] is missing"),
        "{message}"
    );
    assert!(message.contains("`layers.0.gamma` is [1]"), "{message}");
}

// --- The command, on runs the binary trains. ---

/// A spec for the 16x16 grayscale shapes of `common::shapes`.
fn shapes_spec(classes: usize, head: &str) -> String {
    format!(
        "name: shapes
input: 16x16x1
classes: {classes}
model: |
  bn -> conv3(6, pad=same) relu -> pool2
  -> add(identity, conv3(6, pad=same) -> bn relu)
  -> dropout(0.2) -> {head}
train: {{ lr: 0.01, epochs: 3, batch_size: 8, seed: 2 }}
"
    )
}

/// A folder with `data/` (the shapes, 2 or 3 classes) and a run trained by the binary in
/// `run/`.
fn trained_run(classes: usize, head: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    common::shapes(&dir.path().join("data"), [6, 6, 6]);
    if classes == 2 {
        std::fs::remove_dir_all(dir.path().join("data/top_left")).expect("remove a class");
    }
    std::fs::write(dir.path().join("spec.yaml"), shapes_spec(classes, head)).expect("spec");
    let output = strata(
        dir.path(),
        &[
            "train",
            "spec.yaml",
            "--data",
            "data",
            "--out",
            "run",
            "--quiet",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    dir
}

/// The images of `dir/data`, sorted as `predict` lists them.
fn images(dir: &Path) -> Vec<PathBuf> {
    strata::infer::image_files(&[dir.join("data")])
}

/// `strata predict --format json` probabilities, image by image, class order.
fn predict_json(dir: &Path, classes: &[&str]) -> Vec<f32> {
    let output = strata(dir, &["predict", "run", "data", "--format", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let mut values = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let json: serde_json::Value = serde_json::from_str(line).expect("json line");
        for class in classes {
            values.push(json["probabilities"][class].as_f64().expect("probability") as f32);
        }
    }
    values
}

/// Exports the run in `dir` (float or raw input) and runs tract on the data's images.
fn exported_probabilities(dir: &Path, raw_input: bool) -> Vec<f32> {
    let mut args = vec!["export", "run", "--format", "onnx", "--out", "model.onnx"];
    if raw_input {
        args.push("--raw-input");
    }
    let output = strata(dir, &args);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(text(&output).contains("model.onnx"), "{}", text(&output));
    let onnx = std::fs::read(dir.join("model.onnx")).expect("written");
    let spec = ImageSpec {
        height: 16,
        width: 16,
        channels: 1,
        rescale: 1.0 / 255.0,
    };
    let files = images(dir);
    let input: Tensor = if raw_input {
        let pixels: Vec<u8> = files
            .iter()
            .flat_map(|path| load_bytes(path, &spec).expect("image"))
            .collect();
        tract_ndarray::Array4::from_shape_vec((files.len(), 16, 16, 1), pixels)
            .expect("shape")
            .into()
    } else {
        let values: Vec<f32> = files
            .iter()
            .flat_map(|path| load_image(path, &spec).expect("image"))
            .collect();
        tract_ndarray::Array4::from_shape_vec((files.len(), 16, 16, 1), values)
            .expect("shape")
            .into()
    };
    tract_output(&onnx, input)
}

#[test]
fn trained_runs_export_to_what_predict_prints() {
    for (classes, head, names) in [
        (3, "dense3 softmax", vec!["bar", "bottom_right", "top_left"]),
        (2, "dense1 sigmoid", vec!["bar", "bottom_right"]),
    ] {
        let dir = trained_run(classes, head);
        let expected = predict_json(dir.path(), &names);
        for raw_input in [false, true] {
            let got = exported_probabilities(dir.path(), raw_input);
            let difference = max_difference(&expected, &got);
            eprintln!(
                "trained {head} (raw input {raw_input}): max |tract - predict| = {difference:.2e}"
            );
            assert!(difference <= TOLERANCE, "{head}: {difference}");
        }
    }
}

#[test]
fn export_prints_json_on_request() {
    let dir = trained_run(3, "dense3 softmax");
    let output = strata(
        dir.path(),
        &["export", "run", "--out", "m.onnx", "--format", "json"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(json["format"], "onnx");
    assert_eq!(json["opset"], 17);
    assert_eq!(json["input"]["shape"], serde_json::json!([16, 16, 1]));
    assert_eq!(json["classes"][2], "top_left");
    let bytes = std::fs::metadata(dir.path().join("m.onnx"))
        .expect("file")
        .len();
    assert_eq!(json["bytes"], bytes);
}

#[test]
fn a_checkpoint_that_does_not_fit_its_spec_gets_predicts_error() {
    let dir = trained_run(3, "dense3 softmax");
    let path = dir.path().join("run/best.safetensors");
    let mut saved = checkpoint::load(&path).expect("load");
    saved.spec = saved.spec.replace("conv3(6,", "conv3(7,");
    checkpoint::save(&dir.path().join("bad.safetensors"), &saved).expect("save");
    let export = strata(
        dir.path(),
        &["export", "bad.safetensors", "--out", "model.onnx"],
    );
    let predict = strata(dir.path(), &["predict", "bad.safetensors", "data"]);
    assert_eq!(export.status.code(), Some(2));
    assert_eq!(export.status.code(), predict.status.code());
    assert_eq!(text(&export), text(&predict));
    assert!(
        text(&export).contains("does not fit the model"),
        "{}",
        text(&export)
    );
    assert!(!dir.path().join("model.onnx").exists());
    let missing = strata(dir.path(), &["export", "nowhere", "--out", "model.onnx"]);
    let predict_missing = strata(dir.path(), &["predict", "nowhere", "data"]);
    assert_eq!(missing.status.code(), Some(2));
    assert_eq!(text(&missing), text(&predict_missing));
}

#[test]
fn out_into_a_missing_folder_or_over_a_folder_is_an_io_error() {
    let dir = trained_run(3, "dense3 softmax");
    let output = strata(
        dir.path(),
        &["export", "run", "--out", "no/such/model.onnx"],
    );
    assert_eq!(output.status.code(), Some(2));
    let message = text(&output);
    assert!(message.contains("`no/such/model.onnx`"), "{message}");
    assert!(message.contains("`no/such` does not exist"), "{message}");
    std::fs::create_dir(dir.path().join("folder")).expect("mkdir");
    let output = strata(dir.path(), &["export", "run", "--out", "folder"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output).contains("`folder`"), "{}", text(&output));
    assert!(text(&output).contains("is a folder"), "{}", text(&output));
    let left: Vec<_> = std::fs::read_dir(dir.path().join("folder"))
        .expect("read")
        .collect();
    assert!(left.is_empty(), "nothing is written into the folder");
}

#[test]
fn an_existing_file_is_replaced_whole_and_no_temporary_file_is_left() {
    let dir = trained_run(3, "dense3 softmax");
    std::fs::create_dir(dir.path().join("out")).expect("mkdir");
    let target = dir.path().join("out/model.onnx");
    std::fs::write(&target, vec![b'x'; 10_000_000]).expect("old file");
    let output = strata(dir.path(), &["export", "run", "--out", "out/model.onnx"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let bytes = std::fs::read(&target).expect("new file");
    assert!(ModelProto::decode(bytes.as_slice()).is_ok());
    let names: Vec<String> = std::fs::read_dir(dir.path().join("out"))
        .expect("read")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(names, ["model.onnx"]);
}

#[test]
fn format_onnx_belongs_to_export_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = common::root().join("examples/fashion-mini.yaml");
    let spec = spec.to_string_lossy();
    let output = strata(dir.path(), &["summary", &spec, "--format", "onnx"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output).contains("`--format onnx`"),
        "{}",
        text(&output)
    );
}
