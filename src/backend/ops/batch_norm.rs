//! The differentiable batch normalisation op: one fused forward, one fused backward.
//!
//! Works on any tensor whose last axis is the feature axis: NHWC images (per channel) and flat
//! `(n, features)` batches (per feature). Training mode normalises with the batch mean and the
//! biased batch variance (as Keras's `ops.moments`) and updates the moving statistics with
//! `moving = moving * momentum + batch * (1 - momentum)`; inference mode uses the moving
//! statistics. Keras defaults: momentum 0.99, eps 1e-3.
//!
//! A `relu` or `relu6` after the normalisation (`bn relu`) runs inside the op
//! ([`BatchNormConfig::activation`]): the forward clamps as it writes, and the backward masks
//! the output gradient by the activation's derivative at the recomputed pre-activation (the
//! same arithmetic as the forward, so the same bits), with no tensor in between.

use crate::backend::ops::batch_norm_kernels::{
    tree_f32, tree_f64, ImageMoments, Patterns, Periods,
};
use crate::backend::ops::buffers;
use crate::backend::ops::depthwise_kernels::FusedActivation;
use crate::backend::ops::profile;
use crate::backend::ops::tape;
use crate::backend::ops::{Batch, Shape4, Vector};
use crate::distributed::Collective;
use dfdx::shapes::{HasShape, Shape};
use dfdx::tensor::{Cpu, PutTape, SplitTape, Tape, Tensor, TensorFromVec};
use std::sync::Arc;

/// The hyper-parameters of one batch-norm layer.
#[derive(Debug, Clone, Copy)]
pub struct BatchNormConfig {
    /// Weight of the old moving statistics (Keras 0.99).
    pub momentum: f32,
    /// Added to the variance (Keras 1e-3).
    pub eps: f32,
    /// `true`: batch statistics and moving-statistics update; `false`: moving statistics.
    pub training: bool,
    /// Compute the gradient of the input; `false` for a first layer fed by data.
    pub input_grad: bool,
    /// The activation applied to the normalised output inside the op.
    pub activation: FusedActivation,
    /// The ranks of a data-parallel run to normalise over (`train.sync_bn`): in training the
    /// batch statistics are summed over every rank's share of the batch, and so are the two
    /// sums the input gradient needs; `None` normalises with this process's images alone.
    pub sync: Option<&'static dyn Collective>,
}

impl Default for BatchNormConfig {
    fn default() -> Self {
        Self {
            momentum: 0.99,
            eps: 1e-3,
            training: true,
            input_grad: true,
            activation: FusedActivation::Linear,
            sync: None,
        }
    }
}

/// The parameters and statistics of one batch-norm layer, one value per feature.
#[derive(Debug, Clone)]
pub struct BatchNormParams {
    /// Scale (trainable).
    pub gamma: Vector,
    /// Shift (trainable).
    pub beta: Vector,
    /// Moving mean (not trainable; updated in training mode).
    pub moving_mean: Vector,
    /// Moving variance (not trainable; updated in training mode).
    pub moving_variance: Vector,
}

/// Batch normalisation over the last axis of `x`.
///
/// In training mode with a tape, updates `params.moving_mean` and `params.moving_variance` in
/// place. Gradients of `gamma` and `beta` land under `params.gamma` and `params.beta`.
pub fn batch_norm<S: Shape, T: Tape<f32, Cpu>>(
    x: Tensor<S, f32, Cpu, T>,
    params: &mut BatchNormParams,
    cfg: &BatchNormConfig,
) -> Tensor<S, f32, Cpu, T> {
    normalise(x, None, params, cfg)
}

/// `activation(batch_norm(x) + skip)` in one pass: the end of a residual block
/// (`add(identity, … -> bn) relu`), with no tensor between the normalisation and the sum.
/// The sum is rounded as `add` rounds it; `skip`'s gradient is the output gradient after the
/// activation's mask, added into its slot.
///
/// # Panics
/// When `skip` differs from `x` in shape.
pub fn batch_norm_add<S: Shape, T: Tape<f32, Cpu>>(
    x: Tensor<S, f32, Cpu, T>,
    skip: &Tensor<S, f32, Cpu>,
    params: &mut BatchNormParams,
    cfg: &BatchNormConfig,
) -> Tensor<S, f32, Cpu, T> {
    assert_eq!(
        x.shape().concrete(),
        skip.shape().concrete(),
        "the skip of a batch norm + add has the batch norm's shape"
    );
    normalise(x, Some(skip), params, cfg)
}

/// An inference-mode batch norm (moving statistics) of borrowed `(n, h, w, c)` values, such as
/// the model's input read in place, with `activation` applied inside: the values are read once
/// and only the output is written, as a [`Batch`].
///
/// # Panics
/// When `input` does not hold `shape`'s elements or `c` is not the parameters' feature count.
pub fn batch_norm_inference_values(
    input: &[f32],
    shape: Shape4,
    params: &BatchNormParams,
    eps: f32,
    activation: FusedActivation,
) -> Batch {
    let _timer = profile::scope("batch_norm.forward");
    let (n, h, w, c) = shape;
    assert!(
        input.len() == n * h * w * c && params.gamma.shape().0 == c,
        "batch norm input of the wrong shape"
    );
    let Affine { scale, shift, .. } = moving_affine(params, eps);
    let layout = Periods::new(c);
    let (scale_p, shift_p) = (layout.pattern(&scale), layout.pattern(&shift));
    let mut out = buffers::take(input.len());
    apply(
        layout,
        &mut out,
        input,
        None,
        (&scale_p, &shift_p),
        activation,
        false,
    );
    Batch { data: out, shape }
}

/// `out = activation(input * scale + shift [+ skip])` per feature, `pats` the scale and shift
/// patterns of `layout`. With a skip, a clamping activation and `mark`, also returns where
/// the activation passes the gradient on (`lo < y < hi`), one byte a value, read off the
/// output as it is written: the backward cannot recompute the pre-activation from the input
/// alone.
fn apply(
    layout: Periods,
    out: &mut [f32],
    input: &[f32],
    skip: Option<&[f32]>,
    pats: (&[f32], &[f32]),
    activation: FusedActivation,
    mark: bool,
) -> Option<Vec<u8>> {
    let Some(skip) = skip else {
        layout.normalise(out, input, pats, activation.bounds(), true);
        return None;
    };
    let pats = [pats.0, pats.1, pats.1, pats.1];
    match activation.bounds() {
        None => layout.map(out, input, skip, pats, |_, x, s, [a, b, ..]| {
            (x * a + b) + s
        }),
        Some((lo, hi)) => {
            let f = move |_: f32, x: f32, s: f32, [a, b, ..]: [f32; 4]| {
                ((x * a + b) + s).max(lo).min(hi)
            };
            if !mark {
                layout.map(out, input, skip, pats, f);
                return None;
            }
            let mut marks: Vec<u8> = Vec::with_capacity(out.len());
            let spare = marks.spare_capacity_mut();
            layout.map_marking(out, spare, input, skip, pats, (lo, hi), f);
            // SAFETY: `map_marking` wrote a mark for each of the `out.len()` values.
            unsafe { marks.set_len(out.len()) };
            return Some(marks);
        }
    }
    None
}

fn normalise<S: Shape, T: Tape<f32, Cpu>>(
    x: Tensor<S, f32, Cpu, T>,
    skip: Option<&Tensor<S, f32, Cpu>>,
    params: &mut BatchNormParams,
    cfg: &BatchNormConfig,
) -> Tensor<S, f32, Cpu, T> {
    let shape = *x.shape();
    let samples = shape.concrete().into_iter().next().unwrap_or(1);
    let (x, mut tape) = x.split_tape();
    let device = x.device().clone();
    let x_ghost = x.ghost();
    let input = buffers::read(&x);
    drop(x);
    let skip_data = skip.map(buffers::read);
    let skip_key = skip.map(|skip| skip.ghost());
    let (out, saved) = forward_values(
        (input, None),
        skip_data.as_deref(),
        samples,
        params,
        cfg,
        T::OWNS_TAPE,
    );
    if let Some(skip) = skip_data {
        buffers::give(skip);
    }
    let out = device.tensor_from_vec(out, shape);
    if !T::OWNS_TAPE {
        saved.release();
        return out.put_tape(tape);
    }
    let out_ghost = out.ghost();
    let (gamma_key, beta_key) = (params.gamma.clone(), params.beta.clone());
    let input_grad = cfg.input_grad;
    tape.add_backward_op(move |grads| {
        let mut grad_out = tape::take(grads.get_or_alloc_mut(&out_ghost)?);
        let target = if input_grad {
            GradInput::AddTo(grads.get_or_alloc_mut(&x_ghost)?)
        } else {
            GradInput::None
        };
        let (grad_gamma, grad_beta) = saved.backward(&mut grad_out, target);
        if let Some(skip_key) = &skip_key {
            tape::add_into(grads.get_or_alloc_mut(skip_key)?, &grad_out);
        }
        tape::release(grad_out);
        tape::add_into(grads.get_or_alloc_mut(&gamma_key)?, &grad_gamma);
        tape::add_into(grads.get_or_alloc_mut(&beta_key)?, &grad_beta);
        Ok(())
    });
    out.put_tape(tape)
}

/// Where [`Normalised::backward`] puts the input's gradient.
pub(crate) enum GradInput<'a> {
    /// Nowhere: the input needs none.
    None,
    /// Added into the input's gradient so far (the input may have other readers).
    AddTo(&'a mut [f32]),
    /// Written over this buffer (its old values are ignored), with the same bits as
    /// [`GradInput::AddTo`] on a zeroed gradient: an op that runs the batch norm inside itself
    /// hands the result straight to its own backward.
    Overwrite(&'a mut [f32]),
}

impl<'a> GradInput<'a> {
    /// The buffer, if any, and whether it is written over rather than added into.
    pub(crate) fn parts(self) -> (Option<&'a mut [f32]>, bool) {
        match self {
            GradInput::None => (None, false),
            GradInput::AddTo(grad) => (Some(grad), false),
            GradInput::Overwrite(grad) => (Some(grad), true),
        }
    }
}

/// A batch norm's forward pass on values, and what its backward pass needs.
pub(crate) struct Normalised {
    /// The input, features last (shared with a [`deferred`](forward_deferred) output).
    input: Arc<Vec<f32>>,
    layout: Periods,
    samples: usize,
    /// The rows the statistics were taken over, on every rank.
    all_rows: f64,
    mean: Vec<f32>,
    affine: Affine,
    /// Where the activation passes the gradient on, read off the output (with a skip only).
    passes: Option<Vec<u8>>,
    activation: FusedActivation,
    training: bool,
    sync: Option<&'static dyn Collective>,
}

/// `activation(batch_norm(input) [+ skip])` on values whose last axis is the feature axis,
/// `samples` images of them (the batch statistics are summed image by image, from `moments`
/// when the caller took them already); updates the moving statistics in training. Returns the
/// output and what the backward needs: `keep` when a backward pass will run (with a skip, the
/// activation's mask is kept for it); without one, hand the second value to
/// [`Normalised::release`].
pub(crate) fn forward_values(
    (input, moments): (Vec<f32>, Option<Vec<ImageMoments>>),
    skip: Option<&[f32]>,
    samples: usize,
    params: &mut BatchNormParams,
    cfg: &BatchNormConfig,
    keep: bool,
) -> (Vec<f32>, Normalised) {
    let _timer = profile::scope("batch_norm.forward");
    let mut saved = prepare((input, moments), samples, params, cfg);
    let mut out = buffers::take(saved.input.len());
    let Normalisation { scale, shift, .. } = saved.normalisation();
    // With a skip, where the activation passes the gradient on is kept for the backward.
    saved.passes = apply(
        saved.layout,
        &mut out,
        &saved.input,
        skip,
        (&scale, &shift),
        saved.activation,
        keep,
    );
    (out, saved)
}

/// [`forward_values`] without a skip, the output left unwritten: the input (shared), and the
/// [`Normalisation`] that makes the output of it, for the reader to apply as it reads the
/// input rows it needs (see `linear_bn`'s deferred mirror), saving the pass that would write
/// the output and the reader's pass that would read it back.
pub(crate) fn forward_deferred(
    (input, moments): (Vec<f32>, Option<Vec<ImageMoments>>),
    samples: usize,
    params: &mut BatchNormParams,
    cfg: &BatchNormConfig,
) -> (Arc<Vec<f32>>, Normalisation, Normalised) {
    let _timer = profile::scope("batch_norm.forward");
    let saved = prepare((input, moments), samples, params, cfg);
    (Arc::clone(&saved.input), saved.normalisation(), saved)
}

/// The statistics (over every rank's rows in training, updating the moving ones) and the
/// normalisation of `input`, kept for the backward; no output yet, no activation mask.
fn prepare(
    (input, moments): (Vec<f32>, Option<Vec<ImageMoments>>),
    samples: usize,
    params: &mut BatchNormParams,
    cfg: &BatchNormConfig,
) -> Normalised {
    let features = params.gamma.shape().0;
    let rows = input.len() / features.max(1);
    let (mean, variance, all_rows) =
        statistics_over_ranks((&input, moments), rows, samples, params, cfg);
    let affine = affine(params, &mean, &variance, cfg.eps);
    Normalised {
        input: Arc::new(input),
        layout: Periods::new(features),
        samples,
        all_rows,
        mean,
        affine,
        passes: None,
        activation: cfg.activation,
        training: cfg.training,
        sync: cfg.sync,
    }
}

/// A batch norm's output as a function of its input: `activation(x * scale + shift)` per
/// feature (no skip), with the bits of the pass that writes the output itself.
pub(crate) struct Normalisation {
    layout: Periods,
    /// Scale and shift, as patterns of `layout`.
    scale: Vec<f32>,
    shift: Vec<f32>,
    bounds: Option<(f32, f32)>,
}

impl Normalisation {
    /// Writes the output of input rows `input` (whole rows of features) over `out`, on this
    /// thread.
    pub(crate) fn rows(&self, input: &[f32], out: &mut [f32]) {
        let pats = (&self.scale[..], &self.shift[..]);
        self.layout.normalise(out, input, pats, self.bounds, false);
    }

    /// Writes the output of a whole batch `input` over `out`, on the pool's threads.
    pub(crate) fn batch(&self, input: &[f32], out: &mut [f32]) {
        let pats = (&self.scale[..], &self.shift[..]);
        self.layout.normalise(out, input, pats, self.bounds, true);
    }
}

impl Normalised {
    /// The scale and shift as patterns of the layout, and the activation's clamp: what makes
    /// the output of the input without a skip.
    fn normalisation(&self) -> Normalisation {
        Normalisation {
            layout: self.layout,
            scale: self.layout.pattern(&self.affine.scale),
            shift: self.layout.pattern(&self.affine.shift),
            bounds: self.activation.bounds(),
        }
    }

    /// Gives the kept input back to the pool (no backward pass will run).
    pub(crate) fn release(self) {
        buffers::give_shared(self.input);
    }

    /// The backward pass: puts the input's gradient in `target` and returns the gradients of
    /// gamma and beta. With a fused skip, `grad_out` is masked in place by the activation's
    /// derivative, so that it is then the skip's gradient; without one it is left as it is.
    pub(crate) fn backward(
        self,
        grad_out: &mut [f32],
        target: GradInput<'_>,
    ) -> (Vec<f32>, Vec<f32>) {
        let _timer = profile::scope("batch_norm.backward");
        let Normalised {
            input,
            layout,
            samples,
            all_rows,
            mean,
            affine:
                Affine {
                    inv_std,
                    scale,
                    shift,
                },
            passes,
            activation,
            training,
            sync,
        } = self;
        if let Some(passes) = &passes {
            use rayon::prelude::*;
            grad_out
                .par_chunks_mut(1 << 15)
                .zip(passes.par_chunks(1 << 15))
                .for_each(|(g, p)| {
                    g.iter_mut()
                        .zip(p)
                        .for_each(|(g, &p)| *g = if p == 1 { *g } else { 0.0 });
                });
        }
        let (mean_p, inv_std_p) = (layout.pattern(&mean), layout.pattern(&inv_std));
        let (scale_p, shift_p) = (layout.pattern(&scale), layout.pattern(&shift));
        // Without a skip the activation's derivative (0 at the kinks) is taken at the
        // pre-activation `x * scale + shift`, computed as the forward computed it, each time
        // the gradient is read: no one reads the masked gradient afterwards, so it is never
        // written.
        let bounds = activation.bounds().filter(|_| passes.is_none());
        let masked = |(lo, hi): (f32, f32)| {
            move |dy: f32, x: f32, a: f32, b: f32| {
                let z = x * a + b;
                if z > lo && z < hi {
                    dy
                } else {
                    0.0
                }
            }
        };
        let unmasked = |dy: f32, _: f32, _: f32, _: f32| dy;
        let read = (grad_out as &[f32], input.as_slice());
        let pats = [&scale_p[..], &shift_p, &mean_p, &inv_std_p];
        let leaves = match bounds {
            Some(bounds) => gradient_sums(layout, read, pats, samples, masked(bounds)),
            None => gradient_sums(layout, read, pats, samples, unmasked),
        };
        let sums = tree_f64(&leaves);
        let gradient = tree_f32(&leaves);
        let grad_beta: Vec<f32> = gradient.iter().map(|s| s[0]).collect();
        let grad_gamma: Vec<f32> = gradient.iter().map(|s| s[1]).collect();
        let (Some(grad_input), overwrite) = target.parts() else {
            buffers::give_shared(input);
            return (grad_gamma, grad_beta);
        };
        let features = mean.len();
        let rows = input.len() / features.max(1);
        // Training: dx = scale * (dy - mean(dy) - x_hat * mean(dy * x_hat)); inference: the
        // statistics are constants, dx = scale * dy.
        let (a, b): (Vec<f32>, Vec<f32>) = if let (true, Some(world)) = (training, sync) {
            gradient_means_over_ranks(world, &sums, rows, all_rows)
        } else if training {
            sums.iter()
                .map(|s| ((s[0] / all_rows) as f32, (s[1] / all_rows) as f32))
                .unzip()
        } else {
            (vec![0.0; features], vec![0.0; features])
        };
        // dx = scale * (dy - a) - (x - mean) * (scale * inv_std * b)
        let c: Vec<f32> = (0..features)
            .map(|f| scale[f] * inv_std[f] * b[f])
            .collect();
        // Expanded: dx = dy * scale - x * c - (scale * a - mean * c).
        let k: Vec<f32> = (0..features)
            .map(|f| scale[f] * a[f] - mean[f] * c[f])
            .collect();
        let (c_p, k_p) = (layout.pattern(&c), layout.pattern(&k));
        let pats = [&scale_p[..], &shift_p, &c_p, &k_p];
        let target = (grad_input, overwrite);
        match bounds {
            Some(bounds) => input_gradient(layout, target, read, pats, masked(bounds)),
            None => input_gradient(layout, target, read, pats, unmasked),
        }
        buffers::give_shared(input);
        (grad_gamma, grad_beta)
    }
}

/// A batch norm's per-feature gradient sums `[sum(dy), sum(dy * x_hat)]`, one leaf per image,
/// of the output gradient `dy` masked by `mask(dy, x, scale, shift)`; `pats` are the
/// patterns of scale, shift, mean and the inverse deviation.
fn gradient_sums(
    layout: Periods,
    (grad_out, input): (&[f32], &[f32]),
    pats: Patterns<'_>,
    samples: usize,
    mask: impl Fn(f32, f32, f32, f32) -> f32 + Sync,
) -> Vec<Vec<[f64; 2]>> {
    layout.sums(grad_out, input, pats, samples, |dy, x, [a, b, m, s]| {
        let dy = mask(dy, x, a, b);
        (dy, dy * (x - m) * s)
    })
}

/// `dx = mask(dy) * scale - x * c - k` written over (`overwrite`) or added into `grad_input`;
/// `pats` are the patterns of scale, shift, `c` and `k`.
fn input_gradient(
    layout: Periods,
    (grad_input, overwrite): (&mut [f32], bool),
    (grad_out, input): (&[f32], &[f32]),
    pats: Patterns<'_>,
    mask: impl Fn(f32, f32, f32, f32) -> f32 + Sync,
) {
    if overwrite {
        // `0.0 + …` rounds as adding into a zeroed gradient does (a -0.0 becomes +0.0).
        layout.map(
            grad_input,
            grad_out,
            input,
            pats,
            |_, dy, x, [s, b, c, k]| 0.0 + mask(dy, x, s, b) * s - x * c - k,
        );
    } else {
        layout.map(
            grad_input,
            grad_out,
            input,
            pats,
            |gi, dy, x, [s, b, c, k]| gi + mask(dy, x, s, b) * s - x * c - k,
        );
    }
}

/// The mean and variance that normalise `input` (`rows x features`, features last): in
/// training the batch's (updating the moving statistics), else the moving ones.
pub(crate) fn statistics(
    input: &[f32],
    rows: usize,
    samples: usize,
    params: &mut BatchNormParams,
    cfg: &BatchNormConfig,
) -> (Vec<f32>, Vec<f32>) {
    let (mean, variance, _) = statistics_over_ranks((input, None), rows, samples, params, cfg);
    (mean, variance)
}

/// [`statistics`], over every rank's rows with `cfg.sync` in training, and the number of rows
/// they were taken over (`rows` without `cfg.sync`).
fn statistics_over_ranks(
    (input, moments): (&[f32], Option<Vec<ImageMoments>>),
    rows: usize,
    samples: usize,
    params: &mut BatchNormParams,
    cfg: &BatchNormConfig,
) -> (Vec<f32>, Vec<f32>, f64) {
    if !cfg.training {
        let (mean, variance) = (
            buffers::to_vec(&params.moving_mean),
            buffers::to_vec(&params.moving_variance),
        );
        return (mean, variance, rows as f64);
    }
    let features = params.gamma.shape().0;
    let layout = Periods::new(features);
    let moments = moments.unwrap_or_else(|| layout.image_moments(input, samples));
    let image_rows = (rows / samples.max(1)) as f64;
    let leaves: Vec<Vec<[f64; 2]>> = moments
        .iter()
        .map(|m| m.sum.iter().map(|&s| [s, 0.0]).collect())
        .collect();
    let mut sums = tree_f64(&leaves);
    let all_rows = sum_over_ranks(cfg.sync, &mut sums, rows as f64);
    let mean: Vec<f64> = sums.iter().map(|s| s[0] / all_rows).collect();
    let mean32: Vec<f32> = mean.iter().map(|&m| m as f32).collect();
    // Each image's squared deviations about the batch mean, from those about its own mean:
    // Σ(x - m)² = Σ(x - a)² - (Σ(x - a))² / n + n (μ - m)², μ = Σx / n its exact mean.
    let leaves: Vec<Vec<[f64; 2]>> = moments
        .iter()
        .map(|m| {
            (0..features)
                .map(|f| {
                    let [d2, d1] = m.centred[f];
                    let off = m.sum[f] / image_rows - mean[f];
                    [d2 - d1 * d1 / image_rows + image_rows * off * off, 0.0]
                })
                .collect()
        })
        .collect();
    let mut sums = tree_f64(&leaves);
    sum_over_ranks(cfg.sync, &mut sums, 0.0);
    let variance: Vec<f64> = sums.iter().map(|s| (s[0] / all_rows).max(0.0)).collect();
    update_moving(params, cfg.momentum, &mean, &variance);
    (
        mean32,
        variance.into_iter().map(|v| v as f32).collect::<Vec<f32>>(),
        all_rows,
    )
}

/// Sums per-feature pairs and `extra` over the ranks of `sync` in one call (nothing without
/// `sync`); returns the summed `extra`.
fn sum_over_ranks(sync: Option<&dyn Collective>, sums: &mut [[f64; 2]], extra: f64) -> f64 {
    let Some(world) = sync else {
        return extra;
    };
    let mut values: Vec<f64> = sums.iter().flatten().copied().collect();
    values.push(extra);
    world.sum_f64(&mut values);
    for (pair, summed) in sums.iter_mut().zip(values.chunks_exact(2)) {
        *pair = [summed[0], summed[1]];
    }
    values.last().copied().unwrap_or(extra)
}

/// The means over every rank's rows of `dy` and `dy * x_hat` that the input gradient of a
/// synchronised batch norm subtracts, from this rank's sums of them over its `rows` (of the
/// `all_rows` rows of every rank).
///
/// Each rank's loss is the mean over its own share, and the trainer adds the ranks' gradients
/// weighted by their parts of the whole batch, so rank `s`'s `dy` is `1 / part_s` times its
/// part of the whole batch's gradient. Its sums are weighted by its part before they are
/// added, and the whole batch's means are brought back to this rank's scale by dividing by its
/// own part. With equal shares over 2, 4, 8… ranks the parts are powers of two, every step is
/// exact, and the means are one process's to the bit. γ and β keep their local gradients,
/// which the trainer adds as it adds every other parameter's.
fn gradient_means_over_ranks(
    world: &dyn Collective,
    sums: &[[f64; 2]],
    rows: usize,
    all_rows: f64,
) -> (Vec<f32>, Vec<f32>) {
    let part = rows as f64 / all_rows;
    let mut weighted: Vec<[f64; 2]> = sums.iter().map(|s| [s[0] * part, s[1] * part]).collect();
    sum_over_ranks(Some(world), &mut weighted, 0.0);
    weighted
        .iter()
        .map(|s| {
            (
                (s[0] / all_rows / part) as f32,
                (s[1] / all_rows / part) as f32,
            )
        })
        .unzip()
}

/// A batch norm with given statistics as a per-feature affine map `x * scale + shift`.
pub(crate) struct Affine {
    /// `1 / sqrt(variance + eps)`.
    pub inv_std: Vec<f32>,
    /// `gamma * inv_std`.
    pub scale: Vec<f32>,
    /// `beta - mean * scale`.
    pub shift: Vec<f32>,
}

/// The inference [`Affine`] map of `params`: [`affine`] with the moving statistics.
pub(crate) fn moving_affine(params: &BatchNormParams, eps: f32) -> Affine {
    let (mean, variance) = (
        buffers::to_vec(&params.moving_mean),
        buffers::to_vec(&params.moving_variance),
    );
    affine(params, &mean, &variance, eps)
}

/// The [`Affine`] map of `params` with `mean` and `variance` (the batch's or the moving ones),
/// rounded as every batch-norm path rounds it, so fused and folded paths agree with the op.
pub(crate) fn affine(params: &BatchNormParams, mean: &[f32], variance: &[f32], eps: f32) -> Affine {
    let (gamma, beta) = (
        buffers::to_vec(&params.gamma),
        buffers::to_vec(&params.beta),
    );
    let inv_std: Vec<f32> = variance.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
    let scale: Vec<f32> = gamma.iter().zip(&inv_std).map(|(g, s)| g * s).collect();
    let shift: Vec<f32> = (0..gamma.len())
        .map(|f| beta[f] - mean[f] * scale[f])
        .collect();
    Affine {
        inv_std,
        scale,
        shift,
    }
}

/// `moving = moving * momentum + batch * (1 - momentum)` for mean and (biased) variance.
fn update_moving(params: &mut BatchNormParams, momentum: f32, mean: &[f64], variance: &[f64]) {
    let blend = |moving: &mut Vector, batch: &[f64]| {
        let updated: Vec<f32> = moving
            .as_vec()
            .iter()
            .zip(batch)
            .map(|(m, b)| m * momentum + *b as f32 * (1.0 - momentum))
            .collect();
        moving.copy_from(&updated);
    };
    blend(&mut params.moving_mean, mean);
    blend(&mut params.moving_variance, variance);
}
