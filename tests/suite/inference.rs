//! `strata predict` and `strata evaluate` end to end: a generated image folder (three classes,
//! a bright square in a different place), a small network trained through the library API and
//! saved as a run folder's checkpoint, then the built binary on it — output shapes, accuracy,
//! and the error paths (garbage checkpoint, missing path, broken images, foreign classes, a batch
//! that cannot fit in memory).

use image::{GrayImage, Luma};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use strata::backend::checkpoint::{self, Checkpoint};
use strata::backend::network::Network;
use strata::backend::optimizer::Optimizer;
use strata::backend::params;
use strata::data::{folder, ImageSpec, Loader};

const SPEC: &str = "name: shapes
input: 16x16x1
classes: 3
model: conv3(4) relu -> pool2 -> dense3 softmax
train: { optimizer: adam, lr: 0.01, batch_size: 8, seed: 1 }
";

const CLASSES: [&str; 3] = ["bottom_right", "centre", "top_left"];
const PER_CLASS: u32 = 10;

/// A 16×16 image: dim noise with a bright 6×6 square placed by the class, jittered by a pixel.
fn shape_image(class: usize, idx: u32) -> GrayImage {
    let corner = [(9, 9), (5, 5), (1, 1)][class];
    let (dx, dy) = (idx % 2, (idx / 2) % 2);
    GrayImage::from_fn(16, 16, |x, y| {
        let inside = (corner.0 + dx..corner.0 + dx + 6).contains(&x)
            && (corner.1 + dy..corner.1 + dy + 6).contains(&y);
        let noise = ((x * 31 + y * 17 + idx * 7 + class as u32 * 13) % 40) as u8;
        Luma([if inside { 215 + noise } else { noise }])
    })
}

/// A temporary folder with `data/<class>/<n>.png` and a trained run folder `run/`.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        for (class, name) in CLASSES.iter().enumerate() {
            let class_dir = dir.path().join("data").join(name);
            std::fs::create_dir_all(&class_dir).expect("mkdir");
            for idx in 0..PER_CLASS {
                shape_image(class, idx)
                    .save(class_dir.join(format!("{idx}.png")))
                    .expect("save png");
            }
        }
        let fixture = Fixture { dir };
        fixture.train();
        fixture
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// Trains 40 full-batch steps through the library and saves `run/best.safetensors`.
    fn train(&self) {
        let model = strata::compile(SPEC, "shapes")
            .model
            .expect("spec compiles");
        let found = folder::scan(&self.path("data")).expect("scan");
        let spec = ImageSpec {
            height: 16,
            width: 16,
            channels: 1,
            rescale: 1.0 / 255.0,
        };
        let loader = Loader::new(found.samples(), spec, 1 << 20);
        let batch = loader.batch_now(&loader.order(0, 0, false));
        let mut network = Network::new(&model, 1);
        let mut optimizer = Optimizer::new(&model.train);
        for _ in 0..40 {
            network
                .train_step(batch.images.clone(), &batch.labels, &mut optimizer)
                .expect("train step");
        }
        let stats = network.evaluate(batch.images.clone(), &batch.labels);
        assert_eq!(
            stats.correct, stats.count,
            "the fixture model learns the shapes"
        );
        let checkpoint = Checkpoint {
            tensors: params::to_tensors(&model, &network.params),
            spec: SPEC.to_string(),
            classes: found.classes.clone(),
            extra: Default::default(),
        };
        std::fs::create_dir_all(self.path("run")).expect("mkdir run");
        checkpoint::save(&self.path("run/best.safetensors"), &checkpoint).expect("save");
    }

    fn checkpoint(&self) -> Checkpoint {
        checkpoint::load(&self.path("run/best.safetensors")).expect("load")
    }
}

fn strata(args: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run strata")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn json_lines(output: &Output) -> Vec<Value> {
    text(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line}")))
        .collect()
}

#[test]
fn predict_prints_probabilities_per_image() {
    let fixture = Fixture::new();
    let (run, data) = (fixture.path("run"), fixture.path("data"));
    let output = strata(&[
        Path::new("predict"),
        &run,
        &data,
        Path::new("--format"),
        Path::new("json"),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let lines = json_lines(&output);
    assert_eq!(lines.len(), CLASSES.len() * PER_CLASS as usize);
    let mut right = 0;
    for line in &lines {
        let path = line["path"].as_str().expect("path");
        let class = line["class"].as_str().expect("class");
        let probabilities = line["probabilities"].as_object().expect("probabilities");
        let names: Vec<&String> = probabilities.keys().collect();
        assert_eq!(names, CLASSES, "every class, in class order");
        let values: Vec<f64> = probabilities.values().filter_map(Value::as_f64).collect();
        let sum: f64 = values.iter().sum();
        assert!((sum - 1.0).abs() < 1e-4, "probabilities sum to {sum}");
        let best = probabilities
            .iter()
            .max_by(|a, b| a.1.as_f64().partial_cmp(&b.1.as_f64()).expect("numbers"))
            .expect("a class");
        assert_eq!(best.0, class, "the class is the most likely one");
        let truth = Path::new(path)
            .parent()
            .and_then(Path::file_name)
            .expect("class folder");
        right += usize::from(truth.to_string_lossy() == class);
    }
    assert!(right >= 27, "{right} of 30 right");

    let one = data.join("top_left/3.png");
    let human = strata(&[Path::new("predict"), &run, &one]);
    assert_eq!(human.status.code(), Some(0), "{}", text(&human.stderr));
    let stdout = text(&human.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.contains("top_left/3.png  top_left "), "{stdout}");
    assert_eq!(stdout.matches('%').count(), 3, "top 3 classes: {stdout}");
}

#[test]
fn predict_skips_broken_images_with_a_warning() {
    let fixture = Fixture::new();
    let broken = fixture.path("data/centre/broken.png");
    std::fs::write(&broken, b"\x89PNG\r\n\x1a\nnot really").expect("write");
    let missing = fixture.path("no-such.png");
    let checkpoint = fixture.path("run/best.safetensors");
    let good = fixture.path("data/centre/0.png");
    let output = strata(&[Path::new("predict"), &checkpoint, &good, &broken, &missing]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout).lines().count(), 1);
    let stderr = text(&output.stderr);
    assert!(stderr.contains("2 file(s) skipped"), "{stderr}");
    assert!(stderr.contains("broken.png"), "{stderr}");
    assert!(stderr.contains("no-such.png"), "{stderr}");

    let output = strata(&[Path::new("predict"), &checkpoint, &broken]);
    assert_eq!(output.status.code(), Some(1), "none readable");
    assert!(text(&output.stdout).is_empty());
}

#[test]
fn evaluate_reports_accuracy_and_confusion_matrix() {
    let fixture = Fixture::new();
    let (run, data) = (fixture.path("run"), fixture.path("data"));
    let json = Path::new("json");
    let output = strata(&[
        Path::new("evaluate"),
        &run,
        Path::new("--data"),
        &data,
        Path::new("--format"),
        json,
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let lines = json_lines(&output);
    let [report] = lines.as_slice() else {
        panic!("one object: {lines:?}")
    };
    assert_eq!(report["count"], 30);
    assert_eq!(report["classes"], serde_json::json!(CLASSES));
    assert!(
        report["accuracy"].as_f64().expect("accuracy") >= 0.9,
        "{report}"
    );
    assert!(report["loss"].as_f64().expect("loss") < 0.5, "{report}");
    let matrix: Vec<Vec<u64>> =
        serde_json::from_value(report["confusion_matrix"].clone()).expect("matrix");
    assert_eq!(matrix.len(), 3);
    assert!(
        matrix.iter().all(|row| row.iter().sum::<u64>() == 10),
        "{matrix:?}"
    );
    let per_class = report["per_class_accuracy"].as_object().expect("per class");
    assert_eq!(per_class.len(), 3);

    let human = strata(&[Path::new("evaluate"), &run, Path::new("--data"), &data]);
    assert_eq!(human.status.code(), Some(0));
    let stdout = text(&human.stdout);
    for needle in [
        "loss",
        "accuracy",
        "confusion matrix",
        "bottom_right",
        "30 images",
    ] {
        assert!(stdout.contains(needle), "`{needle}` in {stdout}");
    }
}

#[test]
fn evaluate_loss_equals_the_networks_own() {
    let fixture = Fixture::new();
    let mut trained = strata::infer::Trained::load(&fixture.path("run")).expect("load");
    let found = folder::scan(&fixture.path("data")).expect("scan");
    let (labels, warning) =
        strata::infer::evaluate::match_classes(&found, &trained.classes).expect("classes");
    assert!(warning.is_none());
    let result = strata::infer::evaluate(&mut trained, &found, &labels, 7);
    let loader = Loader::new(found.samples(), trained.image_spec(), 0);
    let batch = loader.batch_now(&loader.order(0, 0, false));
    let stats = trained.network.evaluate(batch.images, &batch.labels);
    assert!(
        (result.loss - stats.loss).abs() < 1e-4,
        "{} vs {}",
        result.loss,
        stats.loss
    );
    assert_eq!(result.correct, stats.correct);
    assert_eq!(result.count, 30);
}

#[test]
fn evaluate_names_broken_images_and_foreign_classes() {
    let fixture = Fixture::new();
    let (run, data) = (fixture.path("run"), fixture.path("data"));
    std::fs::write(data.join("centre/broken.png"), b"").expect("write");
    let evaluate = || strata(&[Path::new("evaluate"), &run, Path::new("--data"), &data]);
    let output = evaluate();
    assert_eq!(output.status.code(), Some(0));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("broken.png"), "{stderr}");
    assert!(text(&output.stdout).contains("30 images"));

    std::fs::remove_dir_all(data.join("top_left")).expect("rm");
    let output = evaluate();
    assert_eq!(
        output.status.code(),
        Some(0),
        "a subset of the classes is fine"
    );
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("has 2 of the model's 3 classes"),
        "{stderr}"
    );
    assert!(stderr.contains("`top_left`"), "{stderr}");

    let stray = data.join("circle");
    std::fs::create_dir_all(&stray).expect("mkdir");
    shape_image(0, 0).save(stray.join("0.png")).expect("save");
    let output = evaluate();
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("strata::data::class_mismatch"), "{stderr}");
    assert!(stderr.contains("`circle`"), "{stderr}");
}

#[test]
fn bad_checkpoints_and_paths_are_clear_errors() {
    let fixture = Fixture::new();
    let image = fixture.path("data/centre/0.png");
    let garbage = fixture.path("garbage.safetensors");
    std::fs::write(&garbage, b"this is not a checkpoint").expect("write");
    let missing = fixture.path("runs/nothing-here");
    let empty_run = fixture.path("data");
    for (run, needle) in [
        (&garbage, "not a readable safetensors checkpoint"),
        (&missing, "does not exist"),
        (&empty_run, "not a training run folder"),
    ] {
        let output = strata(&[Path::new("predict"), run, &image]);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(needle), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        let output = strata(&[Path::new("evaluate"), run, Path::new("--data"), &empty_run]);
        assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    }
}

#[test]
fn a_checkpoint_whose_spec_changed_is_refused() {
    let fixture = Fixture::new();
    let image = fixture.path("data/centre/0.png");
    let mut checkpoint = fixture.checkpoint();
    checkpoint.spec = SPEC.replace("pool2", "pol2");
    let broken_spec = fixture.path("broken-spec.safetensors");
    checkpoint::save(&broken_spec, &checkpoint).expect("save");
    let output = strata(&[Path::new("predict"), &broken_spec, &image]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("unknown layer `pol`"), "{stderr}");
    assert!(stderr.contains("no longer compiles"), "{stderr}");

    checkpoint.spec = SPEC.replace("conv3(4)", "conv3(5)");
    let other_shapes = fixture.path("other-shapes.safetensors");
    checkpoint::save(&other_shapes, &checkpoint).expect("save");
    let output = strata(&[Path::new("predict"), &other_shapes, &image]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("does not fit the model"), "{stderr}");
}

/// A model whose inference pass needs over 8 GB an image (a 1024x1024x2000 output): 30 images
/// need more than 250 GB, more memory than any machine that runs the tests.
const HUGE: &str = "name: huge
input: 1024x1024x3
classes: 3
model: conv3(2000, pad=same) relu -> gap -> dense3 softmax
train: { batch_size: 64 }
";

#[test]
fn an_inference_pass_that_cannot_fit_in_memory_is_refused() {
    let fixture = Fixture::new();
    let model = strata::compile(HUGE, "huge").model.expect("spec compiles");
    let network = Network::new(&model, 1);
    let checkpoint = Checkpoint {
        tensors: params::to_tensors(&model, &network.params),
        spec: HUGE.to_string(),
        classes: CLASSES.iter().map(|c| c.to_string()).collect(),
        extra: Default::default(),
    };
    let huge = fixture.path("huge.safetensors");
    checkpoint::save(&huge, &checkpoint).expect("save");
    let data = fixture.path("data");
    for command in ["predict", "evaluate"] {
        let output = match command {
            "predict" => strata(&[Path::new(command), &huge, &data]),
            _ => strata(&[Path::new(command), &huge, Path::new("--data"), &data]),
        };
        let log = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{command}: {log}");
        assert!(
            log.contains("strata::run::out_of_memory")
                && log.contains("an inference pass on 30 images of 1024x1024x3 needs at least")
                && log.contains("--batch-size"),
            "{command}: {log}"
        );
        assert!(output.stdout.is_empty(), "{command}: no results");
    }
}
