//! The `strata` binary as a user runs it: exit codes 0 / 1 / 2 and the output formats.

use crate::common;

use std::process::{Command, Output};

fn strata(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .current_dir(common::root())
        .env("NO_COLOR", "1")
        .output()
        .expect("run strata")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

const BAD: &str = "tests/fixtures/diagnostics/layer.unknown/typo.yaml";
const WARNS: &str = "tests/fixtures/diagnostics/lint.double_activation/relu_relu.yaml";

#[test]
fn check_exit_codes() {
    assert_eq!(
        strata(&[
            "check",
            "specs/seed/deep_bn.yaml",
            "specs/seed/wide_bn.yaml"
        ])
        .status
        .code(),
        Some(0)
    );
    assert_eq!(strata(&["check", BAD]).status.code(), Some(1));
    assert_eq!(strata(&["check", WARNS]).status.code(), Some(0));
    assert_eq!(
        strata(&["check", "--deny-warnings", WARNS]).status.code(),
        Some(1)
    );
    assert_eq!(
        strata(&["check", "no/such/spec.yaml"]).status.code(),
        Some(2)
    );
    assert_eq!(strata(&["check"]).status.code(), Some(2));
    assert_eq!(
        strata(&["check", "--no-such-flag", BAD]).status.code(),
        Some(2)
    );
    assert_eq!(strata(&["summary", BAD]).status.code(), Some(1));
}

#[test]
fn human_output_is_plain_when_piped() {
    let output = strata(&["check", BAD]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown layer `maxpol`"), "{stderr}");
    assert!(stderr.contains("did you mean `maxpool`?"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "colour codes in piped output");
}

#[test]
fn json_lines_have_the_design_shape() {
    let output = strata(&["check", "--format", "json", BAD]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    let value: serde_json::Value = serde_json::from_str(lines[0]).expect("json line");
    assert_eq!(value["code"], "strata::layer::unknown");
    assert_eq!(value["severity"], "error");
    assert_eq!(value["help"], "did you mean `maxpool`?");
    assert_eq!(value["filename"], BAD);
    let label = &value["labels"][0];
    let spec = std::fs::read_to_string(common::root().join(BAD)).expect("spec");
    let offset = label["span"]["offset"].as_u64().expect("offset") as usize;
    let length = label["span"]["length"].as_u64().expect("length") as usize;
    assert_eq!(&spec[offset..offset + length], "maxpol");
    assert_eq!(
        (label["line"].as_u64(), label["column"].as_u64()),
        (Some(2), Some(31))
    );
}

#[test]
fn github_annotations() {
    let output = strata(&["check", "--format", "github", BAD]);
    let text = stdout(&output);
    assert!(
        text.starts_with(&format!("::error file={BAD},line=2,col=31,endLine=2,endColumn=37,title=strata%3A%3Alayer%3A%3Aunknown::unknown layer `maxpol`")),
        "{text}"
    );
}

#[test]
fn summary_table_and_json() {
    let output = strata(&["summary", "specs/seed/deep_bn.yaml"]);
    assert_eq!(output.status.code(), Some(0));
    let text = stdout(&output);
    assert!(text.contains("Total params: 10,034"), "{text}");
    assert!(text.contains("Non-trainable params: 6"), "{text}");
    let output = strata(&["summary", "--format", "json", "specs/seed/wide_bn.yaml"]);
    let value: serde_json::Value = serde_json::from_str(stdout(&output).trim()).expect("json");
    assert_eq!(value["total_params"], 35114);
    assert_eq!(
        value["layers"][1]["output_shape"],
        serde_json::json!([223, 223, 100])
    );
}
