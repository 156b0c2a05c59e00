//! The Keras model zoo written as strata specs (`specs/zoo/`) and the example specs whose header
//! records Keras's counts: every one compiles without a diagnostic, and its total, trainable and
//! non-trainable parameter counts equal the numbers Keras printed.

use crate::common;

use std::path::Path;

/// Keras's counts: total, trainable, non-trainable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Counts {
    total: u64,
    trainable: u64,
    non_trainable: u64,
}

/// Compiles the spec at `path`; panics on any diagnostic, warning or error.
fn compile_clean(path: &Path) -> strata::ir::Model {
    let name = common::relative(path);
    let text = std::fs::read_to_string(path).expect("spec readable");
    let stem = path
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .expect("file stem");
    let compiled = strata::compile(&text, &stem);
    let diagnostics: Vec<String> = compiled
        .diagnostics
        .iter()
        .map(|d| format!("{} {}: {}", d.severity, d.code, d.message))
        .collect();
    assert!(
        diagnostics.is_empty(),
        "{name} has diagnostics:\n{}",
        diagnostics.join("\n")
    );
    compiled.model.expect("a model without diagnostics")
}

fn counts_of(model: &strata::ir::Model) -> Counts {
    Counts {
        total: model.params.total(),
        trainable: model.params.trainable,
        non_trainable: model.params.non_trainable,
    }
}

/// `8,062,504` → 8062504.
fn number(token: &str) -> Option<u64> {
    let digits: String = token.chars().filter(|ch| *ch != ',').collect();
    if digits.is_empty() || !digits.chars().all(|ch| ch.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The comment lines at the top of a spec, without `#`, joined by spaces.
fn header(text: &str) -> String {
    text.lines()
        .take_while(|line| line.trim_start().starts_with('#'))
        .map(|line| line.trim_start().trim_start_matches('#').trim())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Every "N params total / N trainable / N non-trainable" of a header, in order.
fn header_counts(header: &str) -> Vec<Counts> {
    let tokens: Vec<&str> = header.split_whitespace().collect();
    let mut found = Vec::new();
    for at in 1..tokens.len() {
        let window = |offset: usize| tokens.get(at + offset).copied().unwrap_or("");
        if window(0) != "params" || window(1) != "total" || window(2) != "/" {
            continue;
        }
        let parsed = (|| {
            let total = number(tokens[at - 1])?;
            let trainable = number(window(3))?;
            if window(4) != "trainable" || window(5) != "/" {
                return None;
            }
            let non_trainable = number(window(6))?;
            window(7).starts_with("non-trainable").then_some(Counts {
                total,
                trainable,
                non_trainable,
            })
        })();
        if let Some(counts) = parsed {
            found.push(counts);
        }
    }
    found
}

#[test]
fn the_header_parser_reads_the_counts_across_lines() {
    let text = "# A model.\n# Keras equivalent: x — 274,042 params total /\n# 272,474 trainable / 1,568 non-trainable.\nname: x\n";
    assert_eq!(
        header_counts(&header(text)),
        vec![Counts {
            total: 274_042,
            trainable: 272_474,
            non_trainable: 1_568
        }]
    );
    assert!(header_counts(&header("# no counts here\ninput: 8x8x1\n")).is_empty());
}

#[test]
fn every_zoo_spec_compiles_cleanly_with_keras_counts() {
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::root().join("tests/data/keras_zoo_params.json"))
            .expect("keras_zoo_params.json readable"),
    )
    .expect("keras_zoo_params.json is JSON");
    let recorded = json["models"].as_object().expect("`models` object");
    let files = common::yaml_files(&common::root().join("specs/zoo"));
    assert!(files.len() >= 6, "{} zoo specs", files.len());
    let mut stems = Vec::new();
    for path in &files {
        let name = common::relative(path);
        let stem = path
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .expect("file stem");
        let entry = recorded
            .get(&stem)
            .unwrap_or_else(|| panic!("{name}: no `{stem}` in keras_zoo_params.json"));
        let keras = Counts {
            total: entry["total"].as_u64().expect("total"),
            trainable: entry["trainable"].as_u64().expect("trainable"),
            non_trainable: entry["non_trainable"].as_u64().expect("non_trainable"),
        };
        assert_eq!(
            keras.total,
            keras.trainable + keras.non_trainable,
            "{stem}: the recorded counts do not add up"
        );
        let model = compile_clean(path);
        assert_eq!(counts_of(&model), keras, "{name}");
        let input: Vec<usize> = entry["input"]
            .as_array()
            .expect("input")
            .iter()
            .map(|dim| dim.as_u64().expect("dimension") as usize)
            .collect();
        assert_eq!(model.input.dims(), input, "{name}: input");
        // The header quotes the same numbers (after the input layers the spec leaves out).
        let text = std::fs::read_to_string(path).expect("spec readable");
        assert!(
            header_counts(&header(&text)).contains(&keras)
                || header(&text).contains(&strata::suggest::grouped(keras.total)),
            "{name}: the header does not quote Keras's {keras:?}"
        );
        // A zoo model is a classifier over Keras's 1000 ImageNet classes.
        assert_eq!(model.classes, 1000, "{name}");
        stems.push(stem);
    }
    for key in recorded.keys() {
        assert!(
            stems.contains(key),
            "keras_zoo_params.json records `{key}` but specs/zoo has no {key}.yaml"
        );
    }
}

#[test]
fn example_specs_match_the_keras_counts_in_their_headers() {
    let mut checked = Vec::new();
    for path in common::yaml_files(&common::root().join("specs/examples")) {
        let name = common::relative(&path);
        let text = std::fs::read_to_string(&path).expect("spec readable");
        let counts = header_counts(&header(&text));
        let Some(keras) = counts.first().copied() else {
            continue;
        };
        assert_eq!(counts.len(), 1, "{name}: several counts in the header");
        let model = compile_clean(&path);
        assert_eq!(counts_of(&model), keras, "{name}");
        let stem = path
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .expect("file stem");
        checked.push(stem);
    }
    for expected in [
        "resnet_small",
        "mobilenetv2_small",
        "inception_small",
        "se_sepconv",
        "densenet_small",
    ] {
        assert!(
            checked.iter().any(|stem| stem == expected),
            "specs/examples/{expected}.yaml: no \"N params total / N trainable / N non-trainable\" in its header (found {checked:?})"
        );
    }
}
