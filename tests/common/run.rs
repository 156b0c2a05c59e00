//! Running the built `strata` binary in a project folder and reading what a run wrote.

use std::path::Path;
use std::process::{Command, Output};

/// Runs the built `strata` binary with `args` in `dir`, without colour.
pub fn strata(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("run")
}

/// stdout then stderr of `output`, as text.
pub fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Every column of `history.csv` but `seconds` (timing).
pub fn history_without_seconds(run: &Path) -> Vec<String> {
    let csv = std::fs::read_to_string(run.join("history.csv")).expect("history");
    let header: Vec<&str> = csv.lines().next().expect("header").split(',').collect();
    let seconds = header
        .iter()
        .position(|column| *column == "seconds")
        .expect("seconds column");
    csv.lines()
        .map(|line| {
            let mut columns: Vec<&str> = line.split(',').collect();
            columns.remove(seconds);
            columns.join(",")
        })
        .collect()
}

/// The weights and optimiser moments of a checkpoint, by name, as raw bytes.
pub fn tensors(path: &Path) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(path).expect("checkpoint");
    let tensors = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let mut named: Vec<(String, Vec<u8>)> = tensors
        .tensors()
        .into_iter()
        .map(|(name, view)| (name, view.data().to_vec()))
        .collect();
    named.sort();
    named
}

/// The learning rates of `history.json`.
pub fn learning_rates(run: &Path) -> Vec<f64> {
    let json = std::fs::read_to_string(run.join("history.json")).expect("history.json");
    let records: Vec<serde_json::Value> = serde_json::from_str(&json).expect("records");
    records
        .iter()
        .map(|record| record["lr"].as_f64().expect("lr"))
        .collect()
}
