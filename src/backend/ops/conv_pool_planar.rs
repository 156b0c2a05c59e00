//! The fused convolution, relu and 2x2 max pool of a model's first layer (few input channels,
//! stride 1), vectorised over output pixels instead of filters.
//!
//! A 2x2 convolution on 3 channels has 12 products per pixel and filter: too short a sum for
//! the filter-vectorised products (20 filters also fill 1.25 vectors). Here each image is
//! split once into planes, one per channel and column parity (`plane[c][p][row][j]` holds
//! padded column `2 j + p`), so that for a vector of neighbouring pooled windows (16 with
//! AVX-512) the input under any tap of any window position is one contiguous vector. Every
//! filter then costs one broadcast multiply-add per tap and window position, a vector of
//! windows at a time, with no padding of the filter count; the 2x2 max, bias and relu run on
//! the same vectors.

use crate::backend::ops::conv_kernels::ConvGeometry;
use crate::backend::ops::conv_pool_kernels::{ConvPoolGeometry, NO_WINNER};
use pulp::{Arch, Simd, WithSimd};

/// Pooled windows per vector of the kernel.
const LANES: usize = 16;
/// Input channels up to which the planar kernel runs.
const MAX_CHANNELS: usize = 4;
/// Kernel rows and columns up to which the planar kernel runs.
const MAX_KERNEL: usize = 3;

/// Whether the fused op of `g`, whose input is held padded (`padded` rows and columns), runs
/// here: stride 1, a kernel of at most 3x3, at most [`MAX_CHANNELS`] input channels, pooled
/// 2x2.
pub fn applies(g: &ConvPoolGeometry) -> bool {
    let w = g.conv.window;
    (w.rows.stride, w.cols.stride) == (1, 1)
        && w.rows.kernel <= MAX_KERNEL
        && w.cols.kernel <= MAX_KERNEL
        && g.pool == (2, 2)
        && (1..=MAX_CHANNELS).contains(&g.conv.c_in)
}

/// The planes of one padded image: `[c][parity][row][j]`, `cols` columns each (zero past the
/// image), so every vector the kernel reads lies inside.
struct Planes {
    data: Vec<f32>,
    rows: usize,
    cols: usize,
}

impl Planes {
    fn new(image: &[f32], (rows, width): (usize, usize), c_in: usize, out_w: usize) -> Self {
        // A block of pooled windows starts at any multiple of the machine's vector (8 lanes
        // with AVX2, 16 with AVX-512) below `out_w`, and 16 values are read from up to one
        // column pair past it: room for a whole 16 past the last block's start.
        let cols = out_w.div_ceil(LANES) * LANES + LANES;
        let mut data = vec![0.0f32; c_in * 2 * rows * cols];
        let plane_len = rows * cols;
        for (y, row) in image.chunks_exact(width * c_in).enumerate().take(rows) {
            for c in 0..c_in {
                for parity in 0..2 {
                    let at = (c * 2 + parity) * plane_len + y * cols;
                    let dst = &mut data[at..at + cols];
                    let src = row.iter().skip(parity * c_in + c).step_by(2 * c_in);
                    dst.iter_mut().zip(src).for_each(|(d, v)| *d = *v);
                }
            }
        }
        Self { data, rows, cols }
    }

    /// 16 values of plane (`c`, `parity`) from row `y`, column `j`.
    #[inline(always)]
    fn lanes(&self, c: usize, parity: usize, y: usize, j: usize) -> &[f32; LANES] {
        let at = ((c * 2 + parity) * self.rows + y) * self.cols + j;
        self.data[at..at + LANES]
            .try_into()
            .expect("planes hold whole vectors past every window")
    }
}

/// Pooled rows per parallel task.
const ROWS_PER_TASK: usize = 4;

/// Forward of the batch: pooled `out` and, when given, the winner of each window exactly as
/// [`crate::backend::ops::conv_pool_kernels::forward`] records it. `image(n)` is padded image
/// `n` (`padded` rows and columns), `weight` the HWIO `K x F` matrix.
pub fn forward<'a>(
    g: &ConvPoolGeometry,
    (image, padded): (impl Fn(usize) -> &'a [f32] + Sync, (usize, usize)),
    weight: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
    argmax: Option<&mut [u16]>,
) {
    use rayon::prelude::*;
    let image_len = g.out_image();
    let task_len = ROWS_PER_TASK * g.out_size().1 * g.conv.filters;
    if image_len == 0 || task_len == 0 {
        return;
    }
    let run = |n: usize, out: &mut [f32], argmax: Option<&mut [u16]>| {
        let planes = Planes::new(image(n), padded, g.conv.c_in, g.out_size().1);
        let rows = |t: usize, o: &mut [f32], a: Option<&mut [u16]>| {
            let first = t * ROWS_PER_TASK;
            forward_rows(g, &planes, weight, bias, first, o, a);
        };
        match argmax {
            Some(argmax) => out
                .par_chunks_mut(task_len)
                .zip(argmax.par_chunks_mut(task_len))
                .enumerate()
                .for_each(|(t, (o, a))| rows(t, o, Some(a))),
            None => out
                .par_chunks_mut(task_len)
                .enumerate()
                .for_each(|(t, o)| rows(t, o, None)),
        }
    };
    match argmax {
        Some(argmax) => out
            .par_chunks_mut(image_len)
            .zip(argmax.par_chunks_mut(image_len))
            .enumerate()
            .for_each(|(n, (o, a))| run(n, o, Some(a))),
        None => out
            .par_chunks_mut(image_len)
            .enumerate()
            .for_each(|(n, o)| run(n, o, None)),
    }
}

/// The pooled rows from `first` that `out` holds (whole rows of `out_w x filters`), by the
/// kernel specialised for the layer's kernel size and channels (the common first layers),
/// else by the general one.
fn forward_rows(
    g: &ConvPoolGeometry,
    planes: &Planes,
    weight: &[f32],
    bias: Option<&[f32]>,
    first: usize,
    out: &mut [f32],
    argmax: Option<&mut [u16]>,
) {
    let w = g.conv.window;
    let ops = Rows {
        g,
        planes,
        weight,
        bias,
        first,
    };
    match (w.rows.kernel, w.cols.kernel, g.conv.c_in) {
        (2, 2, 3) => rows::<2, 2, 3>(ops, out, argmax),
        (2, 2, 1) => rows::<2, 2, 1>(ops, out, argmax),
        (3, 3, 3) => rows::<3, 3, 3>(ops, out, argmax),
        (3, 3, 1) => rows::<3, 3, 1>(ops, out, argmax),
        _ => rows_any(ops, out, argmax),
    }
}

/// What every row of one image reads.
#[derive(Clone, Copy)]
struct Rows<'a> {
    g: &'a ConvPoolGeometry,
    planes: &'a Planes,
    weight: &'a [f32],
    bias: Option<&'a [f32]>,
    first: usize,
}

/// [`forward_rows`] for a `KH x KW` kernel on `C` channels, in explicit vectors ([`pulp`]
/// picks AVX-512, AVX2 or scalar): every loop over taps and window positions has constant
/// bounds and unrolls, so a block's input vectors and the four sums of each window stay in
/// registers and each tap is one broadcast and four multiply-adds.
fn rows<const KH: usize, const KW: usize, const C: usize>(
    ops: Rows<'_>,
    out: &mut [f32],
    argmax: Option<&mut [u16]>,
) {
    Arch::new().dispatch(FixedRows::<KH, KW, C> { ops, out, argmax });
}

/// The work of [`rows`], run through [`pulp`].
struct FixedRows<'a, const KH: usize, const KW: usize, const C: usize> {
    ops: Rows<'a>,
    out: &'a mut [f32],
    argmax: Option<&'a mut [u16]>,
}

impl<const KH: usize, const KW: usize, const C: usize> WithSimd for FixedRows<'_, KH, KW, C> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let Self {
            ops,
            out,
            mut argmax,
        } = self;
        let lanes = S::F32_LANES.min(LANES);
        let f = ops.g.conv.filters;
        let out_w = ops.g.out_size().1;
        let zero = s.splat_f32s(0.0);
        let load = |slice: &[f32]| match S::as_simd_f32s(slice).0.first() {
            Some(&full) => full,
            None => s.partial_load_f32s(slice),
        };
        for r in 0..out.len() / (out_w * f).max(1) {
            let py = ops.first + r;
            for px0 in (0..out_w).step_by(lanes) {
                // The block's input vectors: [channel][row dy + ky][column dx + kx].
                let mut src = [[[zero; MAX_KERNEL + 1]; MAX_KERNEL + 1]; C];
                for (ch, rows) in src.iter_mut().enumerate() {
                    for (i, cols) in rows.iter_mut().enumerate().take(KH + 1) {
                        for (col, v) in cols.iter_mut().enumerate().take(KW + 1) {
                            let all = ops.planes.lanes(ch, col % 2, 2 * py + i, px0 + col / 2);
                            *v = load(&all[..lanes]);
                        }
                    }
                }
                let count = (out_w - px0).min(lanes);
                for filter in 0..f {
                    let mut acc = [zero; 4];
                    for ky in 0..KH {
                        for kx in 0..KW {
                            for (ch, rows) in src.iter().enumerate() {
                                let w = ops.weight[((ky * KW + kx) * C + ch) * f + filter];
                                let w = s.splat_f32s(w);
                                for (pos, acc) in acc.iter_mut().enumerate() {
                                    let x = rows[pos / 2 + ky][pos % 2 + kx];
                                    *acc = s.mul_add_f32s(w, x, *acc);
                                }
                            }
                        }
                    }
                    // Max over the window (ties keep the first tap).
                    let (mut best, mut winner) = (acc[0], zero);
                    for (tap, sum) in acc.iter().enumerate().skip(1) {
                        let better = s.greater_than_f32s(*sum, best);
                        best = s.select_f32s(better, *sum, best);
                        winner = s.select_f32s(better, s.splat_f32s(tap as f32), winner);
                    }
                    // Bias (the same over a window, so added to the maximum), relu.
                    let bias = ops.bias.map_or(0.0, |bias| bias[filter]);
                    best = s.add_f32s(best, s.splat_f32s(bias));
                    if ops.g.relu {
                        let dead = s.less_than_or_equal_f32s(best, zero);
                        best = s.select_f32s(dead, zero, best);
                        let none = s.splat_f32s(f32::from(NO_WINNER));
                        winner = s.select_f32s(dead, none, winner);
                    }
                    let mut best_lanes = [0.0f32; LANES];
                    s.partial_store_f32s(&mut best_lanes[..lanes], best);
                    let at = (r * out_w + px0) * f + filter;
                    let strided = out[at..].iter_mut().step_by(f);
                    for (o, v) in strided.zip(&best_lanes[..count]) {
                        *o = *v;
                    }
                    if let Some(argmax) = argmax.as_deref_mut() {
                        let mut winner_lanes = [0.0f32; LANES];
                        s.partial_store_f32s(&mut winner_lanes[..lanes], winner);
                        let strided = argmax[at..].iter_mut().step_by(f);
                        for (a, w) in strided.zip(&winner_lanes[..count]) {
                            *a = *w as u16;
                        }
                    }
                }
            }
        }
    }
}

/// Bias and relu on the block's window maxima, written for its `count` windows from `at` (one
/// filter, strided by the filter count), with their winners when asked.
#[inline(always)]
fn write_block(
    ops: Rows<'_>,
    (best, winner): (&[f32; LANES], &[f32; LANES]),
    filter: usize,
    (at, count): (usize, usize),
    out: &mut [f32],
    mut argmax: Option<&mut [u16]>,
) {
    let f = ops.g.conv.filters;
    let b = ops.bias.map_or(0.0, |bias| bias[filter]);
    for l in 0..count {
        let value = best[l] + b;
        let dead = ops.g.relu && value <= 0.0;
        out[at + l * f] = if dead { 0.0 } else { value };
        if let Some(argmax) = argmax.as_deref_mut() {
            argmax[at + l * f] = if dead { NO_WINNER } else { winner[l] as u16 };
        }
    }
}

/// [`forward_rows`] for any kernel and channel count the planar kernel takes.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512vl+avx512bw+avx512dq+avx2+fma",
    "x86_64+avx2+fma"
))]
fn rows_any(ops: Rows<'_>, out: &mut [f32], mut argmax: Option<&mut [u16]>) {
    let c: &ConvGeometry = &ops.g.conv;
    let (kh, kw, c_in, f) = (
        c.window.rows.kernel,
        c.window.cols.kernel,
        c.c_in,
        c.filters,
    );
    let out_w = ops.g.out_size().1;
    for r in 0..out.len() / (out_w * f).max(1) {
        let py = ops.first + r;
        for px0 in (0..out_w).step_by(LANES) {
            for filter in 0..f {
                // The four convolution outputs of each window, 16 windows at a time.
                let mut acc = [[0.0f32; LANES]; 4];
                for ky in 0..kh {
                    for kx in 0..kw {
                        for ch in 0..c_in {
                            let w = ops.weight[((ky * kw + kx) * c_in + ch) * f + filter];
                            for (pos, acc) in acc.iter_mut().enumerate() {
                                let (dy, dx) = (pos / 2, pos % 2);
                                let col = dx + kx;
                                let y = 2 * py + dy + ky;
                                let src = ops.planes.lanes(ch, col % 2, y, px0 + col / 2);
                                for l in 0..LANES {
                                    acc[l] += w * src[l];
                                }
                            }
                        }
                    }
                }
                let at = (r * out_w + px0) * f + filter;
                finish_block(
                    ops,
                    &acc,
                    filter,
                    (at, (out_w - px0).min(LANES)),
                    out,
                    argmax.as_deref_mut(),
                );
            }
        }
    }
}

/// Max over each window's four sums (ties keep the first tap), then [`write_block`].
#[inline(always)]
fn finish_block(
    ops: Rows<'_>,
    acc: &[[f32; LANES]; 4],
    filter: usize,
    place: (usize, usize),
    out: &mut [f32],
    argmax: Option<&mut [u16]>,
) {
    let mut best = acc[0];
    let mut winner = [0.0f32; LANES];
    for (tap, acc) in acc.iter().enumerate().skip(1) {
        for l in 0..LANES {
            let better = acc[l] > best[l];
            best[l] = if better { acc[l] } else { best[l] };
            winner[l] = if better { tap as f32 } else { winner[l] };
        }
    }
    write_block(ops, (&best, &winner), filter, place, out, argmax);
}
