//! The Winograd kernels against convolutions computed directly in f64.

use super::*;
use crate::backend::ops::conv_kernels::ConvGeometry;
use crate::backend::ops::conv_pool_kernels::NO_WINNER;
use crate::backend::ops::geometry::{Padding, Window2};

/// A batch's shape `(n, h, w, c)`.
type Shape4 = (usize, usize, usize, usize);

/// Input shape, `(kernel, filters)` and padding of the cases both tests run.
const CASES: [(Shape4, (usize, usize), Padding); 7] = [
    ((2, 9, 7, 16), (3, 24), Padding::Same),
    ((1, 8, 10, 40), (3, 20), Padding::Valid),
    ((3, 14, 14, 32), (3, 64), Padding::Same),
    // 11 x 20 tiles in blocks of 3 tile rows: the last block of each image is short.
    ((2, 22, 41, 16), (3, 8), Padding::Same),
    // F(2x2, 2x2): `same` pads only after, `valid` drops a row and a column.
    ((2, 9, 11, 20), (2, 20), Padding::Same),
    ((1, 10, 7, 8), (2, 12), Padding::Valid),
    ((2, 24, 40, 20), (2, 20), Padding::Same),
];

fn geometry(
    (batch, h, w, c_in): Shape4,
    (kernel, filters): (usize, usize),
    padding: Padding,
) -> ConvPoolGeometry {
    let window = Window2::new((h, w), (kernel, kernel), (1, 1), padding).expect("kernel fits");
    let k = kernel * kernel * c_in;
    ConvPoolGeometry {
        conv: ConvGeometry::for_weight(batch, c_in, window, (k, filters)),
        pool: (2, 2),
        relu: true,
    }
}

/// Values in `[-scale, scale)` from a fixed linear congruential sequence.
fn values(len: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// The pooled output, computed directly in f64: convolution, bias, relu, 2x2 max.
fn reference(g: &ConvPoolGeometry, input: &[f32], weight: &[f32], bias: &[f32]) -> Vec<f64> {
    let (c, w) = (g.conv, g.conv.window);
    let (out_h, out_w) = g.out_size();
    let r = w.rows.kernel;
    let conv = |n: usize, y: usize, x: usize, f: usize| -> f64 {
        let mut sum = f64::from(bias[f]);
        for (i, j) in (0..r).flat_map(|i| (0..r).map(move |j| (i, j))) {
            let (Some(iy), Some(ix)) = (w.rows.source(y, i), w.cols.source(x, j)) else {
                continue;
            };
            for ch in 0..c.c_in {
                let pixel = ((n * w.rows.input + iy) * w.cols.input + ix) * c.c_in + ch;
                let tap = ((i * r + j) * c.c_in + ch) * c.filters + f;
                sum += f64::from(input[pixel]) * f64::from(weight[tap]);
            }
        }
        sum
    };
    let mut out = Vec::new();
    for n in 0..c.batch {
        for (py, px) in (0..out_h).flat_map(|y| (0..out_w).map(move |x| (y, x))) {
            for f in 0..c.filters {
                let window = [(0, 0), (0, 1), (1, 0), (1, 1)]
                    .map(|(i, j)| conv(n, 2 * py + i, 2 * px + j, f));
                out.push(window.into_iter().fold(0.0, f64::max));
            }
        }
    }
    out
}

#[test]
fn forward_matches_a_direct_f64_reference() {
    for (shape, filters, padding) in CASES {
        let g = geometry(shape, filters, padding);
        let input = values(shape.0 * shape.1 * shape.2 * shape.3, 1, 3.0);
        let weight = values(filters.0 * filters.0 * shape.3 * filters.1, 2, 0.3);
        let bias = values(filters.1, 3, 0.1);
        let mut out = vec![f32::NAN; shape.0 * g.out_image()];
        forward(&g, &input, &weight, Some(&bias), &mut out, None);
        let expected = reference(&g, &input, &weight, &bias);
        let scale = expected.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let worst = out
            .iter()
            .zip(&expected)
            .map(|(&o, &e)| (f64::from(o) - e).abs())
            .fold(0.0, f64::max);
        eprintln!("{shape:?} -> {filters:?}: worst {worst:e}, scale {scale}");
        assert!(
            worst <= 1e-6 * scale,
            "{shape:?}: error {worst} at scale {scale}"
        );
    }
}

/// Input, filter and bias gradients computed directly in f64, routing each pooled
/// gradient to the conv pixel that `argmax` names (so near-ties cannot disagree).
fn reference_grads(
    g: &ConvPoolGeometry,
    (input, weight): (&[f32], &[f32]),
    grad_out: &[f32],
    argmax: &[u16],
) -> [Vec<f64>; 3] {
    let (c, w) = (g.conv, g.conv.window);
    let (out_h, out_w) = g.out_size();
    let mut dx = vec![0.0; input.len()];
    let mut dw = vec![0.0; weight.len()];
    let mut db = vec![0.0; c.filters];
    for (at, (&go, &arg)) in grad_out.iter().zip(argmax).enumerate() {
        if arg == NO_WINNER {
            continue;
        }
        let (f, pixel) = (at % c.filters, at / c.filters);
        let (n, py, px) = (
            pixel / (out_h * out_w),
            pixel / out_w % out_h,
            pixel % out_w,
        );
        let (y, x) = (2 * py + usize::from(arg) / 2, 2 * px + usize::from(arg) % 2);
        db[f] += f64::from(go);
        let r = w.rows.kernel;
        for (i, j) in (0..r).flat_map(|i| (0..r).map(move |j| (i, j))) {
            let (Some(iy), Some(ix)) = (w.rows.source(y, i), w.cols.source(x, j)) else {
                continue;
            };
            for ch in 0..c.c_in {
                let src = ((n * w.rows.input + iy) * w.cols.input + ix) * c.c_in + ch;
                let tap = ((i * r + j) * c.c_in + ch) * c.filters + f;
                dx[src] += f64::from(weight[tap]) * f64::from(go);
                dw[tap] += f64::from(input[src]) * f64::from(go);
            }
        }
    }
    [dx, dw, db]
}

#[test]
fn backward_matches_a_direct_f64_reference() {
    for (shape, filters, padding) in CASES {
        let g = geometry(shape, filters, padding);
        let input = values(shape.0 * shape.1 * shape.2 * shape.3, 4, 3.0);
        let weight = values(filters.0 * filters.0 * shape.3 * filters.1, 5, 0.3);
        let bias = values(filters.1, 6, 0.1);
        let pooled = shape.0 * g.out_image();
        let (mut out, mut argmax) = (vec![0.0; pooled], vec![0u16; pooled]);
        forward(
            &g,
            &input,
            &weight,
            Some(&bias),
            &mut out,
            Some(&mut argmax),
        );
        assert!(argmax.contains(&NO_WINNER) && argmax.contains(&3));
        let grad_out = values(pooled, 7, 1.0);
        // Gradients are added to what is already there.
        let mut dx = vec![1.0; input.len()];
        let mut dw = vec![1.0; weight.len()];
        let mut db = vec![1.0; filters.1];
        backward(
            &g,
            &input,
            &weight,
            &grad_out,
            &argmax,
            Some(&mut dx),
            &mut dw,
            &mut db,
        );
        let expected = reference_grads(&g, (&input, &weight), &grad_out, &argmax);
        for (name, got, expected) in [
            ("input", dx, &expected[0]),
            ("weight", dw, &expected[1]),
            ("bias", db, &expected[2]),
        ] {
            let scale = expected.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let worst = got
                .iter()
                .zip(expected)
                .map(|(&o, &e)| (f64::from(o) - 1.0 - e).abs())
                .fold(0.0, f64::max);
            eprintln!("{shape:?} -> {filters:?}: {name} worst {worst:e}, scale {scale}");
            assert!(
                worst <= 1e-6 * scale,
                "{shape:?} {name}: error {worst} at scale {scale}"
            );
        }
    }
}
