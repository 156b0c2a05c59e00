//! `mpirun -n 2 strata train …` as a user runs it (cargo feature `mpi`, with Open MPI's
//! `mpirun` on the path): two ranks keep the same weights (checked by the run itself after
//! every epoch, reported by rank 0); with `train.sync_bn` their history is the one-process
//! history within 1e-4 in loss per epoch; `--resume` under MPI continues as the uninterrupted
//! run, also for a rank that does not see the run folder; a batch that does not split over
//! the ranks is refused; a NaN loss stops every rank together; and a rank that fails (data
//! missing, or other images, on its host) ends the whole run with an error naming it, without
//! a hang. The same trainer code, with threads as ranks, is tested without MPI in
//! `data_parallel.rs`.
#![cfg(feature = "mpi")]

mod common;

use common::run::{strata, tensors, text};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The longest a test's `mpirun` may take before it counts as a hang.
const HANG: Duration = Duration::from_secs(180);

/// Convolutions and dense layers with batch norms on images and on flat features.
const SPEC: &str = "input: 16x16x1\nclasses: 3\nmodel: bn -> conv3(8, pad=same) -> bn relu -> pool2 -> dense16 -> bn relu -> dense3 softmax\ntrain:\n  lr: 0.01\n  epochs: 3\n  batch_size: 8\n  sync_bn: SYNC\ndata:\n  train: data/train\n  validation: data/validation\n";

fn spec(sync_bn: bool) -> String {
    SPEC.replace("SYNC", if sync_bn { "true" } else { "false" })
}

/// A spec and its data in a temp dir: 72 training and 18 validation images.
fn project(spec: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    common::shapes(&dir.path().join("data/train"), [24; 3]);
    common::shapes(&dir.path().join("data/validation"), [6; 3]);
    std::fs::write(dir.path().join("spec.yaml"), spec).expect("spec");
    dir
}

/// `mpirun --allow-run-as-root --oversubscribe` with `args` (ranks and programs) in `dir`,
/// one thread per rank; fails the test when it runs past [`HANG`].
fn mpirun(dir: &Path, args: &[&str]) -> Output {
    finish(spawn_mpirun(dir, args), Instant::now())
}

/// [`mpirun`] started, its output piped.
fn spawn_mpirun(dir: &Path, args: &[&str]) -> Child {
    Command::new("mpirun")
        .args([
            "--allow-run-as-root",
            "--oversubscribe",
            "-x",
            "RAYON_NUM_THREADS=1",
        ])
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("RAYON_NUM_THREADS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mpirun (install Open MPI: apt-get install openmpi-bin libopenmpi-dev)")
}

/// The output of `child` once it ends; fails the test when it is still running [`HANG`] after
/// `started`.
fn finish(mut child: Child, started: Instant) -> Output {
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if started.elapsed() > HANG {
            let _ = child.kill();
            let output = child.wait_with_output().expect("output");
            panic!("mpirun hung for {HANG:?}:\n{}", text(&output));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `mpirun -n 2 strata train ARGS…`.
fn train_on_two(dir: &Path, args: &[&str]) -> Output {
    let mut all = vec!["-n", "2", env!("CARGO_BIN_EXE_strata"), "train"];
    all.extend_from_slice(args);
    mpirun(dir, &all)
}

/// The training loss of every epoch in `history.json`.
fn losses(run: &Path) -> Vec<f64> {
    let json = std::fs::read_to_string(run.join("history.json")).expect("history.json");
    let records: Vec<serde_json::Value> = serde_json::from_str(&json).expect("records");
    records
        .iter()
        .map(|r| r["loss"].as_f64().expect("loss"))
        .collect()
}

fn max_difference(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn two_ranks_keep_the_same_weights_and_rank_0_alone_writes() {
    let dir = project(&spec(false));
    let output = train_on_two(dir.path(), &["spec.yaml", "--out", "run"]);
    let log = text(&output);
    assert_eq!(output.status.code(), Some(0), "{log}");
    // Rank 0 alone prints: one header, one line per epoch.
    assert_eq!(
        log.matches("training `spec` on 2 ranks").count(),
        1,
        "{log}"
    );
    assert_eq!(log.matches("epoch 3/3: loss").count(), 1, "{log}");
    // After every epoch the ranks compared their weights' checksums and found them equal.
    assert_eq!(
        log.matches("weights identical on 2 ranks").count(),
        3,
        "{log}"
    );
    assert!(log.contains("all-reduce per step: 1 call"), "{log}");
    for file in [
        "last.safetensors",
        "best.safetensors",
        "history.csv",
        "state.json",
    ] {
        assert!(dir.path().join("run").join(file).is_file(), "{file}: {log}");
    }
}

#[test]
fn with_sync_bn_two_ranks_repeat_the_one_process_history() {
    let dir = project(&spec(true));
    let one = strata(dir.path(), &["train", "spec.yaml", "--out", "one"]);
    assert_eq!(one.status.code(), Some(0), "{}", text(&one));
    let two = train_on_two(dir.path(), &["spec.yaml", "--out", "two"]);
    assert_eq!(two.status.code(), Some(0), "{}", text(&two));
    let synced = max_difference(
        &losses(&dir.path().join("one")),
        &losses(&dir.path().join("two")),
    );
    let local = project(&spec(false));
    let one = strata(local.path(), &["train", "spec.yaml", "--out", "one"]);
    assert_eq!(one.status.code(), Some(0), "{}", text(&one));
    let two = train_on_two(local.path(), &["spec.yaml", "--out", "two"]);
    assert_eq!(two.status.code(), Some(0), "{}", text(&two));
    let unsynced = max_difference(
        &losses(&local.path().join("one")),
        &losses(&local.path().join("two")),
    );
    println!("max |Δloss| per epoch, mpirun -n 2 vs 1 process: sync_bn {synced:.2e}, without {unsynced:.2e}");
    assert!(synced < 1e-4, "{synced}");
    assert!(unsynced > synced, "{unsynced} vs {synced}");
    // The two runs' weights are the same bits: equal shares add up to exactly the
    // one-process gradient, so nothing is left for rounding to amplify.
    assert!(synced < 1e-6, "{synced}");
    let weights = |run: &str| common::run::tensors(&dir.path().join(run).join("last.safetensors"));
    assert_eq!(weights("one"), weights("two"));
}

#[test]
fn resume_under_mpi_continues_as_the_uninterrupted_run() {
    let dir = project(&spec(true));
    let whole = train_on_two(dir.path(), &["spec.yaml", "--out", "whole"]);
    assert_eq!(whole.status.code(), Some(0), "{}", text(&whole));
    let first = train_on_two(
        dir.path(),
        &["spec.yaml", "--out", "split", "--epochs", "1"],
    );
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    // Rank 1 runs elsewhere, where the run folder is not: rank 0 sends it the checkpoint.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let strata = env!("CARGO_BIN_EXE_strata");
    let resume = ["train", "--resume", "split", "--epochs", "3"];
    let mut args = vec!["-n", "1", strata];
    args.extend(resume);
    args.extend([":", "-n", "1", "--wdir"]);
    args.push(elsewhere.path().to_str().expect("utf-8 path"));
    args.push(strata);
    args.extend(resume);
    let rest = mpirun(dir.path(), &args);
    let log = text(&rest);
    assert_eq!(rest.status.code(), Some(0), "{log}");
    assert!(log.contains("resuming after epoch 1"), "{log}");
    assert_eq!(
        losses(&dir.path().join("whole")),
        losses(&dir.path().join("split"))
    );
    assert_eq!(
        tensors(&dir.path().join("whole/last.safetensors")),
        tensors(&dir.path().join("split/last.safetensors"))
    );
    // Rank 1 wrote nothing where it ran.
    let written: Vec<_> = std::fs::read_dir(elsewhere.path()).expect("dir").collect();
    assert!(written.is_empty(), "{written:?}");
}

#[test]
fn a_loss_that_becomes_nan_stops_every_rank_once() {
    // Without batch norms after the convolution, a huge rate overflows the logits.
    let spec = spec(false).replace("conv3(8, pad=same) -> bn relu", "conv3(8, pad=same) relu");
    let dir = project(&spec.replace(" -> dense16 -> bn relu", ""));
    let output = train_on_two(dir.path(), &["spec.yaml", "--out", "run", "--lr", "1e30"]);
    let log = text(&output);
    assert_ne!(output.status.code(), Some(0), "{log}");
    assert_eq!(
        log.matches("the loss became NaN or infinite in epoch 1")
            .count(),
        1,
        "{log}"
    );
}

#[test]
fn a_batch_that_does_not_split_over_the_ranks_is_refused() {
    let dir = project(&spec(false));
    let output = train_on_two(
        dir.path(),
        &["spec.yaml", "--out", "run", "--batch-size", "7"],
    );
    let log = text(&output);
    assert_ne!(output.status.code(), Some(0), "{log}");
    assert!(
        log.contains("a batch of 7 images cannot be split evenly over 2 ranks"),
        "{log}"
    );
    // Said once (by rank 0), not once per rank.
    assert_eq!(log.matches("cannot be split evenly").count(), 1, "{log}");
    assert!(!dir.path().join("run/spec.yaml").exists(), "{log}");
}

#[test]
fn a_rank_without_its_data_ends_the_whole_run() {
    let dir = project(&spec(false));
    let strata = env!("CARGO_BIN_EXE_strata");
    // Rank 1's host has no such folder.
    let output = mpirun(
        dir.path(),
        &[
            "-n",
            "1",
            strata,
            "train",
            "spec.yaml",
            "--out",
            "run",
            ":",
            "-n",
            "1",
            strata,
            "train",
            "spec.yaml",
            "--out",
            "run",
            "--data",
            "missing",
        ],
    );
    let log = text(&output);
    assert_ne!(output.status.code(), Some(0), "{log}");
    assert!(log.contains("rank 1 of 2"), "{log}");
    assert!(log.contains("missing"), "{log}");
    assert!(log.contains("rank 1 of 2 could not start"), "{log}");
    // Rank 0 committed nothing: the folder it claimed is gone again.
    assert!(!dir.path().join("run/spec.yaml").exists(), "{log}");
}

#[test]
fn a_rank_that_sees_other_images_ends_the_whole_run() {
    let dir = project(&spec(false));
    // Rank 1's copy of the data lacks one image and has a corrupt one.
    let copy = dir.path().join("copy");
    common::shapes(&copy.join("train"), [24; 3]);
    common::shapes(&copy.join("validation"), [6; 3]);
    std::fs::remove_file(copy.join("train/bar/0.png")).expect("remove");
    std::fs::write(copy.join("train/bar/1.png"), b"not a png").expect("corrupt");
    let strata = env!("CARGO_BIN_EXE_strata");
    let output = mpirun(
        dir.path(),
        &[
            "-n",
            "1",
            strata,
            "train",
            "spec.yaml",
            "--out",
            "run",
            ":",
            "-n",
            "1",
            strata,
            "train",
            "spec.yaml",
            "--out",
            "run",
            "--data",
            "copy",
        ],
    );
    let log = text(&output);
    assert_ne!(output.status.code(), Some(0), "{log}");
    assert!(
        log.contains("the 2 ranks do not see the same data: rank 0 sees 72 training"),
        "{log}"
    );
    assert!(log.contains("rank 1 sees 70 training"), "{log}");
}

#[test]
fn a_rank_whose_share_fails_mid_run_ends_every_rank_through_mpi_abort() {
    // With `sync_bn` a rank cannot sit a batch out (the others wait for its batch-norm sums in
    // the forward pass), so a share whose every image fails to decode mid-run ends the job
    // through `MPI_Abort`. Batches of 2 on 2 ranks: a share is one image. No cache, so every
    // epoch reads the files again, and the images are spoiled once the first epoch is saved.
    let spec = spec(true)
        .replace("epochs: 3", "epochs: 1000")
        .replace("batch_size: 8", "batch_size: 2");
    let dir = project(&spec);
    let strata = env!("CARGO_BIN_EXE_strata");
    let args = ["-n", "2", strata, "train", "spec.yaml", "--out", "run"];
    let mut child = spawn_mpirun(
        dir.path(),
        &[&args[..], &["--cache-mb", "0", "--quiet"]].concat(),
    );
    let started = Instant::now();
    let saved = dir.path().join("run/history.csv");
    while !saved.exists() {
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the run ended before epoch 1 was saved"
        );
        assert!(started.elapsed() < HANG, "no epoch saved in {HANG:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    for class in std::fs::read_dir(dir.path().join("data/train")).expect("classes") {
        for image in std::fs::read_dir(class.expect("class").path()).expect("images") {
            std::fs::write(image.expect("image").path(), b"no longer an image").expect("spoil");
        }
    }
    let output = finish(child, started);
    let log = text(&output);
    assert_ne!(output.status.code(), Some(0), "{log}");
    assert!(log.contains("a rank cannot sit a batch out"), "{log}");
    assert!(log.contains("ending every rank"), "{log}");
    // The last finished epoch stays on disk for `--resume`.
    assert!(dir.path().join("run/last.safetensors").is_file(), "{log}");
}
