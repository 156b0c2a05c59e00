//! A diagnostic inside `model` points at the spec file's characters whatever the YAML scalar
//! style: plain, single-quoted, double-quoted, literal `|`, folded `>`, and plain over lines.

use strata::diagnostics::codes;

/// Compiles `text` and returns the characters under the primary label of the first
/// `layer::unknown` diagnostic.
fn labelled(text: &str) -> String {
    let compiled = strata::compile(text, "styles");
    let diagnostic = compiled
        .diagnostics
        .iter()
        .find(|d| d.code == codes::LAYER_UNKNOWN)
        .unwrap_or_else(|| panic!("no layer::unknown in {:?}", compiled.diagnostics));
    let span = diagnostic.primary().expect("primary").span;
    text[span.offset..span.end()].to_string()
}

#[test]
fn plain_scalar() {
    assert_eq!(
        labelled("input: 8x8x1\nmodel: bn -> cnov3(4) -> dense2 softmax\n"),
        "cnov"
    );
}

#[test]
fn single_quoted_scalar_with_doubled_quote() {
    // An empty line folds into a line break, which ends the `#` comment.
    assert_eq!(
        labelled("input: 8x8x1\nmodel: 'bn # it''s\n\n  -> cnov3(4) -> dense2 softmax'\n"),
        "cnov"
    );
}

#[test]
fn double_quoted_scalar_with_escapes() {
    assert_eq!(
        labelled("input: 8x8x1\nmodel: \"bn ->\\t\\x20cnov3(4) -> dense2 softmax\"\n"),
        "cnov"
    );
}

#[test]
fn literal_block_scalar_with_comments() {
    let text = "input: 8x8x1\nmodel: |\n  bn            # normalise\n  -> cnov3(4)   # typo\n  -> dense2 softmax\ntrain:\n  lr: 0.1\n";
    assert_eq!(labelled(text), "cnov");
}

#[test]
fn literal_block_scalar_with_indentation_indicator() {
    let text = "input: 8x8x1\nmodel: |2-\n    bn\n    -> cnov3(4) -> dense2 softmax\n";
    assert_eq!(labelled(text), "cnov");
}

#[test]
fn folded_block_scalar() {
    let text = "input: 8x8x1\nmodel: >\n  bn ->\n  cnov3(4) ->\n\n  dense2 softmax\n";
    assert_eq!(labelled(text), "cnov");
}

#[test]
fn plain_scalar_over_several_lines() {
    let text = "input: 8x8x1\nmodel: bn ->\n   conv3(4) relu ->\n     cnov3(4) -> dense2 softmax\n";
    assert_eq!(labelled(text), "cnov");
}

#[test]
fn non_ascii_text_before_the_error() {
    let text =
        "# modèle 🚀\ninput: 8x8x1\nmodel: |\n  bn  # é 🚀\n  -> cnov3(4) -> dense2 softmax\n";
    assert_eq!(labelled(text), "cnov");
}

#[test]
fn the_value_span_of_every_key_is_known() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/specs/seed/deep_bn.yaml"
    ))
    .expect("spec");
    let compiled = strata::compile(&text, "deep");
    let spec = compiled.spec.expect("spec");
    for (path, expected) in [
        ("input", "224x224x3"),
        ("classes", "2"),
        ("train.lr", "0.01"),
        ("train.batch_size", "10"),
        ("data.rescale", "1/255"),
    ] {
        let span = spec
            .value_span(path)
            .unwrap_or_else(|| panic!("no span for {path}"));
        assert_eq!(&text[span.offset..span.end()], expected, "{path}");
    }
    let key = spec.key_span("train.epochs").expect("key span");
    assert_eq!(&text[key.offset..key.end()], "epochs");
}
