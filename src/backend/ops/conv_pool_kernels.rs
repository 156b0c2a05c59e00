//! The arithmetic of a fused convolution, optional relu and non-overlapping max pooling on NHWC
//! slices: the convolution output exists only one cache-sized block at a time.
//!
//! Blocks are bands of one pooled row by several pooled columns. The backward pass rebuilds a
//! block's convolution gradient from the pooled gradient and the recorded winner of each
//! window, then runs the same products as [`crate::backend::ops::conv_kernels::backward`].

use crate::backend::ops::conv_kernels::{col2im, im2col, sized, ConvGeometry, Rect, Scratch};
use crate::backend::ops::reduce::{add_pairs, fold_in_order};
use crate::backend::ops::small_gemm::{padded, small_gemm, Lhs};
use rayon::prelude::*;

/// Convolution pixels per block (rounded to whole pooling windows).
const PIXELS_PER_BLOCK: usize = 512;
/// Marks a window whose winner was not positive after relu: it passes no gradient.
pub const NO_WINNER: u16 = u16::MAX;

/// A convolution followed by max pooling with window = stride and no padding.
#[derive(Debug, Clone, Copy)]
pub struct ConvPoolGeometry {
    /// The convolution.
    pub conv: ConvGeometry,
    /// Pooling window (rows, columns), equal to its stride.
    pub pool: (usize, usize),
    /// Apply relu between convolution and pooling.
    pub relu: bool,
}

impl ConvPoolGeometry {
    /// Pooled output (rows, columns).
    pub fn out_size(&self) -> (usize, usize) {
        let w = self.conv.window;
        (w.rows.output / self.pool.0, w.cols.output / self.pool.1)
    }
    /// Elements of one pooled output image.
    pub fn out_image(&self) -> usize {
        let (h, w) = self.out_size();
        h * w * self.conv.filters
    }
    /// Pooled columns per block.
    fn windows_per_block(&self) -> usize {
        (PIXELS_PER_BLOCK / (self.pool.0 * self.pool.1)).max(1)
    }
    /// The convolution pixels of pooled row `py`, pooled columns `px`.
    fn rect(&self, py: usize, px: std::ops::Range<usize>) -> Rect {
        let (ph, pw) = self.pool;
        (py * ph..(py + 1) * ph, px.start * pw..px.end * pw)
    }
}

/// Max over the taps of one window, then bias and relu when asked; `window[tap..]` holds a
/// tap's channels. Winners are tracked as f32 so the compare-and-select vectorises.
#[inline(always)]
fn pool_window(
    window: &[f32],
    taps: &[usize],
    bias: Option<&[f32]>,
    best: &mut [f32],
    arg: Option<(&mut [u16], &mut [f32])>,
    relu: bool,
) {
    let f = best.len();
    best.copy_from_slice(&window[taps[0]..][..f]);
    // The bias is the same over the window, so it is added to the maximum only.
    let add_bias = |best: &mut [f32]| {
        if let Some(bias) = bias {
            best.iter_mut().zip(bias).for_each(|(b, v)| *b += v);
        }
    };
    match arg {
        None => {
            for &tap in &taps[1..] {
                let src = &window[tap..][..f];
                best.iter_mut().zip(src).for_each(|(b, &s)| *b = b.max(s));
            }
            add_bias(best);
            if relu {
                best.iter_mut().for_each(|b| *b = b.max(0.0));
            }
        }
        Some((arg, winners)) => {
            winners.fill(0.0);
            for (t, &tap) in taps.iter().enumerate().skip(1) {
                let src = &window[tap..][..f];
                let t = t as f32;
                for ((b, w), &s) in best.iter_mut().zip(winners.iter_mut()).zip(src) {
                    let better = s > *b;
                    *b = if better { s } else { *b };
                    *w = if better { t } else { *w };
                }
            }
            add_bias(best);
            for ((b, a), &w) in best.iter_mut().zip(arg.iter_mut()).zip(winners.iter()) {
                let dead = relu && *b <= 0.0;
                *a = if dead { NO_WINNER } else { w as u16 };
                *b = if dead { 0.0 } else { *b };
            }
        }
    }
}

/// One pooled output row (of one image) and its winners: convolution blocks by small gemm,
/// then the pooling. Compiled for AVX-512 and AVX2 with run-time dispatch, so the pooling's
/// compares and selects use wide vectors and masked stores (compiled for plain x86-64 they
/// were SSE with a scalar store per channel: more than half of the training forward pass).
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512vl+avx512bw+avx512dq+avx2+fma",
    "x86_64+avx2+fma"
))]
fn forward_row(
    g: &ConvPoolGeometry,
    (input, weight_pad, bias): (&[f32], &[f32], Option<&[f32]>),
    row_idx: usize,
    out_row: &mut [f32],
    mut arg_row: Option<&mut [u16]>,
    scratch: &mut Scratch,
) {
    let c = &g.conv;
    let (k, f) = (c.k(), c.filters);
    let (ph, pw) = g.pool;
    let (out_h, out_w) = g.out_size();
    let f_pad = padded(f);
    let (n, py) = (row_idx / out_h, row_idx % out_h);
    let image = &input[n * c.in_image()..][..c.in_image()];
    let step = g.windows_per_block();
    for px0 in (0..out_w).step_by(step) {
        let px1 = (px0 + step).min(out_w);
        let rect = g.rect(py, px0..px1);
        let width = rect.1.len();
        let pixels = ph * width;
        let patches = sized(&mut scratch.patches, pixels * k);
        im2col(c, image, rect, patches);
        let block = sized(&mut scratch.block, pixels * f_pad);
        let lhs = Lhs {
            data: patches,
            row_stride: k,
            col_stride: 1,
        };
        small_gemm(pixels, f_pad, k, lhs, weight_pad, block, false);
        let taps: Vec<usize> = (0..ph)
            .flat_map(|i| (0..pw).map(move |j| (i * width + j) * f_pad))
            .collect();
        for px in px0..px1 {
            let window = &block[(px - px0) * pw * f_pad..];
            let best = &mut out_row[px * f..][..f];
            let winners = sized(&mut scratch.winners, f);
            let arg = arg_row
                .as_deref_mut()
                .map(|a| (&mut a[px * f..][..f], winners));
            pool_window(window, &taps, bias, best, arg, g.relu);
        }
    }
}

/// Forward: pooled `out` and, when given, the winner of each window (`i * pool_w + j`, or
/// [`NO_WINNER`] when relu zeroed it).
pub fn forward(
    g: &ConvPoolGeometry,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
    argmax: Option<&mut [u16]>,
) {
    let c = &g.conv;
    let (k, f) = (c.k(), c.filters);
    let (ph, pw) = g.pool;
    assert!(
        ph * pw < usize::from(NO_WINNER),
        "pool window too large for u16 winners"
    );
    let row_len = g.out_size().1 * f;
    let f_pad = padded(f);
    let weight_pad = pad_columns(weight, k, f, f_pad);
    let body = |row_idx: usize, out_row: &mut [f32], arg_row: Option<&mut [u16]>| {
        let mut scratch = Scratch::take();
        let operands = (input, weight_pad.as_slice(), bias);
        forward_row(g, operands, row_idx, out_row, arg_row, &mut scratch);
        scratch.give();
    };
    match argmax {
        Some(argmax) => out
            .par_chunks_mut(row_len)
            .zip(argmax.par_chunks_mut(row_len))
            .enumerate()
            .for_each(|(r, (o, a))| body(r, o, Some(a))),
        None => out
            .par_chunks_mut(row_len)
            .enumerate()
            .for_each(|(r, o)| body(r, o, None)),
    }
}

/// What the backward pass of every image reads.
#[derive(Clone, Copy)]
struct BackwardOperands<'a> {
    input: &'a [f32],
    grad_out: &'a [f32],
    argmax: &'a [u16],
    /// The weight transposed (`F x K_pad`).
    weight_t_pad: &'a [f32],
}

/// The gradients of image `n`: adds into `dw` (`K x F_pad`) and `db`, and writes its input
/// gradient when asked. Compiled for AVX-512 and AVX2 with run-time dispatch (see
/// [`forward_row`]).
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512vl+avx512bw+avx512dq+avx2+fma",
    "x86_64+avx2+fma"
))]
fn backward_image(
    g: &ConvPoolGeometry,
    operands: BackwardOperands<'_>,
    n: usize,
    mut grad_image: Option<&mut [f32]>,
    (dw, db): (&mut [f32], &mut [f32]),
    scratch: &mut Scratch,
) {
    let c = &g.conv;
    let (k, f) = (c.k(), c.filters);
    let (ph, pw) = g.pool;
    let (out_h, out_w) = g.out_size();
    let (f_pad, k_pad) = (padded(f), padded(k));
    let image = &operands.input[n * c.in_image()..][..c.in_image()];
    let go_image = &operands.grad_out[n * g.out_image()..][..g.out_image()];
    let arg_image = &operands.argmax[n * g.out_image()..][..g.out_image()];
    let step = g.windows_per_block();
    for py in 0..out_h {
        for px0 in (0..out_w).step_by(step) {
            let px1 = (px0 + step).min(out_w);
            let rect = g.rect(py, px0..px1);
            let width = rect.1.len();
            let pixels = ph * width;
            let taps: Vec<usize> = (0..ph)
                .flat_map(|i| (0..pw).map(move |j| (i * width + j) * f_pad))
                .collect();
            let block = sized(&mut scratch.block, pixels * f_pad);
            if f != f_pad {
                // The padding columns are never written below; they must not carry
                // leftovers into the products.
                block.fill(0.0);
            }
            // Every tap of every window is written (the gradient where that tap won, else
            // zero), so the loops are compare-and-select over channels, not scattered stores.
            for px in px0..px1 {
                let at = (py * out_w + px) * f;
                let (go, arg) = (&go_image[at..][..f], &arg_image[at..][..f]);
                let window = (px - px0) * pw * f_pad;
                for (t, &tap) in taps.iter().enumerate() {
                    let t = t as u16;
                    let dst = &mut block[window + tap..][..f];
                    for ((d, &g), &a) in dst.iter_mut().zip(go).zip(arg) {
                        *d = if a == t { g } else { 0.0 };
                    }
                }
                for ((d, &g), &a) in db.iter_mut().zip(go).zip(arg) {
                    *d += if a == NO_WINNER { 0.0 } else { g };
                }
            }
            let patches = sized(&mut scratch.patches, pixels * k);
            im2col(c, image, rect.clone(), patches);
            let patches_t = Lhs {
                data: patches,
                row_stride: 1,
                col_stride: k,
            };
            small_gemm(k, f_pad, pixels, patches_t, block, dw, true);
            if let Some(grad_image) = grad_image.as_deref_mut() {
                let grad_patches = sized(&mut scratch.grad_patches, pixels * k_pad);
                let go = Lhs {
                    data: block,
                    row_stride: f_pad,
                    col_stride: 1,
                };
                small_gemm(
                    pixels,
                    k_pad,
                    f,
                    go,
                    operands.weight_t_pad,
                    grad_patches,
                    false,
                );
                col2im(c, grad_patches, k_pad, rect, grad_image);
            }
        }
    }
}

/// Gradients of the fused op from the pooled output gradient and the recorded winners.
///
/// Adds into `grad_weight` (`K x F`), `grad_bias` and, when given, `grad_input`. Parallel over
/// images, so scattered input gradients never race.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    g: &ConvPoolGeometry,
    input: &[f32],
    weight: &[f32],
    grad_out: &[f32],
    argmax: &[u16],
    grad_input: Option<&mut [f32]>,
    grad_weight: &mut [f32],
    grad_bias: &mut [f32],
) {
    let c = &g.conv;
    let (k, f) = (c.k(), c.filters);
    let (f_pad, k_pad) = (padded(f), padded(k));
    let weight_t_pad = transpose_padded(weight, k, f, k_pad);
    let slots: Vec<Option<&mut [f32]>> = match grad_input {
        Some(grad) => grad.chunks_mut(c.in_image()).map(Some).collect(),
        None => (0..c.batch).map(|_| None).collect(),
    };
    let zero = || (vec![0.0f32; k * f_pad], vec![0.0f32; f]);
    let (dw, db) = fold_in_order(
        slots,
        zero,
        |(mut dw, mut db), n, grad_image| {
            let mut scratch = Scratch::take();
            let operands = BackwardOperands {
                input,
                grad_out,
                argmax,
                weight_t_pad: &weight_t_pad,
            };
            backward_image(g, operands, n, grad_image, (&mut dw, &mut db), &mut scratch);
            scratch.give();
            (dw, db)
        },
        add_pairs,
    );
    for (row, padded_row) in grad_weight.chunks_exact_mut(f).zip(dw.chunks_exact(f_pad)) {
        row.iter_mut().zip(padded_row).for_each(|(a, b)| *a += b);
    }
    grad_bias.iter_mut().zip(&db).for_each(|(a, b)| *a += b);
}

/// A `rows x cols` row-major matrix with its rows padded to `cols_pad` with zeros.
pub(crate) fn pad_columns(matrix: &[f32], rows: usize, cols: usize, cols_pad: usize) -> Vec<f32> {
    let mut out = vec![0.0; rows * cols_pad];
    for (dst, src) in out
        .chunks_exact_mut(cols_pad)
        .zip(matrix.chunks_exact(cols))
    {
        dst[..cols].copy_from_slice(src);
    }
    out
}

/// The transpose (`cols x rows`) of a `rows x cols` matrix, rows padded to `rows_pad`.
pub(crate) fn transpose_padded(
    matrix: &[f32],
    rows: usize,
    cols: usize,
    rows_pad: usize,
) -> Vec<f32> {
    let mut out = vec![0.0; cols * rows_pad];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows_pad + r] = matrix[r * cols + c];
        }
    }
    out
}
