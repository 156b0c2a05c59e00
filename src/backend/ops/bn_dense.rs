//! `dense(flatten(batch_norm(x)))` as one differentiable op, for a batch norm on the model's
//! input (no input gradient) read by a pixel-major flatten and a dense layer of few units:
//! a linear model on raw images, the memory-bound case. Forward reads the input for the
//! batch statistics and once more for the product, normalising on the fly; backward reads it
//! once for every gradient (dense weights and bias, γ and β). The normalised image is never
//! written.

use crate::backend::ops::batch_norm::{
    affine, statistics, Affine, BatchNormConfig, BatchNormParams,
};
use crate::backend::ops::buffers;
use crate::backend::ops::dense::{affine_product, period_pattern, task_features, DenseParams};
use crate::backend::ops::profile;
use crate::backend::ops::reduce::fold_in_order;
use crate::backend::ops::tape;
use crate::backend::ops::{Flat, Image};
use dfdx::shapes::HasShape;
use dfdx::tensor::{Cpu, PutTape, SplitTape, Tape, TensorFromVec};

/// Whether [`batch_norm_dense`] takes a dense layer of `units` units.
pub fn fits(units: usize) -> bool {
    (1..=crate::backend::ops::dense::STREAMING_UNITS).contains(&units)
}

/// `dense(flatten(batch_norm(x)))` for `x` of `(n, h, w, c)`, flattened pixel by pixel;
/// `cfg.input_grad` must be false and its activation linear (checked by the caller).
///
/// # Panics
/// When the dense weight does not match `h * w * c` inputs or has more units than [`fits`]
/// takes (the executor checks both).
pub fn batch_norm_dense<T: Tape<f32, Cpu>>(
    x: Image<T>,
    bn: &mut BatchNormParams,
    cfg: &BatchNormConfig,
    dense: &DenseParams,
) -> Flat<T> {
    let _timer = profile::scope("batch_norm_dense.forward");
    let (batch, h, w, channels) = *x.shape();
    let inputs = h * w * channels;
    let (units, weight_inputs) = *dense.weight.shape();
    assert!(
        weight_inputs == inputs && fits(units) && !cfg.input_grad,
        "batch_norm_dense takes a first-layer batch norm and a narrow dense layer"
    );
    let (x, mut tape) = x.split_tape();
    let device = x.device().clone();
    let input = buffers::read(&x);
    drop(x);
    let (mean, variance) = statistics(&input, batch * h * w, bn, cfg);
    let Affine {
        inv_std,
        scale,
        shift,
    } = affine(bn, &mean, &variance, cfg.eps);
    let weight = buffers::read(&dense.weight);
    let dims = (batch, inputs, units);
    let mut out = affine_product(&input, dims, &weight, &scale, &shift);
    let bias = dense.bias.as_ref().map(|b| b.as_vec());
    if let Some(bias) = &bias {
        for row in out.chunks_exact_mut(units) {
            row.iter_mut().zip(bias).for_each(|(o, b)| *o += b);
        }
    }
    let out = device.tensor_from_vec(out, (batch, units));
    if !T::OWNS_TAPE {
        buffers::give(input);
        buffers::give(weight);
        return out.put_tape(tape);
    }
    let out_ghost = out.ghost();
    let keys = (
        bn.gamma.clone(),
        bn.beta.clone(),
        dense.weight.clone(),
        dense.bias.clone(),
    );
    tape.add_backward_op(move |grads| {
        let _timer = profile::scope("batch_norm_dense.backward");
        let (gamma_key, beta_key, weight_key, bias_key) = &keys;
        let grad_out = tape::take(grads.get_or_alloc_mut(&out_ghost)?);
        let normalise = Normalise {
            mean: period_pattern(&mean),
            inv_std: period_pattern(&inv_std),
            scale: period_pattern(&scale),
            shift: period_pattern(&shift),
        };
        let gradients = backward(&input, &weight, &grad_out, dims, &normalise);
        // γ and β: fold the per-position sums of one period onto the channels.
        let mut grad_gamma = vec![0.0f32; channels];
        let mut grad_beta = vec![0.0f32; channels];
        for (k, (g, b)) in gradients.gamma.iter().zip(&gradients.beta).enumerate() {
            grad_gamma[k % channels] += *g as f32;
            grad_beta[k % channels] += *b as f32;
        }
        tape::add_into(grads.get_or_alloc_mut(weight_key)?, &gradients.weight);
        if let Some(bias_key) = bias_key {
            let mut grad_bias = vec![0.0f32; units];
            for row in grad_out.chunks_exact(units) {
                grad_bias.iter_mut().zip(row).for_each(|(d, g)| *d += g);
            }
            tape::add_into(grads.get_or_alloc_mut(bias_key)?, &grad_bias);
        }
        tape::add_into(grads.get_or_alloc_mut(gamma_key)?, &grad_gamma);
        tape::add_into(grads.get_or_alloc_mut(beta_key)?, &grad_beta);
        tape::release(grad_out);
        buffers::give(input);
        buffers::give(weight);
        Ok(())
    });
    out.put_tape(tape)
}

/// Per-channel constants of the normalisation, each repeated over one period (16 pixels).
struct Normalise {
    mean: Vec<f32>,
    inv_std: Vec<f32>,
    scale: Vec<f32>,
    shift: Vec<f32>,
}

/// The op's gradients: the dense weights (`units x inputs`), and γ and β by position in a
/// period (folded onto channels by the caller).
struct Gradients {
    weight: Vec<f32>,
    gamma: Vec<f64>,
    beta: Vec<f64>,
}

/// One pass over the input: with `y = x * scale + shift` (the dense layer's input) and
/// `g = dy W` (its gradient), `dW += dyᵀ y`, `dγ += Σ g x̂`, `dβ += Σ g`. Tasks over slices of
/// features own their slice of `dW`; the γ and β sums are added in task order.
fn backward(
    input: &[f32],
    weight: &[f32],
    grad_out: &[f32],
    (batch, inputs, units): (usize, usize, usize),
    k: &Normalise,
) -> Gradients {
    let period = k.scale.len();
    let task_len = task_features(period / 16);
    let starts: Vec<usize> = (0..inputs).step_by(task_len).collect();
    let tasks = starts.len();
    let zero = || (Vec::new(), vec![0.0f64; period], vec![0.0f64; period]);
    // Each task's weight-gradient slice, in task order.
    let (slices, gamma, beta) = fold_in_order(
        starts,
        zero,
        |(mut slices, mut gamma, mut beta): (Vec<(usize, Vec<f32>)>, _, _), _, start| {
            let end = (start + task_len).min(inputs);
            let operands = (input, weight, grad_out);
            let (dw, sums) = backward_task(operands, (batch, inputs, units), k, start..end);
            gamma
                .iter_mut()
                .zip(&sums.0)
                .for_each(|(a, b)| *a += f64::from(*b));
            beta.iter_mut()
                .zip(&sums.1)
                .for_each(|(a, b)| *a += f64::from(*b));
            slices.push((start, dw));
            (slices, gamma, beta)
        },
        |(mut slices, mut gamma, mut beta), (more, gamma2, beta2)| {
            slices.extend(more);
            gamma.iter_mut().zip(&gamma2).for_each(|(a, b)| *a += b);
            beta.iter_mut().zip(&beta2).for_each(|(a, b)| *a += b);
            (slices, gamma, beta)
        },
    );
    debug_assert_eq!(slices.len(), tasks);
    let mut grad_weight = vec![0.0f32; units * inputs];
    for (start, dw) in slices {
        let len = dw.len() / units.max(1);
        for u in 0..units {
            grad_weight[u * inputs + start..][..len].copy_from_slice(&dw[u * len..][..len]);
        }
    }
    Gradients {
        weight: grad_weight,
        gamma,
        beta,
    }
}

/// Per-position sums of one period: (`Σ g x̂`, `Σ g`).
type PeriodSums = (Vec<f32>, Vec<f32>);

/// The backward pass over the features `range` of every image: that slice of `dW`
/// (`units x range.len()`) and the task's γ and β sums by position in the period.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512vl+avx512bw+avx512dq+avx2+fma",
    "x86_64+avx2+fma"
))]
fn backward_task(
    (input, weight, grad_out): (&[f32], &[f32], &[f32]),
    (batch, inputs, units): (usize, usize, usize),
    k: &Normalise,
    range: std::ops::Range<usize>,
) -> (Vec<f32>, PeriodSums) {
    let period = k.scale.len();
    let len = range.len();
    let mut dw = vec![0.0f32; units * len];
    let mut g = vec![0.0f32; len];
    let mut sums = (vec![0.0f32; period], vec![0.0f32; period]);
    for n in 0..batch {
        let xs = &input[n * inputs + range.start..n * inputs + range.end];
        let dy = &grad_out[n * units..(n + 1) * units];
        g.fill(0.0);
        for (u, &d) in dy.iter().enumerate() {
            let ws = &weight[u * inputs + range.start..u * inputs + range.end];
            let dw_u = &mut dw[u * len..(u + 1) * len];
            add_products(xs, ws, d, k, dw_u, &mut g);
        }
        add_normaliser_sums(xs, &g, k, &mut sums);
    }
    (dw, sums)
}

/// For one image's slice and one unit of output gradient `d`: `dw += d * y` and `g += d * w`,
/// `y = x * scale + shift` normalised on the fly (the slice starts a period).
#[inline(always)]
fn add_products(xs: &[f32], ws: &[f32], d: f32, k: &Normalise, dw: &mut [f32], g: &mut [f32]) {
    let period = k.scale.len();
    let slices = xs
        .chunks(period)
        .zip(ws.chunks(period))
        .zip(dw.chunks_mut(period))
        .zip(g.chunks_mut(period));
    for (((x, w), dw), g) in slices {
        let lanes = x.iter().zip(w).zip(dw).zip(g).zip(&k.scale).zip(&k.shift);
        for (((((x, w), dw), g), scale), shift) in lanes {
            *dw += d * (x * scale + shift);
            *g += d * w;
        }
    }
}

/// `dγ += g x̂` and `dβ += g` by position in the period, for one image's slice.
#[inline(always)]
fn add_normaliser_sums(xs: &[f32], g: &[f32], k: &Normalise, sums: &mut PeriodSums) {
    let period = k.scale.len();
    let (gamma, beta) = sums;
    for (x, g) in xs.chunks(period).zip(g.chunks(period)) {
        let lanes = x.iter().zip(g).zip(&k.mean).zip(&k.inv_std);
        for ((((x, g), mean), inv_std), (dg, db)) in
            lanes.zip(gamma.iter_mut().zip(beta.iter_mut()))
        {
            *dg += g * ((x - mean) * inv_std);
            *db += g;
        }
    }
}
