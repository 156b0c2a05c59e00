//! Gradient checks of flatten (channel, row, column order), the activations and dense.

use crate::common;

use common::gradcheck::{check, weighted_sum, Rng};
use dfdx::prelude::*;
use strata::backend::ops::activation::{gelu, leaky_relu, relu};
use strata::backend::ops::dense::{dense, DenseParams};
use strata::backend::ops::flatten::flatten;

#[test]
fn flatten_order_and_gradient() {
    let dev = Cpu::default();
    // (1, 2, 2, 3): value = 100 * y + 10 * x + ch; flattened in ch, y, x order.
    let data: Vec<f32> = (0..2)
        .flat_map(|y| {
            (0..2).flat_map(move |x| (0..3).map(move |ch| (100 * y + 10 * x + ch) as f32))
        })
        .collect();
    let out = flatten(dev.tensor_from_vec(data, (1, 2, 2, 3))).as_vec();
    let expected = [
        0., 10., 100., 110., 1., 11., 101., 111., 2., 12., 102., 112.,
    ];
    assert_eq!(out, expected);
    let mut rng = Rng::new(2);
    let shape = (2, 3, 4, 5);
    let loss_weights = rng.vec(120, -1.0, 1.0);
    check(
        "flatten",
        vec![rng.vec(120, -1.0, 1.0)],
        1e-2,
        (1e-4, 1e-3),
        |v| {
            let x = dev.tensor_from_vec(v[0].clone(), shape);
            let (loss, grads) = weighted_sum(flatten(x.leaky_trace()), &loss_weights);
            (loss, vec![grads.get(&x).as_vec()])
        },
    );
}

fn activation_case(
    name: &str,
    op: impl Fn(
        Tensor<(usize, usize), f32, Cpu, OwnedTape<f32, Cpu>>,
    ) -> Tensor<(usize, usize), f32, Cpu, OwnedTape<f32, Cpu>>,
) {
    let dev = Cpu::default();
    let mut rng = Rng::new(4);
    let loss_weights = rng.vec(64, -1.0, 1.0);
    let x: Vec<f32> = rng.distinct(64).iter().map(|v| v * 8.0).collect();
    check(name, vec![x], 1e-3, (1e-3, 1e-2), |v| {
        let x = dev.tensor_from_vec(v[0].clone(), (8, 8));
        let (loss, grads) = weighted_sum(op(x.leaky_trace()), &loss_weights);
        (loss, vec![grads.get(&x).as_vec()])
    });
}

#[test]
fn relu_gradient() {
    activation_case("relu", relu);
}

#[test]
fn leaky_relu_gradient() {
    activation_case("leaky relu 0.3", |x| leaky_relu(x, 0.3));
    let dev = Cpu::default();
    let out = leaky_relu(dev.tensor_from_vec(vec![-2.0, 3.0], (2,)), 0.3).as_vec();
    assert_eq!(out, vec![-0.6, 3.0]);
}

#[test]
fn gelu_exact_values_and_gradient() {
    activation_case("gelu", gelu);
    let dev = Cpu::default();
    let out = gelu(dev.tensor_from_vec(vec![-1.0, 0.5, 2.0], (3,))).as_vec();
    // x * Phi(x) from erf tables (Keras gelu with approximate=False).
    let expected = [-0.158_655_25, 0.345_731_36, 1.954_499_7];
    for (a, b) in out.iter().zip(expected) {
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }
}

#[test]
fn dense_gradient() {
    let dev = Cpu::default();
    let mut rng = Rng::new(9);
    let (n, inputs, units) = (4, 37, 3);
    let values = vec![
        rng.vec(n * inputs, -1.0, 1.0),
        rng.vec(units * inputs, -1.0, 1.0),
        rng.vec(units, -1.0, 1.0),
    ];
    let loss_weights = rng.vec(n * units, -1.0, 1.0);
    check("dense", values, 1e-2, (1e-3, 1e-2), |v| {
        let x = dev.tensor_from_vec(v[0].clone(), (n, inputs));
        let params = DenseParams {
            weight: dev.tensor_from_vec(v[1].clone(), (units, inputs)),
            bias: Some(dev.tensor_from_vec(v[2].clone(), (units,))),
        };
        let (loss, grads) = weighted_sum(dense(x.leaky_trace(), &params, false), &loss_weights);
        let bias = params.bias.as_ref().expect("has bias");
        (
            loss,
            vec![
                grads.get(&x).as_vec(),
                grads.get(&params.weight).as_vec(),
                grads.get(bias).as_vec(),
            ],
        )
    });
}
