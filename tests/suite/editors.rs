//! The editor files stay in step with the compiler: the VS Code grammar highlights every layer
//! and activation of the catalogue, its JSON files parse, and `strata schema` describes every
//! spec key.

use serde_json::Value;

fn read_json(path: &str) -> Value {
    let path = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{path}: {err}"));
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("{path}: {err}"))
}

#[test]
fn the_vscode_grammar_names_every_layer_and_activation() {
    let grammar = read_json("editors/vscode/syntaxes/strata-model.injection.json");
    let repository = &grammar["repository"];
    let layers = repository["layer"]["match"].as_str().unwrap_or_default();
    let activations = repository["activation"]["match"]
        .as_str()
        .unwrap_or_default();
    for decl in strata::catalogue::LAYERS {
        let pattern = if decl.is_activation() {
            activations
        } else {
            layers
        };
        for name in decl.names() {
            assert!(
                pattern.contains(&format!("({name}|"))
                    || pattern.contains(&format!("|{name}|"))
                    || pattern.contains(&format!("|{name})")),
                "the grammar does not highlight `{name}`"
            );
        }
    }
    assert_eq!(grammar["injectionSelector"], "L:source.yaml");
}

#[test]
fn the_vscode_package_starts_the_server_on_spec_files() {
    let package = read_json("editors/vscode/package.json");
    assert_eq!(package["main"], "./extension.js");
    let selector = &package["contributes"]["configuration"]["properties"]
        ["strata.documentSelector"]["default"];
    assert!(selector
        .as_array()
        .is_some_and(|patterns| patterns.contains(&Value::from("**/*.strata.yaml"))));
    let extension = std::fs::read_to_string(format!(
        "{}/editors/vscode/extension.js",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("extension.js");
    assert!(extension.contains("args: ['lsp']"));
}

#[test]
fn the_schema_describes_every_spec_key() {
    let schema = strata::spec::schema();
    let properties = &schema["properties"];
    for key in strata::spec::TOP_KEYS {
        assert!(
            properties[key.key]["description"].is_string(),
            "{}",
            key.key
        );
    }
    for key in strata::spec::TRAIN_KEYS {
        assert!(
            properties["train"]["properties"][key.key].is_object(),
            "train.{}",
            key.key
        );
    }
    for key in strata::spec::DATA_KEYS {
        assert!(
            properties["data"]["properties"][key.key].is_object(),
            "data.{}",
            key.key
        );
    }
    assert_eq!(schema["required"], serde_json::json!(["input", "model"]));
    assert_eq!(
        properties["defaults"]["properties"]["conv"]["properties"]["pad"]["enum"],
        serde_json::json!(["valid", "same"])
    );
}

#[test]
fn strata_schema_prints_the_schema_as_json() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("schema")
        .output()
        .expect("strata schema runs");
    assert!(output.status.success());
    let printed: Value = serde_json::from_slice(&output.stdout).expect("json on stdout");
    assert_eq!(printed, strata::spec::schema());
}
