//! `strata layers` and `strata explain` as a user runs them, and docs/diagnostics.md, which
//! `explain` prints: every section has an example that reports its code, and a fix.

use crate::common;

use std::collections::BTreeSet;
use std::process::{Command, Output};
use strata::catalogue::{LayerKind, ShorthandRole, LAYERS};
use strata::diagnostics::{codes, Severity};

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

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn every_code() -> Vec<&'static str> {
    codes::ALL
        .iter()
        .chain(codes::DATA)
        .chain(codes::RUN)
        .chain(codes::CHECKPOINT)
        .copied()
        .collect()
}

#[test]
fn layers_lists_every_layer_merge_and_activation() {
    let output = strata(&["layers"]);
    assert_eq!(output.status.code(), Some(0));
    let text = stdout(&output);
    for decl in LAYERS {
        let heading = text
            .lines()
            .find(|line| line.starts_with(&format!("{} ", decl.name)))
            .unwrap_or_else(|| panic!("no entry for `{}`:\n{text}", decl.name));
        assert!(
            heading.ends_with(&format!("Keras {}", decl.keras)),
            "{heading}"
        );
        for alias in decl.aliases {
            assert!(heading.contains(alias), "{heading}");
        }
        assert!(text.contains(decl.doc), "{}", decl.name);
        if decl.param_rule != "-" {
            assert!(text.contains(decl.param_rule), "{}", decl.name);
        }
        for arg in decl.args {
            assert!(text.contains(arg.doc), "{}.{}", decl.name, arg.name);
        }
    }
    assert!(text.contains("conv(filters, kernel, stride=1, pad=valid, bias=true, groups=1)"));
    assert!(text.contains("conv3 or conv3x5 sets `kernel`"));
    assert!(text.contains("dense128 sets `units`"));
    let layers = text.find("Layers").expect("layers");
    let merges = text.find("Merges").expect("merges");
    let activations = text.find("Activations").expect("activations");
    assert!(layers < merges && merges < activations);
}

#[test]
fn layers_json_is_the_catalogue() {
    let output = strata(&["layers", "--format", "json"]);
    assert_eq!(output.status.code(), Some(0));
    let value: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("json");
    let entries = value.as_array().expect("an array");
    assert_eq!(entries.len(), LAYERS.len());
    for (entry, decl) in entries.iter().zip(LAYERS) {
        assert_eq!(entry["name"], decl.name);
        assert_eq!(entry["keras"], decl.keras);
        assert_eq!(entry["doc"], decl.doc);
        assert_eq!(entry["params"], decl.param_rule);
        let aliases: Vec<&str> = entry["aliases"]
            .as_array()
            .expect("aliases")
            .iter()
            .filter_map(|alias| alias.as_str())
            .collect();
        assert_eq!(aliases, decl.aliases);
        let kind = match decl.kind {
            LayerKind::Merge(_) => "merge",
            LayerKind::Activation(_) => "activation",
            _ => "layer",
        };
        assert_eq!(entry["kind"], kind, "{}", decl.name);
        match decl.shorthand {
            ShorthandRole::None => assert!(entry["shorthand"].is_null(), "{}", decl.name),
            ShorthandRole::Window(fills) | ShorthandRole::Count(fills) => {
                assert_eq!(entry["shorthand"]["fills"], fills, "{}", decl.name)
            }
        }
        let positional: Vec<&str> = entry["positional"]
            .as_array()
            .expect("positional")
            .iter()
            .filter_map(|name| name.as_str())
            .collect();
        let expected: Vec<&str> = decl.args[..decl.n_positional]
            .iter()
            .map(|arg| arg.name)
            .collect();
        assert_eq!(positional, expected, "{}", decl.name);
        let arguments = entry["arguments"].as_array().expect("arguments");
        assert_eq!(arguments.len(), decl.args.len(), "{}", decl.name);
        for (argument, arg) in arguments.iter().zip(decl.args) {
            assert_eq!(argument["name"], arg.name);
            assert_eq!(argument["required"], arg.default.is_none());
            match arg.default {
                Some(default) => assert_eq!(argument["default"], default),
                None => assert!(argument["default"].is_null()),
            }
            assert!(argument["type"].is_string());
        }
    }
    let conv = &entries[1];
    assert_eq!(conv["name"], "conv");
    assert_eq!(conv["arguments"][0]["type"], "int");
    assert_eq!(conv["arguments"][0]["min"], 1);
    assert_eq!(conv["arguments"][3]["choices"][1], "same");
}

#[test]
fn explain_accepts_every_spelling_of_a_code() {
    let expected = strata(&["explain", "strata::layer::unknown"]);
    assert_eq!(expected.status.code(), Some(0));
    let text = stdout(&expected);
    assert!(text.starts_with("strata::layer::unknown\n\n"), "{text}");
    assert!(text.contains("neither a layer"), "{text}");
    for written in [
        "layer::unknown",
        "layer.unknown",
        "strata.layer.unknown",
        "STRATA::LAYER::UNKNOWN",
    ] {
        let output = strata(&["explain", written]);
        assert_eq!(output.status.code(), Some(0), "{written}");
        assert_eq!(stdout(&output), text, "{written}");
    }
}

#[test]
fn explain_prints_one_section_with_its_example_and_no_markers() {
    let output = strata(&["explain", "shape::mismatch"]);
    let text = stdout(&output);
    assert!(text.contains("```yaml"), "{text}");
    assert!(text.contains("Fix:"), "{text}");
    assert!(!text.contains("<!--"), "{text}");
    assert!(!text.contains("## "), "runs into the next section:\n{text}");
    assert!(!text.contains("strata::block::recursion"), "{text}");
}

#[test]
fn every_code_is_explained() {
    for code in every_code() {
        let output = strata(&["explain", code]);
        assert_eq!(output.status.code(), Some(0), "{code}: {}", stderr(&output));
        assert!(stdout(&output).starts_with(code), "{code}");
    }
}

#[test]
fn explain_json_has_the_code_and_the_text() {
    let output = strata(&["explain", "--format", "json", "lint.unused_block"]);
    assert_eq!(output.status.code(), Some(0));
    let value: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("json");
    assert_eq!(value["code"], "strata::lint::unused_block");
    let explanation = value["explanation"].as_str().expect("text");
    assert!(explanation.starts_with("Warning: a block"), "{explanation}");
}

#[test]
fn explain_an_unknown_code_exits_2_with_a_suggestion() {
    let output = strata(&["explain", "layer::unknwn"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stdout(&output).is_empty());
    let message = stderr(&output);
    assert!(
        message.contains("unknown diagnostic code `layer::unknwn`"),
        "{message}"
    );
    assert!(
        message.contains("did you mean `strata::layer::unknown`?"),
        "{message}"
    );
    let output = strata(&["explain", "no-such-thing"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("`strata explain` lists every code"));
}

#[test]
fn explain_without_a_code_lists_them_all() {
    let output = strata(&["explain"]);
    assert_eq!(output.status.code(), Some(0));
    let text = stdout(&output);
    for code in every_code() {
        assert!(
            text.lines()
                .any(|line| line.starts_with(&format!("{code} "))),
            "{code} missing:\n{text}"
        );
    }
    let output = strata(&["explain", "--format", "json"]);
    let value: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("json");
    assert_eq!(
        value.as_array().map(Vec::len),
        Some(every_code().len()),
        "one entry per code"
    );
}

/// One `## strata::…` section of docs/diagnostics.md.
struct Section {
    code: String,
    text: String,
}

fn sections() -> Vec<Section> {
    let page = std::fs::read_to_string(common::root().join("docs/diagnostics.md"))
        .expect("docs/diagnostics.md");
    let mut found: Vec<Section> = Vec::new();
    for line in page.lines() {
        if let Some(code) = line.strip_prefix("## ") {
            found.push(Section {
                code: code.trim().to_string(),
                text: String::new(),
            });
        } else if let Some(section) = found.last_mut() {
            section.text.push_str(line);
            section.text.push('\n');
        }
    }
    found
}

/// A fenced block of a section, with the `(severity, code)` markers right above it.
struct Fenced {
    lang: String,
    body: String,
    expected: BTreeSet<(String, String)>,
}

fn fenced(text: &str) -> Vec<Fenced> {
    let mut found = Vec::new();
    let mut expected = BTreeSet::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let trimmed = line.trim();
        if let Some(marker) = trimmed
            .strip_prefix("<!--")
            .and_then(|rest| rest.strip_suffix("-->"))
        {
            if let Some((severity, code)) = marker.trim().split_once(": ") {
                expected.insert((severity.to_string(), code.trim().to_string()));
            }
            continue;
        }
        if let Some(lang) = trimmed.strip_prefix("```") {
            let mut body = String::new();
            for inner in lines.by_ref() {
                if inner.trim() == "```" {
                    break;
                }
                body.push_str(inner);
                body.push('\n');
            }
            found.push(Fenced {
                lang: lang.to_string(),
                body,
                expected: std::mem::take(&mut expected),
            });
            continue;
        }
        if !trimmed.is_empty() {
            expected.clear();
        }
    }
    found
}

#[test]
fn every_diagnostics_section_has_an_example_and_a_fix() {
    let sections = sections();
    let documented: Vec<&str> = sections.iter().map(|s| s.code.as_str()).collect();
    assert_eq!(
        documented,
        every_code(),
        "one section per code, in codes.rs order"
    );
    let mut failures = Vec::new();
    for section in &sections {
        let code = section.code.as_str();
        assert!(section.text.contains("Fix:"), "{code}: no `Fix:`");
        let blocks = fenced(&section.text);
        if codes::DATA.contains(&code)
            || codes::RUN.contains(&code)
            || codes::CHECKPOINT.contains(&code)
            || codes::TOO_LARGE_TO_SHOW.contains(&code)
        {
            assert!(
                blocks.iter().any(|block| block.lang == "text"),
                "{code}: no example"
            );
            continue;
        }
        let severity = if code.starts_with("strata::lint::") {
            "warning"
        } else {
            "error"
        };
        let own = (severity.to_string(), code.to_string());
        assert!(
            blocks
                .iter()
                .any(|block| block.lang == "yaml" && block.expected.contains(&own)),
            "{code}: no YAML example marked `<!-- {severity}: {code} -->`"
        );
        for block in blocks.iter().filter(|block| block.lang == "yaml") {
            let compiled = strata::compile(&block.body, "example");
            let got: BTreeSet<(String, String)> = compiled
                .diagnostics
                .iter()
                .map(|diagnostic| {
                    let severity = match diagnostic.severity {
                        Severity::Error => "error",
                        Severity::Warning => "warning",
                    };
                    (severity.to_string(), diagnostic.code.to_string())
                })
                .collect();
            if got != block.expected {
                failures.push(format!(
                    "{code}: expected {:?}, got {got:?}\n{}",
                    block.expected, block.body
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
