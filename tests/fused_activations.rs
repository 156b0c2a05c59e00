//! A `relu` or `relu6` run inside a batch norm (`bn relu`) or an `add` (`add(…) relu`) gives
//! the same output and the same gradients, bit for bit, as the op followed by the separate
//! activation op; and a finite-difference check of each fused op.

mod common;

use common::gradcheck::{check, weighted_sum, Grads, Rng};
use dfdx::prelude::*;
use strata::backend::ops::activation::{relu, relu6};
use strata::backend::ops::batch_norm::{batch_norm, BatchNormConfig, BatchNormParams};
use strata::backend::ops::depthwise_kernels::FusedActivation;
use strata::backend::ops::merge::{add, add_activated, Merged, Operand};
use strata::backend::ops::Image;

type Tape = OwnedTape<f32, Cpu>;

const SHAPE: (usize, usize, usize, usize) = (3, 5, 4, 6);

fn len() -> usize {
    SHAPE.0 * SHAPE.1 * SHAPE.2 * SHAPE.3
}

/// The separate activation op that `fused` stands for.
fn unfused(x: Image<Tape>, fused: FusedActivation) -> Image<Tape> {
    match fused {
        FusedActivation::Relu => relu(x),
        FusedActivation::Relu6 => relu6(x),
        FusedActivation::Linear => x,
    }
}

fn bn_params(dev: &Cpu, gamma: &[f32], beta: &[f32]) -> BatchNormParams {
    let vector = |data: &[f32]| dev.tensor_from_vec(data.to_vec(), (data.len(),));
    let c = gamma.len();
    BatchNormParams {
        gamma: vector(gamma),
        beta: vector(beta),
        moving_mean: vector(&vec![0.3; c]),
        moving_variance: vector(&vec![1.7; c]),
    }
}

/// Output, input gradient, gamma and beta gradients, and the moving statistics after the step.
fn bn_run(values: &[Vec<f32>], cfg: &BatchNormConfig, fuse: bool) -> Vec<Vec<f32>> {
    let dev = Cpu::default();
    let x = dev.tensor_from_vec(values[0].clone(), SHAPE);
    let mut p = bn_params(&dev, &values[1], &values[2]);
    let out = if fuse {
        batch_norm(x.leaky_trace(), &mut p, cfg)
    } else {
        let linear = BatchNormConfig {
            activation: FusedActivation::Linear,
            ..*cfg
        };
        unfused(batch_norm(x.leaky_trace(), &mut p, &linear), cfg.activation)
    };
    let forward = out.as_vec();
    let (_, grads) = weighted_sum(out, &values[3]);
    vec![
        forward,
        grads.get(&x).as_vec(),
        grads.get(&p.gamma).as_vec(),
        grads.get(&p.beta).as_vec(),
        p.moving_mean.as_vec(),
        p.moving_variance.as_vec(),
    ]
}

fn bn_values(seed: u64) -> Vec<Vec<f32>> {
    let mut rng = Rng::new(seed);
    let c = SHAPE.3;
    vec![
        // Wide enough that relu6 clips at both ends.
        rng.vec(len(), -4.0, 9.0),
        rng.vec(c, 0.5, 4.0),
        rng.vec(c, -1.0, 3.0),
        rng.vec(len(), -1.0, 1.0),
    ]
}

#[test]
fn batch_norm_with_a_fused_activation_equals_batch_norm_then_the_activation() {
    for activation in [FusedActivation::Relu, FusedActivation::Relu6] {
        for training in [true, false] {
            let values = bn_values(5);
            let cfg = BatchNormConfig {
                training,
                activation,
                ..Default::default()
            };
            let fused = bn_run(&values, &cfg, true);
            let separate = bn_run(&values, &cfg, false);
            let names = [
                "output",
                "dx",
                "dgamma",
                "dbeta",
                "moving mean",
                "moving var",
            ];
            for ((name, a), b) in names.iter().zip(&fused).zip(&separate) {
                assert_eq!(a, b, "{activation:?}, training {training}: {name}");
            }
            // The activation did clip something, and passed something.
            let out = &fused[0];
            assert!(out.contains(&0.0) && out.iter().any(|&v| v > 0.0));
            if activation == FusedActivation::Relu6 {
                assert!(out.contains(&6.0), "{out:?}");
            }
        }
    }
}

#[test]
fn batch_norm_with_a_fused_relu6_passes_a_finite_difference_check() {
    let mut rng = Rng::new(17);
    let c = SHAPE.3;
    // Distinct inputs away from each other, so the step crosses no kink.
    let x: Vec<f32> = rng.distinct(len()).into_iter().map(|v| v * 6.0).collect();
    let values = vec![x, rng.vec(c, 1.0, 3.0), rng.vec(c, -0.5, 2.0)];
    let weights = rng.vec(len(), -1.0, 1.0);
    let cfg = BatchNormConfig {
        activation: FusedActivation::Relu6,
        ..Default::default()
    };
    let dev = Cpu::default();
    check("bn relu6", values, 1e-3, (5e-4, 5e-3), |v| {
        let x = dev.tensor_from_vec(v[0].clone(), SHAPE);
        let mut p = bn_params(&dev, &v[1], &v[2]);
        let out = batch_norm(x.leaky_trace(), &mut p, &cfg);
        let (loss, grads) = weighted_sum(out, &weights);
        (
            loss,
            vec![
                grads.get(&x).as_vec(),
                grads.get(&p.gamma).as_vec(),
                grads.get(&p.beta).as_vec(),
            ],
        )
    });
}

fn image(merged: Merged<Tape>) -> Image<Tape> {
    merged.into_image().expect("an add of images is an image")
}

/// Output and the gradients of the two inputs, `a` read twice (`add(a, b, a)`).
fn add_run(values: &[Vec<f32>], activation: FusedActivation, fuse: bool) -> Vec<Vec<f32>> {
    let dev = Cpu::default();
    let a = dev.tensor_from_vec(values[0].clone(), SHAPE);
    let b = dev.tensor_from_vec(values[1].clone(), SHAPE);
    let inputs = vec![
        Operand::Image(a.clone()),
        Operand::Image(b.clone()),
        Operand::Image(a.clone()),
    ];
    let out = if fuse {
        image(add_activated(inputs, activation, Tape::default()))
    } else {
        unfused(image(add(inputs, Tape::default())), activation)
    };
    let forward = out.as_vec();
    let (_, grads): (f64, Grads) = weighted_sum(out, &values[2]);
    vec![forward, grads.get(&a).as_vec(), grads.get(&b).as_vec()]
}

#[test]
fn add_with_a_fused_activation_equals_add_then_the_activation() {
    let mut rng = Rng::new(23);
    let values = vec![
        rng.vec(len(), -3.0, 4.0),
        rng.vec(len(), -3.0, 4.0),
        rng.vec(len(), -1.0, 1.0),
    ];
    for activation in [FusedActivation::Relu, FusedActivation::Relu6] {
        let fused = add_run(&values, activation, true);
        let separate = add_run(&values, activation, false);
        for ((name, a), b) in ["output", "da", "db"].iter().zip(&fused).zip(&separate) {
            assert_eq!(a, b, "{activation:?}: {name}");
        }
        let out = &fused[0];
        assert!(out.contains(&0.0) && out.iter().any(|&v| v > 0.0));
        if activation == FusedActivation::Relu6 {
            assert!(out.contains(&6.0), "{out:?}");
        }
    }
}

#[test]
fn add_with_a_fused_relu_passes_a_finite_difference_check() {
    let mut rng = Rng::new(29);
    // Sums at least 0.003 from the kink at 0.
    let b = rng.distinct(len()).into_iter().map(|v| v + 0.003).collect();
    let values = vec![rng.distinct(len()), b];
    let weights = rng.vec(len(), -1.0, 1.0);
    let dev = Cpu::default();
    check("add relu", values, 1e-4, (5e-4, 5e-3), |v| {
        let a = dev.tensor_from_vec(v[0].clone(), SHAPE);
        let b = dev.tensor_from_vec(v[1].clone(), SHAPE);
        let inputs = vec![Operand::Image(a.clone()), Operand::Image(b.clone())];
        let out = image(add_activated(
            inputs,
            FusedActivation::Relu,
            Tape::default(),
        ));
        let (loss, grads) = weighted_sum(out, &weights);
        (loss, vec![grads.get(&a).as_vec(), grads.get(&b).as_vec()])
    });
}
