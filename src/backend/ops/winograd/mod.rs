//! The fused 3x3 or 2x2 convolution (stride 1) and 2x2 max pool by Winograd's minimal
//! filtering F(2x2, 3x3) or F(2x2, 2x2), whose 2x2 output tiles are exactly the pooling
//! windows.
//!
//! Done directly, an `r x r` convolution costs `4 r²` multiplications per 2x2 output tile and
//! channel pair; in the Winograd domain it costs `(r + 1)²`: 16 instead of 36 for 3x3, 9
//! instead of 16 for 2x2 (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks",
//! CVPR 2016). An `α x α` input tile (`α = r + 1`) is transformed (`V = Bᵀ d B`), multiplied
//! position by position with the transformed filter (`U = G g Gᵀ`) and summed over the input
//! channels, which makes `α²` independent matrix products over all the tiles of a block, then
//! transformed back (`Y = Aᵀ M A`), biased, rectified and pooled. The transforms only add,
//! subtract and halve, so results agree with the direct product to float rounding.
//!
//! The backward pass runs the adjoint of each step in the same domain: the pooled gradient
//! becomes `dM = A dY Aᵀ`; the filter gradient gathers `dU += Vᵀ dM` and is brought back
//! through `G` once per batch; the input gradient is `dV = dM Uᵀ`, added into the overlapping
//! input tiles as `B dV Bᵀ`. All three products are cheaper than im2col's by the same factor.
//!
//! Layouts (`c_s`, `f_s`: channels and filters padded to whole vectors; ξ: one of the `α²`
//! positions of a transformed tile): `V` is `[tile][ξ][c_s]` (one tile's transform is one
//! contiguous write), `M` and `dM` are `[ξ][tile][f_s]`, `dV` is `[ξ][tile][c_s]`, `U` and `dU`
//! are `[ξ][c_in][f_s]` and `Uᵀ` is `[ξ][filters][c_s]`.

use crate::backend::ops::conv_kernels::{sized, Scratch};
use crate::backend::ops::conv_pool_kernels::ConvPoolGeometry;
use crate::backend::ops::reduce::{add_pairs, fold_in_order};
use crate::backend::ops::small_gemm::{padded, small_gemm, Lhs};
use pulp::{Arch, Simd, WithSimd};
use rayon::prelude::*;
use std::marker::PhantomData;
use transforms::{
    add_weight_gradient, grad_tile, input_grad_tile, input_tile, output_tile, transform_weight,
    transform_weight_transposed, Lanes, Variant, F22, F23,
};

mod transforms;

/// Input channels from which the Winograd products beat im2col. Measured on a 3x3 conv to 64
/// filters, batch 64, forward and backward (AMD EPYC, AVX-512): 19 % faster at 8 channels,
/// 38 % at 16, 42 % at 32; the seed's deep model (2x2 convs, 20 channels and filters) trains
/// 7 % and infers 11 % faster. Below 8 the products reduce over too few channels to keep the
/// multiply units busy (and such a layer reads its patches through offset tables instead).
pub const MIN_CHANNELS: usize = 8;
/// Slots of the 4x4 grid a tile is held in (an `α x α` tile fills its top-left corner).
const SLOTS: usize = 16;
/// Tiles per block (rounded to whole tile rows, at least one): the 16 products of a block run
/// over this many rows, and its transforms stay in L2.
const TILES_PER_BLOCK: usize = 64;

/// Whether the fused op of `g` runs here: a 3x3 or 2x2 convolution with stride 1 on at least
/// [`MIN_CHANNELS`] channels, pooled 2x2.
pub fn applies(g: &ConvPoolGeometry) -> bool {
    let w = g.conv.window;
    matches!((w.rows.kernel, w.cols.kernel), (3, 3) | (2, 2))
        && (w.rows.stride, w.cols.stride) == (1, 1)
        && g.pool == (2, 2)
        && g.conv.c_in >= MIN_CHANNELS
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
    if g.conv.window.rows.kernel == 3 {
        forward_with::<F23>(g, input, weight, bias, out, argmax);
    } else {
        forward_with::<F22>(g, input, weight, bias, out, argmax);
    }
}

/// [`forward`] by the Winograd variant `V`.
fn forward_with<V: Variant>(
    g: &ConvPoolGeometry,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
    argmax: Option<&mut [u16]>,
) {
    let tiles = Tiles::new(g);
    let u = transform_weight::<V>(&tiles, weight);
    let block_len = tiles.rows_per_block * tiles.cols * tiles.filters;
    let body =
        |n: usize, block_idx: usize, out_block: &mut [f32], arg_block: Option<&mut [u16]>| {
            let image = &input[n * g.conv.in_image()..][..g.conv.in_image()];
            let mut scratch = Scratch::take();
            Arch::new().dispatch(ForwardBlock::<V> {
                variant: PhantomData,
                t: &tiles,
                image,
                u: &u,
                bias,
                ty0: block_idx * tiles.rows_per_block,
                out_block,
                arg_block,
                scratch: &mut scratch,
            });
            scratch.give();
        };
    // Images, then blocks of tile rows within each (the last block of an image may be short).
    let image_len = g.out_image();
    match argmax {
        Some(argmax) => out
            .par_chunks_mut(image_len)
            .zip(argmax.par_chunks_mut(image_len))
            .enumerate()
            .for_each(|(n, (o, a))| {
                o.par_chunks_mut(block_len)
                    .zip(a.par_chunks_mut(block_len))
                    .enumerate()
                    .for_each(|(b, (o, a))| body(n, b, o, Some(a)))
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
    let operands = (input, weight, grad_out, argmax);
    if g.conv.window.rows.kernel == 3 {
        backward_with::<F23>(g, operands, grad_input, grad_weight, grad_bias);
    } else {
        backward_with::<F22>(g, operands, grad_input, grad_weight, grad_bias);
    }
}

/// [`backward`] by the Winograd variant `V`; the operands are (input, weight, pooled
/// gradient, winners).
fn backward_with<V: Variant>(
    g: &ConvPoolGeometry,
    (input, weight, grad_out, argmax): (&[f32], &[f32], &[f32], &[u16]),
    grad_input: Option<&mut [f32]>,
    grad_weight: &mut [f32],
    grad_bias: &mut [f32],
) {
    let tiles = Tiles::new(g);
    let u_t = transform_weight_transposed::<V>(&tiles, weight);
    let slots = g.conv.image_slots(grad_input);
    let zero = || {
        let du = vec![0.0f32; V::XI * tiles.c_in * tiles.f_s];
        (du, vec![0.0f32; tiles.filters])
    };
    let (du, db) = fold_in_order(
        slots,
        zero,
        |(mut du, mut db), n, grad_image| {
            let image = &input[n * g.conv.in_image()..][..g.conv.in_image()];
            let pooled = g.out_image();
            let operands = BackwardOperands {
                image,
                u_t: &u_t,
                grad_out: &grad_out[n * pooled..][..pooled],
                argmax: &argmax[n * pooled..][..pooled],
            };
            let mut scratch = Scratch::take();
            Arch::new().dispatch(BackwardImage::<V> {
                variant: PhantomData,
                t: &tiles,
                ops: operands,
                grad_image,
                du: &mut du,
                db: &mut db,
                scratch: &mut scratch,
            });
            scratch.give();
            (du, db)
        },
        add_pairs,
    );
    add_weight_gradient::<V>(&tiles, &du, grad_weight);
    grad_bias.iter_mut().zip(&db).for_each(|(a, b)| *a += b);
}

/// The sizes the kernels need, one tile per pooled output pixel.
#[derive(Debug, Clone, Copy)]
struct Tiles {
    /// Tile rows and columns (the pooled output's).
    rows: usize,
    cols: usize,
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
    /// Rectify before pooling.
    relu: bool,
}

impl Tiles {
    fn new(g: &ConvPoolGeometry) -> Self {
        let (rows, cols) = g.out_size();
        let w = g.conv.window;
        let rows_per_block = (TILES_PER_BLOCK / cols.max(1)).clamp(1, rows.max(1));
        Self {
            rows,
            cols,
            height: w.rows.input,
            width: w.cols.input,
            pad: (w.rows.pad_before, w.cols.pad_before),
            c_in: g.conv.c_in,
            filters: g.conv.filters,
            c_s: padded(g.conv.c_in),
            f_s: padded(g.conv.filters),
            rows_per_block,
            relu: g.relu,
        }
    }

    /// Tiles in the block of tile rows starting at `ty0`.
    fn block_tiles(&self, ty0: usize) -> usize {
        self.rows_per_block.min(self.rows - ty0) * self.cols
    }

    /// Where each pixel of the `α x α` input tile of tile `(ty, tx)` starts in its image, by
    /// slot (`4 i + j`), or `None` where the tile lies on padding or the slot is unused.
    #[inline(always)]
    fn taps<V: Variant>(&self, ty: usize, tx: usize) -> [Option<usize>; SLOTS] {
        let mut taps = [None; SLOTS];
        for i in 0..V::ALPHA {
            let Some(y) = (2 * ty + i).checked_sub(self.pad.0) else {
                continue;
            };
            for j in 0..V::ALPHA {
                let Some(x) = (2 * tx + j).checked_sub(self.pad.1) else {
                    continue;
                };
                if y < self.height && x < self.width {
                    taps[i * 4 + j] = Some((y * self.width + x) * self.c_in);
                }
            }
        }
        taps
    }
}

/// The chunks `(start, lanes)` of one vector each that cover `len_s` values.
fn chunks(len_s: usize, lanes: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..len_s)
        .step_by(lanes)
        .map(move |start| (start, (len_s - start).min(lanes)))
}

/// One image's block of tile rows `ty0..`: input transforms, the 16 products, output
/// transforms and pooling. Run through [`pulp`], so the transforms use the widest vectors the
/// CPU has and each tile stays in registers.
struct ForwardBlock<'a, V> {
    variant: PhantomData<V>,
    t: &'a Tiles,
    image: &'a [f32],
    /// `U`.
    u: &'a [f32],
    bias: Option<&'a [f32]>,
    ty0: usize,
    out_block: &'a mut [f32],
    arg_block: Option<&'a mut [u16]>,
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
            bias,
            ty0,
            out_block,
            mut arg_block,
            scratch,
        } = self;
        let n_tiles = t.block_tiles(ty0);
        let v = sized(&mut scratch.patches, n_tiles * V::XI * t.c_s);
        transform_inputs::<S, V>(simd, t, image, ty0, v);
        let m = sized(&mut scratch.block, V::XI * n_tiles * t.f_s);
        for xi in 0..V::XI {
            let v_xi = Lhs::strided(&v[xi * t.c_s..], V::XI * t.c_s, 1);
            let u_xi = &u[xi * t.c_in * t.f_s..][..t.c_in * t.f_s];
            let m_xi = &mut m[xi * n_tiles * t.f_s..][..n_tiles * t.f_s];
            small_gemm(n_tiles, t.f_s, t.c_in, v_xi, u_xi, m_xi, false);
        }
        for tile in 0..n_tiles {
            let pooled = &mut out_block[tile * t.filters..][..t.filters];
            let mut arg = arg_block
                .as_deref_mut()
                .map(|a| &mut a[tile * t.filters..][..t.filters]);
            for (f0, width) in chunks(t.f_s, S::F32_LANES) {
                let lanes = Lanes::new(f0, width, t.filters);
                let outputs = (&mut *pooled, arg.as_deref_mut());
                output_tile::<S, V>(
                    simd,
                    m,
                    (tile, n_tiles, t.f_s),
                    lanes,
                    bias,
                    outputs,
                    t.relu,
                );
            }
        }
    }
}

/// What the backward pass of one image reads.
#[derive(Clone, Copy)]
struct BackwardOperands<'a> {
    image: &'a [f32],
    /// The transformed filter, transposed (`Uᵀ`).
    u_t: &'a [f32],
    /// The image's pooled gradient and winners.
    grad_out: &'a [f32],
    argmax: &'a [u16],
}

/// The gradients of one image: adds into `du` and `db`, and into its input gradient when
/// asked. Run through [`pulp`] (see [`ForwardBlock`]).
struct BackwardImage<'a, V> {
    variant: PhantomData<V>,
    t: &'a Tiles,
    ops: BackwardOperands<'a>,
    grad_image: Option<&'a mut [f32]>,
    du: &'a mut [f32],
    db: &'a mut [f32],
    scratch: &'a mut Scratch,
}

impl<V: Variant> WithSimd for BackwardImage<'_, V> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Self {
            variant: _,
            t,
            ops,
            mut grad_image,
            du,
            db,
            scratch,
        } = self;
        for ty0 in (0..t.rows).step_by(t.rows_per_block) {
            let n_tiles = t.block_tiles(ty0);
            let v = sized(&mut scratch.patches, n_tiles * V::XI * t.c_s);
            transform_inputs::<S, V>(simd, t, ops.image, ty0, v);
            let dm = sized(&mut scratch.block, V::XI * n_tiles * t.f_s);
            let block_at = ty0 * t.cols * t.filters;
            for tile in 0..n_tiles {
                let at = block_at + tile * t.filters;
                let pooled = (
                    &ops.grad_out[at..][..t.filters],
                    &ops.argmax[at..][..t.filters],
                );
                for (f0, width) in chunks(t.f_s, S::F32_LANES) {
                    let lanes = Lanes::new(f0, width, t.filters);
                    grad_tile::<S, V>(simd, pooled, lanes, db, dm, (tile, n_tiles, t.f_s));
                }
            }
            for xi in 0..V::XI {
                let v_xi_t = Lhs::strided(&v[xi * t.c_s..], 1, V::XI * t.c_s);
                let dm_xi = &dm[xi * n_tiles * t.f_s..][..n_tiles * t.f_s];
                let du_xi = &mut du[xi * t.c_in * t.f_s..][..t.c_in * t.f_s];
                small_gemm(t.c_in, t.f_s, n_tiles, v_xi_t, dm_xi, du_xi, true);
            }
            let Some(grad_image) = grad_image.as_deref_mut() else {
                continue;
            };
            let dv = sized(&mut scratch.grad_patches, V::XI * n_tiles * t.c_s);
            for xi in 0..V::XI {
                let dm_xi = Lhs::strided(&dm[xi * n_tiles * t.f_s..], t.f_s, 1);
                let u_t_xi = &ops.u_t[xi * t.filters * t.c_s..][..t.filters * t.c_s];
                let dv_xi = &mut dv[xi * n_tiles * t.c_s..][..n_tiles * t.c_s];
                small_gemm(n_tiles, t.c_s, t.filters, dm_xi, u_t_xi, dv_xi, false);
            }
            for tile in 0..n_tiles {
                let taps = t.taps::<V>(ty0 + tile / t.cols, tile % t.cols);
                for (c0, width) in chunks(t.c_s, S::F32_LANES) {
                    let lanes = Lanes::new(c0, width, t.c_in);
                    let place = (tile, n_tiles, t.c_s);
                    input_grad_tile::<S, V>(simd, dv, place, lanes, &taps, grad_image);
                }
            }
        }
    }
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
        let taps = t.taps::<V>(ty0 + tile / t.cols, tile % t.cols);
        for (c0, width) in chunks(t.c_s, S::F32_LANES) {
            let lanes = Lanes::new(c0, width, t.c_in);
            input_tile::<S, V>(simd, image, &taps, lanes, out, t.c_s);
        }
    }
}

#[cfg(test)]
mod tests;
