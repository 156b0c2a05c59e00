//! 3x3 and 2x2 convolutions (stride 1) by Winograd's minimal filtering: the fused convolution
//! and 2x2 max pool by F(2x2, 3x3) or F(2x2, 2x2), whose 2x2 output tiles are exactly the
//! pooling windows, and the plain convolution (3x3 in practice, see [`applies_to_conv`]) by
//! F(4x4, 3x3), whose output is cut into 4x4 tiles (the last tile row or column of an output
//! that is not a multiple of 4 is partial).
//!
//! Done directly, an `r x r` convolution costs `m² r²` multiplications per `m x m` output tile
//! and channel pair; in the Winograd domain it costs `(m + r - 1)²`: 16 instead of 36 for
//! F(2x2, 3x3), 9 instead of 16 for F(2x2, 2x2) and 36 instead of 144 for F(4x4, 3x3) (Lavin
//! and Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016). An `α x α` input
//! tile (`α = m + r - 1`) is transformed (`V = Bᵀ d B`), multiplied position by position with
//! the transformed filter (`U = G g Gᵀ`) and summed over the input channels, which makes `α²`
//! independent matrix products over all the tiles of a block, then transformed back
//! (`Y = Aᵀ M A`) and finished: biased, rectified and pooled (the fused op), or biased, added
//! to the residual, clamped and written (the plain convolution). The 2x2 transforms only add,
//! subtract and halve; F(4x4, 3x3)'s also scale by 2, 4, 5, 8 and 1/6, 1/12, 1/24, which
//! rounds more: outputs and gradients agree with im2col's to 8e-6 of their magnitude at worst
//! in this module's tests (F(4x4, 3x3) is what oneDNN and cuDNN run for float training).
//!
//! The backward pass runs the adjoint of each step in the same domain: the output gradient of
//! a tile (the pooled gradient spread to the window's winner, or the plain convolution's
//! `m x m` gradient, zero outside the output) becomes `dM = A dY Aᵀ`; the filter gradient
//! gathers `dU += Vᵀ dM` and is brought back through `G` once per run of a few images; the input gradient is
//! `dV = dM Uᵀ`, added into the overlapping input tiles as `B dV Bᵀ`. All three products are
//! cheaper than im2col's by the same factor.
//!
//! Layouts (`c_s`, `f_s`: channels and filters padded to whole vectors; ξ: one of the `α²`
//! positions of a transformed tile): `V` is `[tile][ξ][c_s]` (one tile's transform is one
//! contiguous write), `M` and `dM` are `[ξ][tile][f_s]`, `dV` is `[ξ][tile][c_s]`, `U` is
//! `[ξ][c_in][f_s]`, `dU` is `[c_in][ξ][f_s]` (the filter gradient's transform reads one
//! channel's `α²` rows together) and `Uᵀ` is `[ξ][filters][c_s]`.

use crate::backend::ops::buffers;
use crate::backend::ops::conv_kernels::{sized, zeroed_if_fresh, ConvGeometry, Scratch};
use crate::backend::ops::conv_pool_kernels::ConvPoolGeometry;
use crate::backend::ops::reduce::{add_gradients_in_runs, RUN};
use crate::backend::ops::small_gemm::{padded, small_gemm, small_gemm_into_rows, Lhs};
use crate::backend::ops::{Input, RowMap};
use pulp::{Arch, Simd, WithSimd};
use rayon::prelude::*;
use std::marker::PhantomData;
use transforms::{
    conv_grad_tile, conv_output_tile, grad_tile, input_grad_tile, input_tile, output_tile,
    transform_weight, transform_weight_transposed, write_weight_gradient, Epilogue, Lanes, Pixels,
    Variant, Window, F22, F23, F43,
};

mod transforms;

/// Input channels from which the Winograd products beat im2col in the fused op. Measured on a
/// 3x3 conv to 64 filters, batch 64, forward and backward (AMD EPYC, AVX-512): 19 % faster at
/// 8 channels, 38 % at 16, 42 % at 32; the seed's deep model (2x2 convs, 20 channels and
/// filters) trains 7 % and infers 11 % faster. Below 8 the products reduce over too few
/// channels to keep the multiply units busy (and such a layer reads its patches through offset
/// tables instead).
pub const MIN_CHANNELS: usize = 8;
/// Input channels from which the Winograd products beat im2col in the plain convolution, whose
/// im2col path has no pooling to rebuild. Measured on 3x3 `same` convolutions, batch 32,
/// forward + backward with the input gradient, 2 threads (Intel Xeon, AVX-512), as a fraction
/// of im2col's time on 32x32 images to 16 filters, 16x16 to 32 and 8x8 to 64: 1.1, 1.05 and
/// 1.2 at 8 channels (the forward breaks even, the backward loses 10 to 25 %), 0.84, 0.83 and
/// 1.1 at 12, 0.77, 0.79 and 1.02 at 16; resnet_small's layers (16, 32 and 64 channels and
/// filters on 32x32, 16x16 and 8x8) 0.78, 0.75 and 0.88.
pub const MIN_CONV_CHANNELS: usize = 12;
/// Rows and columns of the grid of slots a tile is held in (an `α x α` tile fills its
/// top-left corner; F(4x4, 3x3)'s α is 6).
const GRID: usize = 6;
/// Slots of that grid.
const SLOTS: usize = GRID * GRID;
/// Tiles per block of a 2x2-output variant (rounded to whole tile rows, at least one): the
/// products of a block run over this many rows, and its transforms stay in L2 (F(4x4, 3x3)
/// takes fewer, see [`Tiles::new`]).
const TILES_PER_BLOCK: usize = 64;

/// Whether the Winograd kernels compute the convolution `g`: a 3x3 or 2x2 kernel with stride
/// 1 on at least `min_channels` input channels.
fn fits(g: &ConvGeometry, min_channels: usize) -> bool {
    let w = g.window;
    matches!((w.rows.kernel, w.cols.kernel), (3, 3) | (2, 2))
        && (w.rows.stride, w.cols.stride) == (1, 1)
        && g.c_in >= min_channels
}

/// Whether the fused op of `g` runs here: a 3x3 or 2x2 convolution with stride 1 on at least
/// [`MIN_CHANNELS`] channels, pooled 2x2.
pub fn applies(g: &ConvPoolGeometry) -> bool {
    fits(&g.conv, MIN_CHANNELS) && g.pool == (2, 2)
}

/// Whether the plain convolution `g` runs here ([`conv_forward`], [`conv_backward`]): a 3x3
/// kernel with stride 1 on at least [`MIN_CONV_CHANNELS`] channels.
///
/// 2x2 kernels, which the kernels compute as well, stay with im2col: no model has a plain 2x2
/// convolution on that many channels (the seed's run fused with their pool, or on 3 channels),
/// and Winograd's rounding, small as it is, moves with every input of a tile, where im2col
/// leaves the outputs a change does not reach bit for bit. Finite differences see it:
/// `gradcheck_conv`'s 20-channel 2x2 case (inputs up to ±16, steps of 1e-3) measures -0.1532
/// for an input gradient of -0.1473 (-0.1471 with steps of 3e-3), past its 2 % tolerance.
pub fn applies_to_conv(g: &ConvGeometry) -> bool {
    let w = g.window;
    takes_conv(
        (w.rows.kernel, w.cols.kernel),
        (w.rows.stride, w.cols.stride),
        g.c_in,
    )
}

/// [`applies_to_conv`] of a plain convolution with `kernel` and `stride` on `c_in` channels,
/// before its geometry is made.
pub fn takes_conv(kernel: (usize, usize), stride: (usize, usize), c_in: usize) -> bool {
    kernel == (3, 3) && stride == (1, 1) && c_in >= MIN_CONV_CHANNELS
}

/// Forward: pooled `out` and, when given, the winner of each window, exactly as
/// [`crate::backend::ops::conv_pool_kernels::forward`] writes them.
pub fn forward(
    g: &ConvPoolGeometry,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
    argmax: Option<&mut [u16]>,
) {
    let outputs = Outputs::Pooled {
        out,
        argmax,
        bias,
        relu: g.relu,
    };
    if g.conv.window.rows.kernel == 3 {
        forward_with::<F23>(&Tiles::pooled::<F23>(g), input.into(), weight, outputs);
    } else {
        forward_with::<F22>(&Tiles::pooled::<F22>(g), input.into(), weight, outputs);
    }
}

/// Forward of the plain convolution `g` (see [`applies_to_conv`]), as
/// [`crate::backend::ops::conv_kernels::forward_residual`] computes it:
/// `out = clamp(residual + bias + conv(input, weight))` with `bounds` when given, and `mask`
/// (when given) 1 where `lo < out < hi`. An input with a map is made as it is read: each
/// block makes the input rows its tiles read in a scratch image, in cache.
#[allow(clippy::too_many_arguments)]
pub fn conv_forward(
    g: &ConvGeometry,
    input: Input<'_>,
    weight: &[f32],
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    bounds: Option<(f32, f32)>,
    out: &mut [f32],
    mask: Option<&mut [u8]>,
) {
    let outputs = Outputs::Plain {
        out,
        mask,
        bias,
        residual,
        bounds,
    };
    if g.window.rows.kernel == 3 {
        forward_with::<F43>(&Tiles::plain::<F43>(g), input, weight, outputs);
    } else {
        forward_with::<F22>(&Tiles::plain::<F22>(g), input, weight, outputs);
    }
}

/// Where a forward pass writes, for the whole batch.
enum Outputs<'a> {
    /// The fused op: the pooled output (`[n][tile][filters]`) and, when given, the winner of
    /// each window; biased and rectified before pooling.
    Pooled {
        out: &'a mut [f32],
        argmax: Option<&'a mut [u16]>,
        bias: Option<&'a [f32]>,
        relu: bool,
    },
    /// The plain convolution: its NHWC output, the activation's mask (when given), and what
    /// finishes each pixel: the bias, the residual (the output's shape) and the clamp.
    Plain {
        out: &'a mut [f32],
        mask: Option<&'a mut [u8]>,
        bias: Option<&'a [f32]>,
        residual: Option<&'a [f32]>,
        bounds: Option<(f32, f32)>,
    },
}

/// What one forward block writes: its share of [`Outputs`].
enum BlockOutputs<'a> {
    /// The pooled outputs and winners of the block's tiles, biased and rectified first.
    Pooled {
        out: &'a mut [f32],
        argmax: Option<&'a mut [u16]>,
        bias: Option<&'a [f32]>,
        relu: bool,
    },
    /// The block's output rows and their masks, and what finishes each pixel (the residual
    /// sliced to the block's rows).
    Plain {
        out: &'a mut [f32],
        mask: Option<&'a mut [u8]>,
        epilogue: Epilogue<'a>,
    },
}

/// The forward pass by the Winograd variant `V`: every block of tile rows of every image in
/// parallel, each by [`ForwardBlock`].
fn forward_with<V: Variant>(t: &Tiles, input: Input<'_>, weight: &[f32], outputs: Outputs<'_>) {
    let u = transform_weight::<V>(t, weight);
    let in_image = t.height * t.width * t.c_in;
    let run = |n: usize, block_idx: usize, out: BlockOutputs<'_>| {
        let image = &input.values[n * in_image..][..in_image];
        let ty0 = block_idx * t.rows_per_block;
        let mut scratch = Scratch::take();
        let mut mapped = std::mem::take(&mut scratch.mapped);
        let image = match input.map {
            None => image,
            Some(map) => {
                let tile_rows = ty0..ty0 + t.rows_per_block.min(t.rows - ty0);
                map_rows(t, (image, map), t.input_rows::<V>(tile_rows), &mut mapped)
            }
        };
        Arch::new().dispatch(ForwardBlock::<V> {
            variant: PhantomData,
            t,
            image,
            u: &u,
            ty0,
            out,
            scratch: &mut scratch,
        });
        scratch.mapped = mapped;
        scratch.give();
    };
    match outputs {
        Outputs::Pooled {
            out,
            argmax,
            bias,
            relu,
        } => {
            let row_len = t.cols * t.filters;
            let lens = (t.rows * row_len, t.rows_per_block * row_len);
            for_each_block(out, argmax, lens, |n, b, out, argmax| {
                let outputs = BlockOutputs::Pooled {
                    out,
                    argmax,
                    bias,
                    relu,
                };
                run(n, b, outputs)
            });
        }
        Outputs::Plain {
            out,
            mask,
            bias,
            residual,
            bounds,
        } => {
            let row_len = t.out.1 * t.filters;
            let lens = (t.out.0 * row_len, t.m * t.rows_per_block * row_len);
            for_each_block(out, mask, lens, |n, b, out, mask| {
                let at = n * lens.0 + b * lens.1;
                let epilogue = Epilogue {
                    bias,
                    residual: residual.map(|r| &r[at..][..out.len()]),
                    bounds,
                };
                let outputs = BlockOutputs::Plain {
                    out,
                    mask,
                    epilogue,
                };
                run(n, b, outputs)
            });
        }
    }
    buffers::give(u);
}

/// Runs `body(image, block, out, side)` on every block of every image in parallel: `out` and,
/// when given, `side` (winners or masks, one per output value) cut into images of
/// `image_len` values and those into blocks of `block_len` (the last block of an image may be
/// short).
fn for_each_block<T: Send>(
    out: &mut [f32],
    side: Option<&mut [T]>,
    (image_len, block_len): (usize, usize),
    body: impl Fn(usize, usize, &mut [f32], Option<&mut [T]>) + Sync + Send,
) {
    match side {
        Some(side) => out
            .par_chunks_mut(image_len)
            .zip(side.par_chunks_mut(image_len))
            .enumerate()
            .for_each(|(n, (o, s))| {
                o.par_chunks_mut(block_len)
                    .zip(s.par_chunks_mut(block_len))
                    .enumerate()
                    .for_each(|(b, (o, s))| body(n, b, o, Some(s)))
            }),
        None => out
            .par_chunks_mut(image_len)
            .enumerate()
            .for_each(|(n, o)| {
                o.par_chunks_mut(block_len)
                    .enumerate()
                    .for_each(|(b, o)| body(n, b, o, None))
            }),
    }
}

/// Gradients from the pooled output gradient and the recorded winners: adds into
/// `grad_weight` (`r² c_in x F`, HWIO), `grad_bias` and, when given, `grad_input`.
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
    let grad_out = GradOut::Pooled {
        grad: grad_out,
        argmax,
    };
    let grads = (grad_input, grad_weight, Some(grad_bias));
    let operands = (input.into(), weight, grad_out);
    if g.conv.window.rows.kernel == 3 {
        backward_with::<F23>(&g.conv, &Tiles::pooled::<F23>(g), operands, grads, false);
    } else {
        backward_with::<F22>(&g.conv, &Tiles::pooled::<F22>(g), operands, grads, false);
    }
}

/// Gradients of the plain convolution `g` (see [`applies_to_conv`]) from its output gradient
/// (already masked by the activation), as [`crate::backend::ops::conv_kernels::backward`]
/// computes them: adds into `grad_weight` (`r² c_in x F`, HWIO) and, when given,
/// `grad_bias` and `grad_input`.
pub fn conv_backward(
    g: &ConvGeometry,
    input: &[f32],
    weight: &[f32],
    grad_out: &[f32],
    grad_input: Option<&mut [f32]>,
    grad_weight: &mut [f32],
    grad_bias: Option<&mut [f32]>,
) {
    let grads = (grad_input, grad_weight, grad_bias);
    conv_backward_into(g, (input.into(), weight, grad_out), grads, false);
}

/// [`conv_backward`], the input gradient written over when `fresh` (each image's zeroed just
/// before its tiles are added into it: see `conv_kernels::backward_into`), of an [`Input`]
/// that may be made by a map (each image made in a scratch image, in cache).
pub(crate) fn conv_backward_into(
    g: &ConvGeometry,
    (input, weight, grad_out): (Input<'_>, &[f32], &[f32]),
    grads: Grads<'_>,
    fresh: bool,
) {
    let operands = (input, weight, GradOut::Plain(grad_out));
    if g.window.rows.kernel == 3 {
        backward_with::<F43>(g, &Tiles::plain::<F43>(g), operands, grads, fresh);
    } else {
        backward_with::<F22>(g, &Tiles::plain::<F22>(g), operands, grads, fresh);
    }
}

/// The gradient [`BackwardImage`] starts from: the whole batch's, or one image's.
#[derive(Clone, Copy)]
enum GradOut<'a> {
    /// The fused op's pooled gradient and the winner of each window (`[tile][filters]` each).
    Pooled { grad: &'a [f32], argmax: &'a [u16] },
    /// The plain convolution's output gradient (NHWC).
    Plain(&'a [f32]),
}

impl<'a> GradOut<'a> {
    /// Images `images` of a batch whose images each hold `len` gradients.
    fn images(self, images: std::ops::Range<usize>, len: usize) -> Self {
        let span = images.start * len..images.end * len;
        match self {
            Self::Pooled { grad, argmax } => Self::Pooled {
                grad: &grad[span.clone()],
                argmax: &argmax[span],
            },
            Self::Plain(grad) => Self::Plain(&grad[span]),
        }
    }
}

/// The gradients a backward pass adds into: the input's (when wanted), the weight's (HWIO)
/// and the bias's (when wanted).
type Grads<'a> = (Option<&'a mut [f32]>, &'a mut [f32], Option<&'a mut [f32]>);

/// The backward pass of the convolution `g` tiled as `t` by the Winograd variant `V`, run of
/// images by run of images in parallel (so scattered input gradients never race, and the
/// partial filter gradients meet in a fixed order); the operands are (input, weight, output
/// gradient).
fn backward_with<V: Variant>(
    g: &ConvGeometry,
    t: &Tiles,
    (input, weight, grad_out): (Input<'_>, &[f32], GradOut<'_>),
    (grad_input, grad_weight, grad_bias): Grads<'_>,
    fresh: bool,
) {
    let u_t = transform_weight_transposed::<V>(t, weight);
    let in_image = g.in_image();
    let grad_len = match grad_out {
        GradOut::Pooled { .. } => t.rows * t.cols * t.filters,
        GradOut::Plain(_) => g.out_image(),
    };
    let slots = g.image_slots(grad_input);
    // A run of images sums its transformed filter gradient and takes it back to the weights
    // once, before the runs' sums meet in a fixed tree, so that a batch's gradient is the exact
    // sum of its halves' (see `reduce`). An image at a time, taking `dU` (36 positions x
    // c_in x filters) through `G` cost as much as the products on 8x8 maps.
    add_gradients_in_runs(
        (slots, RUN),
        grad_weight,
        (grad_bias, t.filters),
        |start, mut run, dw, db| {
            let images = start..start + run.len();
            let mut scratch = Scratch::take();
            let mut mapped = std::mem::take(&mut scratch.mapped);
            let values = &input.values[images.start * in_image..images.end * in_image];
            let values = match input.map {
                None => values,
                Some(map) => {
                    let made = sized(&mut mapped, values.len());
                    map(values, made);
                    made
                }
            };
            for slot in &mut run {
                *slot = zeroed_if_fresh(slot.take(), fresh);
            }
            // Not zeroed: the run's first block of tiles overwrites it (zeroing it was 2% of
            // a `resnet_small` training step).
            let mut du_buffer = std::mem::take(&mut scratch.weight_grad);
            let du = sized(&mut du_buffer, V::XI * t.c_in * t.f_s);
            if t.rows == 0 {
                du.fill(0.0);
            }
            let grad_out = grad_out.images(images, grad_len);
            Arch::new().dispatch(BackwardRun::<V> {
                variant: PhantomData,
                t,
                ops: BackwardOperands {
                    images: values,
                    u_t: &u_t,
                    grad_out,
                    lens: (in_image, grad_len),
                },
                grad_images: &mut run,
                du,
                db,
                scratch: &mut scratch,
            });
            write_weight_gradient::<V>(t, du, dw);
            scratch.weight_grad = du_buffer;
            scratch.mapped = mapped;
            scratch.give();
        },
    );
    buffers::give(u_t);
}

/// The sizes the kernels need: the tiling of the output into `m x m` tiles (2x2, one per
/// pooling window, for the fused op; 4x4 covering every output pixel for the plain
/// convolution), the input and the blocks.
#[derive(Debug, Clone, Copy)]
struct Tiles {
    /// Tile rows and columns.
    rows: usize,
    cols: usize,
    /// Convolution output rows and columns: a tile writes only its pixels inside them (the
    /// last tile row or column of an odd plain convolution output holds one).
    out: (usize, usize),
    /// Input image rows and columns.
    height: usize,
    width: usize,
    /// Padding before the first row and column.
    pad: (usize, usize),
    c_in: usize,
    filters: usize,
    /// Channels and filters padded to whole vectors.
    c_s: usize,
    f_s: usize,
    /// Tile rows per block (the last block of an image may have fewer).
    rows_per_block: usize,
    /// The most tiles of a block: the backward pass puts whole images of a run in one block
    /// up to it.
    per_block: usize,
    /// Output rows and columns per tile.
    m: usize,
}

impl Tiles {
    /// `rows x cols` tiles of `V` on the convolution `g`, in blocks of [`TILES_PER_BLOCK`]
    /// tiles, or fewer for a variant with more than 16 positions (F(4x4, 3x3)'s 36), so that a
    /// block holds no more transformed values than 64 tiles of F(2x2, 3x3).
    fn new<V: Variant>(g: &ConvGeometry, (rows, cols): (usize, usize)) -> Self {
        let w = g.window;
        let per_block = TILES_PER_BLOCK * 16 / V::XI.max(16);
        let rows_per_block = (per_block / cols.max(1)).clamp(1, rows.max(1));
        Self {
            rows,
            cols,
            out: (w.rows.output, w.cols.output),
            height: w.rows.input,
            width: w.cols.input,
            pad: (w.rows.pad_before, w.cols.pad_before),
            c_in: g.c_in,
            filters: g.filters,
            c_s: padded(g.c_in),
            f_s: padded(g.filters),
            rows_per_block,
            per_block,
            m: V::M,
        }
    }

    /// The fused op's tiles: one per pooled output pixel (a conv row or column the pool
    /// drops gets none).
    fn pooled<V: Variant>(g: &ConvPoolGeometry) -> Self {
        Self::new::<V>(&g.conv, g.out_size())
    }

    /// The plain convolution's tiles of `V`: `ceil(out / m)` rows and columns.
    fn plain<V: Variant>(g: &ConvGeometry) -> Self {
        let w = g.window;
        let tiles = (w.rows.output.div_ceil(V::M), w.cols.output.div_ceil(V::M));
        Self::new::<V>(g, tiles)
    }

    /// Whole images in one block of the backward pass: as many as [`Tiles::per_block`] holds
    /// when an image's tiles fit in one block (4 tiles an image on 7x7 or 8x8 maps: the
    /// products that sum `dU` then reduce over 16 tiles, not 4), else 1 (blocks of tile rows of
    /// one image).
    fn images_per_block(&self) -> usize {
        match self.rows <= self.rows_per_block {
            true => (self.per_block / (self.rows * self.cols).max(1)).max(1),
            false => 1,
        }
    }

    /// Tiles in the block of tile rows starting at `ty0`.
    fn block_tiles(&self, ty0: usize) -> usize {
        self.rows_per_block.min(self.rows - ty0) * self.cols
    }

    /// Where the output pixels of tile `tile` of the block of tile rows starting at `ty0` lie
    /// in the plain convolution's output, counted from the block's first output row (`m ty0`).
    #[inline(always)]
    fn pixels(&self, ty0: usize, tile: usize) -> Pixels {
        let (ty, tx, m) = (ty0 + tile / self.cols, tile % self.cols, self.m);
        let row_step = self.out.1 * self.filters;
        Pixels {
            at: m * (ty - ty0) * row_step + m * tx * self.filters,
            row_step,
            col_step: self.filters,
            rows: (self.out.0 - m * ty).min(m),
            cols: (self.out.1 - m * tx).min(m),
        }
    }

    /// The image rows the tiles of tile rows `tile_rows` read (the others of their windows are
    /// padding).
    fn input_rows<V: Variant>(&self, tile_rows: std::ops::Range<usize>) -> std::ops::Range<usize> {
        let start = (tile_rows.start * self.m).saturating_sub(self.pad.0);
        let end = (tile_rows.end.saturating_sub(1) * self.m + V::ALPHA).saturating_sub(self.pad.0);
        start.min(self.height)..end.min(self.height)
    }

    /// Where the `α x α` input tile of tile `(ty, tx)` lies in its image, and which of its rows
    /// and columns lie inside it (the others are padding).
    #[inline(always)]
    fn window<V: Variant>(&self, ty: usize, tx: usize) -> Window {
        // The tile's first row and column, counted from `pad` before the image's.
        let (top, left) = (self.m * ty, self.m * tx);
        let inside = |first: usize, pad: usize, len: usize| {
            let start = pad.saturating_sub(first).min(V::ALPHA);
            let end = (len + pad).saturating_sub(first).clamp(start, V::ALPHA);
            (start, end)
        };
        let rows = inside(top, self.pad.0, self.height);
        let cols = inside(left, self.pad.1, self.width);
        // The first pixel inside (none when the tile lies wholly on padding).
        let first = (top + rows.0)
            .checked_sub(self.pad.0)
            .zip((left + cols.0).checked_sub(self.pad.1));
        let inside_at = |(y, x): (usize, usize)| (y * self.width + x) * self.c_in;
        let at = first
            .filter(|_| rows.0 < rows.1 && cols.0 < cols.1)
            .map_or(0, inside_at);
        Window {
            at,
            row_step: self.width * self.c_in,
            col_step: self.c_in,
            rows,
            cols,
        }
    }
}

/// Floats from one ξ's block of a `[ξ][tile][len_s]` matrix to the next: the block, plus one
/// cache line. Blocks of 64 tiles of 16, 32 or 64 values are whole multiples of 4 KiB, so
/// without the line the `α²` rows of one tile, which the transforms read or write together,
/// would all fall in one set of the L1 cache and evict each other.
fn xi_stride(n_tiles: usize, len_s: usize) -> usize {
    const LINE: usize = 64 / std::mem::size_of::<f32>();
    n_tiles * len_s + LINE
}

/// The chunks `(start, lanes)` of one vector each that cover `len_s` values.
fn chunks(len_s: usize, lanes: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..len_s)
        .step_by(lanes)
        .map(move |start| (start, (len_s - start).min(lanes)))
}

/// One image's block of tile rows `ty0..`: input transforms, the `α²` products, output
/// transforms and what finishes them (pooling, or the plain convolution's epilogue). Run
/// through [`pulp`], so the transforms use the widest vectors the CPU has and each tile stays
/// in registers.
struct ForwardBlock<'a, V> {
    variant: PhantomData<V>,
    t: &'a Tiles,
    image: &'a [f32],
    /// `U`.
    u: &'a [f32],
    ty0: usize,
    out: BlockOutputs<'a>,
    scratch: &'a mut Scratch,
}

impl<V: Variant> WithSimd for ForwardBlock<'_, V> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Self {
            variant: _,
            t,
            image,
            u,
            ty0,
            out,
            scratch,
        } = self;
        let n_tiles = t.block_tiles(ty0);
        let v = sized(&mut scratch.patches, n_tiles * V::XI * t.c_s);
        transform_inputs::<S, V>(simd, t, image, ty0, v);
        let m_stride = xi_stride(n_tiles, t.f_s);
        let m = sized(&mut scratch.block, V::XI * m_stride);
        for xi in 0..V::XI {
            let v_xi = Lhs::strided(&v[xi * t.c_s..], V::XI * t.c_s, 1);
            let u_xi = &u[xi * t.c_in * t.f_s..][..t.c_in * t.f_s];
            let m_xi = &mut m[xi * m_stride..][..n_tiles * t.f_s];
            small_gemm(n_tiles, t.f_s, t.c_in, v_xi, u_xi, m_xi, false);
        }
        match out {
            BlockOutputs::Pooled {
                out: pooled_block,
                mut argmax,
                bias,
                relu,
            } => {
                for tile in 0..n_tiles {
                    let pooled = &mut pooled_block[tile * t.filters..][..t.filters];
                    let mut arg = argmax
                        .as_deref_mut()
                        .map(|a| &mut a[tile * t.filters..][..t.filters]);
                    for (f0, width) in chunks(t.f_s, S::F32_LANES) {
                        let lanes = Lanes::new(f0, width, t.filters);
                        let outputs = (&mut *pooled, arg.as_deref_mut());
                        let place = (tile, m_stride, t.f_s);
                        output_tile::<S, V>(simd, m, place, lanes, bias, outputs, relu);
                    }
                }
            }
            BlockOutputs::Plain {
                out,
                mut mask,
                epilogue,
            } => {
                for tile in 0..n_tiles {
                    let pixels = t.pixels(ty0, tile);
                    for (f0, width) in chunks(t.f_s, S::F32_LANES) {
                        let lanes = Lanes::new(f0, width, t.filters);
                        let outputs = (&mut *out, mask.as_deref_mut());
                        let place = (tile, m_stride, t.f_s);
                        conv_output_tile::<S, V>(simd, m, place, lanes, pixels, epilogue, outputs);
                    }
                }
            }
        }
    }
}

/// What the backward pass of a run of images reads.
#[derive(Clone, Copy)]
struct BackwardOperands<'a> {
    /// The run's images, one after the other.
    images: &'a [f32],
    /// The transformed filter, transposed (`Uᵀ`).
    u_t: &'a [f32],
    /// The run's output gradient.
    grad_out: GradOut<'a>,
    /// The values of one image, and of its output gradient.
    lens: (usize, usize),
}

/// The gradients of a run of images: writes `du` (whatever it held), adds into `db`, and into
/// each image's input gradient when asked. Images of one block of tiles each go in blocks
/// of whole images ([`Tiles::images_per_block`]), larger images a block of tile rows at a
/// time. Run through [`pulp`] (see [`ForwardBlock`]).
struct BackwardRun<'a, 'g, V> {
    variant: PhantomData<V>,
    t: &'a Tiles,
    ops: BackwardOperands<'a>,
    grad_images: &'a mut [Option<&'g mut [f32]>],
    du: &'a mut [f32],
    db: &'a mut [f32],
    scratch: &'a mut Scratch,
}

impl<V: Variant> WithSimd for BackwardRun<'_, '_, V> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Self {
            variant: _,
            t,
            ops,
            grad_images,
            du,
            db,
            scratch,
        } = self;
        let (in_image, grad_len) = ops.lens;
        // (first image, images, first tile row) of each block.
        let run = grad_images.len();
        let per_block = t.images_per_block();
        let blocks: Vec<(usize, usize, usize)> = if per_block > 1 {
            (0..run)
                .step_by(per_block)
                .map(|i0| (i0, per_block.min(run - i0), 0))
                .collect()
        } else {
            (0..run)
                .flat_map(|i| {
                    (0..t.rows)
                        .step_by(t.rows_per_block)
                        .map(move |ty0| (i, 1, ty0))
                })
                .collect()
        };
        for (b, &(i0, images, ty0)) in blocks.iter().enumerate() {
            let image_tiles = t.block_tiles(ty0);
            let n_tiles = images * image_tiles;
            let tile_len = V::XI * t.c_s;
            let v = sized(&mut scratch.patches, n_tiles * tile_len);
            for (i, v) in v.chunks_exact_mut(image_tiles * tile_len).enumerate() {
                let image = &ops.images[(i0 + i) * in_image..][..in_image];
                transform_inputs::<S, V>(simd, t, image, ty0, v);
            }
            let dm_stride = xi_stride(n_tiles, t.f_s);
            let dm = sized(&mut scratch.block, V::XI * dm_stride);
            for i in 0..images {
                let first_tile = i * image_tiles;
                match ops.grad_out.images(i0 + i..i0 + i + 1, grad_len) {
                    GradOut::Pooled { grad, argmax } => {
                        let block_at = ty0 * t.cols * t.filters;
                        for tile in 0..image_tiles {
                            let at = block_at + tile * t.filters;
                            let pooled = (&grad[at..][..t.filters], &argmax[at..][..t.filters]);
                            for (f0, width) in chunks(t.f_s, S::F32_LANES) {
                                let lanes = Lanes::new(f0, width, t.filters);
                                let place = (first_tile + tile, dm_stride, t.f_s);
                                grad_tile::<S, V>(simd, pooled, lanes, db, dm, place);
                            }
                        }
                    }
                    GradOut::Plain(grad) => {
                        let block = &grad[t.m * ty0 * t.out.1 * t.filters..];
                        for tile in 0..image_tiles {
                            let pixels = t.pixels(ty0, tile);
                            for (f0, width) in chunks(t.f_s, S::F32_LANES) {
                                let lanes = Lanes::new(f0, width, t.filters);
                                let place = (first_tile + tile, dm_stride, t.f_s);
                                conv_grad_tile::<S, V>(simd, (block, pixels), lanes, db, dm, place);
                            }
                        }
                    }
                }
            }
            for xi in 0..V::XI {
                let v_xi_t = Lhs::strided(&v[xi * t.c_s..], 1, tile_len);
                let dm_xi = &dm[xi * dm_stride..][..n_tiles * t.f_s];
                // Row `c` of ξ's product goes to `dU[c][ξ]`. The run's first block overwrites
                // `du` (see `backward_with`), the others add.
                let du_xi = (&mut du[xi * t.f_s..], V::XI * t.f_s);
                small_gemm_into_rows(t.c_in, t.f_s, n_tiles, v_xi_t, dm_xi, du_xi, b > 0);
            }
            let wanted = &mut grad_images[i0..i0 + images];
            if wanted.iter().all(Option::is_none) {
                continue;
            }
            let dv_stride = xi_stride(n_tiles, t.c_s);
            let dv = sized(&mut scratch.grad_patches, V::XI * dv_stride);
            for xi in 0..V::XI {
                let dm_xi = Lhs::strided(&dm[xi * dm_stride..], t.f_s, 1);
                let u_t_xi = &ops.u_t[xi * t.filters * t.c_s..][..t.filters * t.c_s];
                let dv_xi = &mut dv[xi * dv_stride..][..n_tiles * t.c_s];
                small_gemm(n_tiles, t.c_s, t.filters, dm_xi, u_t_xi, dv_xi, false);
            }
            for (i, grad_image) in wanted.iter_mut().enumerate() {
                let Some(grad_image) = grad_image.as_deref_mut() else {
                    continue;
                };
                for tile in 0..image_tiles {
                    let window = t.window::<V>(ty0 + tile / t.cols, tile % t.cols);
                    for (c0, width) in chunks(t.c_s, S::F32_LANES) {
                        let lanes = Lanes::new(c0, width, t.c_in);
                        let place = (i * image_tiles + tile, dv_stride, t.c_s);
                        input_grad_tile::<S, V>(simd, dv, place, lanes, window, grad_image);
                    }
                }
            }
        }
    }
}

/// An image whose input `rows` are made by `map` of `image`'s, in `buffer` (an image's
/// length; its other rows hold whatever they held: the tiles that read the image read only
/// `rows`).
fn map_rows<'a>(
    t: &Tiles,
    (image, map): (&[f32], &RowMap<'_>),
    rows: std::ops::Range<usize>,
    buffer: &'a mut Vec<f32>,
) -> &'a [f32] {
    let row = t.width * t.c_in;
    let made = sized(buffer, image.len());
    let span = rows.start * row..rows.end * row;
    map(&image[span.clone()], &mut made[span]);
    made
}

/// `V` of the block of tile rows starting at `ty0`.
#[inline(always)]
fn transform_inputs<S: Simd, V: Variant>(
    simd: S,
    t: &Tiles,
    image: &[f32],
    ty0: usize,
    v: &mut [f32],
) {
    let tile_len = V::XI * t.c_s;
    for (tile, out) in v.chunks_exact_mut(tile_len).enumerate() {
        let window = t.window::<V>(ty0 + tile / t.cols, tile % t.cols);
        for (c0, width) in chunks(t.c_s, S::F32_LANES) {
            let lanes = Lanes::new(c0, width, t.c_in);
            input_tile::<S, V>(simd, image, window, lanes, out, t.c_s);
        }
    }
}

#[cfg(test)]
mod tests;
