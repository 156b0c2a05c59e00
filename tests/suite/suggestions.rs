//! Every machine-applicable suggestion of every fixture, applied to the spec, makes the
//! diagnostic it belongs to go away and does not add errors.

use crate::common;

use strata::diagnostics::Diagnostic;

fn apply(text: &str, diagnostic: &Diagnostic, idx: usize) -> String {
    let suggestion = &diagnostic.suggestions[idx];
    let span = suggestion.span;
    format!(
        "{}{}{}",
        &text[..span.offset],
        suggestion.replacement,
        &text[span.end()..]
    )
}

#[test]
fn applying_a_suggestion_fixes_its_diagnostic() {
    let mut n_applied = 0;
    for path in common::yaml_files(&common::root().join("tests/fixtures/diagnostics")) {
        let text = std::fs::read_to_string(&path).expect("fixture readable");
        let name = common::relative(&path);
        let compiled = strata::compile(&text, "fixture");
        for diagnostic in &compiled.diagnostics {
            for (idx, suggestion) in diagnostic.suggestions.iter().enumerate() {
                let fixed = apply(&text, diagnostic, idx);
                let after = strata::compile(&fixed, "fixture");
                let still_there = after.diagnostics.iter().any(|other| {
                    other.code == diagnostic.code && other.message == diagnostic.message
                });
                assert!(
                    !still_there,
                    "{name}: `{}` did not fix `{}`:\n{fixed}",
                    suggestion.title, diagnostic.message
                );
                let n_errors = |diagnostics: &[Diagnostic]| {
                    diagnostics.iter().filter(|d| d.is_error()).count()
                };
                assert!(
                    n_errors(&after.diagnostics) <= n_errors(&compiled.diagnostics),
                    "{name}: `{}` made more errors:\n{fixed}\n{:#?}",
                    suggestion.title,
                    after.diagnostics
                );
                n_applied += 1;
            }
        }
    }
    assert!(
        n_applied >= 10,
        "only {n_applied} suggestions in the fixtures"
    );
}
