//! What the f64-reference checks of the convolutions share: the error measure, the worst
//! errors seen over a grid of cases, and the loss weights that keep away from an
//! activation's kinks.
#![allow(dead_code)]

use super::gradcheck::Rng;
use strata::backend::ops::depthwise_kernels::FusedActivation;

/// The activations a convolution can run inside it.
pub const ACTIVATIONS: [FusedActivation; 3] = [
    FusedActivation::Linear,
    FusedActivation::Relu,
    FusedActivation::Relu6,
];

/// Largest `|a - b|` relative to the tensor's scale (`1 + max |b|`), and absolute.
pub fn errors(a: &[f32], b: &[f64]) -> (f64, f64) {
    assert_eq!(a.len(), b.len());
    let scale = 1.0 + b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let abs = a
        .iter()
        .zip(b)
        .fold(0.0f64, |m, (&a, &b)| m.max((f64::from(a) - b).abs()));
    (abs / scale, abs)
}

/// The worst (relative, absolute) errors seen, one pair per named tensor.
#[derive(Debug)]
pub struct Worst {
    names: &'static [&'static str],
    errors: Vec<(f64, f64)>,
}

impl Worst {
    /// No errors yet, for the tensors `names` (in the order `note` numbers them).
    pub fn new(names: &'static [&'static str]) -> Self {
        Self {
            names,
            errors: vec![(0.0, 0.0); names.len()],
        }
    }

    /// Keeps the larger of what tensor `which` had and `(rel, abs)`.
    pub fn note(&mut self, which: usize, (rel, abs): (f64, f64)) {
        let w = &mut self.errors[which];
        *w = (w.0.max(rel), w.1.max(abs));
    }

    /// Prints the worst errors of `what` (shown with `--nocapture`).
    pub fn print(&self, what: &str) {
        let parts: Vec<String> = self
            .names
            .iter()
            .zip(&self.errors)
            .map(|(n, (r, a))| format!("{n} {r:.2e} (abs {a:.2e})"))
            .collect();
        eprintln!(
            "{what}: worst errors relative to scale: {}",
            parts.join(", ")
        );
    }
}

/// The activation's derivative at `z`, and whether `z` is too close to a kink to compare.
pub fn derivative(act: FusedActivation, z: f64) -> (f64, bool) {
    let near = |k: f64| (z - k).abs() < 1e-4;
    match act {
        FusedActivation::Linear => (1.0, false),
        FusedActivation::Relu => (f64::from(u8::from(z > 0.0)), near(0.0)),
        FusedActivation::Relu6 => (
            f64::from(u8::from(z > 0.0 && z < 6.0)),
            near(0.0) || near(6.0),
        ),
    }
}

/// Random loss weights for the outputs of pre-activations `pre` (zero where one sits on a kink
/// of `act`, where f32 and f64 may disagree), and the gradient of the pre-activations they
/// give.
pub fn loss_weights(rng: &mut Rng, pre: &[f64], act: FusedActivation) -> (Vec<f32>, Vec<f64>) {
    let mut go = rng.vec(pre.len(), -1.0, 1.0);
    let mut dz = vec![0.0; pre.len()];
    for ((g, d), &z) in go.iter_mut().zip(&mut dz).zip(pre) {
        let (slope, kink) = derivative(act, z);
        if kink {
            *g = 0.0;
        }
        *d = f64::from(*g) * slope;
    }
    (go, dz)
}

/// The outputs of pre-activations `pre`: `act` applied in f64.
pub fn activated(pre: &[f64], act: FusedActivation) -> Vec<f64> {
    pre.iter()
        .map(|&z| match act.bounds() {
            None => z,
            Some((lo, hi)) => z.max(f64::from(lo)).min(f64::from(hi)),
        })
        .collect()
}
