//! `strata train` with training recipes, on generated image folders: a run with AdamW, a
//! cosine schedule with warm-up, label smoothing and balanced class weights records the
//! scheduled rate of each epoch's last step in `history.json`, `history.csv` and the epoch
//! line, and a run `--resume`d after epoch 2 repeats the uninterrupted one bit for bit (losses,
//! rates, weights); a `class_weight` naming a class the data lacks stops before training with
//! `strata::data::unknown_class` at the name.

use crate::common;

use common::run::{history_without_seconds, learning_rates, strata, tensors, text};
use std::process::{Command, Stdio};

/// 23 + 16 + 11 = 50 training images: with `batch_size: 8`, 7 steps per epoch, the last of 2.
const SPEC: &str = "input: 16x16x1\nclasses: 3\nmodel: bn -> conv3(8, pad=same) relu -> pool2 -> dense3 softmax\ntrain:\n  optimizer: adamw\n  lr: 0.01\n  epochs: 4\n  batch_size: 8\n  label_smoothing: 0.1\n  class_weight: balanced\n  schedule: { kind: cosine, warmup_epochs: 1, alpha: 0.1 }\ndata:\n  train: data/train\n  validation: data/validation\n";

fn project(spec: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    common::shapes(&dir.path().join("data/train"), [23, 16, 11]);
    common::shapes(&dir.path().join("data/validation"), [4, 4, 4]);
    std::fs::write(dir.path().join("spec.yaml"), spec).expect("spec");
    dir
}

/// Keras's `CosineDecay(0, decay_steps, alpha=0.1, warmup_target=0.01, warmup_steps)` at
/// `step`, written out here independently of the trainer.
fn keras_cosine(step: f64, warmup_steps: f64, decay_steps: f64) -> f64 {
    let (lr, alpha) = (0.01, 0.1);
    let step = step.min(warmup_steps + decay_steps);
    if step < warmup_steps {
        lr * (step / warmup_steps)
    } else {
        let fraction = (step - warmup_steps) / decay_steps;
        lr * ((1.0 - alpha) * 0.5 * (1.0 + (std::f64::consts::PI * fraction).cos()) + alpha)
    }
}

#[test]
fn a_recipe_run_records_the_schedule_and_extends_at_its_final_rate() {
    let dir = project(SPEC);
    let output = strata(dir.path(), &["train", "spec.yaml", "--out", "run"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let log = text(&output);
    assert!(log.contains("epoch 4/4: loss"), "{log}");
    assert!(
        log.contains(" - lr 0.00"),
        "the epoch line shows the rate: {log}"
    );

    // The rate of each epoch's last step: 7 steps per epoch, 7 of warm-up, 21 of decay.
    let rates = learning_rates(&dir.path().join("run"));
    assert_eq!(rates.len(), 4);
    for (epoch, got) in rates.iter().enumerate() {
        let last_step = (epoch as f64 + 1.0) * 7.0 - 1.0;
        let expected = keras_cosine(last_step, 7.0, 21.0);
        assert!(
            (got - expected).abs() < 1e-15,
            "epoch {}: {got} vs {expected}",
            epoch + 1
        );
    }
    let csv = std::fs::read_to_string(dir.path().join("run/history.csv")).expect("csv");
    assert!(
        csv.starts_with("epoch,loss,accuracy,val_loss,val_accuracy,seconds,lr\n"),
        "{csv}"
    );
    let csv_rates: Vec<f64> = csv
        .lines()
        .skip(1)
        .map(|row| {
            row.rsplit(',')
                .next()
                .and_then(|lr| lr.parse().ok())
                .expect("lr")
        })
        .collect();
    assert_eq!(csv_rates, rates);

    // Two more epochs: the schedule was planned over 4, so they train at its floor.
    let output = strata(dir.path(), &["train", "--resume", "run", "--epochs", "6"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let rates = learning_rates(&dir.path().join("run"));
    assert_eq!(rates.len(), 6);
    assert!(
        (rates[4] - 0.001).abs() < 1e-15 && (rates[5] - 0.001).abs() < 1e-15,
        "{rates:?}"
    );
}

#[cfg(unix)]
#[test]
fn a_recipe_run_resumed_after_an_interrupt_repeats_the_uninterrupted_one() {
    use std::io::{BufRead, BufReader};
    let spec = SPEC.replace("epochs: 4", "epochs: 8");
    let dir = project(&spec);
    let output = strata(dir.path(), &["train", "spec.yaml", "--out", "whole"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));

    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["train", "spec.yaml", "--out", "split"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let seen = BufReader::new(stdout)
        .lines()
        .find(|line| line.as_ref().is_ok_and(|l| l.starts_with("epoch 2/")));
    assert!(seen.is_some(), "no second epoch line");
    // SAFETY: sending SIGINT to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let output = child.wait_with_output().expect("wait");
    assert_eq!(output.status.code(), Some(130), "{}", text(&output));
    let split = dir.path().join("split");
    let done = history_without_seconds(&split).len() - 1;
    assert!((2..8).contains(&done), "interrupted after epoch {done}");

    let output = strata(dir.path(), &["train", "--resume", "split"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let whole = dir.path().join("whole");
    let history = history_without_seconds(&whole);
    assert_eq!(history.len(), 9, "{history:?}");
    assert_eq!(history, history_without_seconds(&split));
    for file in ["last.safetensors", "best.safetensors"] {
        assert_eq!(
            tensors(&whole.join(file)),
            tensors(&split.join(file)),
            "{file}"
        );
    }
}

#[test]
fn a_class_weight_for_a_missing_class_stops_before_training() {
    let spec = SPEC.replace(
        "class_weight: balanced",
        "class_weight: { bar: 2.0, top_lef: 0.5 }",
    );
    let dir = project(&spec);
    let output = strata(dir.path(), &["train", "spec.yaml", "--out", "run"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let log = text(&output);
    assert!(log.contains("strata::data::unknown_class"), "{log}");
    assert!(log.contains("`top_lef`"), "{log}");
    assert!(log.contains("did you mean `top_left`?"), "{log}");
    // The label is under the name in the spec.
    assert!(log.contains("top_lef: 0.5"), "{log}");
    assert!(!log.contains("epoch 1/"), "{log}");
    assert!(!dir.path().join("run/history.csv").exists());
}
