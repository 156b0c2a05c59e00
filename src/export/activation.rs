//! Activations as ONNX opset 17 nodes, computed as strata computes them: softmax over the
//! channel (or feature) axis, relu6 as `Clip(0, 6)`, exact gelu through `Erf` (opset 17 has no
//! `Gelu`), silu as `x * Sigmoid(x)`, Keras 3's hard sigmoid `relu6(x + 3) / 6` as
//! `HardSigmoid` with slope 1/6 and offset 1/2.
#![deny(clippy::wildcard_enum_match_arm)]

use super::graph::{Attr, GraphBuilder};
use crate::ir::Activation;

/// Adds the nodes of `act` on `x`, the result named `target`; returns its name.
pub fn activation(b: &mut GraphBuilder, act: Activation, x: &str, target: &str) -> String {
    let unary = |b: &mut GraphBuilder, op_type: &str, attrs: &[(&str, Attr)]| {
        b.node(op_type, target, &[x], target, attrs)
    };
    match act {
        Activation::Relu => unary(b, "Relu", &[]),
        Activation::Sigmoid => unary(b, "Sigmoid", &[]),
        Activation::Tanh => unary(b, "Tanh", &[]),
        Activation::Softmax => unary(b, "Softmax", &[("axis", Attr::Int(1))]),
        Activation::LeakyRelu { alpha } => unary(b, "LeakyRelu", &[("alpha", float(alpha))]),
        Activation::Elu { alpha } => unary(b, "Elu", &[("alpha", float(alpha))]),
        Activation::HardSigmoid => unary(b, "HardSigmoid", &hard_sigmoid()),
        Activation::HardSwish => unary(b, "HardSwish", &[]),
        Activation::Relu6 => {
            let zero = b.float_scalar("zero", 0.0);
            let six = b.float_scalar("six", 6.0);
            b.node("Clip", target, &[x, &zero, &six], target, &[])
        }
        Activation::Silu => {
            let gate = format!("{target}/sigmoid");
            b.node("Sigmoid", &gate, &[x], &gate, &[]);
            b.node("Mul", target, &[x, &gate], target, &[])
        }
        Activation::Gelu => {
            // x * Phi(x) = x * (1 + erf(x / sqrt 2)) / 2.
            let sqrt2 = b.float_scalar("sqrt2", std::f32::consts::SQRT_2);
            let one = b.float_scalar("one", 1.0);
            let half = b.float_scalar("half", 0.5);
            let scaled = format!("{target}/scaled");
            b.node("Div", &scaled, &[x, &sqrt2], &scaled, &[]);
            let erf = format!("{target}/erf");
            b.node("Erf", &erf, &[&scaled], &erf, &[]);
            let cdf2 = format!("{target}/one_plus_erf");
            b.node("Add", &cdf2, &[&erf, &one], &cdf2, &[]);
            let cdf = format!("{target}/cdf");
            b.node("Mul", &cdf, &[&cdf2, &half], &cdf, &[]);
            b.node("Mul", target, &[x, &cdf], target, &[])
        }
    }
}

fn float(value: f64) -> Attr {
    Attr::Float(value as f32)
}

/// `HardSigmoid`'s `alpha * x + beta`, clipped to [0, 1], as Keras 3's `relu6(x + 3) / 6`.
fn hard_sigmoid() -> [(&'static str, Attr); 2] {
    [
        ("alpha", Attr::Float(1.0 / 6.0)),
        ("beta", Attr::Float(0.5)),
    ]
}
