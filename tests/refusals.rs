//! Models the compiler accepts but the backend cannot run yet — graphs (merges), the binary head
//! `dense1 sigmoid`, activations such as `relu6` — are refused by `strata train`, `strata bench`,
//! `strata predict` and `strata evaluate` with exit status 1 and an error naming the layer, and
//! `train` leaves no run folder behind.
//!
//! Each case says what the backend does with it today ([`Today`]). When the backend learns to
//! run one, change its `today` to [`Today::Runs`]: the same tests then check that every command
//! succeeds on it (and that `train` writes its run folder).

mod common;

use image::{Rgb, RgbImage};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use strata::backend::checkpoint::{self, Checkpoint, NamedTensor};
use strata::ir::{Activation, Head, Model, Op};

/// What the backend does with a case today.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Today {
    /// Refuses it, naming a layer [`Case::refused_layers`] finds.
    Refuses,
    /// Runs it.
    Runs,
}

/// A model the compiler accepts.
struct Case {
    /// For messages.
    what: &'static str,
    /// A spec file under the crate root, or the spec text itself.
    spec: SpecText,
    today: Today,
}

enum SpecText {
    File(&'static str),
    Inline(&'static str),
}

const CASES: &[Case] = &[
    Case {
        what: "a graph (resnet_small)",
        spec: SpecText::File("specs/examples/resnet_small.yaml"),
        today: Today::Runs,
    },
    Case {
        what: "a small graph",
        spec: SpecText::Inline(
            "name: tiny-graph\ninput: 12x12x3\nclasses: 3\nmodel: conv3(4, pad=same) relu -> add(identity, conv3(4, pad=same) -> bn) relu -> gap -> dense3 softmax\ntrain: { batch_size: 4, epochs: 1 }\n",
        ),
        today: Today::Runs,
    },
    Case {
        what: "the binary head `dense1 sigmoid`",
        spec: SpecText::Inline(
            "name: binary\ninput: 12x12x3\nclasses: 2\nmodel: conv3(4) relu -> gap -> dense1 sigmoid\ntrain: { batch_size: 4, epochs: 1 }\n",
        ),
        today: Today::Runs,
    },
    Case {
        what: "`relu6`",
        spec: SpecText::Inline(
            "name: six\ninput: 12x12x3\nclasses: 2\nmodel: conv3(4) relu6 -> pool2 -> dense2 softmax\ntrain: { batch_size: 4, epochs: 1 }\n",
        ),
        today: Today::Runs,
    },
    Case {
        what: "a depthwise convolution",
        spec: SpecText::Inline(
            "name: depthwise\ninput: 12x12x3\nclasses: 2\nmodel: dwconv3(pad=same) relu6 -> gap -> dense2 softmax\ntrain: { batch_size: 4, epochs: 1 }\n",
        ),
        today: Today::Refuses,
    },
    Case {
        what: "a plain stack (control)",
        spec: SpecText::Inline(
            "name: plain\ninput: 12x12x3\nclasses: 2\nmodel: conv3(4) relu -> pool2 -> dense2 softmax\ntrain: { batch_size: 4, epochs: 1 }\n",
        ),
        today: Today::Runs,
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

    /// The layers a refusal may name: those reading other layers than the one before them
    /// and the merges, those with an op or activation the backend lacks, and for the binary
    /// head the last layer.
    fn refused_layers(&self) -> Vec<String> {
        let model = self.model();
        let mut names = Vec::new();
        for layer in &model.layers {
            let unusual_activation = |activation: Option<Activation>| {
                matches!(
                    activation,
                    Some(
                        Activation::Relu6
                            | Activation::Silu
                            | Activation::HardSwish
                            | Activation::HardSigmoid
                            | Activation::Elu { .. }
                    )
                )
            };
            let op_activation = match layer.op {
                Op::Activation(activation) => Some(activation),
                _ => None,
            };
            if !layer.reads_previous()
                || matches!(layer.op, Op::Merge(_))
                || unusual_activation(layer.activation)
                || unusual_activation(op_activation)
            {
                names.push(layer.name.clone());
            }
        }
        if model.head == Head::Sigmoid {
            names.extend(model.layers.last().map(|layer| layer.name.clone()));
        }
        names
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

/// Checks one command's outcome against what the case expects today.
fn expect_outcome(case: &Case, command: &str, output: &Output) {
    expect_outcome_with(case, command, output, 1);
}

/// The same, with the exit status a refusal gets today.
fn expect_outcome_with(case: &Case, command: &str, output: &Output, refusal_status: i32) {
    let stdout = text(&output.stdout);
    let stderr = text(&output.stderr);
    match case.today {
        Today::Refuses => {
            assert_eq!(
                output.status.code(),
                Some(refusal_status),
                "{command} on {}: {stdout}\n{stderr}",
                case.what
            );
            let layers = case.refused_layers();
            assert!(!layers.is_empty(), "{}: nothing to refuse", case.what);
            assert!(
                layers
                    .iter()
                    .any(|layer| stderr.contains(&format!("layer `{layer}`"))),
                "{command} on {}: the error names none of {layers:?}:\n{stderr}",
                case.what
            );
            assert!(
                stderr.contains("cannot be trained or run yet"),
                "{command} on {}: {stderr}",
                case.what
            );
            assert!(
                !stderr.contains("panicked"),
                "{command} on {}: {stderr}",
                case.what
            );
        }
        Today::Runs => assert_eq!(
            output.status.code(),
            Some(0),
            "{command} on {}: {stdout}\n{stderr}",
            case.what
        ),
    }
}

fn cases() -> impl Iterator<Item = &'static Case> {
    CASES.iter()
}

#[test]
fn train_refuses_and_leaves_no_run_folder() {
    for case in cases() {
        let scratch = Scratch::new(case);
        // The default run folder (`runs/<name>/…` under the working directory) …
        let output = scratch.strata(&[
            Path::new("train"),
            &scratch.spec(),
            Path::new("--data"),
            &scratch.data(),
            Path::new("--epochs"),
            Path::new("1"),
            Path::new("--quiet"),
        ]);
        expect_outcome(case, "train", &output);
        let runs = scratch.path("runs");
        // … and an explicit `--out`.
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
        expect_outcome(case, "train --out", &output);
        match case.today {
            Today::Refuses => {
                assert!(
                    !runs.exists(),
                    "{}: train made {}",
                    case.what,
                    runs.display()
                );
                assert!(
                    !scratch.path("out").exists(),
                    "{}: train made {}",
                    case.what,
                    out.display()
                );
            }
            Today::Runs => {
                assert!(runs.is_dir(), "{}: no run folder", case.what);
                assert!(out.join("last.safetensors").is_file(), "{}", case.what);
            }
        }
    }
}

#[test]
fn bench_refuses() {
    for case in cases() {
        let scratch = Scratch::new(case);
        let output = scratch.strata(&[
            Path::new("bench"),
            &scratch.spec(),
            Path::new("--batch-size"),
            Path::new("2"),
            Path::new("--steps"),
            Path::new("1"),
        ]);
        expect_outcome(case, "bench", &output);
    }
}

#[test]
fn predict_and_evaluate_refuse() {
    for case in cases() {
        let scratch = Scratch::new(case);
        // A refusal is a model error (status 1), as for `train` and `bench`.
        let refusal_status = 1;
        for run in [scratch.checkpoint(), scratch.path("run")] {
            let output = scratch.strata(&[Path::new("predict"), &run, &scratch.image()]);
            expect_outcome_with(case, "predict", &output, refusal_status);
            let output = scratch.strata(&[
                Path::new("evaluate"),
                &run,
                Path::new("--data"),
                &scratch.data(),
            ]);
            expect_outcome_with(case, "evaluate", &output, refusal_status);
        }
    }
}

#[test]
fn check_and_summary_accept_what_the_backend_refuses() {
    for case in cases() {
        let scratch = Scratch::new(case);
        let output = scratch.strata(&[Path::new("check"), &scratch.spec()]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}: {}",
            case.what,
            text(&output.stderr)
        );
        let output = scratch.strata(&[Path::new("summary"), &scratch.spec()]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}: {}",
            case.what,
            text(&output.stderr)
        );
        assert!(
            text(&output.stdout).contains("Total params"),
            "{}",
            case.what
        );
    }
}
