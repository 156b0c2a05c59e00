//! Load + parse + check speed: an editor checks on every keystroke.
//!
//! Targets: under 1 ms for a seed spec, under 20 ms for a generated 1,000-layer spec.
//! Run with `cargo bench --bench check`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};

fn seed(name: &str) -> String {
    let path = format!("{}/specs/seed/{name}.yaml", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path).expect("seed spec")
}

/// A spec whose model has `n_blocks` × 4 = about 1,000 layers written out (no repeats), over
/// several lines with comments, as a large hand-written spec would be.
pub fn generated_spec(n_blocks: usize) -> String {
    let mut model = String::from("  bn\n");
    for block in 0..n_blocks {
        model.push_str(&format!(
            "  -> conv3({}, pad=same) relu   # block {block}\n  -> bn -> dropout(0.1) -> leakyrelu(alpha=0.2)\n",
            8 + block % 8
        ));
    }
    model.push_str("  -> gap -> dense10 softmax\n");
    format!("name: big\ninput: 32x32x3\nclasses: 10\nmodel: |\n{model}train:\n  lr: 0.01\n")
}

fn bench_check(c: &mut Criterion) {
    for name in ["logreg_bn", "wide_bn", "deep_bn"] {
        let text = seed(name);
        c.bench_function(&format!("check/seed/{name}"), |b| {
            b.iter(|| strata::compile(black_box(&text), "seed"))
        });
    }
    let big = generated_spec(250);
    let compiled = strata::compile(&big, "big");
    assert!(!compiled.has_errors(), "{:?}", compiled.diagnostics);
    let n_layers = compiled
        .model
        .as_ref()
        .map_or(0, |model| model.layers.len());
    assert!(n_layers >= 1000, "{n_layers} layers");
    c.bench_function(&format!("check/generated/{n_layers}_layers"), |b| {
        b.iter(|| strata::compile(black_box(&big), "big"))
    });
    let repeated = "input: 64x64x3\nclasses: 10\nmodel: bn -> (conv3(8, pad=same) relu -> bn)x330 -> gap -> dense10 softmax\n";
    c.bench_function("check/generated/repeat_x330", |b| {
        b.iter(|| strata::compile(black_box(repeated), "repeat"))
    });
}

criterion_group!(benches, bench_check);
criterion_main!(benches);
