//! The Winograd kernels against convolutions computed directly in f64.

use super::*;
use crate::backend::ops::conv_kernels::ConvGeometry;
use crate::backend::ops::conv_pool_kernels::NO_WINNER;
use crate::backend::ops::geometry::{Padding, Window2};
use crate::backend::ops::test_values;

/// A batch's shape `(n, h, w, c)`.
type Shape4 = (usize, usize, usize, usize);

/// Input shape, `(kernel, filters)` and padding of the cases both tests run.
const CASES: [(Shape4, (usize, usize), Padding); 8] = [
    ((2, 9, 7, 16), (3, 24), Padding::Same),
    ((1, 8, 10, 40), (3, 20), Padding::Valid),
    ((3, 14, 14, 32), (3, 64), Padding::Same),
    // 11 x 20 tiles in blocks of 3 tile rows: the last block of each image is short.
    ((2, 22, 41, 16), (3, 8), Padding::Same),
    // F(2x2, 2x2): `same` pads only after, `valid` drops a row and a column.
    ((2, 9, 11, 20), (2, 20), Padding::Same),
    ((1, 10, 7, 8), (2, 12), Padding::Valid),
    ((2, 24, 40, 20), (2, 20), Padding::Same),
    // 16 tiles an image: the backward's runs of 3, 2 and 4 whole images, one block each.
    ((9, 8, 8, 16), (3, 16), Padding::Same),
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

/// The plain convolution of `(n, h, w, c)` images by `(kernel, filters)`, or `None` when the
/// kernel does not fit a `valid` image.
fn conv_geometry(
    (batch, h, w, c_in): Shape4,
    (kernel, filters): (usize, usize),
    padding: Padding,
) -> Option<ConvGeometry> {
    let window = Window2::new((h, w), (kernel, kernel), (1, 1), padding)?;
    let k = kernel * kernel * c_in;
    Some(ConvGeometry::for_weight(batch, c_in, window, (k, filters)))
}

/// The plain convolutions both comparisons run: odd and even images (the odd ones end in a
/// partial tile row or column), every kernel and padding, channels on and off whole vectors
/// and filter counts from one to past two vectors.
fn conv_cases() -> Vec<ConvGeometry> {
    let mut cases = Vec::new();
    for (h, w) in [(7, 5), (8, 8), (1, 3), (5, 2)] {
        for kernel in [3, 2] {
            for padding in [Padding::Same, Padding::Valid] {
                for (c_in, filters) in [(8, 1), (9, 5), (17, 16), (8, 33), (17, 5), (9, 16)] {
                    cases.extend(conv_geometry((2, h, w, c_in), (kernel, filters), padding));
                }
            }
        }
    }
    // Several blocks per image, the last one short, and 2x2 `same` (no padding before).
    for (shape, filters, padding) in [
        ((2, 27, 41, 16), (3, 24), Padding::Same),
        ((1, 27, 41, 9), (3, 17), Padding::Valid),
        ((2, 25, 35, 20), (2, 20), Padding::Same),
        ((3, 32, 32, 16), (3, 16), Padding::Same),
        // 4 tiles an image: the backward's runs of 3, 2 and 4 whole images, one block each.
        ((9, 7, 7, 16), (3, 24), Padding::Same),
    ] {
        cases.extend(conv_geometry(shape, filters, padding));
    }
    cases
}

/// The largest magnitude in `values`, at least 1.
fn magnitude(values: &[f32]) -> f32 {
    values.iter().fold(1.0f32, |m, v| m.max(v.abs()))
}

/// Asserts that `got` agrees with `expected` within `1e-4` of the latter's magnitude.
fn assert_close(what: &str, got: &[f32], expected: &[f32]) {
    assert_eq!(got.len(), expected.len(), "{what}: lengths");
    let tolerance = 1e-4 * magnitude(expected);
    for (at, (g, e)) in got.iter().zip(expected).enumerate() {
        assert!(
            (g - e).abs() <= tolerance,
            "{what}: {g} instead of {e} at {at} (tolerance {tolerance})"
        );
    }
}

/// What a forward comparison adds and clamps: (bias, residual, bounds, mask).
type Finish = (bool, bool, Option<(f32, f32)>, bool);

/// The finishes each forward comparison runs.
const FINISHES: [Finish; 5] = [
    (false, false, None, false),
    (true, false, Some((0.0, f32::INFINITY)), true),
    (true, true, Some((0.0, 6.0)), true),
    (false, true, Some((0.0, f32::INFINITY)), false),
    (true, true, None, true),
];

#[test]
fn plain_conv_forward_matches_im2col() {
    use crate::backend::ops::conv_kernels::forward_im2col;
    for g in conv_cases() {
        let input = values(g.batch * g.in_image(), 11, 3.0);
        let weight = values(g.k() * g.filters, 12, 0.3);
        let bias_values = values(g.filters, 13, 2.0);
        let residual_values = values(g.batch * g.out_image(), 14, 3.0);
        for (with_bias, with_residual, bounds, with_mask) in FINISHES {
            let bias = with_bias.then_some(bias_values.as_slice());
            let residual = with_residual.then_some(residual_values.as_slice());
            let len = g.batch * g.out_image();
            let run = |direct: bool| {
                let mut out = vec![f32::NAN; len];
                let mut mask = with_mask.then(|| vec![7u8; len]);
                let masks = mask.as_deref_mut();
                if direct {
                    forward_im2col(&g, &input, &weight, bias, residual, bounds, &mut out, masks);
                } else {
                    let input = input[..].into();
                    conv_forward(&g, input, &weight, bias, residual, bounds, &mut out, masks);
                }
                (out, mask)
            };
            let ((expected, expected_mask), (got, got_mask)) = (run(true), run(false));
            let what = format!("{g:?} bias {with_bias} residual {with_residual} {bounds:?}");
            assert_close(&what, &got, &expected);
            let (Some(expected_mask), Some(got_mask)) = (expected_mask, got_mask) else {
                continue;
            };
            // A mask may differ only where rounding decides on which side of a bound it lies.
            let (lo, hi) = bounds.unwrap_or((f32::NEG_INFINITY, f32::INFINITY));
            let tolerance = 1e-4 * magnitude(&expected);
            for ((&e, &m), &o) in expected_mask.iter().zip(&got_mask).zip(&expected) {
                assert!(m <= 1, "{what}: mask not written");
                assert!(
                    e == m || (o - lo).abs() <= tolerance || (o - hi).abs() <= tolerance,
                    "{what}: mask {m} instead of {e} at {o}"
                );
            }
        }
    }
}

#[test]
fn plain_conv_backward_matches_im2col() {
    use crate::backend::ops::conv_kernels::backward_im2col;
    for g in conv_cases() {
        let input = values(g.batch * g.in_image(), 21, 3.0);
        let weight = values(g.k() * g.filters, 22, 0.3);
        let grad_out = values(g.batch * g.out_image(), 23, 1.0);
        for (with_input, with_bias) in [(true, true), (false, true), (true, false)] {
            // Gradients are added to what is already there.
            let run = |direct: bool| {
                let mut dx = with_input.then(|| vec![1.0f32; input.len()]);
                let mut dw = vec![1.0f32; weight.len()];
                let mut db = with_bias.then(|| vec![1.0f32; g.filters]);
                let backward = if direct {
                    backward_im2col
                } else {
                    conv_backward
                };
                let (dx_slice, db_slice) = (dx.as_deref_mut(), db.as_deref_mut());
                backward(&g, &input, &weight, &grad_out, dx_slice, &mut dw, db_slice);
                (dx, dw, db)
            };
            let (expected, got) = (run(true), run(false));
            let what = format!("{g:?} input {with_input} bias {with_bias}");
            assert_close(&format!("{what}: weight"), &got.1, &expected.1);
            for (name, got, expected) in [("input", got.0, expected.0), ("bias", got.2, expected.2)]
            {
                match (got, expected) {
                    (Some(got), Some(expected)) => {
                        assert_close(&format!("{what}: {name}"), &got, &expected)
                    }
                    (got, expected) => assert_eq!(got.is_some(), expected.is_some()),
                }
            }
        }
    }
}

#[test]
fn plain_conv_gradients_are_the_same_bits_on_any_thread_count() {
    let Some(g) = conv_geometry((20, 9, 11, 16), (3, 12), Padding::Same) else {
        panic!("the kernel fits");
    };
    let input = values(g.batch * g.in_image(), 31, 3.0);
    let weight = values(g.k() * g.filters, 32, 0.3);
    let grad_out = values(g.batch * g.out_image(), 33, 1.0);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool");
        let mut dx = vec![0.0f32; input.len()];
        let mut dw = vec![0.0f32; weight.len()];
        let mut db = vec![0.0f32; g.filters];
        pool.install(|| {
            conv_backward(
                &g,
                &input,
                &weight,
                &grad_out,
                Some(&mut dx),
                &mut dw,
                Some(&mut db),
            )
        });
        [dx, dw, db].map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>())
    };
    let one = run(1);
    for threads in [2, 3, 7] {
        assert_eq!(run(threads), one, "{threads} threads");
    }
}

#[test]
fn the_plain_conv_dispatches_by_channels() {
    use crate::backend::ops::conv_kernels::{
        backward as dispatched_backward, backward_im2col, forward_im2col, forward_residual,
    };
    for c_in in [MIN_CONV_CHANNELS - 1, MIN_CONV_CHANNELS] {
        let Some(g) = conv_geometry((2, 7, 6, c_in), (3, 10), Padding::Same) else {
            panic!("the kernel fits");
        };
        let input = values(g.batch * g.in_image(), 41, 3.0);
        let weight = values(g.k() * g.filters, 42, 0.3);
        let grad_out = values(g.batch * g.out_image(), 43, 1.0);
        let len = g.batch * g.out_image();
        let (mut out, mut expected) = (vec![0.0; len], vec![0.0; len]);
        forward_residual(
            &g,
            input[..].into(),
            &weight,
            None,
            None,
            None,
            &mut out,
            None,
        );
        let (mut dw, mut expected_dw) = (vec![0.0; weight.len()], vec![0.0; weight.len()]);
        dispatched_backward(&g, &input, &weight, &grad_out, None, &mut dw, None);
        if applies_to_conv(&g) {
            conv_forward(
                &g,
                input[..].into(),
                &weight,
                None,
                None,
                None,
                &mut expected,
                None,
            );
            conv_backward(&g, &input, &weight, &grad_out, None, &mut expected_dw, None);
        } else {
            forward_im2col(&g, &input, &weight, None, None, None, &mut expected, None);
            backward_im2col(&g, &input, &weight, &grad_out, None, &mut expected_dw, None);
        }
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&out), bits(&expected), "{c_in} channels");
        assert_eq!(bits(&dw), bits(&expected_dw), "{c_in} channels");
    }
}

#[test]
fn plain_conv_runs_here_only_for_small_kernels_at_stride_one() {
    let window =
        |kernel, stride| Window2::new((9, 9), kernel, stride, Padding::Same).expect("kernel fits");
    let conv = |c_in: usize, kernel: (usize, usize), stride| {
        let k = kernel.0 * kernel.1 * c_in;
        ConvGeometry::for_weight(4, c_in, window(kernel, stride), (k, 8))
    };
    assert!(applies_to_conv(&conv(MIN_CONV_CHANNELS, (3, 3), (1, 1))));
    assert!(!applies_to_conv(&conv(64, (2, 2), (1, 1))));
    assert!(!applies_to_conv(&conv(
        MIN_CONV_CHANNELS - 1,
        (3, 3),
        (1, 1)
    )));
    assert!(!applies_to_conv(&conv(16, (3, 3), (2, 2))));
    assert!(!applies_to_conv(&conv(16, (3, 2), (1, 1))));
    assert!(!applies_to_conv(&conv(16, (1, 1), (1, 1))));
    assert!(!applies_to_conv(&conv(16, (5, 5), (1, 1))));
}

/// An input made by a map as the blocks read their rows gives the bits of the map applied to
/// the whole batch first, forward and backward: every tile reads only rows its block made
/// (a row left unmade would hold the previous image's values), blocks of several tile rows,
/// the last one short, `same` and `valid`.
#[test]
fn a_mapped_input_is_the_batch_mapped_first() {
    let cases = [
        ((2, 27, 41, 16), (3, 24), Padding::Same),
        ((3, 9, 7, 12), (3, 5), Padding::Valid),
        ((2, 8, 8, 16), (3, 16), Padding::Same),
        ((3, 32, 32, 16), (3, 16), Padding::Same),
        // The backward's blocks of whole images.
        ((9, 7, 7, 16), (3, 16), Padding::Same),
    ];
    for (shape, filters, padding) in cases {
        let Some(g) = conv_geometry(shape, filters, padding) else {
            panic!("the kernel fits");
        };
        assert!(applies_to_conv(&g));
        let c = g.c_in;
        let raw = values(g.batch * g.in_image(), 41, 2.0);
        let (scale, shift) = (values(c, 42, 1.0), values(c, 43, 1.0));
        let map = test_values::per_channel_map(&scale, &shift);
        let mut mapped = vec![0.0; raw.len()];
        map(&raw, &mut mapped);
        let weight = values(g.k() * g.filters, 44, 0.3);
        let bias = values(g.filters, 45, 0.5);
        let grad_out = values(g.batch * g.out_image(), 46, 1.0);
        let run = |input: Input<'_>| {
            let mut out = vec![0.0f32; g.batch * g.out_image()];
            conv_forward(&g, input, &weight, Some(&bias), None, None, &mut out, None);
            let mut dx = vec![f32::NAN; raw.len()];
            let mut dw = vec![0.0f32; weight.len()];
            let mut db = vec![0.0f32; g.filters];
            let grads = (Some(&mut dx[..]), &mut dw[..], Some(&mut db[..]));
            conv_backward_into(&g, (input, &weight, &grad_out), grads, true);
            [out, dx, dw, db].map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>())
        };
        let made = run(Input {
            values: &raw,
            map: Some(&map),
        });
        assert_eq!(made, run(mapped[..].into()), "{g:?}");
        assert_ne!(made, run(raw[..].into()), "{g:?}: the map matters");
    }
}
