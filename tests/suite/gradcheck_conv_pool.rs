//! Gradient checks of the fused conv -> relu -> max-pool op, and its agreement with the two
//! separate ops (values and gradients), including the unfused fallback.

use crate::common;

use common::gradcheck::{check, weighted_sum, Rng};
use dfdx::prelude::*;
use strata::backend::ops::conv2d::{conv2d, Conv2dConfig, Conv2dParams};
use strata::backend::ops::conv_pool::{conv2d_max_pool, fusable};
use strata::backend::ops::geometry::Padding;
use strata::backend::ops::pool2d::{max_pool2d, Pool2dConfig};

type Shape4 = (usize, usize, usize, usize);

fn conv_cfg(kernel: (usize, usize), padding: Padding, relu: bool) -> Conv2dConfig {
    Conv2dConfig {
        kernel,
        stride: (1, 1),
        padding,
        relu,
        input_grad: true,
    }
}

fn pool_cfg(size: usize, stride: usize, padding: Padding) -> Pool2dConfig {
    Pool2dConfig {
        size: (size, size),
        stride: (stride, stride),
        padding,
    }
}

/// One comparison: the input shape, the filters, the loss weights and the two layers.
struct Setup {
    dev: Cpu,
    shape: Shape4,
    filters: usize,
    loss_weights: Vec<f32>,
    conv: Conv2dConfig,
    pool: Pool2dConfig,
}

/// Runs `x -> op -> sum(out * weights)` and returns the loss and the three gradients.
fn run(setup: &Setup, v: &[Vec<f32>], fused: bool) -> (f64, Vec<Vec<f32>>) {
    let Setup {
        dev,
        shape,
        filters,
        conv,
        pool,
        ..
    } = setup;
    let (shape, filters) = (*shape, *filters);
    let k = conv.kernel.0 * conv.kernel.1 * shape.3;
    let x = dev.tensor_from_vec(v[0].clone(), shape);
    let params = Conv2dParams {
        weight: dev.tensor_from_vec(v[1].clone(), (k, filters)),
        bias: Some(dev.tensor_from_vec(v[2].clone(), (filters,))),
    };
    let out = if fused {
        conv2d_max_pool(x.leaky_trace(), &params, conv, pool)
    } else {
        max_pool2d(conv2d(x.leaky_trace(), &params, conv), pool)
    };
    let (loss, grads) = weighted_sum(out, &setup.loss_weights);
    let bias = params.bias.as_ref().expect("bias");
    let all = vec![
        grads.get(&x).as_vec(),
        grads.get(&params.weight).as_vec(),
        grads.get(bias).as_vec(),
    ];
    (loss, all)
}

fn case(
    name: &str,
    shape: Shape4,
    filters: usize,
    conv: Conv2dConfig,
    pool: Pool2dConfig,
    out_len: usize,
) {
    let mut rng = Rng::new(31);
    let k = conv.kernel.0 * conv.kernel.1 * shape.3;
    let values = vec![
        rng.distinct(shape.0 * shape.1 * shape.2 * shape.3),
        rng.vec(k * filters, -0.5, 0.5),
        rng.vec(filters, -0.05, 0.05),
    ];
    let loss_weights = rng.vec(out_len, -1.0, 1.0);
    let setup = Setup {
        dev: Cpu::default(),
        shape,
        filters,
        loss_weights,
        conv,
        pool,
    };
    let (fused_loss, fused_grads) = run(&setup, &values, true);
    let (loss, grads) = run(&setup, &values, false);
    assert!(
        (fused_loss - loss).abs() < 1e-4,
        "{name}: fused loss {fused_loss} vs {loss}"
    );
    for (a, b) in fused_grads.iter().flatten().zip(grads.iter().flatten()) {
        assert!((a - b).abs() < 1e-4, "{name}: fused gradient {a} vs {b}");
    }
    check(name, values, 1e-3, (2e-3, 2e-2), |v| run(&setup, v, true));
}

#[test]
fn fused_conv_relu_pool2_same() {
    let (conv, pool) = (
        conv_cfg((2, 2), Padding::Same, true),
        pool_cfg(2, 2, Padding::Valid),
    );
    assert!(fusable(&pool));
    // 7x9 conv output pooled by 2: 3x4, the last row and column dropped.
    case(
        "fused conv2x2 same relu pool2",
        (2, 7, 9, 3),
        5,
        conv,
        pool,
        2 * 3 * 4 * 5,
    );
}

#[test]
fn fused_filters_filling_whole_vectors() {
    // 16 filters need no padding columns: the backward pass then skips zeroing its block and
    // must still write every tap of every window.
    let (conv, pool) = (
        conv_cfg((3, 3), Padding::Same, true),
        pool_cfg(2, 2, Padding::Valid),
    );
    case(
        "fused conv3x3 same relu pool2, 16 filters",
        (2, 6, 6, 1),
        16,
        conv,
        pool,
        2 * 3 * 3 * 16,
    );
}

#[test]
fn fused_conv_valid_no_relu_pool3() {
    let (conv, pool) = (
        conv_cfg((3, 2), Padding::Valid, false),
        pool_cfg(3, 3, Padding::Valid),
    );
    case(
        "fused conv3x2 valid pool3",
        (2, 11, 10, 2),
        4,
        conv,
        pool,
        2 * 3 * 3 * 4,
    );
}

#[test]
fn fused_wide_pool_many_blocks() {
    // Pool 4 on a 20-wide output with 512-pixel blocks: several blocks per pooled row.
    let (conv, pool) = (
        conv_cfg((2, 2), Padding::Same, true),
        pool_cfg(4, 4, Padding::Valid),
    );
    case(
        "fused conv2x2 relu pool4",
        (1, 8, 160, 2),
        3,
        conv,
        pool,
        2 * 40 * 3,
    );
}

#[test]
fn unfusable_pool_falls_back() {
    let (conv, pool) = (
        conv_cfg((2, 2), Padding::Same, true),
        pool_cfg(3, 2, Padding::Same),
    );
    assert!(!fusable(&pool));
    case(
        "fallback conv relu pool3 stride 2 same",
        (2, 6, 6, 2),
        3,
        conv,
        pool,
        2 * 3 * 3 * 3,
    );
}

#[test]
fn fused_strided_conv_same_padding() {
    // Stride differing between the axes and padding on every side, on both ways of reading
    // patches: 2 channels (rows of 6 values: gathered from a padded copy through offset
    // tables) and 8 channels (rows of 24: copied out by im2col).
    let conv = Conv2dConfig {
        stride: (2, 1),
        ..conv_cfg((3, 3), Padding::Same, true)
    };
    let pool = pool_cfg(2, 2, Padding::Valid);
    for channels in [2, 8] {
        // Conv output 4x7 (rows ceil(7 / 2), columns 7), pooled 2x3.
        case(
            &format!("fused conv3x3 stride (2, 1) same relu pool2, {channels} channels"),
            (2, 7, 7, channels),
            6,
            conv,
            pool,
            2 * 2 * 3 * 6,
        );
    }
}

#[test]
fn fused_planar_first_layer_windows_across_vectors() {
    // Up to 4 channels, stride 1, pooled 2x2: the pixel-vectorised kernel
    // (`backend::ops::conv_pool_planar`), 16 pooled windows per vector with AVX-512, 8 with
    // AVX2. Rows of 18 and 20 pooled windows (a whole vector and a short one), of 9 (a short
    // vector, or with AVX2 a whole and a short one reading past the row), `valid` and `same`
    // (padding before and after), 1, 3 and 4 channels.
    let pool = pool_cfg(2, 2, Padding::Valid);
    for (kernel, padding, shape, filters, pooled) in [
        ((2, 2), Padding::Valid, (1, 3, 19, 3), 4, (1, 9)),
        ((2, 2), Padding::Valid, (1, 6, 37, 3), 5, (2, 18)),
        ((3, 3), Padding::Same, (2, 5, 40, 4), 3, (2, 20)),
        ((3, 2), Padding::Same, (1, 4, 34, 1), 17, (2, 17)),
    ] {
        case(
            &format!("planar conv{kernel:?} {padding:?} on {shape:?}"),
            shape,
            filters,
            conv_cfg(kernel, padding, true),
            pool,
            shape.0 * pooled.0 * pooled.1 * filters,
        );
    }
}

#[test]
fn fused_winograd_conv_pool2() {
    // 3x3 and 2x2 stride-1 convolutions on 8 or more channels, pooled 2x2, run in the Winograd
    // domain (`backend::ops::winograd`): `same` padding on odd sizes (the pool drops the last
    // conv row and column), `valid` padding, and channels and filters that fill no whole
    // 16-lane vector (20: one 16-lane and one 8-lane vector, 4 lanes of padding). The images are kept
    // small: `distinct` inputs grow with their count, and Winograd's f32 rounding (about 3e-7
    // of the output scale; `winograd`'s unit test bounds it against f64) must stay below the
    // finite differences' tolerance.
    let pool = pool_cfg(2, 2, Padding::Valid);
    for (kernel, padding, shape, filters, pooled) in [
        (3, Padding::Same, (1, 5, 4, 16), 20, (2, 2)),
        (3, Padding::Valid, (1, 6, 5, 16), 24, (2, 1)),
        (3, Padding::Same, (1, 4, 4, 20), 8, (2, 2)),
        (3, Padding::Same, (2, 4, 5, 8), 12, (2, 2)),
        (2, Padding::Same, (1, 5, 5, 20), 20, (2, 2)),
        (2, Padding::Valid, (2, 5, 4, 8), 12, (2, 1)),
    ] {
        let conv = conv_cfg((kernel, kernel), padding, true);
        case(
            &format!(
                "winograd conv{kernel}x{kernel} {padding:?} relu pool2, {shape:?} -> {filters}"
            ),
            shape,
            filters,
            conv,
            pool,
            shape.0 * pooled.0 * pooled.1 * filters,
        );
    }
}

/// The inference path on a `Batch` (read in place, output in a pooled buffer) gives the bits of
/// the op on a tensor, for the planar first-layer kernel, the Winograd and the gathered
/// kernels and the unfused fallback; run twice, so the second pass reuses pooled buffers of
/// other sizes.
#[test]
fn batch_path_matches_the_tensor_path_bit_for_bit() {
    use strata::backend::ops::buffers;
    use strata::backend::ops::conv_pool::conv2d_max_pool_batch;
    use strata::backend::ops::Batch;
    let dev: Cpu = Default::default();
    let mut rng = Rng::new(41);
    // (input, kernel, filters, padding, pool size, pool stride)
    let cases: [(Shape4, usize, usize, Padding, usize, usize); 5] = [
        ((2, 17, 19, 3), 2, 5, Padding::Same, 2, 2),
        ((3, 12, 10, 9), 3, 7, Padding::Same, 2, 2),
        ((2, 9, 11, 2), 3, 4, Padding::Valid, 3, 3),
        ((2, 11, 9, 4), 5, 3, Padding::Same, 2, 2),
        ((2, 8, 8, 3), 3, 4, Padding::Same, 3, 2),
    ];
    for round in 0..2 {
        for &(shape, kernel, filters, padding, size, stride) in &cases {
            let (n, h, w, c) = shape;
            let k = kernel * kernel * c;
            let x = rng.vec(n * h * w * c, -2.0, 2.0);
            let params = Conv2dParams {
                weight: dev.tensor_from_vec(rng.vec(k * filters, -1.0, 1.0), (k, filters)),
                bias: Some(dev.tensor_from_vec(rng.vec(filters, -0.5, 0.5), (filters,))),
            };
            let conv = Conv2dConfig {
                input_grad: false,
                ..conv_cfg((kernel, kernel), padding, true)
            };
            let pool = pool_cfg(size, stride, Padding::Valid);
            let expected =
                conv2d_max_pool(dev.tensor_from_vec(x.clone(), shape), &params, &conv, &pool);
            // A pooled buffer longer than the input, with stale values past it.
            let mut data = buffers::take(x.len() + 333);
            data.iter_mut().for_each(|v| *v = f32::NAN);
            data.truncate(x.len());
            data.copy_from_slice(&x);
            let got = conv2d_max_pool_batch(Batch { data, shape }, &params, &conv, &pool, &dev);
            assert_eq!(
                got.shape,
                *expected.shape(),
                "round {round}, case {shape:?}"
            );
            let expected = expected.as_vec();
            assert!(
                got.data.len() == expected.len()
                    && got
                        .data
                        .iter()
                        .zip(&expected)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                "round {round}, case {shape:?}: the batch path differs from the tensor path"
            );
            buffers::give(got.data);
        }
    }
}
