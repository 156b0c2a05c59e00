//! `strata train` as a user runs it, on generated image folders: a short run learns and writes
//! the whole run folder; broken files are skipped with one warning; data errors stop before
//! training with their codes; a NaN loss stops with the epoch and batch named; Ctrl-C saves
//! and exits 130; `--resume` continues exactly where the run left off (same history and
//! weights as an uninterrupted run, with augmentation too) and refuses a changed spec; early
//! stopping and reduce-on-plateau act at the epochs Keras's callbacks would; a step that cannot
//! fit in memory is refused before anything is written. Kills at any moment, run folder
//! ownership and resume's refusals are in `run_folders.rs`.

use crate::common;

use common::run::{history_without_seconds, learning_rates, strata, tensors, text};
use std::process::{Command, Stdio};

const SPEC: &str = "input: 16x16x1\nclasses: 3\nmodel: bn -> conv3(8, pad=same) relu -> pool2 -> dense3 softmax\ntrain:\n  lr: 0.01\n  epochs: 4\n  batch_size: 8\ndata:\n  train: data/train\n  validation: data/validation\n";

/// A spec and its data in a temp dir.
fn project(spec: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    common::shapes(&dir.path().join("data/train"), [24; 3]);
    common::shapes(&dir.path().join("data/validation"), [6; 3]);
    std::fs::write(dir.path().join("spec.yaml"), spec).expect("spec");
    dir
}

#[test]
fn a_short_run_learns_and_writes_the_run_folder() {
    let dir = project(SPEC);
    let output = strata(dir.path(), &["train", "spec.yaml", "--out", "run"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let log = text(&output);
    assert!(log.contains("epoch 4/4: loss"), "{log}");
    for file in [
        "spec.yaml",
        "summary.txt",
        "history.csv",
        "history.json",
        "curves.png",
        "last.safetensors",
        "best.safetensors",
        "state.json",
    ] {
        assert!(
            dir.path().join("run").join(file).is_file(),
            "missing {file}"
        );
    }
    let history = std::fs::read_to_string(dir.path().join("run/history.csv")).expect("history");
    let last = history.lines().last().expect("rows");
    let val_accuracy: f64 = last
        .split(',')
        .nth(4)
        .expect("column")
        .parse()
        .expect("number");
    assert!(
        val_accuracy >= 0.9,
        "validation accuracy {val_accuracy}: {history}"
    );
    assert!(history.starts_with("epoch,loss,accuracy,val_loss,val_accuracy,seconds,lr\n"));
}

#[test]
fn broken_files_are_skipped_with_one_warning() {
    let dir = project(SPEC);
    std::fs::write(dir.path().join("data/train/bar/zero.png"), b"").expect("write");
    std::fs::write(dir.path().join("data/train/top_left/notes.txt"), b"hello").expect("write");
    let output = strata(
        dir.path(),
        &["train", "spec.yaml", "--out", "run", "--epochs", "1"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let log = text(&output);
    assert!(log.contains("2 file(s) skipped"), "{log}");
    assert!(
        log.contains("zero.png") && log.contains("notes.txt"),
        "{log}"
    );
}

#[test]
fn data_errors_stop_before_training() {
    let dir = project(
        &SPEC
            .replace("classes: 3", "classes: 4")
            .replace("dense3", "dense4"),
    );
    let output = strata(dir.path(), &["train", "spec.yaml", "--out", "run"]);
    assert_eq!(output.status.code(), Some(1));
    let log = text(&output);
    assert!(
        log.contains("strata::data::class_count") && log.contains("dense4"),
        "{log}"
    );
    assert!(
        !dir.path().join("run").exists(),
        "no run folder before the data is checked"
    );

    let dir = project(SPEC);
    std::fs::remove_dir_all(dir.path().join("data/validation/bar")).expect("remove");
    let output = strata(dir.path(), &["train", "spec.yaml"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output).contains("strata::data::class_mismatch"),
        "{}",
        text(&output)
    );

    let output = strata(dir.path(), &["train", "spec.yaml", "--data", "nowhere"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output).contains("strata::data::missing_folder"),
        "{}",
        text(&output)
    );
}

/// A spec whose training step needs more than 500 GB (twice a 1024x1024x1024 output of 4 GiB
/// per image, 64 images): more memory than any machine that runs the tests.
const HUGE: &str = "input: 1024x1024x3\nclasses: 3\nmodel: conv3(1024, pad=same) relu -> gap -> dense3 softmax\ntrain:\n  batch_size: 64\ndata:\n  train: data/train\n";

#[test]
fn a_step_that_cannot_fit_in_memory_is_refused_before_anything_is_written() {
    let dir = project(HUGE);
    for args in [
        &["train", "spec.yaml", "--out", "run"][..],
        &["bench", "spec.yaml", "--steps", "1"],
    ] {
        let output = strata(dir.path(), args);
        let log = text(&output);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {log}");
        assert!(
            log.contains("strata::run::out_of_memory")
                && log.contains("a training step on 64 images of 1024x1024x3 needs at least")
                && log.contains("batch_size"),
            "{args:?}: {log}"
        );
    }
    assert!(!dir.path().join("run").exists(), "no run folder");
    assert!(!dir.path().join("runs").exists(), "no default run folder");
}

#[test]
fn a_nan_loss_names_the_epoch_and_batch() {
    let dir = project(SPEC);
    let output = strata(
        dir.path(),
        &["train", "spec.yaml", "--out", "run", "--lr", "1e30"],
    );
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let log = text(&output);
    assert!(log.contains("NaN or infinite in epoch 1, batch"), "{log}");
    assert!(log.contains("lower the learning rate"), "{log}");
}

#[test]
fn resume_continues_and_refuses_a_changed_spec() {
    let dir = project(SPEC);
    let output = strata(
        dir.path(),
        &["train", "spec.yaml", "--out", "run", "--epochs", "2"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let output = strata(dir.path(), &["train", "--resume", "run", "--epochs", "3"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        text(&output).contains("resuming after epoch 2"),
        "{}",
        text(&output)
    );
    let history = std::fs::read_to_string(dir.path().join("run/history.csv")).expect("history");
    assert_eq!(history.lines().count(), 4, "{history}");
    std::fs::write(
        dir.path().join("spec.yaml"),
        SPEC.replace("lr: 0.01", "lr: 0.02"),
    )
    .expect("edit");
    let output = strata(dir.path(), &["train", "--resume", "run", "--epochs", "4"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output).contains("changed since this run started"),
        "{}",
        text(&output)
    );
}

#[test]
fn a_resumed_run_repeats_the_uninterrupted_one() {
    // Big enough that rayon's threads steal work from each other: a reduction whose result
    // depends on who stole what made resumed runs drift from uninterrupted ones.
    let spec = SPEC.replace("16x16x1", "32x32x1").replace(
        "conv3(8, pad=same) relu -> pool2",
        "conv3(16, pad=same) relu -> pool2 -> conv3(16) relu -> pool2",
    );
    resumed_run_repeats_the_uninterrupted_one(&spec);
}

#[test]
fn a_resumed_graph_run_repeats_the_uninterrupted_one() {
    // Fan-out, add, concat, depthwise and separable convolutions, dropout (its random stream
    // must resume too) and blocks called twice.
    let model = "model: conv3(8, stride=2, pad=same) -> bn relu -> res(8)x2\n  \
        -> concat(conv1(8), sepconv3(8, pad=same) relu) -> dropout(0.3) -> gap -> dense3 softmax\n";
    let spec = SPEC
        .replace("16x16x1", "32x32x1")
        .replace(
            "model: bn -> conv3(8, pad=same) relu -> pool2 -> dense3 softmax\n",
            &format!(
                "blocks:\n  res(f): add(identity, conv3(f, pad=same) -> bn relu -> dwconv3(pad=same) -> bn) relu\n{model}"
            ),
        );
    assert!(spec.contains("res(8)x2"), "{spec}");
    resumed_run_repeats_the_uninterrupted_one(&spec);
}

#[test]
fn a_resumed_augmented_run_repeats_the_uninterrupted_one() {
    let augment = "augment:\n  flip: both\n  rotation: 0.1\n  zoom: 0.2\n  translation: 0.1\n  contrast: 0.3\n  brightness: 0.2\n";
    let spec = format!("{SPEC}{augment}");
    resumed_run_repeats_the_uninterrupted_one(&spec);
    // The augmented images are what training saw: one epoch learns otherwise than without.
    let plain = project(SPEC);
    let augmented = project(&spec);
    for dir in [&plain, &augmented] {
        let output = strata(
            dir.path(),
            &["train", "spec.yaml", "--out", "run", "--epochs", "1"],
        );
        assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    }
    assert_ne!(
        history_without_seconds(&plain.path().join("run")),
        history_without_seconds(&augmented.path().join("run"))
    );
}

/// Trains `spec` for 4 epochs in one run, and for 2 then `--resume`d to 4 in another: the
/// histories (but timing) and the weights are equal bit for bit.
fn resumed_run_repeats_the_uninterrupted_one(spec: &str) {
    let spec = spec
        .replace("batch_size: 8", "batch_size: 24")
        // Lowers the rate after every epoch but the first, across the resume point too.
        .replace(
            "  epochs: 4\n",
            "  epochs: 4\n  reduce_lr_on_plateau: { monitor: loss, min_delta: 100, patience: 1, factor: 0.5 }\n",
        );
    let dir = project(&spec);
    let output = strata(dir.path(), &["train", "spec.yaml", "--out", "whole"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let output = strata(
        dir.path(),
        &["train", "spec.yaml", "--out", "split", "--epochs", "2"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let output = strata(dir.path(), &["train", "--resume", "split", "--epochs", "4"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let (whole, split) = (dir.path().join("whole"), dir.path().join("split"));
    let history = history_without_seconds(&whole);
    assert_eq!(history.len(), 5, "{history:?}");
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
fn early_stopping_ends_the_run_and_a_longer_resume_counts_afresh() {
    // No epoch after the first improves the loss by 100, so patience 2 stops after epoch 3.
    let spec = SPEC.replace(
        "  epochs: 4\n",
        "  epochs: 6\n  early_stopping: { monitor: loss, min_delta: 100, patience: 2 }\n",
    );
    let dir = project(&spec);
    let output = strata(dir.path(), &["train", "spec.yaml", "--out", "run"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let log = text(&output);
    assert!(
        log.contains("epoch 3: early stopping: loss has not improved for 2 epochs (best"),
        "{log}"
    );
    assert!(!log.contains("epoch 4/6"), "{log}");
    let run = dir.path().join("run");
    assert_eq!(history_without_seconds(&run).len(), 4);
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("state.json")).expect("state"))
            .expect("json");
    assert_eq!(state["stopped_early"], true);
    assert_eq!(state["early_stopping"]["best_epoch"], 1);
    // Asking for 8 epochs continues with a fresh count, until patience runs out again
    // (epochs 4 and 5).
    let output = strata(dir.path(), &["train", "--resume", "run", "--epochs", "8"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        text(&output).contains("epoch 5: early stopping"),
        "{}",
        text(&output)
    );
    assert_eq!(history_without_seconds(&run).len(), 6);
}

#[test]
fn reduce_on_plateau_lowers_the_learning_rate_and_records_it() {
    let spec = SPEC.replace(
        "  epochs: 4\n",
        "  epochs: 4\n  reduce_lr_on_plateau: { monitor: loss, min_delta: 100, patience: 1, factor: 0.5, min_lr: 0.003 }\n",
    );
    let dir = project(&spec);
    let output = strata(dir.path(), &["train", "spec.yaml", "--out", "run"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let log = text(&output);
    assert!(
        log.contains("epoch 2: loss has not improved for 1 epoch; learning rate lowered to 0.005"),
        "{log}"
    );
    assert!(log.contains("epoch 3/4: loss"), "{log}");
    assert!(
        log.contains("- lr 0.005 - "),
        "the epoch line shows the rate: {log}"
    );
    // Each epoch trains with the rate set after the one before; the floor holds at 0.003.
    assert_eq!(
        learning_rates(&dir.path().join("run")),
        [0.01, 0.01, 0.005, 0.003]
    );
}

#[test]
fn watching_a_validation_metric_without_validation_data_is_refused() {
    let spec = SPEC.replace("  validation: data/validation\n", "").replace(
        "  epochs: 4\n",
        "  epochs: 4\n  early_stopping: { patience: 2 }\n",
    );
    let dir = project(&spec);
    let output = strata(dir.path(), &["train", "spec.yaml", "--out", "run"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let log = text(&output);
    assert!(log.contains("strata::spec::invalid_value"), "{log}");
    assert!(
        log.contains(
            "`train.early_stopping` watches `val_loss`, but this run has no validation data"
        ),
        "{log}"
    );
    assert!(!dir.path().join("run/history.csv").exists());
}

#[cfg(unix)]
#[test]
fn ctrl_c_saves_and_exits_130() {
    use std::io::{BufRead, BufReader};
    let dir = project(&SPEC.replace("epochs: 4", "epochs: 500"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["train", "spec.yaml", "--out", "run"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    // Wait for the first finished epoch, then interrupt.
    let first = lines
        .find(|line| line.as_ref().is_ok_and(|l| l.starts_with("epoch 1/")))
        .expect("an epoch line");
    assert!(first.is_ok());
    // SAFETY: sending SIGINT to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let output = child.wait_with_output().expect("wait");
    assert_eq!(
        output.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("strata train --resume run"), "{stderr}");
    assert!(dir.path().join("run/last.safetensors").is_file());
    assert!(dir.path().join("run/interrupted.safetensors").is_file());
}
