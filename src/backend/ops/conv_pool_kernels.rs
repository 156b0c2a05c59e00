//! The arithmetic of a fused convolution, optional relu and non-overlapping max pooling on NHWC
//! slices: the convolution output exists only one cache-sized block at a time.
//!
//! Patches of few values (a model's first layer) are read straight from a zero-padded copy of
//! the input ([`PaddedBatch`]) through offset tables; longer ones are copied out by im2col.
//! 3x3 and 2x2 stride-1 convolutions on enough channels, pooled 2x2, go to
//! [`crate::backend::ops::winograd`] instead.
//! Forward blocks are one pooled row by several pooled columns. The backward pass rebuilds a
//! band's convolution gradient from the pooled gradient and the recorded winner of each
//! window, then runs the same products as [`crate::backend::ops::conv_kernels::backward`].

use crate::backend::ops::buffers;
use crate::backend::ops::conv_kernels::{col2im, im2col, sized, ConvGeometry, Rect, Scratch};
use crate::backend::ops::conv_pool_planar;
use crate::backend::ops::geometry::Axis1;
use crate::backend::ops::reduce::{add_pairs, fold_in_order};
use crate::backend::ops::small_gemm::{padded, small_gemm, Lhs, Table};
use crate::backend::ops::winograd;
use rayon::prelude::*;

/// Convolution pixels per forward block (rounded to whole pooling windows).
const PIXELS_PER_BLOCK: usize = 512;
/// Convolution pixels per backward band when patches are gathered.
const PIXELS_PER_BAND: usize = 1024;
/// Patch rows (`kernel_w * c_in` values) shorter than this are gathered from a padded copy of
/// the input instead of copied out by im2col, whose short copies then cost more than the
/// product (the first layer of a model: 3x3 on 1 channel, 2x2 on 3). Longer rows copy at full
/// speed, and the padded copy would cost more than it saves.
const GATHER_BELOW: usize = 16;

/// Whether the patches of `g` are gathered through offset tables (see [`GATHER_BELOW`]).
fn gathers(g: &ConvGeometry) -> bool {
    g.window.cols.kernel * g.c_in < GATHER_BELOW
}

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
    /// Pooled columns per forward block.
    fn windows_per_block(&self) -> usize {
        (PIXELS_PER_BLOCK / (self.pool.0 * self.pool.1)).max(1)
    }
    /// Pooled (rows, columns) per backward band. Gathered patches cost nothing to make, so
    /// bands are whole rows while they fit [`PIXELS_PER_BAND`] (the weight gradient's product
    /// then runs over many pixels at once); copied patches keep to the forward blocks, so that
    /// they stay in cache.
    fn band(&self) -> (usize, usize) {
        let (ph, pw) = self.pool;
        let (_, out_w) = self.out_size();
        let row_pixels = ph * pw * out_w;
        if !gathers(&self.conv) {
            (1, self.windows_per_block())
        } else if row_pixels <= PIXELS_PER_BAND {
            ((PIXELS_PER_BAND / row_pixels.max(1)).max(1), out_w.max(1))
        } else {
            (1, (PIXELS_PER_BAND / (ph * pw)).max(1))
        }
    }
    /// The convolution pixels of pooled rows `py`, pooled columns `px`.
    fn rect(&self, py: std::ops::Range<usize>, px: std::ops::Range<usize>) -> Rect {
        let (ph, pw) = self.pool;
        (py.start * ph..py.end * ph, px.start * pw..px.end * pw)
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

/// The input batch of the fused op. Where patches are gathered (see [`gathers`]) it holds the
/// convolution's zero padding written out, so that every patch lies inside its image and the
/// products read patches straight from it, forward and backward; otherwise it is the input as
/// it came.
pub struct PaddedBatch {
    data: Vec<f32>,
    /// Image (rows, columns), padding included.
    size: (usize, usize),
}

impl PaddedBatch {
    /// Pads `input` (the batch of `g`) when its patches are gathered and the convolution reads
    /// outside it; otherwise keeps the buffer as it is.
    pub fn new(g: &ConvGeometry, input: Vec<f32>) -> Self {
        let (rows, cols, c_in) = (g.window.rows, g.window.cols, g.c_in);
        if !gathers(g) {
            return Self {
                data: input,
                size: (rows.input, cols.input),
            };
        }
        // Rows (columns) the windows span, from the first padding row to the last read.
        let extent = |a: Axis1| ((a.output - 1) * a.stride + a.kernel).max(a.pad_before + a.input);
        let size = (extent(rows), extent(cols));
        if (rows.pad_before, cols.pad_before) == (0, 0) && size == (rows.input, cols.input) {
            return Self { data: input, size };
        }
        let padded_image = size.0 * size.1 * c_in;
        let mut data = buffers::take(g.batch * padded_image);
        let row_len = cols.input * c_in;
        data.par_chunks_mut(padded_image)
            .zip(input.par_chunks(g.in_image()))
            .for_each(|(dst, src)| {
                dst.fill(0.0);
                for (iy, src_row) in src.chunks_exact(row_len).enumerate() {
                    let at = ((iy + rows.pad_before) * size.1 + cols.pad_before) * c_in;
                    dst[at..][..row_len].copy_from_slice(src_row);
                }
            });
        buffers::give(input);
        Self { data, size }
    }

    /// The batch as it came (never padded), when the fused op of `g` runs in the Winograd
    /// domain; `None` when it runs here. Winograd reads its own tiles from the unpadded batch,
    /// so a batch padded for gathering never goes there, whatever the channel thresholds.
    fn winograd(&self, g: &ConvPoolGeometry) -> Option<&[f32]> {
        (winograd::applies(g) && !gathers(&g.conv)).then_some(self.data.as_slice())
    }

    /// The buffer, for [`buffers::give`].
    pub fn into_vec(self) -> Vec<f32> {
        self.data
    }

    /// Elements of one (padded) image.
    fn image_len(&self, g: &ConvGeometry) -> usize {
        self.size.0 * self.size.1 * g.c_in
    }

    /// Image `n`.
    fn image(&self, g: &ConvGeometry, n: usize) -> &[f32] {
        let len = self.image_len(g);
        &self.data[n * len..][..len]
    }

    /// Where each tap of a patch lies relative to the patch's start, in the weight's (row,
    /// column, channel) order.
    fn patch_taps(&self, g: &ConvGeometry) -> Vec<usize> {
        let (w, c_in) = (g.window, g.c_in);
        (0..w.rows.kernel)
            .flat_map(|i| (0..w.cols.kernel).map(move |j| (i, j)))
            .flat_map(|(i, j)| (0..c_in).map(move |ch| (i * self.size.1 + j) * c_in + ch))
            .collect()
    }

    /// Writes where the patch of each convolution pixel of `rect` (row-major) starts in image
    /// `n`.
    fn patch_starts(&self, g: &ConvGeometry, n: usize, rect: &Rect, starts: &mut Vec<usize>) {
        let (w, c_in) = (g.window, g.c_in);
        let image = n * self.image_len(g);
        starts.clear();
        for y in rect.0.clone() {
            for x in rect.1.clone() {
                let at = (y * w.rows.stride * self.size.1 + x * w.cols.stride) * c_in;
                starts.push(image + at);
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
    (input, patch_taps, weight_pad, bias): (&PaddedBatch, &[usize], &[f32], Option<&[f32]>),
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
    let step = g.windows_per_block();
    for px0 in (0..out_w).step_by(step) {
        let px1 = (px0 + step).min(out_w);
        let rect = g.rect(py..py + 1, px0..px1);
        let width = rect.1.len();
        let pixels = ph * width;
        let block = sized(&mut scratch.block, pixels * f_pad);
        if gathers(c) {
            input.patch_starts(c, n, &rect, &mut scratch.offsets);
            let patches = Lhs {
                data: &input.data,
                rows: Table(&scratch.offsets),
                cols: Table(patch_taps),
            };
            small_gemm(pixels, f_pad, k, patches, weight_pad, block, false);
        } else {
            let patches = sized(&mut scratch.patches, pixels * k);
            im2col(c, input.image(c, n), rect, patches);
            let patches = Lhs::strided(patches, k, 1);
            small_gemm(pixels, f_pad, k, patches, weight_pad, block, false);
        }
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
    input: &PaddedBatch,
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
    if let Some(unpadded) = input.winograd(g) {
        winograd::forward(g, unpadded, weight, bias, out, argmax);
        return;
    }
    if gathers(c) && conv_pool_planar::applies(g) {
        let image = |n: usize| input.image(c, n);
        conv_pool_planar::forward(g, (image, input.size), weight, bias, out, argmax);
        return;
    }
    let row_len = g.out_size().1 * f;
    let f_pad = padded(f);
    let weight_pad = pad_columns(weight, k, f, f_pad);
    let patch_taps = input.patch_taps(c);
    let body = |row_idx: usize, out_row: &mut [f32], arg_row: Option<&mut [u16]>| {
        let mut scratch = Scratch::take();
        let operands = (input, patch_taps.as_slice(), weight_pad.as_slice(), bias);
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
    input: &'a PaddedBatch,
    /// Where each tap of a patch lies (see [`PaddedBatch::patch_taps`]).
    patch_taps: &'a [usize],
    grad_out: &'a [f32],
    argmax: &'a [u16],
    /// The weight transposed (`F x K_pad`).
    weight_t_pad: &'a [f32],
}

/// The gradients of image `n`: adds into `dw` (`K x F_pad`) and `db`, and writes its input
/// gradient when asked. Works in bands of whole pooled rows (or of pooled columns when one
/// row is too long), so that the weight gradient's product runs over many pixels at a time.
/// Compiled for AVX-512 and AVX2 with run-time dispatch (see [`forward_row`]).
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
    let go_image = &operands.grad_out[n * g.out_image()..][..g.out_image()];
    let arg_image = &operands.argmax[n * g.out_image()..][..g.out_image()];
    let (band_rows, band_cols) = g.band();
    for py0 in (0..out_h).step_by(band_rows) {
        let py1 = (py0 + band_rows).min(out_h);
        for px0 in (0..out_w).step_by(band_cols) {
            let px1 = (px0 + band_cols).min(out_w);
            let rect = g.rect(py0..py1, px0..px1);
            let (y0, x0, width) = (rect.0.start, rect.1.start, rect.1.len());
            let pixels = rect.0.len() * width;
            let block = sized(&mut scratch.block, pixels * f_pad);
            if f != f_pad {
                // The padding columns are never written below; they must not carry
                // leftovers into the products.
                block.fill(0.0);
            }
            // Every tap of every window is written (the gradient where that tap won, else
            // zero), so the loops are compare-and-select over channels, not scattered stores.
            for py in py0..py1 {
                for px in px0..px1 {
                    let at = (py * out_w + px) * f;
                    let (go, arg) = (&go_image[at..][..f], &arg_image[at..][..f]);
                    for i in 0..ph {
                        for j in 0..pw {
                            let t = (i * pw + j) as u16;
                            let pixel = (py * ph + i - y0) * width + px * pw + j - x0;
                            let dst = &mut block[pixel * f_pad..][..f];
                            for ((d, &g), &a) in dst.iter_mut().zip(go).zip(arg) {
                                *d = if a == t { g } else { 0.0 };
                            }
                        }
                    }
                    for ((d, &g), &a) in db.iter_mut().zip(go).zip(arg) {
                        *d += if a == NO_WINNER { 0.0 } else { g };
                    }
                }
            }
            let input = operands.input;
            if gathers(c) {
                input.patch_starts(c, n, &rect, &mut scratch.offsets);
                let patches_t = Lhs {
                    data: &input.data,
                    rows: Table(operands.patch_taps),
                    cols: Table(&scratch.offsets),
                };
                small_gemm(k, f_pad, pixels, patches_t, block, dw, true);
            } else {
                let patches = sized(&mut scratch.patches, pixels * k);
                im2col(c, input.image(c, n), rect.clone(), patches);
                let patches_t = Lhs::strided(patches, 1, k);
                small_gemm(k, f_pad, pixels, patches_t, block, dw, true);
            }
            if let Some(grad_image) = grad_image.as_deref_mut() {
                let grad_patches = sized(&mut scratch.grad_patches, pixels * k_pad);
                let go = Lhs::strided(block, f_pad, 1);
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
    input: &PaddedBatch,
    weight: &[f32],
    grad_out: &[f32],
    argmax: &[u16],
    grad_input: Option<&mut [f32]>,
    grad_weight: &mut [f32],
    grad_bias: &mut [f32],
) {
    if let Some(unpadded) = input.winograd(g) {
        winograd::backward(
            g,
            unpadded,
            weight,
            grad_out,
            argmax,
            grad_input,
            grad_weight,
            grad_bias,
        );
        return;
    }
    let c = &g.conv;
    let (k, f) = (c.k(), c.filters);
    let (f_pad, k_pad) = (padded(f), padded(k));
    let weight_t_pad = transpose_padded(weight, k, f, k_pad);
    let patch_taps = input.patch_taps(c);
    let slots = c.image_slots(grad_input);
    let zero = || (vec![0.0f32; k * f_pad], vec![0.0f32; f]);
    let (dw, db) = fold_in_order(
        slots,
        zero,
        |(mut dw, mut db), n, grad_image| {
            let mut scratch = Scratch::take();
            let operands = BackwardOperands {
                input,
                patch_taps: &patch_taps,
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
