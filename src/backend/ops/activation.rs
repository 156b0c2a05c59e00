//! Differentiable element-wise activations on all cores: relu, leaky relu, gelu (exact).
//!
//! dfdx has relu and gelu, but its CPU element-wise ops run on one thread.

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
        tape::restore(grads.get_or_alloc_mut(&out_ghost)?, grad_out);
        buffers::give(input);
        Ok(())
    });
    out.put_tape(tape)
}
