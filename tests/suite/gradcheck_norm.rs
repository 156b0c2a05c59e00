//! Gradient checks of batch normalisation (training and inference mode, images and flat
//! input) and its moving-statistics update.

use crate::common;

use common::gradcheck::{check, weighted_sum, Rng};
use dfdx::prelude::*;
use strata::backend::ops::batch_norm::{batch_norm, BatchNormConfig, BatchNormParams};

fn params(dev: &Cpu, v: &[Vec<f32>], features: usize) -> BatchNormParams {
    let vector = |data: &[f32]| dev.tensor_from_vec(data.to_vec(), (features,));
    BatchNormParams {
        gamma: vector(&v[1]),
        beta: vector(&v[2]),
        moving_mean: vector(&vec![0.3; features]),
        moving_variance: vector(&vec![1.7; features]),
    }
}

fn bn_case(name: &str, shape: (usize, usize, usize, usize), training: bool) {
    let mut rng = Rng::new(13);
    let (n, h, w, c) = shape;
    let values = vec![
        rng.vec(n * h * w * c, -1.0, 2.0),
        rng.vec(c, 0.5, 1.5),
        rng.vec(c, -0.5, 0.5),
    ];
    let loss_weights = rng.vec(n * h * w * c, -1.0, 1.0);
    let cfg = BatchNormConfig {
        training,
        ..Default::default()
    };
    let dev = Cpu::default();
    check(name, values, 1e-2, (5e-4, 5e-3), |v| {
        let x = dev.tensor_from_vec(v[0].clone(), shape);
        let mut p = params(&dev, v, c);
        let out = batch_norm(x.leaky_trace(), &mut p, &cfg);
        let (loss, grads) = weighted_sum(out, &loss_weights);
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

#[test]
fn batch_norm_training_images() {
    bn_case("bn train images", (3, 4, 5, 3), true);
}

#[test]
fn batch_norm_inference_images() {
    bn_case("bn inference images", (2, 3, 4, 5), false);
}

#[test]
fn batch_norm_training_flat() {
    let mut rng = Rng::new(17);
    let (n, f) = (6, 7);
    let values = vec![
        rng.vec(n * f, -1.0, 2.0),
        rng.vec(f, 0.5, 1.5),
        rng.vec(f, -0.5, 0.5),
    ];
    let loss_weights = rng.vec(n * f, -1.0, 1.0);
    let cfg = BatchNormConfig::default();
    let dev = Cpu::default();
    check("bn train flat", values, 1e-2, (5e-4, 5e-3), |v| {
        let x = dev.tensor_from_vec(v[0].clone(), (n, f));
        let mut p = params(&dev, v, f);
        let out = batch_norm(x.leaky_trace(), &mut p, &cfg);
        let (loss, grads) = weighted_sum(out, &loss_weights);
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

#[test]
fn batch_norm_statistics_match_keras() {
    let dev = Cpu::default();
    // Two features over four rows: feature 0 = 1, 2, 3, 4; feature 1 = 10 each.
    let x: Vec<f32> = vec![1.0, 10.0, 2.0, 10.0, 3.0, 10.0, 4.0, 10.0];
    let one = |v: f32| dev.tensor_from_vec(vec![v; 2], (2,));
    let mut p = BatchNormParams {
        gamma: one(1.0),
        beta: one(0.0),
        moving_mean: one(0.0),
        moving_variance: one(1.0),
    };
    let out = batch_norm(
        dev.tensor_from_vec(x, (4, 2)).leaky_trace(),
        &mut p,
        &Default::default(),
    );
    // Biased variance of 1..4 is 1.25; eps 1e-3.
    let expected0 = (1.0 - 2.5) / (1.25f32 + 1e-3).sqrt();
    assert!((out.as_vec()[0] - expected0).abs() < 1e-5);
    let mean = p.moving_mean.as_vec();
    let variance = p.moving_variance.as_vec();
    assert!((mean[0] - 0.025).abs() < 1e-6 && (mean[1] - 0.1).abs() < 1e-6);
    assert!((variance[0] - (0.99 + 0.0125)).abs() < 1e-6 && (variance[1] - 0.99).abs() < 1e-6);
    // Inference mode uses the moving statistics and leaves them alone.
    let cfg = BatchNormConfig {
        training: false,
        ..Default::default()
    };
    let x = dev.tensor_from_vec(vec![0.025, 0.1], (1, 2));
    let out = batch_norm(x, &mut p, &cfg).as_vec();
    assert!(out.iter().all(|v| v.abs() < 1e-6));
    assert_eq!(p.moving_mean.as_vec(), mean);
}

/// The batch statistics (read back as the moving statistics with momentum 0) against a
/// two-pass f64 reference, on images whose means differ from each other and sit far from 0:
/// the per-image moments are combined about the batch mean without losing the variance to
/// cancellation.
#[test]
fn batch_norm_statistics_of_offset_images_match_a_two_pass_reference() {
    let dev = Cpu::default();
    let (n, h, w, c) = (5, 6, 7, 3);
    let mut rng = Rng::new(29);
    let noise = rng.vec(n * h * w * c, -1.0, 1.0);
    // Image i, channel f: 1000 + 3 i - 2 f plus noise of variance 1/3.
    let x: Vec<f32> = noise
        .iter()
        .enumerate()
        .map(|(k, e)| {
            let (image, f) = (k / (h * w * c), k % c);
            1000.0 + 3.0 * image as f32 - 2.0 * f as f32 + e
        })
        .collect();
    let mut p = BatchNormParams {
        gamma: dev.tensor_from_vec(vec![1.0; c], (c,)),
        beta: dev.tensor_from_vec(vec![0.0; c], (c,)),
        moving_mean: dev.tensor_from_vec(vec![0.0; c], (c,)),
        moving_variance: dev.tensor_from_vec(vec![0.0; c], (c,)),
    };
    let cfg = BatchNormConfig {
        momentum: 0.0,
        ..Default::default()
    };
    let _ = batch_norm(
        dev.tensor_from_vec(x.clone(), (n, h, w, c)).leaky_trace(),
        &mut p,
        &cfg,
    );
    let rows = (n * h * w) as f64;
    for f in 0..c {
        let values = x.iter().skip(f).step_by(c).map(|&v| f64::from(v));
        let mean = values.clone().sum::<f64>() / rows;
        let variance = values.map(|v| (v - mean) * (v - mean)).sum::<f64>() / rows;
        let (got_mean, got_variance) = (p.moving_mean.as_vec()[f], p.moving_variance.as_vec()[f]);
        assert!(
            (f64::from(got_mean) - mean).abs() <= 1e-6 * mean.abs(),
            "feature {f}: mean {got_mean} against {mean}"
        );
        assert!(
            (f64::from(got_variance) - variance).abs() <= 1e-5 * variance,
            "feature {f}: variance {got_variance} against {variance}"
        );
    }
}
