//! Random and mutated spec texts never panic and answer quickly; pathological models get
//! diagnostics, not stack overflows or hangs. The time bounds are generous hang guards, not
//! speed targets (those live in `cargo bench`).

use proptest::prelude::*;
use std::time::{Duration, Instant};
use strata::diagnostics::codes;

const HANG_GUARD: Duration = Duration::from_secs(2);

fn compile_timed(text: &str) -> strata::Compiled {
    let start = Instant::now();
    let compiled = strata::compile(text, "fuzz");
    assert!(
        start.elapsed() < HANG_GUARD,
        "took {:?} on {text:?}",
        start.elapsed()
    );
    compiled
}

const SEED_SPEC: &str = "name: deep\ninput: 224x224x3\nclasses: 2\ndefaults:\n  conv: { filters: 20, pad: same }\nmodel: bn -> (conv2x2 relu -> pool2)x7 -> dense2 softmax\ntrain:\n  lr: 0.01\n  batch_size: 10\n";

fn model_token() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("->".to_string()),
        Just("(".to_string()),
        Just(")".to_string()),
        Just(",".to_string()),
        Just("=".to_string()),
        Just(" ".to_string()),
        Just("\n".to_string()),
        Just("#c\n".to_string()),
        "[a-z]{1,8}",
        "[0-9]{1,12}",
        "x[0-9]{1,11}",
        "(conv|pool|dense|bn|gap|relu|softmax|avgpool|dropout|flatten|leakyrelu)[0-9]{0,3}(x[0-9]{1,3})?",
        "[0-9]\\.[0-9]{1,3}",
        ".",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_model_text_never_panics(tokens in prop::collection::vec(model_token(), 0..40)) {
        let model = tokens.concat().replace('\n', "\n  ");
        let text = format!("input: 32x32x3\nmodel: |\n  {model}\n");
        compile_timed(&text);
    }

    #[test]
    fn arbitrary_bytes_never_panic(text in ".{0,300}") {
        compile_timed(&text);
    }

    #[test]
    fn mutated_seed_spec_never_panics(edits in prop::collection::vec((0usize..400, 0u8..4, ".{0,3}"), 1..6)) {
        let mut text = SEED_SPEC.to_string();
        for (at, kind, insert) in edits {
            let mut at = at % (text.len() + 1);
            while !text.is_char_boundary(at) { at -= 1; }
            match kind {
                0 => text.insert_str(at, &insert),
                1 => { let end = (at + 3).min(text.len()); if text.is_char_boundary(end) { text.replace_range(at..end, ""); } }
                2 => text.insert_str(at, "x999999"),
                _ => text.insert(at, '('),
            }
        }
        compile_timed(&text);
    }
}

#[test]
fn ten_thousand_nested_parentheses_give_a_diagnostic() {
    let depth = 10_000;
    let model = format!("{}dense2 softmax{}", "(".repeat(depth), ")".repeat(depth));
    let text = format!("input: 8x8x1\nmodel: {model}\n");
    let compiled = compile_timed(&text);
    let diagnostic = compiled.diagnostics.first().expect("a diagnostic");
    assert_eq!(diagnostic.code, codes::SYNTAX_PARSE);
    // The deep nesting is caught before pest or the tree builder recurse.
    let unbalanced = format!("input: 8x8x1\nmodel: {}dense2\n", "(".repeat(depth));
    assert_eq!(
        compile_timed(&unbalanced).diagnostics[0].code,
        codes::SYNTAX_PARSE
    );
}

#[test]
fn a_billion_repeats_answer_at_once() {
    let text = "input: 8x8x1\nmodel: (dense4 relu)x1000000000 -> dense2 softmax\n";
    let start = Instant::now();
    let compiled = strata::compile(text, "big");
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(compiled.diagnostics.len(), 1);
    assert_eq!(compiled.diagnostics[0].code, codes::REPEAT_COUNT);
    let label = compiled.diagnostics[0].primary().expect("label");
    assert_eq!(&text[label.span.offset..label.span.end()], "x1000000000");
}

#[test]
fn nested_repeats_that_multiply_past_the_limit_are_refused() {
    let text = "input: 8x8x1\nmodel: ((dense4 relu)x100)x101 -> dense2 softmax\n";
    let compiled = compile_timed(text);
    assert_eq!(compiled.diagnostics[0].code, codes::REPEAT_COUNT);
    let text =
        "input: 8x8x1\nmodel: ((dense4 relu)x100)x99999999999999999999999 -> dense2 softmax\n";
    assert_eq!(compile_timed(text).diagnostics[0].code, codes::REPEAT_COUNT);
}

#[test]
fn huge_numbers_are_argument_errors_not_overflows() {
    for model in [
        "dense99999999999999999999999 softmax",
        "conv99999999999(3) -> dense2 softmax",
        "conv3(99999999) -> dense2 softmax",
        "pool99999 -> dense2 softmax",
    ] {
        let text = format!("input: 8x8x1\nmodel: {model}\n");
        let compiled = compile_timed(&text);
        assert!(compiled.has_errors(), "{model}");
    }
}
