//! The weight gradient of a pointwise (1x1) convolution on small images, `Σ_n x_nᵀ dy_n`,
//! each image's product summed over the batch in `reduce`'s tree.
//!
//! On a 4x4 or 8x8 image each value of an image's `K x F` product sums only 16 or 64 pixels,
//! so a general matrix product per image spends more on packing its operands and writing its
//! output than on the arithmetic (a 4x4 projection's weight gradient took about twice its
//! forward pass). Here a tile of the gradient, a few input channels by one or two vectors of
//! filters, is summed in registers straight from the image rows (`x` is pixels by channels,
//! `dy` pixels by filters, as the batch holds them), and the tree's partial sums of that tile
//! stay on a short stack in L1. Each value is `Σ_p x[p][r]·dy[p][c]` over the image's pixels in
//! order, one fused multiply-add a pixel from zero, whatever the tiling or the thread count.

use crate::backend::ops::lanes::{self, LaneKernel, Lanes};
use crate::backend::ops::reduce::{self, run_program, TreeStep};
use rayon::prelude::*;

/// Input channels per parallel task (and per register tile on 16-lane vectors).
const ROWS: usize = 8;
/// Vectors of filters in a register tile.
const VECTORS: usize = 2;

/// Images up to this many pixels take [`add_weight_gradient`]; larger ones sum enough pixels
/// per value for the matrix product to pay.
pub(crate) const MAX_PIXELS: usize = 1024;

/// `grad_weight (k x f) += Σ_n x_nᵀ dy_n` over the `batch` images of `input` (`pixels x k`
/// each) and `grad_out` (`pixels x f` each) in `reduce`'s tree, and `grad_bias (f) += Σ_n
/// Σ_p dy_n[p]` likewise when given.
///
/// # Panics
/// When a slice is shorter than its shape says.
pub(crate) fn add_weight_gradient(
    (input, grad_out): (&[f32], &[f32]),
    (batch, pixels, k, f): (usize, usize, usize, usize),
    grad_weight: &mut [f32],
    grad_bias: Option<&mut [f32]>,
) {
    assert!(input.len() >= batch * pixels * k, "input too short");
    assert!(
        grad_out.len() >= batch * pixels * f,
        "output gradient too short"
    );
    assert!(grad_weight.len() >= k * f, "weight gradient too short");
    if let Some(grad_bias) = grad_bias {
        assert!(grad_bias.len() >= f, "bias gradient too short");
        let mut sum = vec![0.0f32; f];
        reduce::batch_tree(0..batch, &mut sum, &|n, out: &mut [f32]| {
            out.fill(0.0);
            for px in grad_out[n * pixels * f..][..pixels * f].chunks_exact(f) {
                out.iter_mut().zip(px).for_each(|(d, v)| *d += v);
            }
        });
        grad_bias[..f]
            .iter_mut()
            .zip(&sum)
            .for_each(|(a, b)| *a += b);
    }
    if batch == 0 || k == 0 || f == 0 {
        return;
    }
    let (program, depth) = reduce::tree_program(0..batch, 1);
    grad_weight[..k * f]
        .par_chunks_mut(ROWS * f)
        .enumerate()
        .for_each(|(block, dst)| {
            lanes::dispatch(RowBlock {
                program: &program,
                depth,
                input,
                grad_out,
                dims: (pixels, k, f),
                r0: block * ROWS,
                dst,
            });
        });
}

/// One block of at most [`ROWS`] input channels of the gradient, every filter.
struct RowBlock<'a> {
    program: &'a [TreeStep],
    /// The most partial sums the program keeps at once.
    depth: usize,
    input: &'a [f32],
    grad_out: &'a [f32],
    /// Pixels an image, input channels, filters.
    dims: (usize, usize, usize),
    /// The block's first input channel.
    r0: usize,
    /// The gradient's rows `r0..`, `f` values each, added into.
    dst: &'a mut [f32],
}

impl LaneKernel for RowBlock<'_> {
    type Output = ();

    #[inline(always)]
    fn run<L: Lanes>(mut self, l: L) {
        let f = self.dims.2;
        let rows = self.dst.len() / f;
        // The program's partial sums of the widest tile.
        let mut stack = vec![0.0f32; self.depth.max(1) * ROWS * VECTORS * L::N];
        let stack = &mut stack[..];
        // Sixteen accumulators fill half of AVX-512's registers; narrower vectors have half
        // as many registers.
        let tile_rows = if L::N >= 16 { ROWS } else { ROWS / 2 };
        for c0 in (0..f).step_by(VECTORS * L::N) {
            let width = (f - c0).min(VECTORS * L::N);
            let (full, part) = (l.mask(L::N), l.mask((width - 1) % L::N + 1));
            let mut r = 0;
            while r < rows {
                let whole = rows - r >= tile_rows;
                let at = (r, c0);
                // SAFETY: the row and column ranges lie within the shapes `add_weight_gradient`
                // checked, and the masks cover only the columns below `f`.
                unsafe {
                    match (whole, width > L::N) {
                        (true, true) if L::N >= 16 => {
                            self.tile::<L, ROWS, 2>(l, at, [full, part], stack);
                        }
                        (true, true) => self.tile::<L, { ROWS / 2 }, 2>(l, at, [full, part], stack),
                        (true, false) if L::N >= 16 => {
                            self.tile::<L, ROWS, 1>(l, at, [part], stack);
                        }
                        (true, false) => self.tile::<L, { ROWS / 2 }, 1>(l, at, [part], stack),
                        (false, true) => self.tile::<L, 1, 2>(l, at, [full, part], stack),
                        (false, false) => self.tile::<L, 1, 1>(l, at, [part], stack),
                    }
                }
                r += if whole { tile_rows } else { 1 };
            }
        }
    }
}

impl RowBlock<'_> {
    /// Rows `r..r + R` of the block by the `V` vectors of filters from `c0` (`masks` their
    /// lanes): the tree over the images on `stack` (at least `depth` tiles of `R` by `V`
    /// vectors), then added into `dst`.
    ///
    /// # Safety
    /// `r + R` must be at most the block's rows, and the masked lanes from `c0` must lie below
    /// the filter count.
    #[inline(always)]
    unsafe fn tile<L: Lanes, const R: usize, const V: usize>(
        &mut self,
        l: L,
        (r, c0): (usize, usize),
        masks: [L::M; V],
        stack: &mut [f32],
    ) {
        let (pixels, k, f) = self.dims;
        let width = V * L::N;
        let tile_len = R * width;
        let all = l.mask(L::N);
        let (input, grad_out, r0) = (self.input, self.grad_out, self.r0);
        let leaf = |stack: &mut [f32], slot: usize, n: usize, len: usize| {
            debug_assert_eq!(len, 1, "one image a leaf");
            let x = input[n * pixels * k + r0 + r..].as_ptr();
            let g = grad_out[n * pixels * f + c0..].as_ptr();
            let mut acc = [[l.splat(0.0); V]; R];
            for p in 0..pixels {
                // SAFETY: pixel `p` of image `n` holds channels `r0 + r..+R` and the masked
                // filters from `c0` (the caller's contract).
                let gv: [L::V; V] =
                    std::array::from_fn(|v| unsafe { l.load(g.add(p * f + v * L::N), masks[v]) });
                for (i, acc) in acc.iter_mut().enumerate() {
                    // SAFETY: as above.
                    let xs = l.splat(unsafe { *x.add(p * k + i) });
                    for v in 0..V {
                        acc[v] = l.fma(xs, gv[v], acc[v]);
                    }
                }
            }
            let s = stack[slot * tile_len..][..tile_len].as_mut_ptr();
            for (i, acc) in acc.iter().enumerate() {
                for (v, &value) in acc.iter().enumerate() {
                    // SAFETY: `s` holds `R` rows of `V` whole vectors.
                    unsafe { l.store(s.add(i * width + v * L::N), value, all) };
                }
            }
        };
        let add = |stack: &mut [f32], lower: usize| {
            let (below, above) = stack.split_at_mut((lower + 1) * tile_len);
            let (sum, upper) = (below[lower * tile_len..].as_mut_ptr(), above.as_ptr());
            for i in (0..tile_len).step_by(L::N) {
                // SAFETY: both tiles hold `tile_len` values, whole vectors.
                unsafe {
                    let value = l.add(l.load(sum.add(i), all), l.load(upper.add(i), all));
                    l.store(sum.add(i), value, all);
                }
            }
        };
        run_program(self.program, stack, leaf, add);
        let dst = self.dst.as_mut_ptr();
        let sum = stack[..tile_len].as_ptr();
        for i in 0..R {
            for (v, &mask) in masks.iter().enumerate() {
                // SAFETY: row `r + i` of the block and the masked filters from `c0` lie within
                // `dst`; the stack's first tile holds the sum.
                unsafe {
                    let at = dst.add((r + i) * f + c0 + v * L::N);
                    let value = l.add(l.load(at, mask), l.load(sum.add(i * width + v * L::N), all));
                    l.store(at, value, mask);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::ops::lanes::{force, kind_lock, Kind};
    use crate::backend::ops::test_values::uniform as values;

    /// `(batch, pixels, k, f)`: rows past whole tiles of 8 and 4 channels, filters below one
    /// vector, between one and two, and past whole tiles; one-pixel, 4x4 and 8x8 images; odd
    /// batches (uneven trees).
    const CASES: [(usize, usize, usize, usize); 6] = [
        (1, 1, 1, 1),
        (3, 16, 13, 7),
        (5, 16, 16, 33),
        (2, 64, 24, 100),
        (7, 4, 9, 17),
        (4, 1, 40, 64),
    ];

    /// The gradients, added to 0.25 (weight) and -0.5 (bias).
    fn run((batch, pixels, k, f): (usize, usize, usize, usize), seed: u64) -> (Vec<f32>, Vec<f32>) {
        let input = values(batch * pixels * k, seed);
        let grad_out = values(batch * pixels * f, seed + 1);
        let mut dw = vec![0.25f32; k * f];
        let mut db = vec![-0.5f32; f];
        add_weight_gradient(
            (&input, &grad_out),
            (batch, pixels, k, f),
            &mut dw,
            Some(&mut db),
        );
        (dw, db)
    }

    #[test]
    fn every_vector_kind_sums_the_products() {
        let _kinds = kind_lock();
        for (case, &dims) in CASES.iter().enumerate() {
            let (batch, pixels, k, f) = dims;
            let seed = 10 * case as u64;
            let input = values(batch * pixels * k, seed);
            let grad_out = values(batch * pixels * f, seed + 1);
            let (widest, widest_bias) = run(dims, seed);
            for kind in [Kind::Avx2, Kind::Scalar] {
                force(Some(kind));
                let (dw, db) = run(dims, seed);
                force(None);
                if kind == Kind::Avx2 {
                    // Both fuse each multiply-add: the same bits.
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(
                        bits(&dw),
                        bits(&widest),
                        "{dims:?}: AVX2 against the widest"
                    );
                }
                assert_eq!(db, widest_bias, "{dims:?} {kind:?}: bias");
                for (i, got) in dw.iter().enumerate() {
                    let (r, c) = (i / f, i % f);
                    let want: f64 = 0.25
                        + (0..batch * pixels)
                            .map(|p| f64::from(input[p * k + r]) * f64::from(grad_out[p * f + c]))
                            .sum::<f64>();
                    let close = (f64::from(*got) - want).abs() <= 1e-5 * (1.0 + want.abs());
                    assert!(close, "{dims:?} {kind:?}: [{r}][{c}] {got} against {want}");
                }
            }
            for (c, got) in widest_bias.iter().enumerate() {
                let want: f64 = -0.5
                    + (0..batch * pixels)
                        .map(|p| f64::from(grad_out[p * f + c]))
                        .sum::<f64>();
                assert!((f64::from(*got) - want).abs() <= 1e-5 * (1.0 + want.abs()));
            }
        }
    }

    /// A batch's sums are its tree halves' sums added, bit for bit: a data-parallel rank's
    /// share of a batch is a subtree.
    #[test]
    fn a_batch_is_the_sum_of_its_halves() {
        let _kinds = kind_lock();
        for (case, &(batch, pixels, k, f)) in CASES.iter().enumerate().filter(|(_, c)| c.0 > 1) {
            let seed = 10 * case as u64;
            let input = values(batch * pixels * k, seed);
            let grad_out = values(batch * pixels * f, seed + 1);
            let (whole, whole_bias) = run((batch, pixels, k, f), seed);
            let cut = batch.div_ceil(2);
            let half = |images: std::ops::Range<usize>| {
                let mut dw = vec![0.0f32; k * f];
                let mut db = vec![0.0f32; f];
                add_weight_gradient(
                    (
                        &input[images.start * pixels * k..images.end * pixels * k],
                        &grad_out[images.start * pixels * f..images.end * pixels * f],
                    ),
                    (images.len(), pixels, k, f),
                    &mut dw,
                    Some(&mut db),
                );
                (dw, db)
            };
            let ((left, left_bias), (right, right_bias)) = (half(0..cut), half(cut..batch));
            let added = |start: f32, a: &[f32], b: &[f32]| -> Vec<u32> {
                a.iter()
                    .zip(b)
                    .map(|(a, b)| (start + (a + b)).to_bits())
                    .collect()
            };
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&whole),
                added(0.25, &left, &right),
                "case {case}: weight"
            );
            assert_eq!(
                bits(&whole_bias),
                added(-0.5, &left_bias, &right_bias),
                "case {case}: bias"
            );
        }
    }
}
