//! The layer language end to end: every layer name and alias, shorthands, argument forms,
//! comments and several lines, and errors that do not hide the spec's other problems.

use strata::catalogue::{LayerKind, LAYERS};
use strata::diagnostics::codes;
use strata::ir::{Activation, Op, Padding, PoolKind, Shape};

fn model(text: &str) -> strata::ir::Model {
    let compiled = strata::compile(text, "lang");
    assert!(!compiled.has_errors(), "{text}\n{:?}", compiled.diagnostics);
    compiled.model.expect("model")
}

#[test]
fn every_layer_name_and_alias_compiles() {
    for decl in LAYERS {
        for name in decl.names() {
            let call = match decl.kind {
                LayerKind::Conv | LayerKind::SeparableConv => format!("{name}3(4)"),
                LayerKind::DepthwiseConv => format!("{name}3"),
                LayerKind::Merge(_) => format!("{name}(identity, identity)"),
                LayerKind::MaxPool | LayerKind::AvgPool => format!("{name}2"),
                LayerKind::Dense => format!("{name}8"),
                LayerKind::Dropout => format!("{name}(0.5)"),
                _ => name.to_string(),
            };
            let text = format!("input: 16x16x3\nmodel: {call} -> dense2 softmax\n");
            let compiled = model(&text);
            let expected = if decl.kind == LayerKind::Dense { 2 } else { 1 };
            assert_eq!(
                compiled
                    .layers
                    .iter()
                    .filter(|l| l.op.kind() == decl.kind)
                    .count(),
                expected,
                "{call}"
            );
        }
    }
}

#[test]
fn shorthands_arguments_and_defaults_resolve() {
    let text = "input: 32x32x3\ndefaults:\n  conv: { filters: 6, bias: false }\n  pool: { pad: same }\nmodel: conv3x5(stride=2x1) -> conv(7, 3) -> pool3(stride=2) -> avgpool(size=2) -> dense16(bias=false) leakyrelu(alpha=0.1) -> dense2 softmax\n";
    let layers = model(text).layers;
    assert_eq!(
        layers[0].op,
        Op::Conv {
            filters: 6,
            kernel: (3, 5),
            stride: (2, 1),
            pad: Padding::Valid,
            bias: false,
            groups: 1
        }
    );
    assert_eq!(
        layers[1].op,
        Op::Conv {
            filters: 7,
            kernel: (3, 3),
            stride: (1, 1),
            pad: Padding::Valid,
            bias: false,
            groups: 1
        }
    );
    assert_eq!(
        layers[2].op,
        Op::Pool {
            kind: PoolKind::Max,
            size: (3, 3),
            stride: (2, 2),
            pad: Padding::Same
        }
    );
    assert_eq!(
        layers[3].op,
        Op::Pool {
            kind: PoolKind::Avg,
            size: (2, 2),
            stride: (2, 2),
            pad: Padding::Valid
        }
    );
    assert!(matches!(layers[4].op, Op::Flatten) && layers[4].origin.implicit);
    assert_eq!(
        layers[5].op,
        Op::Dense {
            units: 16,
            bias: false
        }
    );
    assert_eq!(
        layers[5].activation,
        Some(Activation::LeakyRelu { alpha: 0.1 })
    );
}

#[test]
fn comments_and_several_lines() {
    let text = "input: 28x28x1\nmodel: |\n  # a comment line\n  bn   # after a layer\n  -> (conv3(8, pad=same) relu\n      -> pool2)x2   # two blocks\n  -> dense10 softmax\n";
    let layers = model(text).layers;
    assert_eq!(layers.len(), 7);
    assert_eq!(
        layers[4].output,
        Shape::Image {
            height: 7,
            width: 7,
            channels: 8
        }
    );
}

#[test]
fn activation_stage_and_suffix_are_distinct_rows() {
    let layers = model("input: 8x8x1\nmodel: dense4 relu -> tanh -> dense2 -> softmax\n").layers;
    let ops: Vec<_> = layers.iter().map(|l| l.op.kind()).collect();
    assert_eq!(ops.len(), 5, "{ops:?}");
    assert_eq!(layers[1].activation, Some(Activation::Relu));
    assert_eq!(layers[2].op, Op::Activation(Activation::Tanh));
    assert_eq!(layers[4].op, Op::Activation(Activation::Softmax));
}

#[test]
fn a_syntax_error_does_not_hide_the_other_keys() {
    let text = "input: 28x28x5\nmodel: bn -> -> dense2 softmax\ntrain:\n  epoch: 3\n";
    let compiled = strata::compile(text, "both");
    let found: Vec<&str> = compiled.diagnostics.iter().map(|d| d.code).collect();
    assert_eq!(
        found,
        vec![
            codes::SPEC_INVALID_VALUE,
            codes::SYNTAX_PARSE,
            codes::SPEC_UNKNOWN_KEY
        ]
    );
}

#[test]
fn every_layer_error_in_the_model_is_reported() {
    let text = "input: 28x28x1\nmodel: cnov3(8) -> pool2(pad=sme) -> dense10(bias=maybe) softmx\n";
    let compiled = strata::compile(text, "many");
    let found: Vec<&str> = compiled.diagnostics.iter().map(|d| d.code).collect();
    assert_eq!(
        found,
        vec![
            codes::LAYER_UNKNOWN,
            codes::LAYER_ARGUMENT,
            codes::LAYER_ARGUMENT,
            codes::LAYER_UNKNOWN
        ]
    );
}

#[test]
fn a_layer_in_a_repeat_warns_once() {
    let text = "input: 64x64x1\nmodel: (conv3(4, pad=same) relu -> relu)x3 -> dense2 softmax\n";
    let compiled = strata::compile(text, "once");
    let warnings = compiled
        .diagnostics
        .iter()
        .filter(|d| d.code == codes::LINT_DOUBLE_ACTIVATION)
        .count();
    assert_eq!(warnings, 1);
}
