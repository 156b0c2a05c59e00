//! Gradient checks of conv2d: Keras same padding with even kernels, strides, rectangular
//! kernels, fused relu, no bias; and the forward pass against a naive NCHW reference.

use crate::common;

use common::gradcheck::{check, weighted_sum, Rng};
use dfdx::prelude::*;
use strata::backend::ops::conv2d::{
    conv2d, weight_from_checkpoint, weight_to_checkpoint, Conv2dConfig, Conv2dParams,
};
use strata::backend::ops::geometry::{Axis1, Padding};

/// Input `(n, h, w, c)`, filters, and the layer configuration of one case.
struct Case {
    input: (usize, usize, usize, usize),
    filters: usize,
    cfg: Conv2dConfig,
    bias: bool,
}

fn config(
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: Padding,
    relu: bool,
) -> Conv2dConfig {
    Conv2dConfig {
        kernel,
        stride,
        padding,
        relu,
        input_grad: true,
    }
}

fn run_case(name: &str, case: &Case) {
    let (n, h, w, c) = case.input;
    let (kh, kw) = case.cfg.kernel;
    let k = kh * kw * c;
    let ho = Axis1::new(h, kh, case.cfg.stride.0, case.cfg.padding)
        .expect("case fits")
        .output;
    let wo = Axis1::new(w, kw, case.cfg.stride.1, case.cfg.padding)
        .expect("case fits")
        .output;
    let mut rng = Rng::new(7);
    let x = if case.cfg.relu {
        rng.distinct(n * h * w * c)
    } else {
        rng.vec(n * h * w * c, -1.0, 1.0)
    };
    let mut values = vec![x, rng.vec(k * case.filters, -0.5, 0.5)];
    if case.bias {
        values.push(rng.vec(case.filters, -0.2, 0.2));
    }
    let loss_weights = rng.vec(n * ho * wo * case.filters, -1.0, 1.0);
    let dev = Cpu::default();
    check(name, values, 1e-3, (2e-3, 2e-2), |v| {
        let x = dev.tensor_from_vec(v[0].clone(), case.input);
        let params = Conv2dParams {
            weight: dev.tensor_from_vec(v[1].clone(), (k, case.filters)),
            bias: v
                .get(2)
                .map(|b| dev.tensor_from_vec(b.clone(), (case.filters,))),
        };
        let out = conv2d(x.leaky_trace(), &params, &case.cfg);
        assert_eq!(*out.shape(), (n, ho, wo, case.filters));
        let (loss, mut grads) = weighted_sum(out, &loss_weights);
        let mut all = vec![grads.get(&x).as_vec(), grads.get(&params.weight).as_vec()];
        if let Some(bias) = &params.bias {
            all.push(grads.get_or_alloc_mut(bias).expect("cpu alloc").to_vec());
        }
        (loss, all)
    });
}

#[test]
fn conv_same_even_kernel() {
    let cfg = config((2, 2), (1, 1), Padding::Same, false);
    run_case(
        "conv 2x2 same",
        &Case {
            input: (2, 5, 6, 3),
            filters: 4,
            cfg,
            bias: true,
        },
    );
}

#[test]
fn conv_same_even_kernel_strided() {
    let cfg = config((4, 2), (2, 3), Padding::Same, false);
    run_case(
        "conv 4x2 same stride 2x3",
        &Case {
            input: (2, 7, 8, 2),
            filters: 3,
            cfg,
            bias: true,
        },
    );
}

#[test]
fn conv_same_odd_kernel_strided() {
    let cfg = config((3, 3), (2, 2), Padding::Same, false);
    run_case(
        "conv 3x3 same stride 2",
        &Case {
            input: (2, 7, 6, 2),
            filters: 3,
            cfg,
            bias: false,
        },
    );
}

#[test]
fn conv_strided_over_runs_of_images() {
    // 9 images: the weight gradient's runs of 3, 2 and 4 images, each one product.
    let cfg = config((3, 3), (2, 2), Padding::Same, false);
    run_case(
        "conv 3x3 same stride 2, 9 images",
        &Case {
            input: (9, 5, 6, 2),
            filters: 3,
            cfg,
            bias: true,
        },
    );
}

#[test]
fn conv_valid_rectangular_relu() {
    let cfg = config((2, 3), (2, 1), Padding::Valid, true);
    run_case(
        "conv 2x3 valid stride 2x1 relu",
        &Case {
            input: (3, 7, 6, 3),
            filters: 5,
            cfg,
            bias: true,
        },
    );
}

#[test]
fn conv_many_channels_relu() {
    let cfg = config((2, 2), (1, 1), Padding::Same, true);
    run_case(
        "conv 2x2 same relu 20 channels",
        &Case {
            input: (2, 9, 9, 20),
            filters: 20,
            cfg,
            bias: true,
        },
    );
}

/// A direct NCHW convolution in f64 with checkpoint-layout weights, Keras padding.
fn reference(
    x: &[f32],
    (n, h, w, c): (usize, usize, usize, usize),
    weight: &[f32],
    filters: usize,
    cfg: &Conv2dConfig,
) -> Vec<f32> {
    let (kh, kw) = cfg.kernel;
    let rows = Axis1::new(h, kh, cfg.stride.0, cfg.padding).expect("fits");
    let cols = Axis1::new(w, kw, cfg.stride.1, cfg.padding).expect("fits");
    let mut out = vec![0.0; n * rows.output * cols.output * filters];
    for b in 0..n {
        for y in 0..rows.output {
            for xo in 0..cols.output {
                for f in 0..filters {
                    let mut acc = 0.0f64;
                    for ch in 0..c {
                        for i in 0..kh {
                            for j in 0..kw {
                                let (Some(iy), Some(ix)) = (rows.source(y, i), cols.source(xo, j))
                                else {
                                    continue;
                                };
                                let v = x[((b * h + iy) * w + ix) * c + ch];
                                acc += f64::from(v)
                                    * f64::from(weight[((f * c + ch) * kh + i) * kw + j]);
                            }
                        }
                    }
                    let value = if cfg.relu { acc.max(0.0) } else { acc };
                    out[((b * rows.output + y) * cols.output + xo) * filters + f] = value as f32;
                }
            }
        }
    }
    out
}

#[test]
fn conv_forward_matches_reference_and_checkpoint_layout() {
    let dev = Cpu::default();
    let mut rng = Rng::new(3);
    for cfg in [
        config((2, 2), (1, 1), Padding::Same, true),
        config((3, 2), (2, 1), Padding::Same, false),
        config((3, 3), (1, 2), Padding::Valid, false),
    ] {
        let shape = (2, 9, 7, 3);
        let filters = 4;
        let x = rng.vec(2 * 9 * 7 * 3, -1.0, 1.0);
        let checkpoint = rng.vec(filters * 3 * cfg.kernel.0 * cfg.kernel.1, -1.0, 1.0);
        let dims = (filters, 3, cfg.kernel.0, cfg.kernel.1);
        let hwio = weight_from_checkpoint(&checkpoint, dims);
        assert_eq!(weight_to_checkpoint(&hwio, dims), checkpoint);
        let params = Conv2dParams {
            weight: dev.tensor_from_vec(hwio, (cfg.kernel.0 * cfg.kernel.1 * 3, filters)),
            bias: None,
        };
        let out = conv2d(dev.tensor_from_vec(x.clone(), shape), &params, &cfg).as_vec();
        let expected = reference(&x, shape, &checkpoint, filters, &cfg);
        assert_eq!(out.len(), expected.len());
        for (a, b) in out.iter().zip(&expected) {
            assert!((a - b).abs() < 1e-4, "{cfg:?}: {a} vs {b}");
        }
    }
}
