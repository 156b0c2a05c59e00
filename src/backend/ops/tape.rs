//! Helpers for dfdx's tape API: borrowing an output gradient while writing input gradients.
//!
//! dfdx hands out gradient storage as `&mut <Cpu as Storage<f32>>::Vec` (via
//! `Gradients::get_or_alloc_mut`, keyed by a tensor or its ghost). Backward closures move the
//! output gradient out with [`take`], write the input gradients, and hand it to the buffer pool
//! with [`release`]: backward runs the ops in reverse, so every reader of a tensor has added its
//! share to the tensor's gradient before the op that made it runs, and nothing reads that
//! gradient again. Freeing it there keeps only the gradients still to be read alive, as the
//! forward pass keeps only the outputs still to be read.

use super::{Shape2, Vector};
use dfdx::tensor::{Cpu, CpuError, Gradients, Storage, Tensor};

/// The gradient store of CPU `f32` tensors.
pub type Grads = Gradients<f32, Cpu>;
/// One gradient buffer inside [`Grads`].
pub type GradSlot = <Cpu as Storage<f32>>::Vec;

/// Moves a gradient out of its slot, leaving the slot empty (no memory).
pub fn take(slot: &mut GradSlot) -> Vec<f32> {
    std::mem::take(&mut **slot)
}

/// Frees an op's output gradient, moved out with [`take`], once its input gradients are
/// written: the buffer goes back to the pool for the next allocation.
pub fn release(grad: Vec<f32>) {
    super::buffers::give(grad);
}

/// `dst += src` on all cores.
pub fn add_into(dst: &mut [f32], src: &[f32]) {
    use rayon::prelude::*;
    assert_eq!(dst.len(), src.len(), "gradient of the wrong length");
    const CHUNK: usize = 1 << 15;
    dst.par_chunks_mut(CHUNK)
        .zip(src.par_chunks(CHUNK))
        .for_each(|(d, s)| d.iter_mut().zip(s).for_each(|(d, s)| *d += s));
}

/// Adds a layer's weight gradient into its slot, and its bias gradient too when it has a bias.
pub fn add_weight_and_bias(
    grads: &mut Grads,
    (weight, grad_weight): (&Tensor<Shape2, f32, Cpu>, &[f32]),
    (bias, grad_bias): (Option<&Vector>, &[f32]),
) -> Result<(), CpuError> {
    add_into(grads.get_or_alloc_mut(weight)?, grad_weight);
    if let Some(bias) = bias {
        add_into(grads.get_or_alloc_mut(bias)?, grad_bias);
    }
    Ok(())
}
