//! The differentiable fully connected op with checkpoint-layout weights `[units, in]`.

use crate::backend::ops::buffers;
use crate::backend::ops::lanes::{self, LaneKernel, Lanes};
use crate::backend::ops::matmul::{gemm, gemm_by_rows, View};
use crate::backend::ops::profile;
use crate::backend::ops::reduce::{batch_tree, fold_in_order, run_program, tree_program, TreeStep};
use crate::backend::ops::tape;
use crate::backend::ops::{Flat, Vector};
use dfdx::shapes::HasShape;
use dfdx::tensor::{Cpu, NoneTape, PutTape, SplitTape, Tape, Tensor, TensorFromVec};

/// The parameters of one dense layer.
#[derive(Debug, Clone)]
pub struct DenseParams {
    /// Weights `(units, in)`, the checkpoint layout (rows are units).
    pub weight: Tensor<(usize, usize), f32, Cpu>,
    /// One bias per unit, if the layer has one.
    pub bias: Option<Vector>,
}

/// `x W^T + b`: `(n, in)` to `(n, units)`.
///
/// # Panics
/// When `in` does not match the weight (the compiler infers both from the same shapes).
pub fn dense<T: Tape<f32, Cpu>>(x: Flat<T>, params: &DenseParams, row_stable: bool) -> Flat<T> {
    let _timer = profile::scope("dense.forward");
    let (batch, inputs) = *x.shape();
    let (units, weight_inputs) = *params.weight.shape();
    assert_eq!(
        inputs, weight_inputs,
        "dense weight does not match its input"
    );
    let threads = rayon::current_num_threads();
    let (x, mut tape) = x.split_tape();
    let device = x.device().clone();
    let x_ghost = x.ghost();
    let input = buffers::read(&x);
    drop(x);
    let weight = buffers::read(&params.weight);
    let mut out = vec![0.0; batch * units];
    if let Some(bias) = &params.bias {
        let bias = buffers::to_vec(bias);
        out.chunks_exact_mut(units.max(1))
            .for_each(|row| row.copy_from_slice(&bias));
    }
    let (dims, accumulate) = ((batch, units, inputs), params.bias.is_some());
    let x_view = View::rows(&input, inputs);
    if T::OWNS_TAPE || row_stable {
        // The weights transposed into rows, so that each image's row keeps its bits whatever
        // the batch size (see `gemm_by_rows`): a data-parallel rank, or a core given a share
        // of the batch (`backend::split`), computes what one pass over the whole batch does
        // for its images.
        let w_t = transpose(&weight, units, inputs);
        let w_view = View::rows(&w_t, units);
        gemm_by_rows(&mut out, dims, x_view, w_view, accumulate, threads);
        buffers::give(w_t);
    } else {
        // An inference pass that is never split: no copy of the weights (the transpose cost
        // a small model's inference, `mnist_mlp`, a sixth of its time).
        let w_view = View::transposed(&weight, inputs);
        gemm(&mut out, dims, x_view, w_view, accumulate, threads);
    }
    let out = device.tensor_from_vec(out, (batch, units));
    if !T::OWNS_TAPE {
        buffers::give(input);
        buffers::give(weight);
        return out.put_tape(tape);
    }
    let out_ghost = out.ghost();
    let (weight_key, bias_key) = (params.weight.clone(), params.bias.clone());
    tape.add_backward_op(move |grads| {
        let _timer = profile::scope("dense.backward");
        let grad_out = tape::take(grads.get_or_alloc_mut(&out_ghost)?);
        let go = View::rows(&grad_out, units);
        // dx (n x in) += dy (n x units) * W (units x in)
        let grad_input: &mut [f32] = grads.get_or_alloc_mut(&x_ghost)?;
        let w = View::rows(&weight, inputs);
        gemm_by_rows(grad_input, (batch, inputs, units), go, w, true, threads);
        // dW (units x in) += dy^T (units x n) * x (n x in), the images summed in a tree
        let grad_weight: &mut [f32] = grads.get_or_alloc_mut(&weight_key)?;
        add_weight_gradient(grad_weight, &grad_out, &input, (batch, inputs, units));
        if let Some(bias_key) = &bias_key {
            let grad_bias: &mut [f32] = grads.get_or_alloc_mut(bias_key)?;
            let mut sum = vec![0.0f32; units];
            batch_tree(0..batch, &mut sum, &|n, out| {
                out.copy_from_slice(&grad_out[n * units..][..units]);
            });
            grad_bias.iter_mut().zip(&sum).for_each(|(b, g)| *b += g);
        }
        tape::release(grad_out);
        buffers::give(input);
        buffers::give(weight);
        Ok(())
    });
    out.put_tape(tape)
}

/// `matrix` (`rows x cols`, row-major) transposed (by the `transpose` crate: its blocked
/// loops took less than half the time of a plain tiled loop on the weights of
/// `mobilenetv2_small`'s pointwise layers, which every backward pass transposes).
///
/// # Panics
/// When `matrix` holds fewer than `rows x cols` values.
pub(crate) fn transpose(matrix: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = buffers::take(rows * cols);
    transpose::transpose(&matrix[..rows * cols], &mut out, cols, rows);
    out
}

/// Input features per block of [`add_weight_gradient`].
const FEATURE_BLOCK: usize = 64;
/// Images whose products [`unit_block_tree`] adds in registers (a [`TreeStep::Leaf`]).
const GROUP: usize = 4;
/// Units per parallel task of [`add_weight_gradient`].
const UNITS_PER_TASK: usize = 8;

/// `grad_weight (units x inputs) += dyᵀ x`, with each image's outer product summed over the
/// batch in `reduce`'s tree rather than inside one matrix product over the batch: a batch's
/// gradient is then the exact sum of its halves', as a data-parallel run adds them. The tree
/// runs once per unit and block of [`FEATURE_BLOCK`] features, its partial sums on a short
/// stack in cache, so the images' products cost no more memory traffic than a matrix product.
fn add_weight_gradient(
    grad_weight: &mut [f32],
    grad_out: &[f32],
    input: &[f32],
    (batch, inputs, units): (usize, usize, usize),
) {
    use rayon::prelude::*;
    let (program, depth) = tree_program(0..batch, GROUP);
    if program.is_empty() || inputs == 0 {
        return;
    }
    // x by blocks of features (`[block][image][feature]`, zero past `inputs`), dy by units.
    let blocks = inputs.div_ceil(FEATURE_BLOCK);
    let mut packed = vec![[0.0f32; FEATURE_BLOCK]; blocks * batch];
    for (n, row) in input.chunks_exact(inputs).enumerate().take(batch) {
        for (b, features) in row.chunks(FEATURE_BLOCK).enumerate() {
            packed[b * batch + n][..features.len()].copy_from_slice(features);
        }
    }
    let mut dy_t = vec![0.0f32; units * batch];
    for (n, row) in grad_out.chunks_exact(units.max(1)).enumerate().take(batch) {
        for (u, &d) in row.iter().enumerate() {
            dy_t[u * batch + n] = d;
        }
    }
    grad_weight
        .par_chunks_mut(UNITS_PER_TASK * inputs)
        .enumerate()
        .for_each(|(task, rows)| {
            let mut stack = vec![[0.0f32; FEATURE_BLOCK]; depth];
            for (b, x) in packed.chunks_exact(batch).enumerate() {
                let start = b * FEATURE_BLOCK;
                let len = FEATURE_BLOCK.min(inputs - start);
                for (i, row) in rows.chunks_exact_mut(inputs).enumerate() {
                    let u = task * UNITS_PER_TASK + i;
                    let dy = &dy_t[u * batch..(u + 1) * batch];
                    let dst = &mut row[start..start + len];
                    unit_block_tree(&program, &mut stack, x, dy, dst);
                }
            }
        });
}

/// One unit's row of [`add_weight_gradient`] over one block of features: `dst += Σ dy[n] x[n]`
/// over the images in the tree `program` gives.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512vl+avx512bw+avx512dq+avx2+fma",
    "x86_64+avx2+fma"
))]
fn unit_block_tree(
    program: &[TreeStep],
    stack: &mut [[f32; FEATURE_BLOCK]],
    x: &[[f32; FEATURE_BLOCK]],
    dy: &[f32],
    dst: &mut [f32],
) {
    let leaf = |stack: &mut [[f32; FEATURE_BLOCK]], slot: usize, start: usize, len: usize| {
        // The group's products in the tree's order: the first ⌈len/2⌉, then the rest.
        let d = &dy[start..start + len];
        let x = &x[start..start + len];
        let sum = &mut stack[slot];
        match len {
            1 => sum.iter_mut().zip(&x[0]).for_each(|(s, a)| *s = d[0] * a),
            2 => {
                for (j, s) in sum.iter_mut().enumerate() {
                    *s = d[0] * x[0][j] + d[1] * x[1][j];
                }
            }
            3 => {
                for (j, s) in sum.iter_mut().enumerate() {
                    *s = (d[0] * x[0][j] + d[1] * x[1][j]) + d[2] * x[2][j];
                }
            }
            _ => {
                for (j, s) in sum.iter_mut().enumerate() {
                    *s = (d[0] * x[0][j] + d[1] * x[1][j]) + (d[2] * x[2][j] + d[3] * x[3][j]);
                }
            }
        }
    };
    let add = |stack: &mut [[f32; FEATURE_BLOCK]], lower: usize| {
        let (below, above) = stack.split_at_mut(lower + 1);
        let sum = &mut below[lower];
        sum.iter_mut().zip(&above[0]).for_each(|(a, b)| *a += b);
    };
    run_program(program, stack, leaf, add);
    dst.iter_mut().zip(&stack[0]).for_each(|(d, s)| *d += s);
}

/// Units up to which [`dense_of_affine`] runs its streaming kernel; wider layers fold the
/// affine map into a copy of the weights and run [`dense`] (a product worth the copy).
pub(crate) const STREAMING_UNITS: usize = 8;
/// Input features per task of the streaming kernel (a multiple of any pattern's period is
/// taken): the image's slice stays in L1 while each group of units reads it.
const FEATURES_PER_TASK: usize = 8192;

/// In inference: `dense(x * scale + shift)`, the per-channel affine map (an inference-mode
/// batch norm) applied on the fly. `x` is `(n, in)` with the channel cycling fastest (a
/// pixel-major flatten of `scale.len()` channels). With few units, one pass streams `x` once
/// and never materialises the normalised input or scaled weights: the memory-bound case of a
/// linear model on raw images.
///
/// # Panics
/// When `in` does not match the weight or is not a whole number of pixels (the compiler infers
/// all three from the same shapes).
pub fn dense_of_affine(
    x: Flat<NoneTape>,
    params: &DenseParams,
    scale: &[f32],
    shift: &[f32],
) -> Flat<NoneTape> {
    let (batch, inputs) = *x.shape();
    let device = x.device().clone();
    if params.weight.shape().0 > STREAMING_UNITS {
        check_affine_shapes(inputs, params, scale, shift);
        // Row-stable, as a pass that may be split needs (rare: a wide layer on the input).
        return dense(x, &folded(params, scale, shift), true);
    }
    let input = buffers::read(&x);
    drop(x);
    let out = dense_of_affine_values(&input, (batch, inputs), params, scale, shift, &device);
    buffers::give(input);
    out
}

/// [`dense_of_affine`] on borrowed input values `(batch, inputs)` (the model's input, read in
/// place): with few units, the one pass over `input` is the only read of it.
///
/// # Panics
/// When `input` does not hold `batch * inputs` values, or as [`dense_of_affine`].
pub fn dense_of_affine_values(
    input: &[f32],
    (batch, inputs): (usize, usize),
    params: &DenseParams,
    scale: &[f32],
    shift: &[f32],
    device: &Cpu,
) -> Flat<NoneTape> {
    check_affine_shapes(inputs, params, scale, shift);
    assert_eq!(input.len(), batch * inputs, "input of the wrong length");
    let units = params.weight.shape().0;
    if units > STREAMING_UNITS {
        let x = device.tensor_from_vec(input.to_vec(), (batch, inputs));
        return dense(x, &folded(params, scale, shift), true);
    }
    let _timer = profile::scope("dense.forward");
    let weight = buffers::read(&params.weight);
    let mut out = affine_product(input, (batch, inputs, units), &weight, scale, shift);
    if let Some(bias) = &params.bias {
        let bias = buffers::to_vec(bias);
        for row in out.chunks_exact_mut(units.max(1)) {
            row.iter_mut().zip(&bias).for_each(|(o, b)| *o += b);
        }
    }
    buffers::give(weight);
    device.tensor_from_vec(out, (batch, units))
}

/// Checks that `dense(x * scale + shift)` on `inputs` features matches its parameters.
fn check_affine_shapes(inputs: usize, params: &DenseParams, scale: &[f32], shift: &[f32]) {
    let weight_inputs = params.weight.shape().1;
    let channels = scale.len().max(1);
    assert!(
        inputs == weight_inputs && inputs.is_multiple_of(channels) && shift.len() == scale.len(),
        "dense weight does not match its input"
    );
}

/// Features per task of [`affine_product`] and its backward: a multiple of the pattern period
/// of `channels` channels (16 pixels), near [`FEATURES_PER_TASK`].
pub(crate) fn task_features(channels: usize) -> usize {
    let period = 16 * channels.max(1);
    FEATURES_PER_TASK.div_ceil(period) * period
}

/// A per-channel vector repeated over 16 pixels: one period of whole vectors and whole pixels.
pub(crate) fn period_pattern(values: &[f32]) -> Vec<f32> {
    let channels = values.len().max(1);
    (0..16 * channels)
        .map(|i| values.get(i % channels).copied().unwrap_or(0.0))
        .collect()
}

/// `(x * scale + shift) W^T` without bias for `x` of `(batch, inputs)` (channel cycling
/// fastest over `scale.len()` channels) and `W` of `(units, inputs)`: tasks over slices of
/// features, each image's slice read once per unit from L1, partial sums added in order.
pub(crate) fn affine_product(
    input: &[f32],
    (batch, inputs, units): (usize, usize, usize),
    weight: &[f32],
    scale: &[f32],
    shift: &[f32],
) -> Vec<f32> {
    let (scales, shifts) = (period_pattern(scale), period_pattern(shift));
    let task_len = task_features(scale.len());
    let starts: Vec<usize> = (0..inputs).step_by(task_len).collect();
    fold_in_order(
        starts,
        || vec![0.0f32; batch * units],
        |mut acc, _, start| {
            let end = (start + task_len).min(inputs);
            let patterns = (scales.as_slice(), shifts.as_slice());
            affine_task(
                input,
                weight,
                (batch, inputs, units),
                patterns,
                start..end,
                &mut acc,
            );
            acc
        },
        |mut a, b| {
            a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
            a
        },
    )
}

/// [`affine_product`]'s sums over the features `range`, added into `acc` (`batch x units`).
fn affine_task(
    input: &[f32],
    weight: &[f32],
    (batch, inputs, units): (usize, usize, usize),
    patterns: (&[f32], &[f32]),
    range: std::ops::Range<usize>,
    acc: &mut [f32],
) {
    lanes::dispatch(AffineTask {
        input,
        weight,
        dims: (batch, inputs, units),
        patterns,
        range,
        acc,
    });
}

/// One task of [`affine_product`] as a vector kernel: each image's slice of features is read
/// once for up to four units at a time, its normalised values `x * scale + shift` computed
/// once for all of them (a fused multiply-add), and one vector accumulator kept per unit.
struct AffineTask<'a> {
    input: &'a [f32],
    weight: &'a [f32],
    dims: (usize, usize, usize),
    /// One period of the per-feature scale and shift (16 pixels: a multiple of 16 long),
    /// starting at the range's first feature.
    patterns: (&'a [f32], &'a [f32]),
    range: std::ops::Range<usize>,
    acc: &'a mut [f32],
}

impl LaneKernel for AffineTask<'_> {
    type Output = ();

    #[inline(always)]
    fn run<L: Lanes>(self, l: L) {
        let Self {
            input,
            weight,
            dims: (batch, inputs, units),
            patterns,
            range,
            acc,
        } = self;
        for (n, sums) in acc.chunks_exact_mut(units.max(1)).enumerate().take(batch) {
            let xs = &input[n * inputs + range.start..n * inputs + range.end];
            let ws = |u: usize| &weight[u * inputs + range.start..u * inputs + range.end];
            for (group, sums) in sums.chunks_mut(4).enumerate() {
                let u = 4 * group;
                match *sums {
                    [ref mut a] => {
                        let [d] = affine_dots(l, xs, [ws(u)], patterns);
                        *a += d;
                    }
                    [ref mut a, ref mut b] => {
                        let [d, e] = affine_dots(l, xs, [ws(u), ws(u + 1)], patterns);
                        (*a, *b) = (*a + d, *b + e);
                    }
                    [ref mut a, ref mut b, ref mut c] => {
                        let three = [ws(u), ws(u + 1), ws(u + 2)];
                        let [d, e, f] = affine_dots(l, xs, three, patterns);
                        (*a, *b, *c) = (*a + d, *b + e, *c + f);
                    }
                    _ => {
                        let four = [ws(u), ws(u + 1), ws(u + 2), ws(u + 3)];
                        let dots: [f32; 4] = affine_dots(l, xs, four, patterns);
                        sums.iter_mut().zip(dots).for_each(|(s, d)| *s += d);
                    }
                }
            }
        }
    }
}

/// `Σ (x * scale + shift) * w` over one slice `xs` for each of `U` weight slices of its
/// length; `scales` and `shifts` are one period of the per-feature pattern (a multiple of 16
/// long, starting at the slice's first feature). A short last vector is masked.
///
/// # Panics
/// When a weight slice's length differs from `xs`'s, or the pattern's is not a multiple of 16.
#[inline(always)]
fn affine_dots<L: Lanes, const U: usize>(
    l: L,
    xs: &[f32],
    ws: [&[f32]; U],
    (scales, shifts): (&[f32], &[f32]),
) -> [f32; U] {
    let period = scales.len();
    assert!(
        period > 0 && period.is_multiple_of(16) && shifts.len() == period,
        "a pattern period is a positive multiple of 16"
    );
    assert!(
        ws.iter().all(|w| w.len() == xs.len()),
        "weights of the wrong length"
    );
    let full = l.mask(L::N);
    // Four accumulators per unit, taking whole vectors in turn: one chain of dependent
    // multiply-adds per unit would wait on the add's latency at every vector.
    let mut acc = [[l.splat(0.0); U]; 4];
    let dots = AffineDots {
        l,
        xs,
        ws,
        patterns: (scales, shifts),
    };
    // The next vector's offset within the pattern: `period` is a multiple of the vector width,
    // so no vector straddles two periods.
    let mut at = 0;
    let whole = xs.len() / L::N;
    let mut v = 0;
    while v + 4 <= whole {
        for (j, acc) in acc.iter_mut().enumerate() {
            dots.step(acc, (v + j) * L::N, at, full);
            at += L::N;
            if at == period {
                at = 0;
            }
        }
        v += 4;
    }
    for (j, acc) in acc.iter_mut().enumerate().take(whole - v) {
        dots.step(acc, (v + j) * L::N, at, full);
        at += L::N;
        if at == period {
            at = 0;
        }
    }
    let rest = xs.len() - whole * L::N;
    if rest > 0 {
        dots.step(&mut acc[whole % 4], whole * L::N, at, l.mask(rest));
    }
    let [a, b, c, d] = acc;
    // A plain loop: a closure (`array::from_fn`'s) is compiled outside the caller's target
    // features, which turns each vector add into a call.
    let mut dots = [0.0f32; U];
    for (u, dot) in dots.iter_mut().enumerate() {
        let v = l.add(l.add(a[u], b[u]), l.add(c[u], d[u]));
        let mut lanes = [0.0f32; 16];
        // SAFETY: `lanes` holds 16 >= L::N values.
        unsafe { l.store(lanes.as_mut_ptr(), v, full) };
        *dot = lanes[..L::N].iter().sum();
    }
    dots
}

/// What [`affine_dots`] reads: one image's features, the units' weights over them and the
/// scale and shift patterns.
struct AffineDots<'a, L: Lanes, const U: usize> {
    l: L,
    xs: &'a [f32],
    ws: [&'a [f32]; U],
    patterns: (&'a [f32], &'a [f32]),
}

impl<L: Lanes, const U: usize> AffineDots<'_, L, U> {
    /// Adds the vector of features at `offset` (pattern offset `at`, lanes `m`), normalised,
    /// times each unit's weights, into `acc`.
    #[inline(always)]
    fn step(&self, acc: &mut [L::V; U], offset: usize, at: usize, m: L::M) {
        let l = self.l;
        let (scales, shifts) = self.patterns;
        // SAFETY: the masked lanes `offset .. offset + len` lie within `xs` (the caller's mask
        // covers at most what is left of it), within each weight slice (as long as `xs`,
        // checked by `affine_dots`) and within the pattern at `at` (`at + len <= period`).
        let y = unsafe {
            let x = l.load(self.xs.as_ptr().add(offset), m);
            let s = l.load(scales.as_ptr().add(at), m);
            let t = l.load(shifts.as_ptr().add(at), m);
            l.fma(x, s, t)
        };
        for (acc, w) in acc.iter_mut().zip(&self.ws) {
            // SAFETY: as above.
            let w = unsafe { l.load(w.as_ptr().add(offset), m) };
            *acc = l.fma(y, w, *acc);
        }
    }
}

/// The weights and bias of `dense(x * scale + shift)` as one dense layer's: input feature
/// `i`'s weights times `scale[i % c]`, and the bias raised by `Σ w * shift`.
fn folded(params: &DenseParams, scale: &[f32], shift: &[f32]) -> DenseParams {
    let channels = scale.len().max(1);
    let (units, inputs) = *params.weight.shape();
    let mut weight = buffers::to_vec(&params.weight);
    let mut bias = match &params.bias {
        Some(bias) => buffers::to_vec(bias),
        None => vec![0.0; units],
    };
    for (row, b) in weight.chunks_exact_mut(inputs.max(1)).zip(&mut bias) {
        let mut raised = f64::from(*b);
        for pixel in row.chunks_exact_mut(channels) {
            for ((w, s), t) in pixel.iter_mut().zip(scale).zip(shift) {
                raised += f64::from(*w) * f64::from(*t);
                *w *= s;
            }
        }
        *b = raised as f32;
    }
    let device = params.weight.device().clone();
    DenseParams {
        weight: device.tensor_from_vec(weight, (units, inputs)),
        bias: Some(device.tensor_from_vec(bias, (units,))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::ops::lanes::{force, Kind};

    #[test]
    fn transposes_any_shape() {
        for (rows, cols) in [(1, 1), (3, 17), (17, 3), (64, 384), (145, 23)] {
            let matrix: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
            let t = transpose(&matrix, rows, cols);
            assert_eq!(t.len(), rows * cols);
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(t[c * rows + r], matrix[r * cols + c], "{rows}x{cols}");
                }
            }
        }
    }

    /// `Σ (x * scale + shift) * w` in f64, feature by feature.
    fn reference(
        input: &[f32],
        (batch, inputs, units): (usize, usize, usize),
        weight: &[f32],
        scale: &[f32],
        shift: &[f32],
    ) -> Vec<f64> {
        let c = scale.len();
        let mut out = vec![0.0f64; batch * units];
        for n in 0..batch {
            for u in 0..units {
                out[n * units + u] = (0..inputs)
                    .map(|i| {
                        let x = f64::from(input[n * inputs + i]);
                        let y = x * f64::from(scale[i % c]) + f64::from(shift[i % c]);
                        y * f64::from(weight[u * inputs + i])
                    })
                    .sum();
            }
        }
        out
    }

    /// Deterministic values in `[-1, 1)`.
    fn values(len: usize, seed: usize) -> Vec<f32> {
        (0..len)
            .map(|i| (((i * 7919 + seed * 104_729) % 2001) as f32 / 1000.0) - 1.0)
            .collect()
    }

    #[test]
    fn the_affine_product_equals_a_plain_sum_on_every_vector_kind() {
        // Features: below one vector, not whole periods, and several tasks with a short last
        // one; every unit count the kernel groups (1 to 4, and 5 to 8 as a group of 4 and more).
        let cases = [
            (2, 5, 1),
            (3, 7 * 3, 3),
            (2, 1000 * 3, 3),
            (1, 9000, 1),
            (2, 20_000 * 3, 3),
        ];
        let _kinds = lanes::kind_lock();
        for kind in [None, Some(Kind::Avx2), Some(Kind::Scalar)] {
            force(kind);
            for (case, &(batch, inputs, channels)) in cases.iter().enumerate() {
                for units in 1..=8 {
                    let input = values(batch * inputs, case);
                    let weight = values(units * inputs, case + 11);
                    let scale: Vec<f32> =
                        values(channels, case + 3).iter().map(|v| v + 1.5).collect();
                    let shift = values(channels, case + 5);
                    let dims = (batch, inputs, units);
                    let got = affine_product(&input, dims, &weight, &scale, &shift);
                    let want = reference(&input, dims, &weight, &scale, &shift);
                    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                        let tolerance = 1e-5 * (inputs as f64).sqrt() * (1.0 + w.abs());
                        assert!(
                            (f64::from(*g) - w).abs() <= tolerance,
                            "{kind:?} case {case} units {units}: [{i}] {g} vs {w}"
                        );
                    }
                }
            }
            force(None);
        }
    }
}
