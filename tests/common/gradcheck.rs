//! Shared helpers of the gradient checks: a seeded generator and the finite-difference check.
#![allow(dead_code)]

use dfdx::prelude::*;

/// The CPU gradient store.
pub type Grads = Gradients<f32, Cpu>;
/// A taped tensor of any shape.
pub type Taped<S> = Tensor<S, f32, Cpu, OwnedTape<f32, Cpu>>;

/// A small deterministic generator (xorshift64*), so tests need no `rand` dependency.
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
        lo + (hi - lo) * (bits as f32 / (1u64 << 24) as f32)
    }
    /// `len` uniform values in `[lo, hi)`.
    pub fn vec(&mut self, len: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..len).map(|_| self.uniform(lo, hi)).collect()
    }
    /// `len` distinct values `0.01 * k` in random order, centred on 0 and never 0 (no ties within 2e-3,
    /// so max pooling and relu kinks are not crossed by the finite-difference step).
    pub fn distinct(&mut self, len: usize) -> Vec<f32> {
        let mut values: Vec<f32> = (0..len)
            .map(|k| (k as f32 - len as f32 / 2.0 + 0.5) * 0.01)
            .collect();
        for i in (1..len).rev() {
            let j = (self.uniform(0.0, 1.0) * (i + 1) as f32) as usize;
            values.swap(i, j.min(i));
        }
        values
    }
}

/// The loss `sum(out * weights)`: its value in f64 and the gradients from dfdx's backward.
pub fn weighted_sum<S: Shape>(out: Taped<S>, weights: &[f32]) -> (f64, Grads) {
    let values = out.as_vec();
    assert_eq!(
        values.len(),
        weights.len(),
        "loss weights of the wrong length"
    );
    let loss64 = values
        .iter()
        .zip(weights)
        .map(|(&v, &w)| f64::from(v) * f64::from(w))
        .sum();
    let shape = *out.shape();
    let weights = out.device().tensor_from_vec(weights.to_vec(), shape);
    let loss = (out * weights).sum::<Rank0, _>();
    (loss64, loss.backward())
}

/// Checks analytic gradients against central differences.
///
/// `f(values)` runs the op on the tensors made from `values` and returns the loss and the
/// gradient of every tensor, in order. Every element of every tensor is perturbed by `eps`
/// (at most `max_per_tensor` of them, evenly spaced); the check passes when
/// `|analytic - numeric| <= atol + rtol * max(|analytic|, |numeric|)` for the central
/// difference or, where a step crosses a kink, for one of the one-sided differences.
pub fn check(
    name: &str,
    values: Vec<Vec<f32>>,
    eps: f32,
    (atol, rtol): (f64, f64),
    f: impl Fn(&[Vec<f32>]) -> (f64, Vec<Vec<f32>>),
) {
    let (base_loss, analytic) = f(&values);
    assert_eq!(
        analytic.len(),
        values.len(),
        "{name}: one gradient per tensor"
    );
    let max_per_tensor = 200;
    let mut worst = 0.0f64;
    for (t, grad) in analytic.iter().enumerate() {
        assert_eq!(
            grad.len(),
            values[t].len(),
            "{name}: gradient {t} of the wrong length"
        );
        let step = values[t].len().div_ceil(max_per_tensor).max(1);
        for idx in (0..values[t].len()).step_by(step) {
            let mut plus = values.clone();
            plus[t][idx] += eps;
            let mut minus = values.clone();
            minus[t][idx] -= eps;
            let h = f64::from(plus[t][idx]) - f64::from(minus[t][idx]);
            let (loss_plus, loss_minus) = (f(&plus).0, f(&minus).0);
            let numeric = (loss_plus - loss_minus) / h;
            let a = f64::from(grad[idx]);
            let bound = atol + rtol * a.abs().max(numeric.abs());
            // A step that crosses a relu or max kink on one side spoils the central difference;
            // the one-sided difference on the other side is then exact for piecewise-linear ops.
            let one_sided = [
                (loss_plus - base_loss) / (h / 2.0),
                (base_loss - loss_minus) / (h / 2.0),
            ];
            let error = one_sided
                .iter()
                .map(|n| (a - n).abs())
                .fold((a - numeric).abs(), f64::min);
            worst = worst.max(error / bound);
            assert!(
                error <= bound,
                "{name}: tensor {t} element {idx}: analytic {a} numeric {numeric}"
            );
        }
    }
    eprintln!("{name}: worst error / bound = {worst:.3}");
}
