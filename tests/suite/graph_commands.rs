//! Every command runs on graph models and the layers they need — merges, the binary head
//! `dense1 sigmoid`, depthwise, separable and grouped convolutions, the new activations:
//! `strata train` writes its run folder, `strata bench` measures, `strata predict` and
//! `strata evaluate` answer, each with exit status 0 on a tiny generated image folder.

use crate::common;

use image::{Rgb, RgbImage};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use strata::backend::checkpoint::{self, Checkpoint, NamedTensor};
use strata::ir::Model;

/// A model the compiler accepts.
struct Case {
    /// For messages.
    what: &'static str,
    /// A spec file under the crate root, or the spec text itself.
    spec: SpecText,
}

enum SpecText {
    File(&'static str),
    Inline(&'static str),
}

const CASES: &[Case] = &[
    Case {
        what: "a graph (resnet_small)",
        spec: SpecText::File("specs/examples/resnet_small.yaml"),
    },
    Case {
        what: "a small graph",
        spec: SpecText::Inline(
            "name: tiny-graph\ninput: 12x12x3\nclasses: 3\nmodel: conv3(4, pad=same) relu -> add(identity, conv3(4, pad=same) -> bn) relu -> gap -> dense3 softmax\ntrain: { batch_size: 4, epochs: 1 }\n",
        ),
    },
    Case {
        what: "the binary head `dense1 sigmoid`",
        spec: SpecText::Inline(
            "name: binary\ninput: 12x12x3\nclasses: 2\nmodel: conv3(4) relu -> gap -> dense1 sigmoid\ntrain: { batch_size: 4, epochs: 1 }\n",
        ),
    },
    Case {
        what: "`relu6`",
        spec: SpecText::Inline(
            "name: six\ninput: 12x12x3\nclasses: 2\nmodel: conv3(4) relu6 -> pool2 -> dense2 softmax\ntrain: { batch_size: 4, epochs: 1 }\n",
        ),
    },
    Case {
        what: "depthwise, separable and grouped convolutions",
        spec: SpecText::Inline(
            "name: convs\ninput: 12x12x3\nclasses: 2\nmodel: dwconv3(multiplier=2, pad=same) relu6 -> sepconv3(8, stride=2) silu -> conv3(8, groups=4, pad=same) relu -> mul(identity, gap -> dense8 hardsigmoid) -> gmp -> dense2 softmax\ntrain: { batch_size: 4, epochs: 1 }\n",
        ),
    },
    Case {
        what: "a plain stack",
        spec: SpecText::Inline(
            "name: plain\ninput: 12x12x3\nclasses: 2\nmodel: conv3(4) relu -> pool2 -> dense2 softmax\ntrain: { batch_size: 4, epochs: 1 }\n",
        ),
    },
];

impl Case {
    fn text(&self) -> String {
        match self.spec {
            SpecText::File(path) => {
                std::fs::read_to_string(common::root().join(path)).expect("spec readable")
            }
            SpecText::Inline(text) => text.to_string(),
        }
    }

    fn model(&self) -> Model {
        let compiled = strata::compile(&self.text(), "case");
        assert!(
            !compiled.has_errors(),
            "{}: {:?}",
            self.what,
            compiled.diagnostics
        );
        compiled.model.expect("model")
    }
}

/// A scratch folder: the spec, a `data/<class>/<n>.png` image folder with the model's classes
/// and input size, and a checkpoint of the model (zero weights) for predict and evaluate.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new(case: &Case) -> Scratch {
        let dir = tempfile::tempdir().expect("tempdir");
        let scratch = Scratch { dir };
        let text = case.text();
        std::fs::write(scratch.spec(), &text).expect("write spec");
        let model = case.model();
        let (height, width, _) = model.input.hwc();
        let classes: Vec<String> = (0..model.classes)
            .map(|idx| format!("class{idx:02}"))
            .collect();
        for (class, name) in classes.iter().enumerate() {
            let folder = scratch.data().join(name);
            std::fs::create_dir_all(&folder).expect("mkdir");
            for idx in 0..2u32 {
                let image = RgbImage::from_fn(width as u32, height as u32, |x, y| {
                    let value = ((x * 13 + y * 7 + idx * 31 + class as u32 * 50) % 256) as u8;
                    Rgb([value, 255 - value, (class * 20) as u8])
                });
                image
                    .save(folder.join(format!("{idx}.png")))
                    .expect("save png");
            }
        }
        let tensors = checkpoint::expected_tensors(&model)
            .into_iter()
            .map(|(name, shape)| NamedTensor {
                data: vec![0.0; shape.iter().product()],
                name,
                shape,
            })
            .collect();
        let saved = Checkpoint {
            tensors,
            spec: text,
            classes,
            extra: Default::default(),
        };
        std::fs::create_dir_all(scratch.path("run")).expect("mkdir run");
        checkpoint::save(&scratch.checkpoint(), &saved).expect("save checkpoint");
        scratch
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    fn spec(&self) -> PathBuf {
        self.path("model.yaml")
    }

    fn data(&self) -> PathBuf {
        self.path("data")
    }

    fn checkpoint(&self) -> PathBuf {
        self.path("run/best.safetensors")
    }

    fn image(&self) -> PathBuf {
        self.data().join("class00/0.png")
    }

    /// Runs the binary in the scratch folder.
    fn strata(&self, args: &[&Path]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(args)
            .current_dir(self.dir.path())
            .env("NO_COLOR", "1")
            .output()
            .expect("run strata")
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Checks that a command succeeded.
fn expect_success(case: &Case, command: &str, output: &Output) {
    assert_eq!(
        output.status.code(),
        Some(0),
        "{command} on {}: {}\n{}",
        case.what,
        text(&output.stdout),
        text(&output.stderr)
    );
}

#[test]
fn train_writes_its_run_folder() {
    for case in CASES {
        let scratch = Scratch::new(case);
        let out = scratch.path("out/run");
        let output = scratch.strata(&[
            Path::new("train"),
            &scratch.spec(),
            Path::new("--data"),
            &scratch.data(),
            Path::new("--epochs"),
            Path::new("1"),
            Path::new("--quiet"),
            Path::new("--out"),
            &out,
        ]);
        expect_success(case, "train", &output);
        assert!(out.join("last.safetensors").is_file(), "{}", case.what);
        assert!(out.join("history.csv").is_file(), "{}", case.what);
    }
}

#[test]
fn bench_measures() {
    for case in CASES {
        let scratch = Scratch::new(case);
        let output = scratch.strata(&[
            Path::new("bench"),
            &scratch.spec(),
            Path::new("--batch-size"),
            Path::new("2"),
            Path::new("--steps"),
            Path::new("1"),
            Path::new("--format"),
            Path::new("json"),
        ]);
        expect_success(case, "bench", &output);
        let json: serde_json::Value =
            serde_json::from_str(text(&output.stdout).trim()).expect("bench json");
        assert!(json["train_images_per_s"].as_f64().unwrap_or(0.0) > 0.0);
    }
}

#[test]
fn predict_and_evaluate_answer() {
    for case in CASES {
        let scratch = Scratch::new(case);
        let model = case.model();
        for run in [scratch.checkpoint(), scratch.path("run")] {
            let output = scratch.strata(&[
                Path::new("predict"),
                &run,
                &scratch.image(),
                Path::new("--format"),
                Path::new("json"),
            ]);
            expect_success(case, "predict", &output);
            let json: serde_json::Value =
                serde_json::from_str(text(&output.stdout).trim()).expect("predict json");
            let probabilities = json["probabilities"].as_object().expect("probabilities");
            assert_eq!(probabilities.len(), model.classes, "{}", case.what);
            let sum: f64 = probabilities.values().filter_map(|p| p.as_f64()).sum();
            assert!((sum - 1.0).abs() < 1e-4, "{}: {sum}", case.what);
            let output = scratch.strata(&[
                Path::new("evaluate"),
                &run,
                Path::new("--data"),
                &scratch.data(),
            ]);
            expect_success(case, "evaluate", &output);
        }
    }
}
