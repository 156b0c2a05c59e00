//! Each IR op as ONNX nodes, on NCHW images and `[N, features]` vectors. Parameters are the
//! checkpoint's tensors under their checkpoint names (`layers.<i>.<param>`), whose layouts are
//! already ONNX's: conv weights `[filters, c_in/groups, k_h, k_w]`, depthwise `[c*m, 1, k_h,
//! k_w]` (output channel `i*m + j` reads input channel `i`, as ONNX's grouped `Conv` with one
//! group per input channel), dense `[units, in]` (read by `Gemm` with `transB`), a flattened
//! image in channel, row, column order (ONNX's `Flatten` of NCHW).
#![deny(clippy::wildcard_enum_match_arm)]

use super::activation::activation;
use super::graph::{Attr, GraphBuilder};
use crate::ir::{Layer, MergeKind, Op, Padding, PoolKind, Shape};

/// Adds the nodes of `layer`'s op reading `inputs` (one name per input edge); the result is
/// named `target`, or is an input itself for ops that change nothing at inference (identity,
/// dropout, a flatten of a vector). Returns the result's name.
pub fn lower_op(b: &mut GraphBuilder, layer: &Layer, inputs: &[String], target: &str) -> String {
    let x = inputs.first().map_or("", String::as_str);
    match layer.op {
        Op::BatchNorm { eps, .. } => {
            let names =
                ["gamma", "beta", "moving_mean", "moving_variance"].map(|p| param(layer, p));
            let reads = [x, &names[0], &names[1], &names[2], &names[3]];
            let attrs = [("epsilon", Attr::Float(eps as f32))];
            b.node("BatchNormalization", target, &reads, target, &attrs)
        }
        Op::Conv { .. } | Op::DepthwiseConv { .. } | Op::SeparableConv { .. } => {
            convolution(b, layer, x, target)
        }
        Op::Pool {
            kind,
            size,
            stride,
            pad,
        } => {
            let mut attrs = window_attrs(layer, size, stride, pad);
            let op_type = match kind {
                PoolKind::Max => "MaxPool",
                PoolKind::Avg => {
                    // Keras averages the window's pixels inside the image only.
                    attrs.push(("count_include_pad", Attr::Int(0)));
                    "AveragePool"
                }
            };
            b.node(op_type, target, &[x], target, &attrs)
        }
        Op::GlobalPool { kind } => {
            let op_type = match kind {
                PoolKind::Max => "GlobalMaxPool",
                PoolKind::Avg => "GlobalAveragePool",
            };
            let pooled = format!("{target}/pooled");
            b.node(op_type, &pooled, &[x], &pooled, &[]);
            b.node(
                "Flatten",
                target,
                &[&pooled],
                target,
                &[("axis", Attr::Int(1))],
            )
        }
        Op::Flatten => match layer.input() {
            Shape::Image { .. } => {
                b.node("Flatten", target, &[x], target, &[("axis", Attr::Int(1))])
            }
            Shape::Flat(_) => x.to_string(),
        },
        Op::Dense { bias, .. } => {
            let (weight, bias_name) = (param(layer, "weight"), param(layer, "bias"));
            let mut reads = vec![x, weight.as_str()];
            if bias {
                reads.push(&bias_name);
            }
            b.node("Gemm", target, &reads, target, &[("transB", Attr::Int(1))])
        }
        Op::Dropout { .. } | Op::Identity => x.to_string(),
        Op::Merge(kind) => merge(b, layer, kind, inputs, target),
        Op::Activation(act) => activation(b, act, x, target),
    }
}

/// The initialiser name of `layer`'s parameter `name`: its checkpoint name.
fn param(layer: &Layer, name: &str) -> String {
    format!("layers.{}.{name}", layer.index)
}

/// A plain or grouped convolution is one `Conv`; a depthwise one a `Conv` with a group per
/// input channel; a separable one that, then a 1x1 `Conv`.
fn convolution(b: &mut GraphBuilder, layer: &Layer, x: &str, target: &str) -> String {
    let channels = layer.input().features();
    let (kernel, stride, pad, bias, groups) = match layer.op {
        Op::Conv {
            kernel,
            stride,
            pad,
            bias,
            groups,
            ..
        } => (kernel, stride, pad, bias, groups),
        Op::DepthwiseConv {
            kernel,
            stride,
            pad,
            bias,
            ..
        }
        | Op::SeparableConv {
            kernel,
            stride,
            pad,
            bias,
            ..
        } => (kernel, stride, pad, bias, channels),
        Op::BatchNorm { .. }
        | Op::Pool { .. }
        | Op::GlobalPool { .. }
        | Op::Flatten
        | Op::Dense { .. }
        | Op::Dropout { .. }
        | Op::Identity
        | Op::Merge(_)
        | Op::Activation(_) => return x.to_string(),
    };
    let mut attrs = window_attrs(layer, kernel, stride, pad);
    attrs.push(("group", Attr::Int(groups as i64)));
    let bias = bias.then(|| param(layer, "bias"));
    if matches!(layer.op, Op::SeparableConv { .. }) {
        let depthwise = format!("{target}/depthwise");
        conv(b, &depthwise, x, &param(layer, "depthwise"), None, attrs);
        let pointwise = vec![("kernel_shape", Attr::Ints(vec![1, 1]))];
        conv(
            b,
            target,
            &depthwise,
            &param(layer, "pointwise"),
            bias,
            pointwise,
        )
    } else {
        conv(b, target, x, &param(layer, "weight"), bias, attrs)
    }
}

/// A `Conv` node with an optional bias.
fn conv(
    b: &mut GraphBuilder,
    target: &str,
    x: &str,
    weight: &str,
    bias: Option<String>,
    attrs: Vec<(&str, Attr)>,
) -> String {
    let mut reads = vec![x, weight];
    if let Some(bias) = &bias {
        reads.push(bias);
    }
    b.node("Conv", target, &reads, target, &attrs)
}

/// `kernel_shape`, `strides` and `pads` of a window op. Keras's `same` pads
/// `max((out - 1) * s + k - in, 0)` in all, half of it (rounded down) before.
fn window_attrs(
    layer: &Layer,
    kernel: (usize, usize),
    stride: (usize, usize),
    pad: Padding,
) -> Vec<(&'static str, Attr)> {
    let (in_h, in_w, _) = layer.input().hwc();
    let (out_h, out_w, _) = layer.output.hwc();
    let total = |input: usize, output: usize, k: usize, s: usize| match pad {
        Padding::Valid => 0,
        Padding::Same => ((output.saturating_sub(1)) * s + k).saturating_sub(input),
    };
    let total_h = total(in_h, out_h, kernel.0, stride.0);
    let total_w = total(in_w, out_w, kernel.1, stride.1);
    let pads = [
        total_h / 2,
        total_w / 2,
        total_h - total_h / 2,
        total_w - total_w / 2,
    ];
    vec![
        (
            "kernel_shape",
            Attr::Ints(vec![kernel.0 as i64, kernel.1 as i64]),
        ),
        (
            "strides",
            Attr::Ints(vec![stride.0 as i64, stride.1 as i64]),
        ),
        ("pads", Attr::Ints(pads.iter().map(|&p| p as i64).collect())),
    ]
}

/// `add` and `mul` as a left-to-right chain of binary nodes, `concat` on the channel (or
/// feature) axis. `mul` of an image and per-channel vectors reshapes each vector to
/// `[N, C, 1, 1]` so that it broadcasts over rows and columns.
fn merge(
    b: &mut GraphBuilder,
    layer: &Layer,
    kind: MergeKind,
    inputs: &[String],
    target: &str,
) -> String {
    match kind {
        MergeKind::Concat => {
            let reads: Vec<&str> = inputs.iter().map(String::as_str).collect();
            b.node("Concat", target, &reads, target, &[("axis", Attr::Int(1))])
        }
        MergeKind::Add | MergeKind::Mul => {
            let op_type = if kind == MergeKind::Add { "Add" } else { "Mul" };
            let image_out = matches!(layer.output, Shape::Image { .. });
            let operands: Vec<String> = inputs
                .iter()
                .zip(&layer.inputs)
                .enumerate()
                .map(|(idx, (name, edge))| match edge.shape {
                    Shape::Flat(_) if image_out => {
                        let axes = b.int_vector("axes_hw", &[2, 3]);
                        let out = format!("{target}/gate{idx}");
                        b.node("Unsqueeze", &out, &[name, &axes], &out, &[])
                    }
                    Shape::Flat(_) | Shape::Image { .. } => name.clone(),
                })
                .collect();
            let mut acc = operands.first().cloned().unwrap_or_default();
            let last = operands.len().saturating_sub(1);
            for (idx, operand) in operands.iter().enumerate().skip(1) {
                let out = if idx == last {
                    target.to_string()
                } else {
                    format!("{target}/partial{idx}")
                };
                acc = b.node(op_type, &out, &[&acc, operand], &out, &[]);
            }
            acc
        }
    }
}
