//! Snapshot tests of every diagnostic code over the fixture specs in
//! `tests/fixtures/diagnostics/<code>/`, where `<code>` is the code without `strata::`
//! (`layer.unknown` holds specs that must report `strata::layer::unknown`). Each snapshot
//! holds the spec, the rendered report (ASCII, no colour, 80 columns) and the JSON lines.

use crate::common;

use strata::diagnostics::{codes, render_human, render_json, HumanStyle, SourceFile};

fn fixture_dir() -> std::path::PathBuf {
    common::root().join("tests/fixtures/diagnostics")
}

/// The spec as the snapshot shows it: whole, or its first lines and its size when it is
/// longer than 2 KiB (the `spec.too_large` fixture is over a megabyte).
fn shown(text: &str) -> String {
    const SHOWN: usize = 2048;
    if text.len() <= SHOWN {
        return text.to_string();
    }
    let mut end = SHOWN;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let head = &text[..end];
    let head = &head[..head.rfind('\n').map_or(0, |idx| idx + 1)];
    format!("{head}… ({} bytes in all)\n", text.len())
}

fn code_of_dir(dir: &str) -> String {
    format!("strata::{}", dir.replace('.', "::"))
}

#[test]
fn every_fixture_reports_its_code_and_matches_its_snapshot() {
    let files = common::yaml_files(&fixture_dir());
    assert!(
        files.len() >= codes::ALL.len(),
        "too few fixtures: {}",
        files.len()
    );
    for path in files {
        let dir = path
            .parent()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(&path).expect("fixture readable");
        let name = common::relative(&path);
        let compiled = strata::compile(&text, "fixture");
        let expected = code_of_dir(&dir);
        assert!(
            compiled.diagnostics.iter().any(|d| d.code == expected),
            "{name} does not report {expected}: {:?}",
            compiled
                .diagnostics
                .iter()
                .map(|d| d.code)
                .collect::<Vec<_>>()
        );
        let source = SourceFile::new(name.clone(), text.clone());
        let mut report = format!("--- spec\n{}--- report\n", shown(&text));
        for diagnostic in &compiled.diagnostics {
            report.push_str(&render_human(diagnostic, &source, HumanStyle::Test));
            report.push('\n');
        }
        report.push_str("--- json\n");
        for diagnostic in &compiled.diagnostics {
            report.push_str(&render_json(diagnostic, &source));
            report.push('\n');
        }
        let snapshot = name
            .trim_start_matches("tests/fixtures/diagnostics/")
            .trim_end_matches(".yaml")
            .replace('/', "__");
        insta::with_settings!({snapshot_path => "../snapshots/diagnostics", prepend_module_to_snapshot => false}, {
            insta::assert_snapshot!(snapshot, report);
        });
    }
}

#[test]
fn every_code_has_a_fixture() {
    for code in codes::ALL {
        let dir = fixture_dir().join(code.trim_start_matches("strata::").replace("::", "."));
        let files = common::yaml_files(&dir);
        assert!(
            !files.is_empty(),
            "no fixture spec for {code} in {}",
            dir.display()
        );
    }
}

#[test]
fn every_fixture_folder_names_a_known_code() {
    let entries = std::fs::read_dir(fixture_dir()).expect("fixture folder");
    for entry in entries.flatten() {
        let code = code_of_dir(&entry.file_name().to_string_lossy());
        assert!(
            codes::ALL.contains(&code.as_str()),
            "fixture folder for unknown code {code}"
        );
    }
}

#[test]
fn every_diagnostic_has_a_primary_label_inside_the_file() {
    for path in common::yaml_files(&fixture_dir()) {
        let text = std::fs::read_to_string(&path).expect("fixture readable");
        for diagnostic in strata::compile(&text, "fixture").diagnostics {
            let primary = diagnostic.primary().expect("primary label");
            assert!(
                primary.span.end() <= text.len(),
                "{}: label past the end",
                path.display()
            );
            assert!(
                text.is_char_boundary(primary.span.offset)
                    && text.is_char_boundary(primary.span.end())
            );
            assert!(
                !diagnostic.message.ends_with('.'),
                "message ends with a period: {}",
                diagnostic.message
            );
        }
    }
}
