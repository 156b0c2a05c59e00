//! The heads' losses, as Keras 3 computes them: categorical cross-entropy on the softmax head
//! ([`categorical_cross_entropy`]) and binary cross-entropy on the `dense1 sigmoid` head
//! ([`binary_cross_entropy`]), both with Keras's `label_smoothing` and per-class weights
//! ([`LossOptions`]).
//!
//! Label smoothing moves each target toward the uniform one before the loss, as Keras's loss
//! functions do: `y (1 - s) + s / k` over `k` classes, and `y (1 - s) + 0.5 s` for the binary
//! head. Class weights multiply each sample's loss by its class's weight (Keras's
//! `class_weight` becomes a `sample_weight`), and the batch loss is the sum of the weighted
//! losses divided by the batch size (Keras's `sum_over_batch_size`). Accuracy counts against
//! the labels, never the smoothed targets.
//!
//! The binary loss:
//!
//! The op takes the `(n, 1)` logits, the sigmoid left out of the forward pass (as the softmax
//! head leaves its softmax to the loss), and returns the mean loss as a scalar on the tape plus
//! what the trainer reports (probabilities, correct count).
//!
//! Keras has two computations under the name `binary_crossentropy`, and which one runs depends
//! on where the probabilities come from ([`BceMode`]):
//!
//! - [`BceMode::Logits`]: Keras 3's TensorFlow backend tags the output of `activations.sigmoid`
//!   with its input (`output._keras_logits = x`, `keras/src/backend/tensorflow/nn.py::sigmoid`),
//!   and `binary_crossentropy` then ignores `from_logits=False` and computes
//!   `tf.nn.sigmoid_cross_entropy_with_logits` on those logits (`_get_logits` in the same file).
//!   That is what `model.fit` on a model ending in `Dense(1, activation="sigmoid")` computes:
//!   per sample `max(z, 0) - z * y + log1p(exp(-|z|))`, derivative `sigmoid(z) - y`; no clipping.
//! - [`BceMode::Clipped`]: `keras.losses.binary_crossentropy(y, p)` on a plain probability tensor
//!   (and the JAX, torch and numpy backends always): `p` clipped to `[eps, 1 - eps]` with
//!   `eps = 1e-7` (`tf.clip_by_value`, i.e. `maximum(minimum(p, 1 - eps), eps)`), then
//!   `-(y log p + (1 - y) log(1 - p))`. The clip's gradient is TensorFlow's `Minimum`/`Maximum`
//!   gradient: it passes where `eps <= p <= 1 - eps` (ties included) and is 0 outside, so a
//!   saturated sigmoid (`|z|` above about 16) gets no gradient at all. Through the sigmoid,
//!   `dL/dz = ((1 - y) / (1 - p) - y / p) * p * (1 - p)` inside the clip.
//!
//! Both take the mean over the batch (Keras's `sum_over_batch_size`; the per-sample mean over
//! the last axis is over one value). `scripts/reference_bce.py` prints both from Keras;
//! `tests/suite/loss_bce.rs` compares.
//!
//! Accuracy follows Keras's `binary_accuracy`: class 1 when `p > 0.5` (strictly; `p = 0.5`,
//! i.e. a logit of 0, counts as class 0).

use crate::backend::ops::activation::sigmoid;
use crate::backend::ops::profile;
use crate::backend::ops::Flat;
use dfdx::losses::cross_entropy_with_logits_loss;
use dfdx::shapes::HasShape;
use dfdx::tensor::{Cpu, PutTape, SplitTape, Tape, Tensor, TensorFromVec};

/// How labels become targets and weights: Keras's `label_smoothing` and `class_weight`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LossOptions<'a> {
    /// Label smoothing in [0, 1); 0 leaves the targets one-hot.
    pub label_smoothing: f32,
    /// Each class's weight, by label; empty (or a label past its end) weighs 1.
    pub class_weights: &'a [f32],
}

impl LossOptions<'_> {
    /// The weight of a sample of class `label`.
    pub fn weight(&self, label: usize) -> f32 {
        self.class_weights.get(label).copied().unwrap_or(1.0)
    }
}

/// Categorical cross-entropy of the `(n, k)` logits (the softmax not yet applied) against
/// `labels`, with `options`' smoothing and weights, averaged over the batch: Keras's
/// `categorical_crossentropy` on a softmax output (computed from its logits).
///
/// Each sample's loss is linear in its target row, so the weighted loss is the plain one
/// with row `i`'s smoothed targets `y (1 - s) + s / k` multiplied by the weight `w_i`:
/// `-(1/n) sum_i w_i sum_c t_ic log_softmax(z_i)_c`. A label outside `0..k` has no one.
pub fn categorical_cross_entropy<T: Tape<f32, Cpu>>(
    logits: Flat<T>,
    labels: &[usize],
    options: LossOptions<'_>,
) -> Tensor<(), f32, Cpu, T> {
    let (n, classes) = *logits.shape();
    let device = logits.device().clone();
    let smoothing = options.label_smoothing;
    let floor = smoothing / classes.max(1) as f32;
    let mut targets = vec![0.0f32; n * classes];
    for (row, &label) in targets.chunks_mut(classes.max(1)).zip(labels) {
        let weight = options.weight(label);
        for (class, target) in row.iter_mut().enumerate() {
            let hot = f32::from(u8::from(class == label));
            *target = (hot * (1.0 - smoothing) + floor) * weight;
        }
    }
    cross_entropy_with_logits_loss(logits, device.tensor_from_vec(targets, (n, classes)))
}

/// Keras's `backend.epsilon()`, the clip of [`BceMode::Clipped`].
pub const EPSILON: f32 = 1e-7;

/// Which of Keras's two binary cross-entropies to reproduce (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BceMode {
    /// Keras 3 on TensorFlow in `fit` / `evaluate` on a sigmoid output: from the logits, no
    /// clipping (`tf.nn.sigmoid_cross_entropy_with_logits`).
    #[default]
    Logits,
    /// `keras.losses.binary_crossentropy` on plain probabilities: clipped to
    /// `[1e-7, 1 - 1e-7]`, no gradient outside.
    Clipped,
}

/// What the trainer reports about one batch of the binary head.
#[derive(Debug, Clone, PartialEq)]
pub struct BinaryStats {
    /// The mean loss over the batch (the value of the returned scalar).
    pub loss: f32,
    /// `sigmoid(z)` of each sample: the probability of class 1.
    pub probabilities: Vec<f32>,
    /// Samples whose prediction (`p > 0.5` means class 1) equals the label.
    pub correct: usize,
}

/// The value and derivative (w.r.t. the logit) of one sample's loss, before the batch mean.
///
/// `y` is the target: 0 or 1, or in between when smoothed.
pub fn per_sample(z: f32, y: f32, mode: BceMode) -> (f32, f32) {
    match mode {
        BceMode::Logits => {
            // tf.nn.sigmoid_cross_entropy_with_logits, with `cond = z >= 0` as TensorFlow
            // writes it (so the derivative at 0 is 0.5 - y).
            let relu = if z >= 0.0 { z } else { 0.0 };
            let neg_abs = if z >= 0.0 { -z } else { z };
            let e = neg_abs.exp();
            let loss = (relu - z * y) + e.ln_1p();
            let tail = e / (1.0 + e);
            let grad = if z >= 0.0 { (1.0 - y) - tail } else { tail - y };
            (loss, grad)
        }
        BceMode::Clipped => {
            let p = sigmoid(z);
            let clipped = p.clamp(EPSILON, 1.0 - EPSILON);
            let loss = -(y * clipped.ln() + (1.0 - y) * (1.0 - clipped).ln());
            let inside = (EPSILON..=1.0 - EPSILON).contains(&p);
            let grad = if inside {
                ((1.0 - y) / (1.0 - p) - y / p) * (p * (1.0 - p))
            } else {
                0.0
            };
            (loss, grad)
        }
    }
}

/// Binary cross-entropy of the `(n, 1)` logits `z` (the sigmoid not yet applied) against
/// `labels` (0 or 1), with `options`' smoothing (`y (1 - s) + 0.5 s`) and weights, summed and
/// divided by the batch size: the loss as a scalar carrying the tape (call `backward` on it
/// when training), and the batch's [`BinaryStats`].
///
/// The gradient of each logit is its [`per_sample`] derivative times its weight, divided by
/// `n`.
///
/// # Panics
/// When `logits` is not `(labels.len(), 1)`.
pub fn binary_cross_entropy<T: Tape<f32, Cpu>>(
    logits: Flat<T>,
    labels: &[usize],
    mode: BceMode,
    options: LossOptions<'_>,
) -> (Tensor<(), f32, Cpu, T>, BinaryStats) {
    let _timer = profile::scope("bce.forward");
    let (n, units) = *logits.shape();
    assert!(
        units == 1 && n == labels.len(),
        "binary cross-entropy needs ({}, 1) logits, got ({n}, {units})",
        labels.len()
    );
    let (logits, mut tape) = logits.split_tape();
    let device = logits.device().clone();
    let z_ghost = logits.ghost();
    let z = logits.as_vec();
    drop(logits);
    let smoothing = options.label_smoothing;
    let mut sum = 0.0f64;
    let mut grads = Vec::with_capacity(n);
    let mut probabilities = Vec::with_capacity(n);
    let mut correct = 0;
    for (&z, &label) in z.iter().zip(labels) {
        let hot = f32::from(u8::from(label == 1));
        let y = hot * (1.0 - smoothing) + 0.5 * smoothing;
        let weight = options.weight(label);
        let (loss, grad) = per_sample(z, y, mode);
        sum += f64::from(loss * weight);
        grads.push(grad * weight / n as f32);
        let p = sigmoid(z);
        probabilities.push(p);
        correct += usize::from((p > 0.5) == (label == 1));
    }
    let loss = if n == 0 { 0.0 } else { (sum / n as f64) as f32 };
    let out = device.tensor_from_vec(vec![loss], ());
    let out_ghost = out.ghost();
    tape.add_backward_op(move |store| {
        let _timer = profile::scope("bce.backward");
        let scale = store.get_or_alloc_mut(&out_ghost)?[0];
        let grad_z: &mut [f32] = store.get_or_alloc_mut(&z_ghost)?;
        grad_z
            .iter_mut()
            .zip(&grads)
            .for_each(|(d, g)| *d += scale * g);
        Ok(())
    });
    let stats = BinaryStats {
        loss,
        probabilities,
        correct,
    };
    (out.put_tape(tape), stats)
}
