//! The differentiable fully connected op with checkpoint-layout weights `[units, in]`.

use crate::backend::ops::buffers;
use crate::backend::ops::matmul::{gemm, View};
use crate::backend::ops::profile;
use crate::backend::ops::tape;
use crate::backend::ops::{Flat, Vector};
use dfdx::shapes::HasShape;
use dfdx::tensor::{Cpu, PutTape, SplitTape, Tape, Tensor, TensorFromVec};

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
