//! The differentiable fully connected op with checkpoint-layout weights `[units, in]`.

use crate::backend::ops::buffers;
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
    let (units, weight_inputs) = *params.weight.shape();
    let channels = scale.len().max(1);
    assert!(
        inputs == weight_inputs && inputs % channels == 0 && shift.len() == scale.len(),
        "dense weight does not match its input"
    );
    if units > STREAMING_UNITS {
        return dense(x, &folded(params, scale, shift));
    }
    let _timer = profile::scope("dense.forward");
    let device = x.device().clone();
    let input = buffers::read(&x);
    drop(x);
    let weight = buffers::read(&params.weight);
    let mut out = affine_product(&input, (batch, inputs, units), &weight, scale, shift);
    if let Some(bias) = &params.bias {
        let bias = bias.as_vec();
        for row in out.chunks_exact_mut(units.max(1)) {
            row.iter_mut().zip(&bias).for_each(|(o, b)| *o += b);
        }
    }
    buffers::give(input);
    buffers::give(weight);
    device.tensor_from_vec(out, (batch, units))
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
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512vl+avx512bw+avx512dq+avx2+fma",
    "x86_64+avx2+fma"
))]
fn affine_task(
    input: &[f32],
    weight: &[f32],
    (batch, inputs, units): (usize, usize, usize),
    (scales, shifts): (&[f32], &[f32]),
    range: std::ops::Range<usize>,
    acc: &mut [f32],
) {
    for n in 0..batch {
        let xs = &input[n * inputs + range.start..n * inputs + range.end];
        for u in 0..units {
            let ws = &weight[u * inputs + range.start..u * inputs + range.end];
            acc[n * units + u] += affine_dot(xs, ws, scales, shifts);
        }
    }
}

/// `Σ (x * scale + shift) * w` over one slice, `scales` and `shifts` one period of the
/// per-feature pattern (a multiple of 16 long, starting at the slice's first feature).
#[inline(always)]
fn affine_dot(xs: &[f32], ws: &[f32], scales: &[f32], shifts: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let period = scales.len();
    let mut tail = 0.0f32;
    for (x, w) in xs.chunks(period).zip(ws.chunks(period)) {
        let mut blocks = x.chunks_exact(16).zip(w.chunks_exact(16));
        let patterns = scales.chunks_exact(16).zip(shifts.chunks_exact(16));
        for ((x, w), (s, t)) in (&mut blocks).zip(patterns) {
            for k in 0..16 {
                acc[k] += (x[k] * s[k] + t[k]) * w[k];
            }
        }
        // A short last period: its whole vectors ran above, the rest one by one.
        let done = x.len() - x.len() % 16;
        let rest = x[done..].iter().zip(&w[done..]);
        for ((x, w), (s, t)) in rest.zip(scales[done..].iter().zip(&shifts[done..])) {
            tail += (x * s + t) * w;
        }
    }
    acc.iter().sum::<f32>() + tail
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
