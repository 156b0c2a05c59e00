//! A `relu` or `relu6` run inside a batch norm (`bn relu`), an `add` (`add(…) relu`) or a
//! convolution (`conv1(96) relu6`), a residual `add` run inside the batch norm before it
//! (`add(identity, … -> bn) relu`), and a convolution and the batch norm after it run as one op
//! in training (handing the output on to the next such op as a mirror, or deferred to a depthwise
//! reader), give the same output and the same gradients, bit for bit, as the separate ops;
//! and a finite-difference check of each fused op.

use crate::common;

use common::gradcheck::{check, weighted_sum, Grads, Rng};
use dfdx::prelude::*;
use strata::backend::ops::activation::{relu, relu6};
use strata::backend::ops::batch_norm::{
    batch_norm, batch_norm_add, BatchNormConfig, BatchNormParams,
};
use strata::backend::ops::conv2d::{conv2d, conv2d_activated, Conv2dConfig, Conv2dParams};
use strata::backend::ops::depthwise::{depthwise_conv2d, DepthwiseConfig, DepthwiseParams};
use strata::backend::ops::depthwise_kernels::FusedActivation;
use strata::backend::ops::geometry::Padding;
use strata::backend::ops::linear_bn::{
    conv2d_batch_norm, depthwise_batch_norm, Handoff, Skip, Traced,
};
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

/// Output and the gradients of input, weight and bias of a 3x3 stride-2 `same` convolution.
fn conv_run(values: &[Vec<f32>], activation: FusedActivation, fuse: bool) -> Vec<Vec<f32>> {
    let dev = Cpu::default();
    let (n, h, w, c) = SHAPE;
    let filters = 5;
    let x = dev.tensor_from_vec(values[0].clone(), SHAPE);
    let params = Conv2dParams {
        weight: dev.tensor_from_vec(values[1].clone(), (9 * c, filters)),
        bias: Some(dev.tensor_from_vec(values[2].clone(), (filters,))),
    };
    let cfg = Conv2dConfig {
        kernel: (3, 3),
        stride: (2, 2),
        padding: Padding::Same,
        relu: false,
        input_grad: true,
    };
    let out = if fuse {
        conv2d_activated(x.leaky_trace(), &params, &cfg, activation)
    } else {
        unfused(conv2d(x.leaky_trace(), &params, &cfg), activation)
    };
    let forward = out.as_vec();
    let weights: Vec<f32> = (0..forward.len())
        .map(|i| ((i * 13 % 7) as f32 - 3.0) / 3.0)
        .collect();
    assert_eq!(forward.len(), n * h.div_ceil(2) * w.div_ceil(2) * filters);
    let (_, grads) = weighted_sum(out, &weights);
    let bias = params.bias.as_ref().expect("bias");
    vec![
        forward,
        grads.get(&x).as_vec(),
        grads.get(&params.weight).as_vec(),
        grads.get(bias).as_vec(),
    ]
}

#[test]
fn conv_with_a_fused_activation_equals_conv_then_the_activation() {
    let mut rng = Rng::new(31);
    let c = SHAPE.3;
    let values = vec![
        rng.vec(len(), -2.0, 3.0),
        rng.vec(9 * c * 5, -1.0, 1.0),
        rng.vec(5, -1.0, 2.0),
    ];
    for activation in [FusedActivation::Relu, FusedActivation::Relu6] {
        let fused = conv_run(&values, activation, true);
        let separate = conv_run(&values, activation, false);
        let names = ["output", "dx", "dweight", "dbias"];
        for ((name, a), b) in names.iter().zip(&fused).zip(&separate) {
            assert_eq!(a, b, "{activation:?}: {name}");
        }
        let out = &fused[0];
        assert!(out.contains(&0.0) && out.iter().any(|&v| v > 0.0));
        if activation == FusedActivation::Relu6 {
            assert!(out.contains(&6.0), "{out:?}");
        }
    }
}

/// `activation(bn(x) + skip)`: output, and the gradients of x, skip, gamma and beta, and the
/// moving statistics; fused (one op) or as batch norm then `add_activated`.
fn bn_add_run(values: &[Vec<f32>], cfg: &BatchNormConfig, fuse: bool) -> Vec<Vec<f32>> {
    let dev = Cpu::default();
    let x = dev.tensor_from_vec(values[0].clone(), SHAPE);
    let skip = dev.tensor_from_vec(values[4].clone(), SHAPE);
    let mut p = bn_params(&dev, &values[1], &values[2]);
    let out = if fuse {
        batch_norm_add(x.leaky_trace(), &skip, &mut p, cfg)
    } else {
        let linear = BatchNormConfig {
            activation: FusedActivation::Linear,
            ..*cfg
        };
        let (normalised, tape) = batch_norm(x.leaky_trace(), &mut p, &linear).split_tape();
        let inputs = vec![Operand::Image(skip.clone()), Operand::Image(normalised)];
        image(add_activated(inputs, cfg.activation, tape))
    };
    let forward = out.as_vec();
    let (_, grads) = weighted_sum(out, &values[3]);
    vec![
        forward,
        grads.get(&x).as_vec(),
        grads.get(&skip).as_vec(),
        grads.get(&p.gamma).as_vec(),
        grads.get(&p.beta).as_vec(),
        p.moving_mean.as_vec(),
        p.moving_variance.as_vec(),
    ]
}

#[test]
fn batch_norm_with_a_fused_residual_add_equals_batch_norm_then_add() {
    for activation in [
        FusedActivation::Linear,
        FusedActivation::Relu,
        FusedActivation::Relu6,
    ] {
        for training in [true, false] {
            let mut values = bn_values(7);
            values.push(Rng::new(8).vec(len(), -3.0, 3.0));
            let cfg = BatchNormConfig {
                training,
                activation,
                ..Default::default()
            };
            let fused = bn_add_run(&values, &cfg, true);
            let separate = bn_add_run(&values, &cfg, false);
            let names = [
                "output",
                "dx",
                "dskip",
                "dgamma",
                "dbeta",
                "moving mean",
                "moving var",
            ];
            for ((name, a), b) in names.iter().zip(&fused).zip(&separate) {
                assert_eq!(a, b, "{activation:?}, training {training}: {name}");
            }
            if activation != FusedActivation::Linear {
                let out = &fused[0];
                assert!(out.contains(&0.0) && out.iter().any(|&v| v > 0.0));
            }
        }
    }
}

/// A linear 3x3 stride-1 `same` convolution that computes its input's gradient.
fn linear_3x3_same() -> Conv2dConfig {
    Conv2dConfig {
        kernel: (3, 3),
        stride: (1, 1),
        padding: Padding::Same,
        relu: false,
        input_grad: true,
    }
}

/// The convolution before the batch norm in [`conv_bn_run`]: a plain 3x3 one (filters =
/// channels, no bias) or a depthwise 3x3 one (with a bias).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Before {
    Conv,
    Depthwise,
}

/// `activation(bn(conv3x3(x)) [+ skip])` on `shape`, stride 1, `same`: the output, the
/// gradients of x, the weight, gamma, beta and the skip, and the moving statistics after the
/// step; as one op (`linear_bn`) or as the convolution, then the batch norm (with the add
/// inside it, as `batch_norm_add`).
fn conv_bn_run(
    (shape, before): ((usize, usize, usize, usize), Before),
    values: &[Vec<f32>],
    cfg: &BatchNormConfig,
    with_skip: bool,
    fuse: bool,
) -> Vec<Vec<f32>> {
    let dev = Cpu::default();
    let c = shape.3;
    let x = dev.tensor_from_vec(values[0].clone(), shape);
    let conv = Conv2dParams {
        weight: dev.tensor_from_vec(values[1].clone(), (9 * c, c)),
        bias: None,
    };
    let conv_cfg = linear_3x3_same();
    let dw = DepthwiseParams {
        weight: dev.tensor_from_vec(values[1][..9 * c].to_vec(), (9, c)),
        bias: Some(dev.tensor_from_vec(values[3].clone(), (c,))),
    };
    let dw_cfg = DepthwiseConfig {
        kernel: (3, 3),
        stride: (1, 1),
        padding: Padding::Same,
        multiplier: 1,
        activation: FusedActivation::Linear,
        input_grad: true,
    };
    let linear = |x: Image<Tape>| match before {
        Before::Conv => conv2d(x, &conv, &conv_cfg),
        Before::Depthwise => depthwise_conv2d(x, &dw, &dw_cfg),
    };
    let vector = |data: &[f32]| dev.tensor_from_vec(data.to_vec(), (data.len(),));
    let mut bn = BatchNormParams {
        gamma: vector(&values[2]),
        beta: vector(&values[3]),
        moving_mean: vector(&vec![0.3; c]),
        moving_variance: vector(&vec![1.7; c]),
    };
    let skip = dev.tensor_from_vec(values[5].clone(), shape);
    let skip_arg = with_skip.then_some(&skip);
    let out = match (fuse, before, with_skip) {
        (true, Before::Conv, _) => tensor(conv2d_batch_norm(
            Traced::Tensor(x.leaky_trace()),
            (&conv, &conv_cfg),
            (&mut bn, cfg),
            (skip_arg.map(Skip::Tensor), Handoff::Tensor),
        )),
        (true, Before::Depthwise, _) => tensor(depthwise_batch_norm(
            Traced::Tensor(x.leaky_trace()),
            (&dw, &dw_cfg),
            (&mut bn, cfg),
            (skip_arg.map(Skip::Tensor), Handoff::Tensor),
        )),
        (false, _, true) => batch_norm_add(linear(x.leaky_trace()), &skip, &mut bn, cfg),
        (false, _, false) => batch_norm(linear(x.leaky_trace()), &mut bn, cfg),
    };
    let forward = out.as_vec();
    let (_, grads) = weighted_sum(out, &values[4]);
    let skip_grad = if with_skip {
        grads.get(&skip).as_vec()
    } else {
        Vec::new()
    };
    let (weight_grad, bias_grad) = match (before, &dw.bias) {
        (Before::Depthwise, Some(bias)) => (grads.get(&dw.weight), grads.get(bias).as_vec()),
        (Before::Conv, _) | (Before::Depthwise, None) => (grads.get(&conv.weight), Vec::new()),
    };
    vec![
        forward,
        grads.get(&x).as_vec(),
        weight_grad.as_vec(),
        bias_grad,
        grads.get(&bn.gamma).as_vec(),
        grads.get(&bn.beta).as_vec(),
        skip_grad,
        bn.moving_mean.as_vec(),
        bn.moving_variance.as_vec(),
    ]
}

#[test]
fn conv_and_batch_norm_as_one_op_equal_the_two_ops() {
    // 6 channels run the plain convolution by im2col, 16 by Winograd's products.
    let cases = [
        (SHAPE, Before::Conv),
        ((2, 6, 5, 16), Before::Conv),
        (SHAPE, Before::Depthwise),
    ];
    for (shape, before) in cases {
        let (n, h, w, c) = shape;
        let len = n * h * w * c;
        let mut rng = Rng::new(41);
        let values = vec![
            rng.vec(len, -2.0, 3.0),
            rng.vec(9 * c * c, -0.5, 0.5),
            rng.vec(c, 0.5, 4.0),
            rng.vec(c, -1.0, 3.0),
            rng.vec(len, -1.0, 1.0),
            rng.vec(len, -3.0, 3.0),
        ];
        for activation in [
            FusedActivation::Linear,
            FusedActivation::Relu,
            FusedActivation::Relu6,
        ] {
            for (with_skip, training) in [(false, true), (true, true), (true, false)] {
                let cfg = BatchNormConfig {
                    activation,
                    training,
                    ..Default::default()
                };
                let fused = conv_bn_run((shape, before), &values, &cfg, with_skip, true);
                let separate = conv_bn_run((shape, before), &values, &cfg, with_skip, false);
                let names = [
                    "output",
                    "dx",
                    "dweight",
                    "dbias",
                    "dgamma",
                    "dbeta",
                    "dskip",
                    "moving mean",
                    "moving var",
                ];
                for ((name, a), b) in names.iter().zip(&fused).zip(&separate) {
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(
                        bits(a),
                        bits(b),
                        "{shape:?} {before:?}, {activation:?}, skip {with_skip}, training {training}: {name}"
                    );
                }
                let out = &fused[0];
                if activation != FusedActivation::Linear {
                    assert!(out.contains(&0.0) && out.iter().any(|&v| v > 0.0));
                }
                assert!(
                    fused[1].iter().any(|&g| g != 0.0),
                    "the input gradient flows"
                );
            }
        }
    }
}

/// The tensor of a fused op's output when no mirror was asked for.
fn tensor(out: Traced<Tape>) -> Image<Tape> {
    match out {
        Traced::Tensor(out) => out,
        Traced::Mirror(..) => panic!("a mirror that was not asked for"),
    }
}

/// A residual block after a fused op, `b = relu(bn0(conv0(x)))`, then
/// `relu(bn2(conv2(relu(bn1(conv1(b))))) + b)`, all 16-channel 3x3 convolutions: output and
/// gradients of x, the three weights, gammas and betas. `how`: 0 runs the separate ops; 1 the
/// fused ops, each handing its output to the next as a mirror (`b`'s read twice, as the second
/// convolution's input and as the add's skip, so that its gradient is summed in the mirror);
/// 2 the same with a tensor made from `b`'s mirror, as for a layer that reads a tensor (every
/// gradient of `b` then goes to that tensor's slot on the tape).
fn block_run(values: &[Vec<f32>], shape: (usize, usize, usize, usize), how: u8) -> Vec<Vec<f32>> {
    let dev = Cpu::default();
    let c = shape.3;
    let x = dev.tensor_from_vec(values[0].clone(), shape);
    let convs: Vec<Conv2dParams> = (0..3)
        .map(|k| Conv2dParams {
            weight: dev.tensor_from_vec(values[1 + k].clone(), (9 * c, c)),
            bias: None,
        })
        .collect();
    let mut bns: Vec<BatchNormParams> = (0..3)
        .map(|k| bn_params(&dev, &values[4 + k], &values[7 + k]))
        .collect();
    let conv_cfg = linear_3x3_same();
    let relu_cfg = BatchNormConfig {
        activation: FusedActivation::Relu,
        ..Default::default()
    };
    let linear_cfg = BatchNormConfig::default();
    let (b1, b2) = bns.split_at_mut(1);
    let (b2, b3) = b2.split_at_mut(1);
    let (bn0, bn1, bn2) = (&mut b1[0], &mut b2[0], &mut b3[0]);
    let (out, b_tensor) = if how == 0 {
        let b = relu(batch_norm(
            conv2d(x.leaky_trace(), &convs[0], &conv_cfg),
            bn0,
            &linear_cfg,
        ));
        let (b, tape) = b.split_tape();
        let h = batch_norm(
            conv2d(b.clone().put_tape(tape), &convs[1], &conv_cfg),
            bn1,
            &relu_cfg,
        );
        let out = batch_norm_add(conv2d(h, &convs[2], &conv_cfg), &b, bn2, &relu_cfg);
        (out, None)
    } else {
        let Traced::Mirror(b, tape) = conv2d_batch_norm(
            Traced::Tensor(x.leaky_trace()),
            (&convs[0], &conv_cfg),
            (bn0, &relu_cfg),
            (None, Handoff::Mirror),
        ) else {
            panic!("a mirror when asked for one")
        };
        assert_eq!(b.shape(), shape);
        let b_tensor = (how == 2).then(|| b.clone().tensor(&dev));
        let h = conv2d_batch_norm(
            Traced::Mirror(b.clone(), tape),
            (&convs[1], &conv_cfg),
            (bn1, &relu_cfg),
            (None, Handoff::Mirror),
        );
        let out = tensor(conv2d_batch_norm(
            h,
            (&convs[2], &conv_cfg),
            (bn2, &relu_cfg),
            (Some(Skip::Mirror(&b)), Handoff::Tensor),
        ));
        b.release();
        (out, b_tensor)
    };
    let forward = out.as_vec();
    let (_, grads) = weighted_sum(out, &values[10]);
    drop(b_tensor);
    collect(forward, &grads, &x, &convs, &bns)
}

/// The block's output and the gradients [`block_run`] compares.
fn collect(
    forward: Vec<f32>,
    grads: &Grads,
    x: &Image<NoneTape>,
    convs: &[Conv2dParams],
    bns: &[BatchNormParams],
) -> Vec<Vec<f32>> {
    let mut results = vec![forward, grads.get(x).as_vec()];
    results.extend(convs.iter().map(|conv| grads.get(&conv.weight).as_vec()));
    results.extend(bns.iter().map(|bn| grads.get(&bn.gamma).as_vec()));
    results.extend(bns.iter().map(|bn| grads.get(&bn.beta).as_vec()));
    results
}

#[test]
fn fused_ops_reading_each_other_through_mirrors_equal_the_separate_ops() {
    let shape = (2, 6, 5, 16);
    let (n, h, w, c) = shape;
    let len = n * h * w * c;
    let mut rng = Rng::new(43);
    let mut values = vec![rng.vec(len, -2.0, 3.0)];
    values.extend((0..3).map(|_| rng.vec(9 * c * c, -0.3, 0.3)));
    values.extend((0..3).map(|_| rng.vec(c, 0.5, 2.0)));
    values.extend((0..3).map(|_| rng.vec(c, -0.5, 1.0)));
    values.push(rng.vec(len, -1.0, 1.0));
    let separate = block_run(&values, shape, 0);
    assert!(
        separate[1].iter().any(|&g| g != 0.0),
        "the input gradient flows"
    );
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for how in [1, 2] {
        // Twice: the second run takes pooled buffers the first gave back.
        for run in 0..2 {
            let fused = block_run(&values, shape, how);
            for (k, (a, b)) in fused.iter().zip(&separate).enumerate() {
                assert_eq!(bits(a), bits(b), "way {how}, run {run}: result {k}");
            }
        }
    }
}

/// How [`inverted_run`] runs its two layers.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Way {
    /// The separate ops.
    Separate,
    /// Two fused ops, the first handing its output on as `Handoff`.
    Fused(Handoff),
    /// The first fused op's output deferred, then read as a tensor by the separate ops (the
    /// values made on demand, the gradient through the tensor's slot).
    DeferredAsTensor,
}

/// An input shape, the expanded width and the depthwise convolution's stride.
type InvertedCase = ((usize, usize, usize, usize), usize, usize);

/// The layers of an inverted residual block's core: a 1x1 expand convolution, a 3x3 `same`
/// depthwise one, and the training config of the batch norms (relu6) after them.
struct Inverted {
    expand: Conv2dParams,
    expand_cfg: Conv2dConfig,
    dw: DepthwiseParams,
    dw_cfg: DepthwiseConfig,
    relu6_cfg: BatchNormConfig,
}

/// [`Inverted`] from `c` to `wide` channels, the depthwise convolution with `stride`, from the
/// expand weight, the depthwise weight and its bias.
fn inverted_layers(
    dev: &Cpu,
    (c, wide, stride): (usize, usize, usize),
    (expand, depthwise, bias): (&[f32], &[f32], Option<&[f32]>),
) -> Inverted {
    Inverted {
        expand: Conv2dParams {
            weight: dev.tensor_from_vec(expand.to_vec(), (c, wide)),
            bias: None,
        },
        expand_cfg: Conv2dConfig {
            kernel: (1, 1),
            ..linear_3x3_same()
        },
        dw: DepthwiseParams {
            weight: dev.tensor_from_vec(depthwise.to_vec(), (9, wide)),
            bias: bias.map(|b| dev.tensor_from_vec(b.to_vec(), (wide,))),
        },
        dw_cfg: DepthwiseConfig {
            kernel: (3, 3),
            stride: (stride, stride),
            padding: Padding::Same,
            multiplier: 1,
            activation: FusedActivation::Linear,
            input_grad: true,
        },
        relu6_cfg: BatchNormConfig {
            activation: FusedActivation::Relu6,
            training: true,
            ..Default::default()
        },
    }
}

/// The core of an inverted residual block, `relu6(bn1(depthwise3x3(relu6(bn0(conv1x1(x))))))`,
/// the depthwise convolution with `stride`: output and gradients of x, both weights, the
/// depthwise bias, both gammas and betas, and the moving statistics after the step.
fn inverted_run(
    values: &[Vec<f32>],
    (shape, wide, stride): InvertedCase,
    way: Way,
) -> Vec<Vec<f32>> {
    let dev = Cpu::default();
    let x = dev.tensor_from_vec(values[0].clone(), shape);
    let Inverted {
        expand,
        expand_cfg,
        dw,
        dw_cfg,
        relu6_cfg,
    } = inverted_layers(
        &dev,
        (shape.3, wide, stride),
        (&values[1], &values[2], Some(&values[3])),
    );
    let mut bns = [
        bn_params(&dev, &values[4], &values[5]),
        bn_params(&dev, &values[6], &values[7]),
    ];
    let [bn0, bn1] = &mut bns;
    let separate_second = |b: Image<Tape>, bn1: &mut BatchNormParams| {
        batch_norm(depthwise_conv2d(b, &dw, &dw_cfg), bn1, &relu6_cfg)
    };
    let out = match way {
        Way::Separate => {
            let b = batch_norm(
                conv2d(x.leaky_trace(), &expand, &expand_cfg),
                bn0,
                &relu6_cfg,
            );
            separate_second(b, bn1)
        }
        Way::Fused(handoff) => {
            let b = conv2d_batch_norm(
                Traced::Tensor(x.leaky_trace()),
                (&expand, &expand_cfg),
                (bn0, &relu6_cfg),
                (None, handoff),
            );
            assert!(
                matches!(b, Traced::Mirror(..)),
                "{handoff:?} hands on a mirror"
            );
            tensor(depthwise_batch_norm(
                b,
                (&dw, &dw_cfg),
                (bn1, &relu6_cfg),
                (None, Handoff::Tensor),
            ))
        }
        Way::DeferredAsTensor => {
            let Traced::Mirror(b, tape) = conv2d_batch_norm(
                Traced::Tensor(x.leaky_trace()),
                (&expand, &expand_cfg),
                (bn0, &relu6_cfg),
                (None, Handoff::Deferred),
            ) else {
                panic!("a mirror when asked for one")
            };
            separate_second(b.tensor(&dev).put_tape(tape), bn1)
        }
    };
    let forward = out.as_vec();
    let (_, grads) = weighted_sum(out, &values[8]);
    let mut results = vec![forward, grads.get(&x).as_vec()];
    results.push(grads.get(&expand.weight).as_vec());
    results.push(grads.get(&dw.weight).as_vec());
    if let Some(bias) = &dw.bias {
        results.push(grads.get(bias).as_vec());
    }
    for bn in &bns {
        results.push(grads.get(&bn.gamma).as_vec());
        results.push(grads.get(&bn.beta).as_vec());
        results.push(bn.moving_mean.as_vec());
        results.push(bn.moving_variance.as_vec());
    }
    results
}

/// An expand convolution's output deferred to the depthwise convolution that reads it (the
/// depthwise kernels make their input rows of the batch norm's input as they read them) gives
/// the bits of the separate ops, of a plain mirror, and of a tensor made from the deferred
/// mirror for a reader of tensors.
#[test]
fn a_deferred_output_read_by_a_depthwise_op_equals_the_separate_ops() {
    // The last case's depthwise backward runs each image in four blocks of rows: the batch
    // norm's sums of an image are taken once its last block is done.
    let cases: [InvertedCase; 3] = [
        ((3, 6, 5, 4), 24, 1),
        ((2, 9, 8, 8), 48, 2),
        ((2, 60, 10, 4), 48, 1),
    ];
    for (shape, wide, stride) in cases {
        let (n, h, w, c) = shape;
        let len = n * h * w * c;
        let (ho, wo) = (h.div_ceil(stride), w.div_ceil(stride));
        let mut rng = Rng::new(47);
        let values = vec![
            rng.vec(len, -2.0, 3.0),
            rng.vec(c * wide, -0.5, 0.5),
            rng.vec(9 * wide, -0.5, 0.5),
            rng.vec(wide, -0.5, 0.5),
            rng.vec(wide, 0.5, 2.0),
            rng.vec(wide, -0.5, 1.5),
            rng.vec(wide, 0.5, 2.0),
            rng.vec(wide, -0.5, 1.5),
            rng.vec(n * ho * wo * wide, -1.0, 1.0),
        ];
        let case = (shape, wide, stride);
        let separate = inverted_run(&values, case, Way::Separate);
        assert!(
            separate[1].iter().any(|&g| g != 0.0),
            "the input gradient flows"
        );
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for way in [
            Way::Fused(Handoff::Mirror),
            Way::Fused(Handoff::Deferred),
            Way::DeferredAsTensor,
        ] {
            // Twice: the second run takes pooled buffers the first gave back.
            for run in 0..2 {
                let got = inverted_run(&values, case, way);
                assert_eq!(got.len(), separate.len());
                for (k, (a, b)) in got.iter().zip(&separate).enumerate() {
                    assert_eq!(bits(a), bits(b), "{case:?} {way:?}, run {run}: result {k}");
                }
            }
        }
    }
}

/// `relu6(bn1(depthwise(b))) + relu6(bn2(depthwise(b)))` with `b = relu6(bn0(conv1x1(x)))`
/// handed on as `handoff`, two fused depthwise ops reading it: output and the gradients of x,
/// the expand weight and bn0's gamma and beta.
fn two_readers_run(
    values: &[Vec<f32>],
    shape: (usize, usize, usize, usize),
    handoff: Handoff,
) -> Vec<Vec<f32>> {
    let dev = Cpu::default();
    let x = dev.tensor_from_vec(values[0].clone(), shape);
    let Inverted {
        expand,
        expand_cfg,
        dw,
        dw_cfg,
        relu6_cfg,
    } = inverted_layers(
        &dev,
        (shape.3, values[2].len() / 9, 1),
        (&values[1], &values[2], None),
    );
    let mut bns = [
        bn_params(&dev, &values[3], &values[4]),
        bn_params(&dev, &values[5], &values[4]),
        bn_params(&dev, &values[3], &values[5]),
    ];
    let [bn0, bn1, bn2] = &mut bns;
    let Traced::Mirror(b, tape) = conv2d_batch_norm(
        Traced::Tensor(x.leaky_trace()),
        (&expand, &expand_cfg),
        (bn0, &relu6_cfg),
        (None, handoff),
    ) else {
        panic!("a mirror when asked for one")
    };
    let first = tensor(depthwise_batch_norm(
        Traced::Mirror(b.clone(), tape),
        (&dw, &dw_cfg),
        (bn1, &relu6_cfg),
        (None, Handoff::Tensor),
    ));
    let (first, tape) = first.split_tape();
    let second = tensor(depthwise_batch_norm(
        Traced::Mirror(b, tape),
        (&dw, &dw_cfg),
        (bn2, &relu6_cfg),
        (None, Handoff::Tensor),
    ));
    let out = second + first;
    let forward = out.as_vec();
    let (_, grads) = weighted_sum(out, &values[6]);
    vec![
        forward,
        grads.get(&x).as_vec(),
        grads.get(&expand.weight).as_vec(),
        grads.get(&bns[0].gamma).as_vec(),
        grads.get(&bns[0].beta).as_vec(),
    ]
}

/// A deferred output read by two fused depthwise ops: the first reader's backward takes the
/// batch norm's per-image sums of its gradient, which no longer hold once the second reader
/// adds its own, so the batch norm sums the whole gradient itself: the bits of a plain mirror.
#[test]
fn a_deferred_output_read_twice_equals_a_plain_mirror() {
    let (shape, wide) = ((2, 12, 10, 4), 32);
    let (n, h, w, c) = shape;
    let mut rng = Rng::new(53);
    let values = vec![
        rng.vec(n * h * w * c, -2.0, 3.0),
        rng.vec(c * wide, -0.5, 0.5),
        rng.vec(9 * wide, -0.5, 0.5),
        rng.vec(wide, 0.5, 2.0),
        rng.vec(wide, -0.5, 1.5),
        rng.vec(wide, 0.5, 2.0),
        rng.vec(n * h * w * wide, -1.0, 1.0),
    ];
    let plain = two_readers_run(&values, shape, Handoff::Mirror);
    assert!(
        plain[3].iter().any(|&g| g != 0.0),
        "bn0's gamma has a gradient"
    );
    let deferred = two_readers_run(&values, shape, Handoff::Deferred);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for (k, (a, b)) in deferred.iter().zip(&plain).enumerate() {
        assert_eq!(bits(a), bits(b), "result {k}");
    }
}
