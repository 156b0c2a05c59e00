//! `dense(flatten(batch_norm(x)))` as one differentiable op, for a batch norm on the model's
//! input (no input gradient) read by a pixel-major flatten and a dense layer of few units:
//! a linear model on raw images, the memory-bound case. Forward reads the input for the
//! batch statistics and once more for the product, normalising on the fly; backward reads it
//! once for every gradient (dense weights and bias, γ and β). The normalised image is never
//! written.

use crate::backend::ops::batch_norm::{
    affine, statistics, Affine, BatchNormConfig, BatchNormParams,
};
use crate::backend::ops::batch_norm_kernels::tree_f32;
use crate::backend::ops::buffers;
use crate::backend::ops::dense::{affine_product, period_pattern, task_features, DenseParams};
use crate::backend::ops::profile;
use crate::backend::ops::reduce::batch_tree;
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
    let (mean, variance) = statistics(&input, batch * h * w, batch, bn, cfg);
    let Affine {
        inv_std,
        scale,
        shift,
    } = affine(bn, &mean, &variance, cfg.eps);
    let weight = buffers::read(&dense.weight);
    let dims = (batch, inputs, units);
    let mut out = affine_product(&input, dims, &weight, &scale, &shift);
    let bias = dense.bias.as_ref().map(buffers::to_vec);
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
        let gradients = backward(&input, &weight, &grad_out, dims, &normalise, channels);
        let grad_gamma: Vec<f32> = gradients.normaliser.iter().map(|s| s[0]).collect();
        let grad_beta: Vec<f32> = gradients.normaliser.iter().map(|s| s[1]).collect();
        tape::add_into(grads.get_or_alloc_mut(weight_key)?, &gradients.weight);
        if let Some(bias_key) = bias_key {
            let mut grad_bias = vec![0.0f32; units];
            batch_tree(0..batch, &mut grad_bias, &|n, out| {
                out.copy_from_slice(&grad_out[n * units..][..units]);
            });
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

/// The op's gradients: the dense weights (`units x inputs`), and γ and β by channel.
struct Gradients {
    weight: Vec<f32>,
    /// `[dγ, dβ]` of each channel.
    normaliser: Vec<[f32; 2]>,
}

/// One pass over the input: with `y = x * scale + shift` (the dense layer's input) and
/// `g = dy W` (its gradient), `dW += dyᵀ y`, `dγ += Σ g x̂`, `dβ += Σ g`. Tasks over slices of
/// features own their slice of `dW`, summed over the images in `reduce`'s tree; the γ and β
/// sums are kept per image (in double precision over the tasks and the period) and then
/// summed over the images in the same tree, so that a batch's gradients are the exact sums
/// of its halves'.
fn backward(
    input: &[f32],
    weight: &[f32],
    grad_out: &[f32],
    (batch, inputs, units): (usize, usize, usize),
    k: &Normalise,
    channels: usize,
) -> Gradients {
    use rayon::prelude::*;
    let period = k.scale.len();
    let task_len = task_features(period / 16);
    let starts: Vec<usize> = (0..inputs).step_by(task_len).collect();
    // Each task's weight-gradient slice and its per-image sums, in task order.
    let tasks: Vec<(usize, Vec<f32>, Vec<PeriodSums>)> = starts
        .into_par_iter()
        .map(|start| {
            let end = (start + task_len).min(inputs);
            let operands = (input, weight, grad_out);
            let mut dw = vec![0.0f32; units * (end - start)];
            let mut per_image = Vec::with_capacity(batch);
            task_tree(
                operands,
                (batch, inputs, units),
                k,
                start..end,
                0..batch,
                &mut dw,
                &mut per_image,
            );
            (start, dw, per_image)
        })
        .collect();
    let mut grad_weight = vec![0.0f32; units * inputs];
    let mut leaves = vec![vec![[0.0f64; 2]; channels.max(1)]; batch];
    for (start, dw, per_image) in tasks {
        let len = dw.len() / units.max(1);
        for u in 0..units {
            grad_weight[u * inputs + start..][..len].copy_from_slice(&dw[u * len..][..len]);
        }
        for (leaf, (gamma, beta)) in leaves.iter_mut().zip(&per_image) {
            for (position, (g, b)) in gamma.iter().zip(beta).enumerate() {
                let sums = &mut leaf[position % channels.max(1)];
                sums[0] += f64::from(*g);
                sums[1] += f64::from(*b);
            }
        }
    }
    Gradients {
        weight: grad_weight,
        normaliser: tree_f32(&leaves),
    }
}

/// Per-position sums of one period: (`Σ g x̂`, `Σ g`).
type PeriodSums = (Vec<f32>, Vec<f32>);

/// The backward pass over the features `range` of the images `images`: that slice of `dW`
/// (`units x range.len()`, overwritten) summed over the images in the tree, and each image's
/// γ and β sums by position in the period, pushed in image order.
fn task_tree(
    operands: (&[f32], &[f32], &[f32]),
    dims: (usize, usize, usize),
    k: &Normalise,
    range: std::ops::Range<usize>,
    images: std::ops::Range<usize>,
    dw: &mut [f32],
    per_image: &mut Vec<PeriodSums>,
) {
    match images.len() {
        0 => dw.fill(0.0),
        len if len <= GROUP => group_task(operands, dims, k, range, images, dw, per_image),
        n => {
            let mid = images.start + n.div_ceil(2);
            task_tree(
                operands,
                dims,
                k,
                range.clone(),
                images.start..mid,
                dw,
                per_image,
            );
            let mut right = vec![0.0f32; dw.len()];
            task_tree(
                operands,
                dims,
                k,
                range,
                mid..images.end,
                &mut right,
                per_image,
            );
            dw.iter_mut().zip(&right).for_each(|(a, b)| *a += b);
        }
    }
}

/// Images whose products [`group_task`] adds in one pass (a subtree of [`task_tree`]).
const GROUP: usize = 4;

/// The part of [`task_tree`] for up to [`GROUP`] images: `dw` (overwritten) as their subtree
/// adds it (the first `⌈len/2⌉` images' products, then the rest, each the same way), in one
/// pass per unit, and each image's γ and β sums.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512vl+avx512bw+avx512dq+avx2+fma",
    "x86_64+avx2+fma"
))]
fn group_task(
    (input, weight, grad_out): (&[f32], &[f32], &[f32]),
    (_batch, inputs, units): (usize, usize, usize),
    k: &Normalise,
    range: std::ops::Range<usize>,
    images: std::ops::Range<usize>,
    dw: &mut [f32],
    per_image: &mut Vec<PeriodSums>,
) {
    let period = k.scale.len();
    let len = range.len();
    let xs: Vec<&[f32]> = images
        .clone()
        .map(|n| &input[n * inputs + range.start..n * inputs + range.end])
        .collect();
    let dys: Vec<&[f32]> = images
        .clone()
        .map(|n| &grad_out[n * units..(n + 1) * units])
        .collect();
    // Each image's normalised slice, the dense layer's input.
    let ys: Vec<Vec<f32>> = xs
        .iter()
        .map(|x| {
            let mut y = vec![0.0f32; len];
            for ((y, x), (scale, shift)) in y.chunks_mut(period).zip(x.chunks(period)).zip(
                k.scale
                    .chunks(period)
                    .cycle()
                    .zip(k.shift.chunks(period).cycle()),
            ) {
                let lanes = y.iter_mut().zip(x).zip(scale.iter().zip(shift));
                lanes.for_each(|((y, x), (scale, shift))| *y = x * scale + shift);
            }
            y
        })
        .collect();
    let mut gs = vec![vec![0.0f32; len]; xs.len()];
    for u in 0..units {
        let ws = &weight[u * inputs + range.start..u * inputs + range.end];
        let dw_u = &mut dw[u * len..(u + 1) * len];
        let d: Vec<f32> = dys.iter().map(|dy| dy[u]).collect();
        match ys.as_slice() {
            [y0] => {
                let lanes = dw_u.iter_mut().zip(y0);
                lanes.for_each(|(dw, y0)| *dw = d[0] * y0);
            }
            [y0, y1] => {
                let lanes = dw_u.iter_mut().zip(y0.iter().zip(y1));
                lanes.for_each(|(dw, (y0, y1))| *dw = d[0] * y0 + d[1] * y1);
            }
            [y0, y1, y2] => {
                let lanes = dw_u.iter_mut().zip(y0.iter().zip(y1).zip(y2));
                lanes.for_each(|(dw, ((y0, y1), y2))| *dw = (d[0] * y0 + d[1] * y1) + d[2] * y2);
            }
            [y0, y1, y2, y3] => {
                let lanes = dw_u
                    .iter_mut()
                    .zip(y0.iter().zip(y1).zip(y2.iter().zip(y3)));
                lanes.for_each(|(dw, ((y0, y1), (y2, y3)))| {
                    *dw = (d[0] * y0 + d[1] * y1) + (d[2] * y2 + d[3] * y3);
                });
            }
            _ => unreachable!("a group holds 1 to {GROUP} images"),
        }
        for (g, d) in gs.iter_mut().zip(&d) {
            g.iter_mut().zip(ws).for_each(|(g, w)| *g += d * w);
        }
    }
    for (x, g) in xs.iter().zip(&gs) {
        let mut sums = (vec![0.0f32; period], vec![0.0f32; period]);
        add_normaliser_sums(x, g, k, &mut sums);
        per_image.push(sums);
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
