//! The plain 3x3 convolution in the Winograd domain (stride 1, 12 or more input channels),
//! through the public op: finite-difference checks of its three gradients on odd and even
//! images with `same` and `valid` padding and a fused activation, and the residual `add` run
//! inside it against the separate add and clamp.

use crate::common;

use common::gradcheck::{check, weighted_sum, Rng};
use dfdx::prelude::*;
use strata::backend::ops::conv2d::{conv2d_activated, conv2d_batch, Conv2dConfig, Conv2dParams};
use strata::backend::ops::conv_kernels::ConvGeometry;
use strata::backend::ops::depthwise_kernels::FusedActivation;
use strata::backend::ops::geometry::{Padding, Window2};
use strata::backend::ops::winograd::applies_to_conv;
use strata::backend::ops::Batch;

/// Input `(n, h, w, c)`, filters, padding and activation of one case.
struct Case {
    input: (usize, usize, usize, usize),
    filters: usize,
    padding: Padding,
    activation: FusedActivation,
}

/// A 3x3 stride-1 layer with `padding`, computing its input gradient.
fn config(padding: Padding) -> Conv2dConfig {
    Conv2dConfig {
        kernel: (3, 3),
        stride: (1, 1),
        padding,
        relu: false,
        input_grad: true,
    }
}

/// The output size `(h_out, w_out)` of `case`, after checking that it runs in the Winograd
/// domain.
fn output_size(case: &Case) -> (usize, usize) {
    let (n, h, w, c) = case.input;
    let window = Window2::new((h, w), (3, 3), (1, 1), case.padding).expect("the kernel fits");
    let geometry = ConvGeometry::for_weight(n, c, window, (9 * c, case.filters));
    assert!(applies_to_conv(&geometry), "{geometry:?} runs by im2col");
    (window.rows.output, window.cols.output)
}

fn run_gradcheck(name: &str, case: &Case) {
    let (n, _, _, c) = case.input;
    let (ho, wo) = output_size(case);
    let k = 9 * c;
    let mut rng = Rng::new(11);
    let values = vec![
        rng.vec(n * case.input.1 * case.input.2 * c, -1.0, 1.0),
        rng.vec(k * case.filters, -0.3, 0.3),
        rng.vec(case.filters, -0.2, 0.2),
    ];
    let loss_weights = rng.vec(n * ho * wo * case.filters, -1.0, 1.0);
    let cfg = config(case.padding);
    let dev = Cpu::default();
    // Steps of 1e-2: the op is linear in each input on either side of the activation's kinks,
    // so a central difference has no truncation error at any step, while the float rounding
    // of F(4x4, 3x3) (which moves every output of a tile when one input moves) adds noise
    // that shrinks as 1 / step. At 1e-3 that noise alone reached the bound on the 13-channel
    // case (worst error / bound 0.8 at 3e-3, 0.24 at 1e-2); the kernels' own tests hold every
    // gradient to 1e-4 of a direct f64 reference.
    check(name, values, 1e-2, (2e-3, 2e-2), |v| {
        let x = dev.tensor_from_vec(v[0].clone(), case.input);
        let params = Conv2dParams {
            weight: dev.tensor_from_vec(v[1].clone(), (k, case.filters)),
            bias: Some(dev.tensor_from_vec(v[2].clone(), (case.filters,))),
        };
        let out = conv2d_activated(x.leaky_trace(), &params, &cfg, case.activation);
        assert_eq!(*out.shape(), (n, ho, wo, case.filters));
        let (loss, mut grads) = weighted_sum(out, &loss_weights);
        let bias = params.bias.as_ref().expect("a bias");
        let all = vec![
            grads.get(&x).as_vec(),
            grads.get(&params.weight).as_vec(),
            grads.get_or_alloc_mut(bias).expect("cpu alloc").to_vec(),
        ];
        (loss, all)
    });
}

#[test]
fn odd_same_relu6() {
    run_gradcheck(
        "winograd conv 3x3 same relu6, 7x5 image, 16 channels",
        &Case {
            input: (2, 7, 5, 16),
            filters: 12,
            padding: Padding::Same,
            activation: FusedActivation::Relu6,
        },
    );
}

#[test]
fn even_valid_linear() {
    run_gradcheck(
        "winograd conv 3x3 valid, 8x6 image, 13 channels",
        &Case {
            input: (1, 8, 6, 13),
            filters: 17,
            padding: Padding::Valid,
            activation: FusedActivation::Linear,
        },
    );
}

#[test]
fn one_row_same_relu() {
    run_gradcheck(
        "winograd conv 3x3 same relu, 1x3 image, 24 channels",
        &Case {
            input: (3, 1, 3, 24),
            filters: 33,
            padding: Padding::Same,
            activation: FusedActivation::Relu,
        },
    );
}

#[test]
fn the_residual_inside_matches_a_separate_add_and_clamp() {
    let case = Case {
        input: (2, 9, 7, 16),
        filters: 16,
        padding: Padding::Same,
        activation: FusedActivation::Relu,
    };
    let (n, h, w, c) = case.input;
    let (ho, wo) = output_size(&case);
    let mut rng = Rng::new(12);
    let dev = Cpu::default();
    let x = dev.tensor_from_vec(rng.vec(n * h * w * c, -1.0, 1.0), case.input);
    let params = Conv2dParams {
        weight: dev.tensor_from_vec(rng.vec(9 * c * case.filters, -0.3, 0.3), (9 * c, 16)),
        bias: Some(dev.tensor_from_vec(rng.vec(case.filters, -0.2, 0.2), (16,))),
    };
    let residual = rng.vec(n * ho * wo * case.filters, -2.0, 2.0);
    let residual_batch = Batch {
        data: residual.clone(),
        shape: (n, ho, wo, case.filters),
    };
    let cfg = config(case.padding);
    let input = Batch {
        data: x.as_vec(),
        shape: case.input,
    };
    let fused = conv2d_batch(
        &input,
        &params,
        &cfg,
        case.activation,
        Some(&residual_batch),
    );
    assert_eq!(fused.shape, (n, ho, wo, case.filters));
    let linear = conv2d_activated(x, &params, &cfg, FusedActivation::Linear).as_vec();
    let expected: Vec<f32> = linear
        .iter()
        .zip(&residual)
        .map(|(o, r)| case.activation.apply(o + r))
        .collect();
    let scale = expected.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    for (at, (got, want)) in fused.data.iter().zip(&expected).enumerate() {
        assert!(
            (got - want).abs() <= 1e-5 * scale,
            "element {at}: {got} instead of {want}"
        );
    }
}
