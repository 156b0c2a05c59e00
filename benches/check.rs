//! Load + parse + check speed: an editor checks on every keystroke.
//!
//! Targets: under 1 ms for a seed spec, under 20 ms for a generated 1,000-layer spec, under
//! 5 ms for a ResNet-style spec of 300 block calls (a few thousand layers).
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

/// A ResNet-style spec with blocks: a stem, then four stages of `calls_per_stage` block calls
/// each (a strided projection block, then bottlenecks, basic blocks and squeeze-and-excitation
/// in turn), one call per line with a comment, as a large hand-written graph spec would be.
/// Five block kinds, calling each other; 75 calls per stage make 300 calls and a few thousand
/// layers.
pub fn resnet_blocks_spec(calls_per_stage: usize) -> String {
    let mut model = String::from("  cbr(16, k=7, s=2) -> pool3(stride=2, pad=same)   # stem\n");
    for stage in 0..4 {
        let f = 8 << stage;
        model.push_str(&format!("  -> down(f={f})   # stage {stage}\n"));
        for call in 1..calls_per_stage {
            let line = match call % 4 {
                0 => format!("se({})", f * 4),
                1 | 3 => format!("bottleneck({f})"),
                _ => format!("basic({})", f * 4),
            };
            model.push_str(&format!("  -> {line}   # call {call}\n"));
        }
    }
    model.push_str("  -> gap -> dropout(0.2) -> dense10 softmax\n");
    format!(
        "name: resnet-blocks
input: 64x64x3
classes: 10
defaults:
  conv: {{ pad: same, bias: false }}
  bn: {{ eps: 1.001e-5 }}
blocks:
  cbr(f, k=3, s=1): conv(f, kernel=k, stride=s) -> bn relu
  # residual blocks on c channels
  basic(c): add(identity, cbr(c) -> conv3(c) -> bn) relu
  bottleneck(f, e=4): add(identity, cbr(f, k=1) -> cbr(f) -> conv1(f*e) -> bn) relu
  down(f, e=4): |
    add(conv1(f*e, stride=2) -> bn,
        cbr(f, k=1, s=2) -> cbr(f) -> conv1(f*e) -> bn) relu
  se(c, r=16): mul(identity, gap -> dense(c/r) relu -> dense(c) sigmoid)
model: |
{model}train:
  lr: 0.01
"
    )
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
    let resnet = resnet_blocks_spec(75);
    let compiled = strata::compile(&resnet, "resnet-blocks");
    assert!(
        compiled.diagnostics.is_empty(),
        "{:?}",
        compiled.diagnostics
    );
    let n_calls = resnet.matches("# call").count() + resnet.matches("# stage").count();
    assert_eq!(n_calls, 300);
    let n_layers = compiled
        .model
        .as_ref()
        .map_or(0, |model| model.layers.len());
    assert!((2000..=10_000).contains(&n_layers), "{n_layers} layers");
    c.bench_function(
        &format!("check/generated/resnet_{n_calls}_calls_{n_layers}_layers"),
        |b| b.iter(|| strata::compile(black_box(&resnet), "resnet-blocks")),
    );
    let repeated = "input: 64x64x3\nclasses: 10\nmodel: bn -> (conv3(8, pad=same) relu -> bn)x330 -> gap -> dense10 softmax\n";
    c.bench_function("check/generated/repeat_x330", |b| {
        b.iter(|| strata::compile(black_box(repeated), "repeat"))
    });
}

criterion_group!(benches, bench_check);
criterion_main!(benches);
