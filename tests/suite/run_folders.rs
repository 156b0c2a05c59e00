//! A run folder belongs to one run, and `--resume` keeps it whole: `train` refuses a folder
//! that holds another run's (or anyone's) files unless `--force` replaces an earlier run, and
//! leaves every earlier file byte for byte as it was; two processes cannot share a folder;
//! `--resume` refuses the flags it cannot honour; a damaged history is repaired from the
//! checkpoint's copy, never dropped; a checkpoint whose optimiser state does not fit, or that
//! is truncated, is refused with its code; stale temporary files are removed; and thirty
//! kill -9s at varied moments leave whole files and a run that ends as the uninterrupted
//! one.

use crate::common;

use common::run::{history_without_seconds, strata, tensors, text};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use strata::diagnostics::codes;

const SPEC: &str = "input: 16x16x1\nclasses: 3\nmodel: bn -> conv3(8, pad=same) relu -> pool2 -> dense3 softmax\ntrain:\n  lr: 0.01\n  epochs: 3\n  batch_size: 8\ndata:\n  train: data/train\n  validation: data/validation\n";

/// An answer within this is no hang (generous: the machines are shared).
const BOUND: Duration = Duration::from_secs(60);

/// A spec and its data in a temp dir.
fn project(spec: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    common::shapes(&dir.path().join("data/train"), [24; 3]);
    common::shapes(&dir.path().join("data/validation"), [6; 3]);
    std::fs::write(dir.path().join("spec.yaml"), spec).expect("spec");
    dir
}

/// Runs strata with `--format json` and returns the output and the codes of the diagnostics
/// it printed; asserts no panic and an answer within [`BOUND`] (killing it past that).
fn run_json(dir: &Path, args: &[&str]) -> (Output, Vec<String>) {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["--format", "json"])
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > BOUND {
            let _ = child.kill();
            panic!("{args:?} did not answer within {BOUND:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let output = child.wait_with_output().expect("output");
    assert_ne!(output.status.code(), Some(101), "panic: {}", text(&output));
    let codes = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|value| value["code"].as_str().map(str::to_string))
        .collect();
    (output, codes)
}

/// Every file under `dir` (recursively) with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).expect("list") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let name = path
                    .strip_prefix(dir)
                    .expect("inside")
                    .display()
                    .to_string();
                files.insert(name, std::fs::read(&path).expect("read"));
            }
        }
    }
    files
}

fn trained(spec: &str, epochs: &str) -> tempfile::TempDir {
    let dir = project(spec);
    let output = strata(
        dir.path(),
        &["train", "spec.yaml", "--out", "run", "--epochs", epochs],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    dir
}

#[test]
fn a_new_run_never_writes_into_another_runs_folder() {
    let dir = trained(SPEC, "2");
    let run = dir.path().join("run");
    // A crash of some earlier run left an interrupted checkpoint and a temporary file.
    std::fs::write(run.join("interrupted.safetensors"), b"old").expect("write");
    let before = snapshot(&run);
    let other = SPEC.replace("epochs: 3", "epochs: 1");
    std::fs::write(dir.path().join("other.yaml"), &other).expect("spec");
    let (output, found) = run_json(dir.path(), &["train", "other.yaml", "--out", "run"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert_eq!(found, [codes::RUN_FOLDER_NOT_EMPTY]);
    assert!(text(&output).contains("--resume"), "{}", text(&output));
    assert_eq!(snapshot(&run), before, "the earlier run's files changed");

    // `--force` replaces it: nothing of the earlier run is left beside the new one.
    let (output, _) = run_json(
        dir.path(),
        &["train", "other.yaml", "--out", "run", "--force", "-q"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(!run.join("interrupted.safetensors").exists());
    assert_eq!(
        std::fs::read_to_string(run.join("spec.yaml")).expect("spec"),
        other
    );
    assert_eq!(history_without_seconds(&run).len(), 2, "header and 1 epoch");
}

#[test]
fn force_never_deletes_files_strata_did_not_write() {
    let dir = project(SPEC);
    let folder = dir.path().join("notes");
    std::fs::create_dir(&folder).expect("mkdir");
    std::fs::write(folder.join("thesis.txt"), b"years of work").expect("write");
    let before = snapshot(&folder);
    for force in [false, true] {
        let mut args = vec!["train", "spec.yaml", "--out", "notes"];
        if force {
            args.push("--force");
        }
        let (output, found) = run_json(dir.path(), &args);
        assert_eq!(output.status.code(), Some(2), "{}", text(&output));
        assert_eq!(found, [codes::RUN_FOLDER_NOT_EMPTY]);
        // Not even the lock file is left behind.
        assert_eq!(snapshot(&folder), before, "force: {force}");
    }
    // A refused spec creates no folder at all.
    std::fs::write(dir.path().join("bad.yaml"), "input: 16x16x1\nmodel: nope\n").expect("spec");
    let (output, _) = run_json(dir.path(), &["train", "bad.yaml", "--out", "fresh"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(!dir.path().join("fresh").exists());
}

#[cfg(unix)]
#[test]
fn two_processes_cannot_share_a_run_folder() {
    use std::io::{BufRead, BufReader};
    let dir = project(&SPEC.replace("epochs: 3", "epochs: 100000"));
    let mut first = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["train", "spec.yaml", "--out", "run"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    // Its output is read to the end, so that it never writes into a closed pipe.
    let mut lines = BufReader::new(first.stdout.take().expect("stdout")).lines();
    let seen = lines
        .by_ref()
        .find(|line| line.as_ref().is_ok_and(|l| l.starts_with("epoch ")));
    assert!(seen.is_some(), "the first run trains");
    let drain = std::thread::spawn(move || lines.for_each(drop));
    let waited = Instant::now();
    while !dir.path().join("run/last.safetensors").exists() {
        assert!(waited.elapsed() < BOUND, "no epoch saved");
        std::thread::sleep(Duration::from_millis(10));
    }
    let holder = format!("pid {}", first.id());
    for args in [
        vec!["train", "spec.yaml", "--out", "run", "--force"],
        vec!["train", "--resume", "run"],
    ] {
        let (output, found) = run_json(dir.path(), &args);
        assert_eq!(output.status.code(), Some(2), "{}", text(&output));
        assert_eq!(found, [codes::RUN_FOLDER_IN_USE], "{args:?}");
        assert!(text(&output).contains(&holder), "{}", text(&output));
    }
    assert!(
        first.try_wait().expect("wait").is_none(),
        "the first run still trains"
    );
    first.kill().expect("kill");
    let _ = first.wait();
    let _ = drain.join();
    // The lock dies with its holder, however it ends.
    let (output, found) = run_json(dir.path(), &["train", "--resume", "run", "--epochs", "1"]);
    assert!(
        !found.iter().any(|code| code == codes::RUN_FOLDER_IN_USE),
        "{}",
        text(&output)
    );
}

#[test]
fn resume_refuses_what_it_cannot_honour_and_changes_nothing() {
    let dir = trained(SPEC, "1");
    let run = dir.path().join("run");
    let before = snapshot(&run);
    for extra in [
        &["--lr", "0.5"][..],
        &["--batch-size", "7"],
        &["--seed", "99"],
        &["--data", "data"],
        &["--out", "elsewhere"],
        &["--force"],
    ] {
        let mut args = vec!["train", "--resume", "run", "--epochs", "2"];
        args.extend_from_slice(extra);
        let (output, found) = run_json(dir.path(), &args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{extra:?}: {}",
            text(&output)
        );
        assert_eq!(found, [codes::RUN_USAGE], "{extra:?}");
        assert!(text(&output).contains(extra[0]), "{}", text(&output));
    }
    let (output, found) = run_json(dir.path(), &["train", "spec.yaml", "--resume", "run"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert_eq!(found, [codes::RUN_USAGE]);
    assert!(text(&output).contains("spec path"), "{}", text(&output));
    assert_eq!(snapshot(&run), before);
    assert!(!dir.path().join("elsewhere").exists());
}

#[test]
fn a_damaged_history_is_repaired_not_dropped() {
    let whole = trained(SPEC, "3");
    let dir = trained(SPEC, "2");
    let run = dir.path().join("run");
    std::fs::write(run.join("history.json"), b"{\"truncated").expect("damage");
    std::fs::write(run.join("history.csv"), b"epoch,loss\n1,").expect("damage");
    let (output, found) = run_json(dir.path(), &["train", "--resume", "run", "--epochs", "3"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(
        found,
        [codes::RUN_HISTORY],
        "a warning says what was repaired"
    );
    assert_eq!(
        history_without_seconds(&run),
        history_without_seconds(&whole.path().join("run"))
    );
    let json: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(run.join("history.json")).expect("json"))
            .expect("repaired json");
    assert_eq!(json.len(), 3);
}

#[test]
fn the_history_is_recovered_from_whichever_copy_is_whole() {
    use strata::train::history::{recover, to_csv};
    let dir = trained(SPEC, "2");
    let run = dir.path().join("run");
    let checkpoint =
        strata::backend::checkpoint::load(&run.join("last.safetensors")).expect("loads");
    let saved = checkpoint
        .extra
        .get("strata.history")
        .expect("history copy");
    let (from_checkpoint, warning) = recover(&run, Some(saved), 2).expect("recovers");
    assert!(warning.is_none(), "nothing is damaged");
    assert_eq!(from_checkpoint.len(), 2);
    // Without the checkpoint's copy (a run saved by an older strata) and with a damaged JSON,
    // the CSV serves, at its rounding.
    std::fs::write(run.join("history.json"), b"[").expect("damage");
    let (from_csv, warning) = recover(&run, None, 2).expect("recovers from csv");
    assert_eq!(to_csv(&from_csv), to_csv(&from_checkpoint));
    assert_eq!(warning.expect("a warning").code, codes::RUN_HISTORY);
    // A copy with fewer epochs than the checkpoint finished is not whole.
    let csv = std::fs::read_to_string(run.join("history.csv")).expect("csv");
    let one_row: String = csv.lines().take(2).map(|l| format!("{l}\n")).collect();
    std::fs::write(run.join("history.csv"), one_row).expect("cut");
    let error = recover(&run, None, 2).expect_err("no whole copy");
    assert_eq!(error.code, codes::RUN_HISTORY);
    let output = strata(dir.path(), &["train", "--resume", "run", "--epochs", "3"]);
    // The checkpoint's own copy still serves the command.
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
}

#[test]
fn a_checkpoint_that_does_not_fit_is_refused_with_its_code() {
    use strata::backend::checkpoint::{load, save};
    let dir = trained(SPEC, "1");
    let run = dir.path().join("run");
    let last = run.join("last.safetensors");
    let good = std::fs::read(&last).expect("read");

    // One optimiser moment cut short.
    let mut checkpoint = load(&last).expect("loads");
    let moment = checkpoint
        .tensors
        .iter_mut()
        .find(|t| t.name.starts_with("optimizer.") && t.data.len() > 1)
        .expect("a moment");
    moment.data.pop();
    moment.shape = vec![moment.data.len()];
    save(&last, &checkpoint).expect("save");
    let (output, found) = run_json(dir.path(), &["train", "--resume", "run", "--epochs", "2"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert_eq!(found, [codes::RUN_OPTIMIZER_STATE]);

    // One moment missing.
    let mut checkpoint = load(&last).expect("loads");
    checkpoint
        .tensors
        .retain(|t| !t.name.ends_with(".second") || !t.name.starts_with("optimizer."));
    save(&last, &checkpoint).expect("save");
    let (output, found) = run_json(dir.path(), &["train", "--resume", "run", "--epochs", "2"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert_eq!(found, [codes::RUN_OPTIMIZER_STATE]);

    // Truncated: says so, and names the file.
    std::fs::write(&last, &good[..good.len() / 2]).expect("truncate");
    let (output, found) = run_json(dir.path(), &["train", "--resume", "run", "--epochs", "2"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert_eq!(found, [codes::RUN_NO_CHECKPOINT]);
    assert!(
        text(&output).contains("truncated or corrupt"),
        "{}",
        text(&output)
    );
    assert!(
        text(&output).contains("last.safetensors"),
        "{}",
        text(&output)
    );

    // Missing: no epoch finished.
    std::fs::remove_file(&last).expect("remove");
    let (output, found) = run_json(dir.path(), &["train", "--resume", "run"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert_eq!(found, [codes::RUN_NO_CHECKPOINT]);
    assert!(text(&output).contains("no epoch"), "{}", text(&output));
    // A folder that is not a run is left as it was: no lock file appears in it.
    let before = snapshot(&dir.path().join("data"));
    let (output, found) = run_json(dir.path(), &["train", "--resume", "data"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert_eq!(found, [codes::RUN_NO_CHECKPOINT]);
    assert_eq!(snapshot(&dir.path().join("data")), before);
    let (output, found) = run_json(dir.path(), &["train", "--resume", "nowhere"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert_eq!(found, [codes::RUN_NO_CHECKPOINT]);
}

#[test]
fn training_mistakes_are_coded_diagnostics() {
    // No training folder: pointed at the spec's `data` key.
    let dir =
        project("input: 16x16x1\nclasses: 3\nmodel: dense3 softmax\ndata:\n  rescale: 1/255\n");
    let (output, found) = run_json(dir.path(), &["train", "spec.yaml", "--out", "run"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert_eq!(found, [codes::RUN_NO_TRAINING_DATA]);
    let line = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(line.contains("\"labels\":[{"), "a span: {line}");
    assert!(!dir.path().join("run").exists());

    // Classes changed under a run.
    let dir = trained(SPEC, "1");
    std::fs::rename(
        dir.path().join("data/train/bar"),
        dir.path().join("data/train/stripe"),
    )
    .expect("rename");
    std::fs::rename(
        dir.path().join("data/validation/bar"),
        dir.path().join("data/validation/stripe"),
    )
    .expect("rename");
    let (output, found) = run_json(dir.path(), &["train", "--resume", "run", "--epochs", "2"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert_eq!(found, [codes::RUN_CLASSES_CHANGED]);
    assert!(text(&output).contains("stripe"), "{}", text(&output));

    // A NaN in the first epoch saved nothing, and says so.
    let dir = project(SPEC);
    let output = strata(
        dir.path(),
        &["train", "spec.yaml", "--out", "run", "--lr", "1e30"],
    );
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("no epoch finished"),
        "{}",
        text(&output)
    );
    assert!(!dir.path().join("run/last.safetensors").exists());
}

#[test]
fn an_unwritable_out_names_its_path() {
    let dir = project(SPEC);
    std::fs::write(dir.path().join("plain"), b"a file").expect("write");
    let output = strata(dir.path(), &["train", "spec.yaml", "--out", "plain/run"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("plain/run"), "{}", text(&output));
    let output = strata(dir.path(), &["train", "spec.yaml", "--out", "plain"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("`plain`"), "{}", text(&output));
}

/// The files a kill may leave, each checked whole: the spec, both histories, the state, both
/// checkpoints and the curves. Returns the epochs `last.safetensors` finished (0: none yet).
fn assert_whole(run: &Path, spec: &str, attempt: usize) -> u64 {
    let names: Vec<String> = std::fs::read_dir(run)
        .expect("list")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    for name in &names {
        let known = strata::train::run_folder::RUN_FILES.contains(&name.as_str())
            || name == strata::train::run_folder::LOCK_FILE
            || (name.starts_with('.') && name.contains(".tmp"));
        assert!(known, "attempt {attempt}: unexpected `{name}`");
    }
    if let Ok(text) = std::fs::read_to_string(run.join("spec.yaml")) {
        assert_eq!(text, spec, "attempt {attempt}: spec.yaml");
    }
    let last = run.join("last.safetensors");
    if !last.exists() {
        return 0;
    }
    let checkpoint = strata::backend::checkpoint::load(&last).expect("last loads");
    let state: serde_json::Value =
        serde_json::from_str(&checkpoint.extra["strata.state"]).expect("state");
    let done = state["completed_epochs"].as_u64().expect("epochs");
    strata::backend::checkpoint::load(&run.join("best.safetensors")).expect("best loads");
    let json = std::fs::read(run.join("history.json")).expect("history.json");
    let records: Vec<serde_json::Value> = serde_json::from_slice(&json).expect("whole json");
    assert!(records.len() as u64 >= done, "attempt {attempt}");
    let csv = std::fs::read_to_string(run.join("history.csv")).expect("history.csv");
    let rows = strata::train::history::from_csv(&csv).expect("whole csv");
    assert!(rows.len() as u64 >= done, "attempt {attempt}");
    let state = std::fs::read(run.join("state.json")).expect("state.json");
    serde_json::from_slice::<serde_json::Value>(&state).expect("whole state.json");
    let png = std::fs::read(run.join("curves.png")).expect("curves.png");
    image::load_from_memory(&png).expect("whole curves.png");
    done
}

#[cfg(unix)]
#[test]
fn thirty_kills_at_varied_moments_lose_nothing() {
    use std::io::{BufRead, BufReader};
    let spec = SPEC.replace("epochs: 3", "epochs: 100000");
    let dir = project(&spec);
    let run = dir.path().join("run");
    // A fixed pseudo-random sequence of moments: some kills land in start-up or mid-epoch,
    // some a few microseconds after an epoch line (printed just before that epoch's files are
    // written), inside the writes.
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |modulo: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % modulo
    };
    let mut kills = 0;
    let mut attempt = 0;
    while kills < 30 {
        attempt += 1;
        assert!(attempt < 200, "no progress");
        let args: Vec<&str> = if run.join("last.safetensors").exists() {
            vec!["train", "--resume", "run"]
        } else {
            vec!["train", "spec.yaml", "--out", "run", "--force"]
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(&args)
            .current_dir(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        // The pipe stays open until the kill: a closed one would end the run at its next
        // line instead.
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        if kills % 2 == 0 {
            let nth = next(3) as usize;
            let _ = lines
                .by_ref()
                .filter(|line| line.as_ref().is_ok_and(|l| l.starts_with("epoch ")))
                .nth(nth);
            std::thread::sleep(Duration::from_micros(next(3000)));
        } else {
            std::thread::sleep(Duration::from_millis(5 + next(300)));
        }
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        drop(lines);
        kills += 1;
        assert_whole(&run, &spec, attempt);
    }
    let done = assert_whole(&run, &spec, attempt);
    assert!(done >= 2, "the run made progress through the kills: {done}");
    let target = (done + 1).to_string();
    let output = strata(
        dir.path(),
        &["train", "--resume", "run", "--epochs", &target],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_whole(&run, &spec, attempt + 1);
    let stale: Vec<String> = std::fs::read_dir(&run)
        .expect("list")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.contains(".tmp"))
        .collect();
    assert!(stale.is_empty(), "stale temporary files: {stale:?}");
    // The same epochs in one uninterrupted run: the same history (but timing) and weights.
    let output = strata(
        dir.path(),
        &["train", "spec.yaml", "--out", "whole", "--epochs", &target],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let whole = dir.path().join("whole");
    assert_eq!(
        history_without_seconds(&run),
        history_without_seconds(&whole)
    );
    assert_eq!(
        tensors(&run.join("best.safetensors")),
        tensors(&whole.join("best.safetensors"))
    );
    assert_eq!(
        tensors(&run.join("last.safetensors")),
        tensors(&whole.join("last.safetensors"))
    );
}
