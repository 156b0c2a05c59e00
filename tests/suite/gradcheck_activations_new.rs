//! Gradient checks of relu6, silu, hard sigmoid, hard swish and elu, and their values and
//! derivatives (kinks included) against Keras 3 on TensorFlow.

use crate::common;

use common::gradcheck::{check, weighted_sum, Rng};
use dfdx::prelude::*;
use strata::backend::ops::activation::{elu, hard_sigmoid, hard_swish, relu6, silu};

type Taped2 = Tensor<(usize, usize), f32, Cpu, OwnedTape<f32, Cpu>>;

/// Finite differences on 96 distinct values in about [-7.2, 7.2], 0.15 apart: none within
/// the step of a kink (0 and 6 for relu6, -3 and 3 for the hard ones).
fn gradient_case(name: &str, op: impl Fn(Taped2) -> Taped2) {
    let dev = Cpu::default();
    let mut rng = Rng::new(8);
    let loss_weights = rng.vec(96, -1.0, 1.0);
    let x: Vec<f32> = rng.distinct(96).iter().map(|v| v * 15.0).collect();
    check(name, vec![x], 1e-3, (1e-3, 1e-2), |v| {
        let x = dev.tensor_from_vec(v[0].clone(), (8, 12));
        let (loss, grads) = weighted_sum(op(x.leaky_trace()), &loss_weights);
        (loss, vec![grads.get(&x).as_vec()])
    });
}

#[test]
fn relu6_gradient() {
    gradient_case("relu6", relu6);
}

#[test]
fn silu_gradient() {
    gradient_case("silu", silu);
}

#[test]
fn hard_sigmoid_gradient() {
    gradient_case("hard sigmoid", hard_sigmoid);
}

#[test]
fn hard_swish_gradient() {
    gradient_case("hard swish", hard_swish);
}

#[test]
fn elu_gradient() {
    gradient_case("elu 1", |x| elu(x, 1.0));
    gradient_case("elu 0.5", |x| elu(x, 0.5));
}

/// The inputs of the Keras reference values below: kinks (-3, 0, 3, 6) and points between.
const XS: [f32; 11] = [-7.0, -3.0, -2.5, -0.75, 0.0, 0.4, 2.9, 3.0, 5.5, 6.0, 7.25];

/// Values and derivatives at [`XS`] (derivatives from a sum loss, so exactly `f'(x)`).
fn values_and_derivatives(op: impl Fn(Taped2) -> Taped2) -> (Vec<f32>, Vec<f32>) {
    let dev = Cpu::default();
    let x = dev.tensor_from_vec(XS.to_vec(), (1, XS.len()));
    let out = op(x.leaky_trace());
    let values = out.as_vec();
    let (_, grads) = weighted_sum(out, &[1.0; XS.len()]);
    (values, grads.get(&x).as_vec())
}

fn assert_close(name: &str, what: &str, got: &[f32], expected: &[f64]) {
    for ((g, e), x) in got.iter().zip(expected).zip(XS) {
        let g = f64::from(*g);
        assert!(
            (g - e).abs() <= 2e-7 + 2e-6 * e.abs(),
            "{name} {what} at {x}: {g} vs Keras {e}"
        );
    }
}

/// Printed by Keras 3.15.1 on TensorFlow 2.21 (`/opt/venv-keras`):
/// `with tf.GradientTape() as t: y = keras.activations.<name>(x)`; `t.gradient(y, x)` for
/// `x = tf.Variable(XS)` (float32).
fn keras_case(
    name: &str,
    op: impl Fn(Taped2) -> Taped2,
    values: [f64; XS.len()],
    derivatives: [f64; XS.len()],
) {
    let (got_values, got_derivatives) = values_and_derivatives(op);
    assert_close(name, "value", &got_values, &values);
    assert_close(name, "derivative", &got_derivatives, &derivatives);
}

#[test]
fn relu6_matches_keras() {
    keras_case(
        "relu6",
        relu6,
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.4, 2.9, 3.0, 5.5, 6.0, 6.0],
        [0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0],
    );
}

#[test]
fn silu_matches_keras() {
    keras_case(
        "silu",
        silu,
        [
            -0.006377358455210924,
            -0.14227759838104248,
            -0.1896454244852066,
            -0.24061599373817444,
            0.0,
            0.2394750863313675,
            2.7487547397613525,
            2.857722282409668,
            5.477613925933838,
            5.985164165496826,
            7.244854927062988,
        ],
        [
            -0.005460497457534075,
            -0.08810409158468246,
            -0.0994010865688324,
            0.15740005671977997,
            0.5,
            0.6947920322418213,
            1.0912038087844849,
            1.0881041288375854,
            1.0182245969772339,
            1.0123264789581299,
            1.0044316053390503,
        ],
    );
}

#[test]
fn hard_sigmoid_matches_keras() {
    let sixth = 0.1666666716337204;
    keras_case(
        "hard_sigmoid",
        hard_sigmoid,
        [
            0.0,
            0.0,
            0.0833333358168602,
            0.375,
            0.5,
            0.5666666626930237,
            0.9833333492279053,
            1.0,
            1.0,
            1.0,
            1.0,
        ],
        [
            0.0, 0.0, sixth, sixth, sixth, sixth, sixth, 0.0, 0.0, 0.0, 0.0,
        ],
    );
}

#[test]
fn hard_swish_matches_keras() {
    keras_case(
        "hard_swish",
        hard_swish,
        [
            0.0,
            0.0,
            -0.2083333432674408,
            -0.28125,
            0.0,
            0.2266666740179062,
            2.8516666889190674,
            3.0,
            5.5,
            6.0,
            7.25,
        ],
        [
            0.0,
            0.0,
            -0.3333333134651184,
            0.25,
            0.5,
            0.6333333253860474,
            1.4666666984558105,
            1.0,
            1.0,
            1.0,
            1.0,
        ],
    );
}

#[test]
fn elu_matches_keras() {
    keras_case(
        "elu",
        |x| elu(x, 1.0),
        [
            -0.9990881085395813,
            -0.9502129554748535,
            -0.9179149866104126,
            -0.5276334285736084,
            0.0,
            0.4,
            2.9,
            3.0,
            5.5,
            6.0,
            7.25,
        ],
        [
            0.0009118914604187012,
            0.049787044525146484,
            0.0820850133895874,
            0.4723665714263916,
            1.0,
            1.0,
            1.0,
            1.0,
            1.0,
            1.0,
            1.0,
        ],
    );
    // alpha = 0.5: Keras's `tf.where(x > 0, elu(x), alpha * elu(x))`; derivative alpha at 0.
    keras_case(
        "elu(alpha=0.5)",
        |x| elu(x, 0.5),
        [
            -0.49954405426979065,
            -0.47510647773742676,
            -0.4589574933052063,
            -0.2638167142868042,
            0.0,
            0.4,
            2.9,
            3.0,
            5.5,
            6.0,
            7.25,
        ],
        [
            0.0004559457302093506,
            0.024893522262573242,
            0.0410425066947937,
            0.2361832857131958,
            0.5,
            1.0,
            1.0,
            1.0,
            1.0,
            1.0,
            1.0,
        ],
    );
}

#[test]
fn saturated_inputs_stay_finite() {
    let dev = Cpu::default();
    let x = dev.tensor_from_vec(vec![-200.0, -90.0, 90.0, 200.0], (1, 4));
    for (name, out) in [
        ("silu", silu(x.leaky_trace())),
        ("elu", elu(x.leaky_trace(), 1.0)),
        ("hard swish", hard_swish(x.leaky_trace())),
    ] {
        let values = out.as_vec();
        let (_, grads) = weighted_sum(out, &[1.0; 4]);
        let derivatives = grads.get(&x).as_vec();
        assert!(
            values.iter().chain(&derivatives).all(|v| v.is_finite()),
            "{name}: {values:?} {derivatives:?}"
        );
    }
}
