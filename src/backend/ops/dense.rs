//! The differentiable fully connected op with checkpoint-layout weights `[units, in]`.

use crate::backend::ops::buffers;
use crate::backend::ops::lanes::{self, LaneKernel, Lanes};
use crate::backend::ops::matmul::{gemm, View};
use crate::backend::ops::profile;
use crate::backend::ops::reduce::fold_in_order;
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
pub fn dense<T: Tape<f32, Cpu>>(x: Flat<T>, params: &DenseParams) -> Flat<T> {
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
        let bias = bias.as_vec();
        out.chunks_exact_mut(units.max(1))
            .for_each(|row| row.copy_from_slice(&bias));
    }
    let dims = (batch, units, inputs);
    let (x_view, w_t) = (
        View::rows(&input, inputs),
        View::transposed(&weight, inputs),
    );
    gemm(&mut out, dims, x_view, w_t, params.bias.is_some(), threads);
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
        gemm(grad_input, (batch, inputs, units), go, w, true, threads);
        // dW (units x in) += dy^T (units x n) * x (n x in)
        let grad_weight: &mut [f32] = grads.get_or_alloc_mut(&weight_key)?;
        let go_t = View::transposed(&grad_out, units);
        gemm(
            grad_weight,
            (units, inputs, batch),
            go_t,
            View::rows(&input, inputs),
            true,
            threads,
        );
        if let Some(bias_key) = &bias_key {
            let grad_bias: &mut [f32] = grads.get_or_alloc_mut(bias_key)?;
            for row in grad_out.chunks_exact(units.max(1)) {
                grad_bias.iter_mut().zip(row).for_each(|(b, g)| *b += g);
            }
        }
        tape::release(grad_out);
        buffers::give(input);
        buffers::give(weight);
        Ok(())
    });
    out.put_tape(tape)
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
        return dense(x, &folded(params, scale, shift));
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
        return dense(x, &folded(params, scale, shift));
    }
    let _timer = profile::scope("dense.forward");
    let weight = buffers::read(&params.weight);
    let mut out = affine_product(input, (batch, inputs, units), &weight, scale, shift);
    if let Some(bias) = &params.bias {
        let bias = bias.as_vec();
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
    let mut acc = [l.splat(0.0); U];
    for (start, x) in (0..).step_by(period).zip(xs.chunks(period)) {
        for offset in (0..x.len()).step_by(L::N) {
            let m = l.mask((x.len() - offset).min(L::N));
            // SAFETY: the masked lanes `offset .. offset + len` lie within `x` (len is at most
            // what is left of it), within the pattern (`x` is at most one period long) and
            // within each weight slice at `start + offset` (as long as `xs`, checked above).
            let y = unsafe {
                let x = l.load(x.as_ptr().add(offset), m);
                let s = l.load(scales.as_ptr().add(offset), m);
                let t = l.load(shifts.as_ptr().add(offset), m);
                l.fma(x, s, t)
            };
            for (acc, w) in acc.iter_mut().zip(&ws) {
                // SAFETY: as above.
                let w = unsafe { l.load(w.as_ptr().add(start + offset), m) };
                *acc = l.fma(y, w, *acc);
            }
        }
    }
    acc.map(|v| {
        let mut lanes = [0.0f32; 16];
        // SAFETY: `lanes` holds 16 >= L::N values.
        unsafe { l.store(lanes.as_mut_ptr(), v, full) };
        lanes[..L::N].iter().sum()
    })
}

/// The weights and bias of `dense(x * scale + shift)` as one dense layer's: input feature
/// `i`'s weights times `scale[i % c]`, and the bias raised by `Σ w * shift`.
fn folded(params: &DenseParams, scale: &[f32], shift: &[f32]) -> DenseParams {
    let channels = scale.len().max(1);
    let (units, inputs) = *params.weight.shape();
    let mut weight = params.weight.as_vec();
    let mut bias = match &params.bias {
        Some(bias) => bias.as_vec(),
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
