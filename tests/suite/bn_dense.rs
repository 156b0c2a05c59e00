//! A batch norm on the input, a pixel-major flatten and a narrow dense layer run as one op
//! (`batch_norm_dense`) give the output, the gradients and the moving statistics of the
//! separate ops (to float rounding: the fused product sums in another order), in training and
//! in inference mode; and a finite-difference check of the fused op.

use crate::common;

use common::gradcheck::{check, weighted_sum, Rng};
use dfdx::prelude::*;
use strata::backend::ops::batch_norm::{batch_norm, BatchNormConfig, BatchNormParams};
use strata::backend::ops::bn_dense::batch_norm_dense;
use strata::backend::ops::dense::{dense, DenseParams};
use strata::backend::ops::depthwise_kernels::FusedActivation;
use strata::backend::ops::flatten::flatten_pixels;

/// `(n, h, w, c)` shapes: features not a whole number of periods (odd sizes, 1 and 3
/// channels), and one spanning several tasks of the fused op's product.
const SHAPES: [(usize, usize, usize, usize); 4] =
    [(3, 5, 7, 3), (2, 3, 3, 1), (4, 9, 11, 3), (2, 64, 70, 3)];

fn cfg(training: bool) -> BatchNormConfig {
    BatchNormConfig {
        momentum: 0.9,
        eps: 1e-3,
        training,
        input_grad: false,
        activation: FusedActivation::Linear,
        sync: None,
    }
}

/// The values of one case: input, γ, β, dense weight and bias.
fn values(shape: (usize, usize, usize, usize), units: usize, seed: u64) -> Vec<Vec<f32>> {
    let (n, h, w, c) = shape;
    let mut rng = Rng::new(seed);
    vec![
        rng.vec(n * h * w * c, -1.0, 2.0),
        rng.vec(c, 0.5, 1.5),
        rng.vec(c, -0.5, 0.5),
        rng.vec(units * h * w * c, -0.3, 0.3),
        rng.vec(units, -0.2, 0.2),
    ]
}

/// Output, then the gradients of γ, β, weight and bias, then the moving mean and variance.
fn run(
    shape: (usize, usize, usize, usize),
    v: &[Vec<f32>],
    training: bool,
    fused: bool,
) -> Vec<Vec<f32>> {
    let dev = Cpu::default();
    let vector = |data: &[f32]| dev.tensor_from_vec(data.to_vec(), (data.len(),));
    let c = shape.3;
    let mut bn = BatchNormParams {
        gamma: vector(&v[1]),
        beta: vector(&v[2]),
        moving_mean: vector(&vec![0.1; c]),
        moving_variance: vector(&vec![1.3; c]),
    };
    let units = v[4].len();
    let dense_params = DenseParams {
        weight: dev.tensor_from_vec(v[3].clone(), (units, v[3].len() / units)),
        bias: Some(vector(&v[4])),
    };
    let x = dev.tensor_from_vec(v[0].clone(), shape).leaky_trace();
    let out = if fused {
        batch_norm_dense(x, &mut bn, &cfg(training), &dense_params)
    } else {
        let normalised = batch_norm(x, &mut bn, &cfg(training));
        dense(flatten_pixels(normalised), &dense_params, false)
    };
    let weights: Vec<f32> = (0..out.shape().0 * units)
        .map(|i| ((i * 7) % 5) as f32 - 1.7)
        .collect();
    let output = out.as_vec();
    let (_, grads) = weighted_sum(out, &weights);
    vec![
        output,
        grads.get(&bn.gamma).as_vec(),
        grads.get(&bn.beta).as_vec(),
        grads.get(&dense_params.weight).as_vec(),
        grads
            .get(&dense_params.bias.clone().expect("bias"))
            .as_vec(),
        bn.moving_mean.as_vec(),
        bn.moving_variance.as_vec(),
    ]
}

#[test]
fn the_fused_op_equals_batch_norm_then_dense() {
    for (case, shape) in SHAPES.iter().enumerate() {
        for units in [1, 2, 3, 5, 7, 8] {
            for training in [true, false] {
                let v = values(*shape, units, 11 + case as u64 * 10 + units as u64);
                let fused = run(*shape, &v, training, true);
                let separate = run(*shape, &v, training, false);
                let names = ["output", "γ", "β", "weight", "bias", "mean", "variance"];
                for ((name, a), b) in names.iter().zip(&fused).zip(&separate) {
                    assert_eq!(a.len(), b.len(), "{name}");
                    let scale = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
                    for (i, (x, y)) in a.iter().zip(b).enumerate() {
                        assert!(
                            (x - y).abs() <= 2e-5 * scale,
                            "{shape:?} units {units} training {training}: {name}[{i}] {x} vs {y}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn the_fused_op_passes_a_finite_difference_check() {
    let shape = (3, 4, 5, 3);
    let units = 2;
    let v = values(shape, units, 5);
    check("batch_norm_dense", v, 1e-2, (2e-3, 2e-2), |v| {
        let dev = Cpu::default();
        let vector = |data: &[f32]| dev.tensor_from_vec(data.to_vec(), (data.len(),));
        let mut bn = BatchNormParams {
            gamma: vector(&v[1]),
            beta: vector(&v[2]),
            moving_mean: vector(&[0.0; 3]),
            moving_variance: vector(&[1.0; 3]),
        };
        let params = DenseParams {
            weight: dev.tensor_from_vec(v[3].clone(), (units, v[3].len() / units)),
            bias: Some(vector(&v[4])),
        };
        let x = dev.tensor_from_vec(v[0].clone(), shape).leaky_trace();
        let out = batch_norm_dense(x, &mut bn, &cfg(true), &params);
        let weights: Vec<f32> = (0..shape.0 * units).map(|i| i as f32 * 0.3 - 0.5).collect();
        let (loss, grads) = weighted_sum(out, &weights);
        // The op computes no input gradient (it serves a first layer): the separate ops'
        // stands in, so the check also covers how the fused output moves with the input.
        (
            loss,
            vec![
                numeric_input_gradient(v, shape, units),
                grads.get(&bn.gamma).as_vec(),
                grads.get(&bn.beta).as_vec(),
                grads.get(&params.weight).as_vec(),
                grads.get(&params.bias.clone().expect("bias")).as_vec(),
            ],
        )
    });
}

/// The input's gradient through the separate ops (the fused op computes none); the check then
/// confirms the fused loss moves with the input exactly as they say.
fn numeric_input_gradient(
    v: &[Vec<f32>],
    shape: (usize, usize, usize, usize),
    units: usize,
) -> Vec<f32> {
    let dev = Cpu::default();
    let vector = |data: &[f32]| dev.tensor_from_vec(data.to_vec(), (data.len(),));
    let mut bn = BatchNormParams {
        gamma: vector(&v[1]),
        beta: vector(&v[2]),
        moving_mean: vector(&[0.0; 3]),
        moving_variance: vector(&[1.0; 3]),
    };
    let params = DenseParams {
        weight: dev.tensor_from_vec(v[3].clone(), (units, v[3].len() / units)),
        bias: Some(vector(&v[4])),
    };
    let x = dev.tensor_from_vec(v[0].clone(), shape);
    let with_grad = BatchNormConfig {
        input_grad: true,
        ..cfg(true)
    };
    let out = dense(
        flatten_pixels(batch_norm(x.leaky_trace(), &mut bn, &with_grad)),
        &params,
        false,
    );
    let weights: Vec<f32> = (0..shape.0 * units).map(|i| i as f32 * 0.3 - 0.5).collect();
    let (_, grads) = weighted_sum(out, &weights);
    grads.get(&x).as_vec()
}
