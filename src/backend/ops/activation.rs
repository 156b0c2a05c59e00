//! Differentiable element-wise activations on all cores: relu, leaky relu, gelu (exact), relu6,
//! silu (swish), hard swish, hard sigmoid and elu.
//!
//! dfdx has relu and gelu, but its CPU element-wise ops run on one thread. Each function's doc
//! gives the forward formula and the derivative it uses, both as Keras 3 on TensorFlow computes
//! them (`keras/src/backend/tensorflow/nn.py` and the TensorFlow gradients it relies on), kinks
//! included.

use crate::backend::ops::buffers;
use crate::backend::ops::profile;
use crate::backend::ops::tape;
use dfdx::shapes::{HasShape, Shape};
use dfdx::tensor::{Cpu, PutTape, SplitTape, Tape, Tensor, TensorFromVec};
use rayon::prelude::*;

/// Elements per parallel chunk.
const CHUNK: usize = 1 << 15;

/// `max(x, 0)`.
pub fn relu<S: Shape, T: Tape<f32, Cpu>>(x: Tensor<S, f32, Cpu, T>) -> Tensor<S, f32, Cpu, T> {
    elementwise(x, |v| v.max(0.0), |v| f32::from(u8::from(v > 0.0)))
}

/// Keras's `LeakyReLU`: `x` for positive `x`, else `alpha * x` (Keras default alpha 0.3).
pub fn leaky_relu<S: Shape, T: Tape<f32, Cpu>>(
    x: Tensor<S, f32, Cpu, T>,
    alpha: f32,
) -> Tensor<S, f32, Cpu, T> {
    elementwise(
        x,
        move |v| if v > 0.0 { v } else { alpha * v },
        move |v| if v > 0.0 { 1.0 } else { alpha },
    )
}

/// Exact gelu `x * Phi(x)` (Keras's default, `approximate=False`).
pub fn gelu<S: Shape, T: Tape<f32, Cpu>>(x: Tensor<S, f32, Cpu, T>) -> Tensor<S, f32, Cpu, T> {
    elementwise(
        x,
        |v| v * normal_cdf(v),
        |v| {
            normal_cdf(v)
                + v * (-0.5 * v * v).exp() * std::f32::consts::FRAC_2_SQRT_PI
                    / (2.0 * std::f32::consts::SQRT_2)
        },
    )
}

/// Keras 3's `relu6` (`tf.nn.relu6`): `min(max(x, 0), 6)`.
///
/// Derivative: 1 for `0 < x < 6`, else 0, so 0 at both kinks (TensorFlow's `Relu6Grad`, which
/// tests `0 < y < 6` on the output).
pub fn relu6<S: Shape, T: Tape<f32, Cpu>>(x: Tensor<S, f32, Cpu, T>) -> Tensor<S, f32, Cpu, T> {
    elementwise(x, relu6_value, |v| f32::from(u8::from(v > 0.0 && v < 6.0)))
}

/// Keras 3's `silu` / `swish` (`tf.nn.silu`): `x * sigmoid(x)` with `sigmoid(x) = 1 / (1 + e^-x)`.
///
/// Derivative: `s * (1 + x * (1 - s))` with `s = sigmoid(x)` (the custom gradient of
/// `tf.nn.silu`).
pub fn silu<S: Shape, T: Tape<f32, Cpu>>(x: Tensor<S, f32, Cpu, T>) -> Tensor<S, f32, Cpu, T> {
    elementwise(
        x,
        |v| v * sigmoid(v),
        |v| {
            let s = sigmoid(v);
            s * (1.0 + v * (1.0 - s))
        },
    )
}

/// Keras 3's `hard_sigmoid`: `relu6(x + 3) / 6` (the TensorFlow backend's definition; the same
/// as `0` for `x <= -3`, `1` for `x >= 3`, else `x / 6 + 1/2` up to rounding).
///
/// Derivative: `1/6` for `-3 < x < 3` (strictly: `0 < x + 3 < 6` in f32), else 0, so 0 at both
/// kinks.
pub fn hard_sigmoid<S: Shape, T: Tape<f32, Cpu>>(
    x: Tensor<S, f32, Cpu, T>,
) -> Tensor<S, f32, Cpu, T> {
    elementwise(x, hard_sigmoid_value, |v| {
        if hard_sigmoid_slope(v) {
            1.0 / 6.0
        } else {
            0.0
        }
    })
}

/// Keras 3's `hard_silu` / `hard_swish`: `x * hard_sigmoid(x) = x * relu6(x + 3) / 6`.
///
/// Derivative (product rule through [`hard_sigmoid`], as TensorFlow differentiates it):
/// `hard_sigmoid(x) + x / 6` for `-3 < x < 3`, else `hard_sigmoid(x)`: 0 for `x <= -3` and 1 for
/// `x >= 3`, kinks included.
pub fn hard_swish<S: Shape, T: Tape<f32, Cpu>>(
    x: Tensor<S, f32, Cpu, T>,
) -> Tensor<S, f32, Cpu, T> {
    elementwise(
        x,
        |v| v * hard_sigmoid_value(v),
        |v| {
            let slope = if hard_sigmoid_slope(v) { v / 6.0 } else { 0.0 };
            hard_sigmoid_value(v) + slope
        },
    )
}

/// Keras 3's `elu(x, alpha)`: `x` for `x > 0`, else `alpha * (e^x - 1)` (computed as
/// `alpha * expm1(x)`, as `tf.nn.elu` does; Keras applies `alpha` with
/// `tf.where(x > 0, elu(x), alpha * elu(x))` when it is not 1).
///
/// Derivative: 1 for `x > 0`, else `alpha * (expm1(x) + 1)` (TensorFlow's `EluGrad` reads the
/// output: `y + 1` where `y < 0`). At `x = 0` that is `alpha`; far below 0 it is exactly 0 once
/// `expm1(x)` rounds to -1 in f32.
pub fn elu<S: Shape, T: Tape<f32, Cpu>>(
    x: Tensor<S, f32, Cpu, T>,
    alpha: f32,
) -> Tensor<S, f32, Cpu, T> {
    elementwise(
        x,
        move |v| if v > 0.0 { v } else { alpha * v.exp_m1() },
        move |v| {
            if v > 0.0 {
                1.0
            } else {
                alpha * (v.exp_m1() + 1.0)
            }
        },
    )
}

/// `min(max(x, 0), 6)`.
fn relu6_value(x: f32) -> f32 {
    x.clamp(0.0, 6.0)
}

/// `relu6(x + 3) / 6`.
fn hard_sigmoid_value(x: f32) -> f32 {
    relu6_value(x + 3.0) / 6.0
}

/// Whether `relu6(x + 3)` has slope 1 at `x` (strictly inside its linear part).
fn hard_sigmoid_slope(x: f32) -> bool {
    let shifted = x + 3.0;
    shifted > 0.0 && shifted < 6.0
}

/// The logistic function `1 / (1 + e^-x)`; 0 (not NaN) far below 0, 1 far above.
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// The standard normal CDF `0.5 * (1 + erf(x / sqrt 2))`.
fn normal_cdf(x: f32) -> f32 {
    0.5 * (1.0 + erf(f64::from(x) / std::f64::consts::SQRT_2) as f32)
}

/// `erf` with a relative error below 1.2e-7 (Numerical Recipes' Chebyshev fit of `erfc`).
fn erf(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * poly.exp();
    if x >= 0.0 {
        1.0 - erfc
    } else {
        erfc - 1.0
    }
}

/// An element-wise op `f` whose derivative `df` is a function of the input.
fn elementwise<S: Shape, T: Tape<f32, Cpu>>(
    x: Tensor<S, f32, Cpu, T>,
    f: impl Fn(f32) -> f32 + Sync,
    df: impl Fn(f32) -> f32 + Sync + 'static,
) -> Tensor<S, f32, Cpu, T> {
    let _timer = profile::scope("activation.forward");
    let shape = *x.shape();
    let (x, mut tape) = x.split_tape();
    let device = x.device().clone();
    let x_ghost = x.ghost();
    let input = buffers::read(&x);
    drop(x);
    let mut out = buffers::take(input.len());
    out.par_chunks_mut(CHUNK)
        .zip(input.par_chunks(CHUNK))
        .for_each(|(o, i)| o.iter_mut().zip(i).for_each(|(o, &v)| *o = f(v)));
    let out = device.tensor_from_vec(out, shape);
    if !T::OWNS_TAPE {
        buffers::give(input);
        return out.put_tape(tape);
    }
    let out_ghost = out.ghost();
    tape.add_backward_op(move |grads| {
        let _timer = profile::scope("activation.backward");
        let grad_out = tape::take(grads.get_or_alloc_mut(&out_ghost)?);
        let grad_input: &mut [f32] = grads.get_or_alloc_mut(&x_ghost)?;
        grad_input
            .par_chunks_mut(CHUNK)
            .zip(grad_out.par_chunks(CHUNK))
            .zip(input.par_chunks(CHUNK))
            .for_each(|((gi, go), x)| {
                for ((gi, go), &v) in gi.iter_mut().zip(go).zip(x) {
                    *gi += go * df(v);
                }
            });
        tape::release(grad_out);
        buffers::give(input);
        Ok(())
    });
    out.put_tape(tape)
}
