//! The arithmetic of 2-D convolution on NHWC slices: im2col by blocks of output rows, one gemm
//! per block, and the transposed products for the backward pass. 3x3 convolutions at stride 1
//! on enough channels run in the Winograd domain instead ([`crate::backend::ops::winograd`]).
//!
//! Weights are kept as a `K x F` row-major matrix, `K = k_h * k_w * c_in` in (row, column,
//! channel) order, i.e. HWIO; [`crate::backend::ops::conv2d`] converts from and to the checkpoint layout.

use crate::backend::ops::buffers;
use crate::backend::ops::dense;
use crate::backend::ops::geometry::Window2;
use crate::backend::ops::matmul::{gemm, gemm_by_rows, View};
use crate::backend::ops::pointwise_grad;
use crate::backend::ops::reduce::{
    add_gradients_in_runs, add_pair_into, run_program, tree_program,
};
use crate::backend::ops::simd;
use crate::backend::ops::winograd;
use crate::backend::ops::{Input, Shape4};
use rayon::prelude::*;
use std::cell::Cell;

/// Output pixels per im2col block: large enough for gemm, small enough to stay in L2.
const PIXELS_PER_BLOCK: usize = 512;

thread_local! {
    /// Per-thread scratch buffers, reused across calls; see [`Scratch`].
    static SCRATCH: Cell<Scratch> = const { Cell::new(Scratch::new()) };
}

/// Scratch buffers of one task: taken from the thread at its start and given back at its end,
/// so that the hot loops in between hold plain `Vec`s (no thread-local access inside them).
#[derive(Default)]
pub(crate) struct Scratch {
    /// im2col patches of a block.
    pub patches: Vec<f32>,
    /// Gradients of the patches.
    pub grad_patches: Vec<f32>,
    /// A block of convolution output or gradient.
    pub block: Vec<f32>,
    /// Per-channel winners of a pooling window.
    pub winners: Vec<f32>,
    /// Where each pixel's patch starts in a padded image.
    pub offsets: Vec<usize>,
    /// One image's gradient of the transformed weights (the Winograd backward).
    pub weight_grad: Vec<f32>,
    /// Input rows made by a map (a deferred batch norm's output, see `linear_bn`).
    pub mapped: Vec<f32>,
}

impl Scratch {
    const fn new() -> Self {
        Self {
            patches: Vec::new(),
            grad_patches: Vec::new(),
            block: Vec::new(),
            winners: Vec::new(),
            offsets: Vec::new(),
            weight_grad: Vec::new(),
            mapped: Vec::new(),
        }
    }

    /// Takes this thread's scratch buffers.
    pub fn take() -> Self {
        SCRATCH.with(Cell::take)
    }

    /// Gives the buffers back to this thread.
    pub fn give(self) {
        SCRATCH.with(|cell| cell.set(self));
    }
}

/// The first `len` elements of `buffer`, growing it when needed.
#[inline(always)]
pub(crate) fn sized(buffer: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buffer.len() < len {
        buffer.resize(len, 0.0);
    }
    &mut buffer[..len]
}

/// Everything the kernels need to know about one convolution.
#[derive(Debug, Clone, Copy)]
pub struct ConvGeometry {
    /// Batch size.
    pub batch: usize,
    /// Input channels.
    pub c_in: usize,
    /// Output channels (filters).
    pub filters: usize,
    /// Window placement on the image.
    pub window: Window2,
}

impl ConvGeometry {
    /// The geometry of a convolution of `batch` images with `c_in` channels by an HWIO
    /// weight matrix of shape `weight_shape` (`(k_h * k_w * c_in, filters)`).
    ///
    /// # Panics
    /// When the weight does not match the kernel and channels (the compiler infers both from
    /// the same shapes).
    pub fn for_weight(
        batch: usize,
        c_in: usize,
        window: Window2,
        weight_shape: (usize, usize),
    ) -> ConvGeometry {
        let (k_rows, filters) = weight_shape;
        let geometry = ConvGeometry {
            batch,
            c_in,
            filters,
            window,
        };
        assert_eq!(
            k_rows,
            geometry.k(),
            "conv weight does not match kernel and channels"
        );
        geometry
    }

    /// Rows of the weight matrix: `k_h * k_w * c_in`.
    pub fn k(&self) -> usize {
        self.window.rows.kernel * self.window.cols.kernel * self.c_in
    }
    /// Elements of one input image.
    pub fn in_image(&self) -> usize {
        self.window.rows.input * self.window.cols.input * self.c_in
    }
    /// Elements of one output image.
    pub fn out_image(&self) -> usize {
        self.window.rows.output * self.window.cols.output * self.filters
    }
    /// The output batch's shape, `(n, h_out, w_out, filters)`.
    pub fn out_shape(&self) -> Shape4 {
        let w = self.window;
        (self.batch, w.rows.output, w.cols.output, self.filters)
    }
    /// One slot per image: its slice of `grad_input` (`in_image` elements each) when the input
    /// gradient is wanted, else `None`; for backward passes that work image by image.
    pub(crate) fn image_slots<'a>(
        &self,
        grad_input: Option<&'a mut [f32]>,
    ) -> Vec<Option<&'a mut [f32]>> {
        match grad_input {
            Some(grad) => grad.chunks_mut(self.in_image()).map(Some).collect(),
            None => (0..self.batch).map(|_| None).collect(),
        }
    }
    /// Whether this is a 1x1 convolution at stride 1 (no padding): its patch matrix is the
    /// image itself, pixel by pixel, so im2col would only copy it.
    fn is_pointwise(&self) -> bool {
        let (rows, cols) = (self.window.rows, self.window.cols);
        (rows.kernel, cols.kernel, rows.stride, cols.stride) == (1, 1, 1, 1)
            && (rows.pad_before, cols.pad_before) == (0, 0)
            && (rows.output, cols.output) == (rows.input, cols.input)
    }
    /// The patches (`pixels x K`) of the output rows `ys` of `image`: the image's own rows for
    /// a pointwise convolution, else written into `scratch` by [`im2col`].
    #[inline(always)]
    fn patches<'a>(
        &self,
        image: &'a [f32],
        ys: std::ops::Range<usize>,
        scratch: &'a mut Vec<f32>,
    ) -> &'a [f32] {
        let (wo, k) = (self.window.cols.output, self.k());
        let len = ys.len() * wo * k;
        if self.is_pointwise() {
            return &image[ys.start * wo * k..][..len];
        }
        let patches = sized(scratch, len);
        im2col(self, image, (ys, 0..wo), patches);
        patches
    }
    /// Output rows per im2col block.
    fn rows_per_block(&self) -> usize {
        (PIXELS_PER_BLOCK / self.window.cols.output.max(1)).max(1)
    }
}

/// Output pixels `ys x xs` of one image, in row-major order.
pub(crate) type Rect = (std::ops::Range<usize>, std::ops::Range<usize>);

/// Writes the patches of the output pixels `rect` of one image into `patches` (pixels x K).
#[inline(always)]
pub(crate) fn im2col(g: &ConvGeometry, image: &[f32], rect: Rect, patches: &mut [f32]) {
    let (rows, cols, c_in, k) = (g.window.rows, g.window.cols, g.c_in, g.k());
    let span = cols.kernel * c_in;
    let (ys, xs) = rect;
    let width = xs.len();
    for y in ys.clone() {
        for x in xs.clone() {
            let patch = &mut patches[((y - ys.start) * width + x - xs.start) * k..][..k];
            for (i, dst) in patch.chunks_exact_mut(span).enumerate() {
                let Some(iy) = rows.source(y, i) else {
                    dst.fill(0.0);
                    continue;
                };
                let row = &image[iy * cols.input * c_in..][..cols.input * c_in];
                if cols.valid_taps(x) == (0..cols.kernel) {
                    let ix = x * cols.stride - cols.pad_before;
                    copy_short(dst, &row[ix * c_in..][..span]);
                    continue;
                }
                for (j, tap) in dst.chunks_exact_mut(c_in).enumerate() {
                    match cols.source(x, j) {
                        Some(ix) => tap.copy_from_slice(&row[ix * c_in..][..c_in]),
                        None => tap.fill(0.0),
                    }
                }
            }
        }
    }
}

/// `dst = src` for short slices, in whole vectors (no call to `memcpy` per patch row).
#[inline(always)]
fn copy_short(dst: &mut [f32], src: &[f32]) {
    let mut dst_chunks = dst.chunks_exact_mut(8);
    let mut src_chunks = src.chunks_exact(8);
    for (d, s) in (&mut dst_chunks).zip(&mut src_chunks) {
        let block: [f32; 8] = s.try_into().expect("chunks of 8");
        d.copy_from_slice(&block);
    }
    for (d, s) in dst_chunks
        .into_remainder()
        .iter_mut()
        .zip(src_chunks.remainder())
    {
        *d = *s;
    }
}

/// Adds the patch gradients of the output pixels `rect` (one patch every `k` elements, at least
/// K) back onto one image's gradient.
#[inline(always)]
pub(crate) fn col2im(
    g: &ConvGeometry,
    grad_patches: &[f32],
    k: usize,
    rect: Rect,
    grad_image: &mut [f32],
) {
    let (rows, cols, c_in) = (g.window.rows, g.window.cols, g.c_in);
    let span = cols.kernel * c_in;
    let (ys, xs) = rect;
    let width = xs.len();
    for y in ys.clone() {
        for x in xs.clone() {
            let patch = &grad_patches[((y - ys.start) * width + x - xs.start) * k..][..g.k()];
            for (i, src) in patch.chunks_exact(span).enumerate() {
                let Some(iy) = rows.source(y, i) else {
                    continue;
                };
                let row = &mut grad_image[iy * cols.input * c_in..][..cols.input * c_in];
                let taps = cols.valid_taps(x);
                if taps == (0..cols.kernel) {
                    let ix = x * cols.stride - cols.pad_before;
                    row[ix * c_in..][..span]
                        .iter_mut()
                        .zip(src)
                        .for_each(|(d, s)| *d += s);
                    continue;
                }
                for j in taps {
                    let ix = x * cols.stride + j - cols.pad_before;
                    let dst = &mut row[ix * c_in..][..c_in];
                    dst.iter_mut()
                        .zip(&src[j * c_in..][..c_in])
                        .for_each(|(d, s)| *d += s);
                }
            }
        }
    }
}

/// Forward: `out = conv(input, weight) + bias`, then clamped to `bounds` when given (relu:
/// `(0, inf)`, relu6: `(0, 6)`); `mask` (given only with `bounds`) records where the
/// activation passes the gradient on (`lo < out < hi`) for the backward pass.
pub fn forward(
    g: &ConvGeometry,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    bounds: Option<(f32, f32)>,
    out: &mut [f32],
    mask: Option<&mut [u8]>,
) {
    forward_residual(g, input.into(), weight, bias, None, bounds, out, mask);
}

/// [`forward`] with `residual` (the output's shape) added before the clamp:
/// `out = clamp(residual + bias + conv(input, weight))`, the residual `add` of a block run
/// inside its last convolution. The input may be made by a map as it is read: the Winograd
/// kernels make each block's input rows in cache; the others take it made whole first.
#[allow(clippy::too_many_arguments)]
pub fn forward_residual(
    g: &ConvGeometry,
    input: Input<'_>,
    weight: &[f32],
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    bounds: Option<(f32, f32)>,
    out: &mut [f32],
    mask: Option<&mut [u8]>,
) {
    assert_eq!(
        out.len(),
        g.batch * g.out_image(),
        "conv output of the wrong length"
    );
    if winograd::applies_to_conv(g) {
        winograd::conv_forward(g, input, weight, bias, residual, bounds, out, mask);
    } else {
        with_values(input, |input| {
            forward_im2col(g, input, weight, bias, residual, bounds, out, mask)
        });
    }
}

/// Runs `run` on the values of `input`: the values themselves, or, with a map, the input made
/// whole in a pooled buffer (for the kernels that cannot make its rows as they read them).
fn with_values<R>(input: Input<'_>, run: impl FnOnce(&[f32]) -> R) -> R {
    let Some(map) = input.map else {
        return run(input.values);
    };
    let mut made = buffers::take(input.values.len());
    map(input.values, &mut made);
    let result = run(&made);
    buffers::give(made);
    result
}

/// [`forward_residual`] by im2col and gemm, whatever the kernel.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward_im2col(
    g: &ConvGeometry,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    bounds: Option<(f32, f32)>,
    out: &mut [f32],
    mask: Option<&mut [u8]>,
) {
    let (k, f, wo) = (g.k(), g.filters, g.window.cols.output);
    let block_rows = g.rows_per_block();
    let block_len = block_rows * wo * f;
    let body = |image_idx: usize, block_idx: usize, out_block: &mut [f32]| {
        let image = &input[image_idx * g.in_image()..][..g.in_image()];
        let y0 = block_idx * block_rows;
        let pixels = out_block.len() / f;
        let y1 = y0 + pixels / wo;
        let mut scratch = Scratch::take();
        simd::fast(|| {
            let patches = g.patches(image, y0..y1, &mut scratch.patches);
            let start = image_idx * g.out_image() + y0 * wo * f;
            match (residual, bias) {
                (Some(residual), _) => {
                    out_block.copy_from_slice(&residual[start..][..out_block.len()]);
                    if let Some(bias) = bias {
                        out_block.chunks_exact_mut(f).for_each(|px| {
                            px.iter_mut().zip(bias).for_each(|(o, b)| *o += b);
                        });
                    }
                }
                (None, Some(bias)) => out_block
                    .chunks_exact_mut(f)
                    .for_each(|px| px.copy_from_slice(bias)),
                (None, None) => {}
            }
            let dims = (pixels, f, k);
            gemm(
                out_block,
                dims,
                View::rows(patches, k),
                View::rows(weight, f),
                bias.is_some() || residual.is_some(),
                1,
            );
        });
        scratch.give();
    };
    match mask {
        None => out
            .par_chunks_mut(g.out_image())
            .enumerate()
            .for_each(|(n, out_image)| {
                out_image
                    .par_chunks_mut(block_len)
                    .enumerate()
                    .for_each(|(b, out_block)| {
                        body(n, b, out_block);
                        if let Some((lo, hi)) = bounds {
                            out_block.iter_mut().for_each(|o| *o = o.max(lo).min(hi));
                        }
                    })
            }),
        Some(mask) => out
            .par_chunks_mut(g.out_image())
            .zip(mask.par_chunks_mut(g.out_image()))
            .enumerate()
            .for_each(|(n, (out_image, mask_image))| {
                out_image
                    .par_chunks_mut(block_len)
                    .zip(mask_image.par_chunks_mut(block_len))
                    .enumerate()
                    .for_each(|(b, (out_block, mask_block))| {
                        body(n, b, out_block);
                        let (lo, hi) = bounds.unwrap_or((f32::NEG_INFINITY, f32::INFINITY));
                        for (o, m) in out_block.iter_mut().zip(mask_block.iter_mut()) {
                            *m = u8::from(*o > lo && *o < hi);
                            *o = o.max(lo).min(hi);
                        }
                    })
            }),
    }
}

/// Gradients of a convolution, given the output gradient (already multiplied by the relu mask).
///
/// Adds into `grad_weight` (`K x F`) and `grad_bias` (`F`); writes (adds) `grad_input` when
/// given. Parallel over images, so scattered input gradients never race.
pub fn backward(
    g: &ConvGeometry,
    input: &[f32],
    weight: &[f32],
    grad_out: &[f32],
    grad_input: Option<&mut [f32]>,
    grad_weight: &mut [f32],
    grad_bias: Option<&mut [f32]>,
) {
    let grads = (grad_input, grad_weight, grad_bias);
    backward_into(g, (input.into(), weight, grad_out), grads, false);
}

/// [`backward`], the input gradient written over when `fresh`, whatever it held, with the bits
/// adding into a zeroed gradient gives: for a fresh gradient buffer (the first reader's
/// gradient of a fused op's output). Each image's gradient is zeroed just before the image's
/// sums are added into it, while it is in cache (a pointwise convolution writes its sums
/// straight over it), instead of a pass over the whole batch's gradient to zero it and the
/// zeros read back from memory.
///
/// The input may be made by a map as it is read, as in [`forward_residual`].
pub(crate) fn backward_into(
    g: &ConvGeometry,
    (input, weight, grad_out): (Input<'_>, &[f32], &[f32]),
    grads: Gradients<'_>,
    fresh: bool,
) {
    if winograd::applies_to_conv(g) {
        winograd::conv_backward_into(g, (input, weight, grad_out), grads, fresh);
    } else {
        with_values(input, |input| {
            backward_im2col_into(g, (input, weight, grad_out), grads, fresh)
        });
    }
}

/// An image's slot of the input gradient, zeroed first when the gradient is `fresh` (see
/// [`backward_into`]).
pub(crate) fn zeroed_if_fresh(mut slot: Option<&mut [f32]>, fresh: bool) -> Option<&mut [f32]> {
    if let (true, Some(slot)) = (fresh, slot.as_deref_mut()) {
        slot.fill(0.0);
    }
    slot
}

/// The gradients a backward pass adds into: the input's (when wanted), the weight's and the
/// bias's (when wanted).
type Gradients<'a> = (Option<&'a mut [f32]>, &'a mut [f32], Option<&'a mut [f32]>);

/// About this many values of the weight gradient in one block of filters of
/// [`backward_pointwise`]: with the partial sums of a 32-image tree (six deep), the
/// block stays in a core's L2 cache.
const WEIGHT_BLOCK_VALUES: usize = 1 << 14;

/// [`backward_im2col`] for a pointwise convolution.
///
/// Image by image, a small image's products are thin: each value of its `K x F` weight
/// gradient sums a few pixels (16 on `mobilenetv2_small`'s 4x4 layers), and its input
/// gradient is a product of a few rows; the matrix library's setup and the weight gradient's
/// trips through memory (written, then added into the batch's partial sums, once per image)
/// cost more than the arithmetic. (`cargo bench --bench conv -- pointwise`, one thread at batch
/// 16: 6% to 28% less time a training step on each of that model's pointwise layers.)
///
/// - The weight and bias gradients take the filters a block at a time, and each block runs
///   the per-image path's tree over the images ([`tree_program`]): each image's block is the
///   same products over the same blocks of pixels and the partial sums are added in the same
///   order, so the bits are the per-image path's, but the partial sums stay in cache.
/// - The input gradient is one product over the batch's pixels, in blocks of rows, against
///   the weight transposed into rows. Each pixel's row has the same bits whatever the rows
///   around it ([`gemm_by_rows`]), so a batch's input gradient is its halves'. They are the
///   per-image path's bits too, except on images of one pixel, where that path's one-row
///   products round differently.
/// - With `overwrite`, the input gradient is written over `grad_input` with the bits adding
///   into zeros gives (see [`backward_into`]).
fn backward_pointwise(
    g: &ConvGeometry,
    (input, weight, grad_out): (&[f32], &[f32], &[f32]),
    (grad_input, grad_weight, mut grad_bias): Gradients<'_>,
    overwrite: bool,
) {
    let (k, f) = (g.k(), g.filters);
    let (in_image, out_image) = (g.in_image(), g.out_image());
    let pixels = out_image / f.max(1);
    if let Some(grad_input) = grad_input {
        let w_t = dense::transpose(weight, k, f);
        grad_input
            .par_chunks_mut(PIXELS_PER_BLOCK * k)
            .zip(grad_out.par_chunks(PIXELS_PER_BLOCK * f))
            .for_each(|(grad_rows, go)| {
                let rows = go.len() / f;
                let mut scratch = Scratch::take();
                simd::fast(|| {
                    let grad_patches = sized(&mut scratch.grad_patches, rows * k);
                    let (lhs, rhs) = (View::rows(go, f), View::rows(&w_t, k));
                    gemm_by_rows(grad_patches, (rows, k, f), lhs, rhs, false, 1);
                    // A pointwise convolution's col2im: each patch is its pixel. (The product
                    // adding straight into the gradient rounds otherwise than the per-image
                    // path's col2im.) Written over, `0.0 + s` rounds as adding into a zero
                    // does (a -0.0 becomes +0.0).
                    let rows = grad_rows.iter_mut().zip(&*grad_patches);
                    if overwrite {
                        rows.for_each(|(d, s)| *d = 0.0 + s);
                    } else {
                        rows.for_each(|(d, s)| *d += s);
                    }
                });
                scratch.give();
            });
        buffers::give(w_t);
    }
    if pixels <= pointwise_grad::MAX_PIXELS {
        pointwise_grad::add_weight_gradient(
            (input, grad_out),
            (g.batch, pixels, k, f),
            grad_weight,
            grad_bias,
        );
        return;
    }
    let width = (WEIGHT_BLOCK_VALUES / k.max(1) / 16 * 16).clamp(16, f.max(16));
    let block_pixels = g.rows_per_block() * g.window.cols.output;
    let (program, depth) = tree_program(0..g.batch, 1);
    // One block's sums over the batch: (weight gradient `K x width`, bias gradient).
    let block_sums = |f0: usize| -> Option<(Vec<f32>, Vec<f32>)> {
        let width = width.min(f - f0);
        if program.is_empty() {
            return None;
        }
        let mut slots = vec![(vec![0.0f32; k * width], vec![0.0f32; width]); depth];
        let leaf = |slots: &mut [(Vec<f32>, Vec<f32>)], slot: usize, n: usize, _: usize| {
            let (dw, db) = &mut slots[slot];
            let image = &input[n * in_image..][..in_image];
            let go = &grad_out[n * out_image..][..out_image];
            // The per-image path's blocks of pixels, the first written over `dw`.
            for p0 in (0..pixels).step_by(block_pixels) {
                let p1 = (p0 + block_pixels).min(pixels);
                let go_block = View {
                    data: &go[p0 * f + f0..],
                    row_stride: f,
                    col_stride: 1,
                };
                let x_t = View::transposed(&image[p0 * k..p1 * k], k);
                let dims = (k, width, p1 - p0);
                simd::fast(|| gemm(dw, dims, x_t, go_block, p0 > 0, 1));
            }
            db.fill(0.0);
            go.chunks_exact(f).for_each(|px| {
                db.iter_mut().zip(&px[f0..]).for_each(|(d, v)| *d += v);
            });
        };
        let add = |slots: &mut [(Vec<f32>, Vec<f32>)], lower: usize| {
            let (below, above) = slots.split_at_mut(lower + 1);
            let ((dw, db), (upper_dw, upper_db)) = (&mut below[lower], &above[0]);
            add_pair_into((dw, db), (upper_dw, upper_db));
        };
        run_program(&program, &mut slots[..], leaf, add);
        Some(slots.swap_remove(0))
    };
    let starts: Vec<usize> = (0..f).step_by(width).collect();
    let sums: Vec<_> = starts
        .into_par_iter()
        .map(|f0| (f0, block_sums(f0)))
        .collect();
    for (f0, sum) in sums {
        let Some((dw, db)) = sum else { continue };
        let width = db.len();
        for (row, block_row) in grad_weight.chunks_exact_mut(f).zip(dw.chunks_exact(width)) {
            row[f0..f0 + width]
                .iter_mut()
                .zip(block_row)
                .for_each(|(a, b)| *a += b);
        }
        if let Some(grad_bias) = grad_bias.as_deref_mut() {
            grad_bias[f0..f0 + width]
                .iter_mut()
                .zip(&db)
                .for_each(|(a, b)| *a += b);
        }
    }
}

/// [`backward`] by im2col and gemm, whatever the kernel (the Winograd tests' reference).
#[cfg(test)]
pub(crate) fn backward_im2col(
    g: &ConvGeometry,
    input: &[f32],
    weight: &[f32],
    grad_out: &[f32],
    grad_input: Option<&mut [f32]>,
    grad_weight: &mut [f32],
    grad_bias: Option<&mut [f32]>,
) {
    let grads = (grad_input, grad_weight, grad_bias);
    backward_im2col_into(g, (input, weight, grad_out), grads, false);
}

/// [`backward_im2col`], the input gradient written over when `fresh`.
fn backward_im2col_into(
    g: &ConvGeometry,
    operands: (&[f32], &[f32], &[f32]),
    grads: Gradients<'_>,
    fresh: bool,
) {
    if g.is_pointwise() && g.out_image() > 0 {
        backward_pointwise(g, operands, grads, fresh);
    } else {
        backward_per_image(g, operands, grads, fresh);
    }
}

/// [`backward_im2col`] image by image: each image's weight gradient is a leaf of `reduce`'s
/// tree. The input gradient is written over when `fresh` (see [`backward_into`]).
fn backward_per_image(
    g: &ConvGeometry,
    (input, weight, grad_out): (&[f32], &[f32], &[f32]),
    (grad_input, grad_weight, grad_bias): Gradients<'_>,
    fresh: bool,
) {
    let (k, f, wo, ho) = (g.k(), g.filters, g.window.cols.output, g.window.rows.output);
    let block_rows = g.rows_per_block();
    let want_input = grad_input.is_some();
    let slots = g.image_slots(grad_input);
    // Runs of one image: the pointwise path sums the images in the same tree.
    add_gradients_in_runs((slots, 1), grad_weight, (grad_bias, f), |n, run, dw, db| {
        let Some(grad_image) = run.into_iter().next() else {
            return dw.fill(0.0);
        };
        let image = &input[n * g.in_image()..][..g.in_image()];
        let grad_out_image = &grad_out[n * g.out_image()..][..g.out_image()];
        let mut grad_image = zeroed_if_fresh(grad_image, fresh);
        if ho == 0 {
            dw.fill(0.0);
        }
        for y0 in (0..ho).step_by(block_rows) {
            let y1 = (y0 + block_rows).min(ho);
            let pixels = (y1 - y0) * wo;
            let go = &grad_out_image[y0 * wo * f..][..pixels * f];
            go.chunks_exact(f).for_each(|px| {
                db.iter_mut().zip(px).for_each(|(d, v)| *d += v);
            });
            // The first block writes over what `dw` held.
            let accumulate = y0 > 0;
            let mut scratch = Scratch::take();
            simd::fast(|| {
                let patches = g.patches(image, y0..y1, &mut scratch.patches);
                let grad_len = if want_input { pixels * k } else { 0 };
                let grad_patches = sized(&mut scratch.grad_patches, grad_len);
                let dims = (k, f, pixels);
                gemm(
                    dw,
                    dims,
                    View::transposed(patches, k),
                    View::rows(go, f),
                    accumulate,
                    1,
                );
                if let Some(grad_image) = grad_image.as_deref_mut() {
                    let dims = (pixels, k, f);
                    let w_t = View::transposed(weight, f);
                    gemm(grad_patches, dims, View::rows(go, f), w_t, false, 1);
                    col2im(g, grad_patches, k, (y0..y1, 0..wo), grad_image);
                }
            });
            scratch.give();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::ops::geometry::Padding;
    use crate::backend::ops::test_values::uniform as values;

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// A pointwise convolution of `batch` `side x side` images, `c_in` channels to `filters`.
    fn pointwise(batch: usize, side: usize, c_in: usize, filters: usize) -> ConvGeometry {
        let window =
            Window2::new((side, side), (1, 1), (1, 1), Padding::Same).expect("a 1x1 window fits");
        ConvGeometry::for_weight(batch, c_in, window, (c_in, filters))
    }

    /// Written over a gradient full of NaN, a convolution's input gradient has the bits of
    /// adding into a zeroed one, and the weight and bias gradients are unchanged: on every
    /// path (pointwise, Winograd, im2col), with strides and padding that leave input pixels
    /// no output reads.
    #[test]
    fn an_overwritten_input_gradient_is_the_one_added_into_zeros() {
        let cases = [
            // (batch, (height, width), kernel, stride, padding, c_in, filters)
            (3, (4, 4), 1, 1, Padding::Same, 24, 40),
            (2, (9, 9), 1, 1, Padding::Same, 7, 3),
            (2, (1, 1), 1, 1, Padding::Same, 16, 16),
            (3, (8, 8), 3, 1, Padding::Same, 16, 32),
            // Winograd, each pixel written by the first tile that covers it: odd sizes, `valid`,
            // channels past one vector, one-tile images, and an image whose tile rows come in
            // several blocks.
            (2, (9, 7), 3, 1, Padding::Valid, 12, 8),
            (2, (11, 13), 3, 1, Padding::Same, 20, 16),
            (3, (3, 5), 3, 1, Padding::Same, 12, 4),
            (2, (6, 6), 3, 1, Padding::Valid, 16, 8),
            (1, (70, 66), 3, 1, Padding::Same, 16, 16),
            (2, (9, 7), 3, 1, Padding::Valid, 5, 8),
            (2, (8, 8), 2, 1, Padding::Valid, 4, 6),
            (2, (9, 9), 3, 2, Padding::Same, 6, 10),
            (2, (10, 10), 2, 3, Padding::Valid, 3, 5),
            (2, (7, 7), 5, 1, Padding::Same, 3, 4),
        ];
        for (batch, (h, w), kernel, stride, padding, c_in, filters) in cases {
            let window = Window2::new((h, w), (kernel, kernel), (stride, stride), padding)
                .expect("the window fits");
            let k = kernel * kernel * c_in;
            let g = ConvGeometry::for_weight(batch, c_in, window, (k, filters));
            let input = values(batch * g.in_image(), 1);
            let weight = values(k * filters, 2);
            let grad_out = values(batch * g.out_image(), 3);
            let run = |fresh: bool| {
                let mut dx = vec![if fresh { f32::NAN } else { 0.0 }; input.len()];
                let mut dw = vec![0.0f32; weight.len()];
                let mut db = vec![0.0f32; filters];
                if fresh {
                    let operands = (input[..].into(), &weight[..], &grad_out[..]);
                    let grads = (Some(&mut dx[..]), &mut dw[..], Some(&mut db[..]));
                    backward_into(&g, operands, grads, true);
                } else {
                    let (dx, dw) = (Some(&mut dx[..]), &mut dw[..]);
                    backward(&g, &input, &weight, &grad_out, dx, dw, Some(&mut db));
                }
                [bits(&dx), bits(&dw), bits(&db)]
            };
            assert_eq!(
                run(true),
                run(false),
                "{batch} images {h}x{w}, {kernel}x{kernel} stride {stride} {padding:?}"
            );
        }
    }

    /// The pointwise path against the per-image one: the same bits for the input gradient
    /// (within rounding on one-pixel images) and the bias gradient; the weight gradient within
    /// rounding (images of up to `pointwise_grad::MAX_PIXELS` pixels sum it in registers, in
    /// their own order; `pointwise_grad`'s tests hold it to the tree); and the input gradient
    /// of a batch is its halves', bit for bit, as a split step needs.
    #[test]
    fn pointwise_backward_matches_the_per_image_path() {
        // 1x1 images make rows of one pixel; 40x40 images (past `MAX_PIXELS`) take the matrix
        // product's path, in blocks of filters (300 channels make blocks of 48, so 100 filters
        // are three, the last one short) and of pixels.
        let cases = [
            (5, 4, 300, 100),
            (7, 8, 24, 40),
            (3, 1, 16, 20),
            (3, 32, 20, 600),
            (2, 24, 300, 100),
            (2, 40, 300, 100),
        ];
        for (batch, side, c_in, filters) in cases {
            let g = pointwise(batch, side, c_in, filters);
            assert!(g.is_pointwise());
            let input = values(batch * g.in_image(), 1);
            let weight = values(c_in * filters, 2);
            let grad_out = values(batch * g.out_image(), 3);
            let run = |pointwise: bool| {
                // Gradients are added to what is already there.
                let mut dx = vec![0.5f32; input.len()];
                let mut dw = vec![0.25f32; weight.len()];
                let mut db = vec![-0.5f32; filters];
                let grads = (Some(&mut dx[..]), &mut dw[..], Some(&mut db[..]));
                let operands = (&input[..], &weight[..], &grad_out[..]);
                if pointwise {
                    backward_pointwise(&g, operands, grads, false);
                } else {
                    backward_per_image(&g, operands, grads, false);
                }
                (dx, dw, db)
            };
            let (dx, dw, db) = run(true);
            let (want_dx, want_dw, want_db) = run(false);
            let case = format!("{batch} images {side}x{side}, {c_in} to {filters}");
            if side * side > pointwise_grad::MAX_PIXELS {
                assert_eq!(bits(&dw), bits(&want_dw), "{case}: weight");
            } else {
                // Within rounding of the sum of the products' magnitudes.
                let pixels = side * side;
                for (i, (got, want)) in dw.iter().zip(&want_dw).enumerate() {
                    let (r, c) = (i / filters, i % filters);
                    let magnitude: f32 = (0..batch * pixels)
                        .map(|p| (input[p * c_in + r] * grad_out[p * filters + c]).abs())
                        .sum();
                    let close = (got - want).abs() <= 1e-6 * (magnitude + 1.0);
                    assert!(close, "{case}: weight {got} against {want}");
                }
            }
            assert_eq!(bits(&db), bits(&want_db), "{case}: bias");
            if side > 1 {
                assert_eq!(bits(&dx), bits(&want_dx), "{case}: input");
            } else {
                // The per-image path's one-row products round differently (`gemm_by_rows`).
                for (got, want) in dx.iter().zip(&want_dx) {
                    let close = (got - want).abs() <= 1e-5 * want.abs().max(1.0);
                    assert!(close, "{case}: input {got} against {want}");
                }
            }
            // The batch's input gradient is its halves' (as two ranks compute them).
            let cut = batch / 2;
            let mut halves = vec![0.5f32; input.len()];
            for images in [0..cut, cut..batch] {
                let half = pointwise(images.len(), side, c_in, filters);
                let mut dw = vec![0.0f32; weight.len()];
                let at = |image_len: usize| images.start * image_len..images.end * image_len;
                let operands = (
                    &input[at(g.in_image())],
                    &weight[..],
                    &grad_out[at(g.out_image())],
                );
                let grads = (Some(&mut halves[at(g.in_image())]), &mut dw[..], None);
                backward_pointwise(&half, operands, grads, false);
            }
            assert_eq!(bits(&halves), bits(&dx), "{case}: halves");
        }
    }

    /// A convolution the Winograd kernels do not take (stride 2, or few channels) makes a
    /// mapped input whole first: the bits of the input mapped by the caller.
    #[test]
    fn a_mapped_input_off_the_winograd_path_is_made_whole() {
        for (stride, c_in) in [(2, 16), (1, 3)] {
            let window = Window2::new((9, 7), (3, 3), (stride, stride), Padding::Same)
                .expect("the window fits");
            let g = ConvGeometry::for_weight(2, c_in, window, (9 * c_in, 8));
            assert!(!winograd::applies_to_conv(&g));
            let raw = values(g.batch * g.in_image(), 1);
            let map = |rows: &[f32], out: &mut [f32]| {
                for (i, (o, &x)) in out.iter_mut().zip(rows).enumerate() {
                    *o = x * (1.0 + (i % c_in) as f32 * 0.25) - 0.5;
                }
            };
            let mut mapped = vec![0.0; raw.len()];
            map(&raw, &mut mapped);
            let weight = values(g.k() * g.filters, 2);
            let grad_out = values(g.batch * g.out_image(), 3);
            let run = |input: Input<'_>| {
                let mut out = vec![0.0f32; g.batch * g.out_image()];
                forward_residual(&g, input, &weight, None, None, None, &mut out, None);
                let mut dx = vec![0.0f32; raw.len()];
                let mut dw = vec![0.0f32; weight.len()];
                let grads = (Some(&mut dx[..]), &mut dw[..], None);
                backward_into(&g, (input, &weight, &grad_out), grads, false);
                [bits(&out), bits(&dx), bits(&dw)]
            };
            let made = run(Input {
                values: &raw,
                map: Some(&map),
            });
            assert_eq!(
                made,
                run(mapped[..].into()),
                "stride {stride}, {c_in} channels"
            );
        }
    }
}
