//! A training step taken apart for data-parallel training: the gradients of this process's
//! share of a batch as one flat buffer (to be summed over the ranks in one call), the
//! optimiser step from such a buffer, and the moving statistics of the batch norms as one
//! buffer (to be made the same on every rank). Flat buffers list the trainable parameters in
//! the order of [`params::trainables`], each in its backend layout.

use super::network::{on_pool, BatchStats, Network};
use super::ops::tape::Grads;
use super::ops::Image;
use super::optimizer::Optimizer;
use super::params::{self, LayerParams, ParamMut};
use dfdx::prelude::*;

/// The weight of a rank's gradient (the mean over its `share` of the images) in the sum over
/// the ranks that gives the mean gradient of the `whole` batch: its part of the batch. With
/// equal shares over 2, 4, 8… ranks it is a power of two, and the weighted sum of the ranks'
/// gradients has one process's bits (`reduce`'s tree makes each share a subtree).
pub fn share_part(share: usize, whole: usize) -> f32 {
    share as f32 / whole.max(1) as f32
}

/// What a training pass over a batch (or a share of one) computed, before any update.
#[derive(Debug)]
pub(super) struct Pass {
    /// The logits, image after image.
    pub logits: Vec<f32>,
    /// The mean loss over the images of the pass.
    pub loss: f32,
    /// Images classified right.
    pub correct: usize,
    /// The gradient of `loss`, laid out as [`Network::flat_gradients`] lays it out.
    pub flat: Vec<f32>,
}

impl Network {
    /// The number of trainable values: the length of a flat gradient.
    pub fn trainable_len(&mut self) -> usize {
        params::trainables(&self.model, &mut self.params)
            .iter()
            .map(|(_, param)| match param {
                ParamMut::Vector(tensor) => tensor.shape().num_elements(),
                ParamMut::Matrix(tensor) => tensor.shape().num_elements(),
            })
            .sum()
    }

    /// Forward in training mode and backward on a batch (`images`: `n × h × w × c`), without
    /// an update: the batch's loss and accuracy, and the gradient of its mean loss as one flat
    /// buffer.
    pub fn flat_gradients(
        &mut self,
        images: Vec<f32>,
        labels: &[usize],
    ) -> Result<(BatchStats, Vec<f32>), CpuError> {
        let x = self.input_tensor(images, labels.len());
        on_pool(self.bn_sync.is_none(), || {
            let pass = self.pass_gradients(x, labels)?;
            let stats = BatchStats {
                loss: f64::from(pass.loss),
                correct: pass.correct,
                count: labels.len(),
            };
            Ok((stats, pass.flat))
        })
    }

    /// [`Network::flat_gradients`] on an input tensor, here on this thread, with the logits.
    pub(super) fn pass_gradients(
        &mut self,
        x: Image<NoneTape>,
        labels: &[usize],
    ) -> Result<Pass, CpuError> {
        let len = self.trainable_len();
        let logits = self.forward(x.leaky_trace(), true);
        let values = logits.retaped::<NoneTape>().as_vec();
        let (loss, correct) = self.loss(logits, labels, true);
        let value = loss.array();
        let mut grads = loss.backward();
        let mut flat = Vec::with_capacity(len);
        for (_, param) in params::trainables(&self.model, &mut self.params) {
            let grad = match param {
                ParamMut::Vector(tensor) => grads.get_or_alloc_mut(&*tensor)?,
                ParamMut::Matrix(tensor) => grads.get_or_alloc_mut(&*tensor)?,
            };
            flat.extend_from_slice(grad);
        }
        Ok(Pass {
            logits: values,
            loss: value,
            correct,
            flat,
        })
    }

    /// One optimiser step with the gradient `flat` (as [`Network::flat_gradients`] lays it
    /// out), as [`Network::train_step`] steps with the gradient it computed.
    ///
    /// # Panics
    /// When `flat` is not [`Network::trainable_len`] long.
    pub fn apply_flat_gradients(
        &mut self,
        flat: &[f32],
        optimizer: &mut Optimizer,
    ) -> Result<(), CpuError> {
        let mut grads: Grads = Gradients::leaky();
        let mut offset = 0;
        optimizer.begin_step();
        for (_, param) in params::trainables(&self.model, &mut self.params) {
            match param {
                ParamMut::Vector(tensor) => {
                    let slot = grads.get_or_alloc_mut(&*tensor)?;
                    let len = slot.len();
                    slot.copy_from_slice(&flat[offset..offset + len]);
                    offset += len;
                    optimizer.update(tensor, &mut grads)?;
                }
                ParamMut::Matrix(tensor) => {
                    let slot = grads.get_or_alloc_mut(&*tensor)?;
                    let len = slot.len();
                    slot.copy_from_slice(&flat[offset..offset + len]);
                    offset += len;
                    optimizer.update(tensor, &mut grads)?;
                }
            }
        }
        assert_eq!(offset, flat.len(), "a flat gradient of the wrong length");
        Ok(())
    }

    /// The moving mean and variance of every batch norm, in layer order, as one buffer.
    pub fn moving_statistics(&self) -> Vec<f32> {
        let mut out = Vec::new();
        for params in &self.params {
            if let LayerParams::BatchNorm(bn) = params {
                out.extend(bn.moving_mean.as_vec());
                out.extend(bn.moving_variance.as_vec());
            }
        }
        out
    }

    /// Sets the moving statistics from a buffer [`Network::moving_statistics`] wrote.
    ///
    /// # Panics
    /// When `values` is not as long as that buffer.
    pub fn set_moving_statistics(&mut self, values: &[f32]) {
        let mut offset = 0;
        for params in &mut self.params {
            if let LayerParams::BatchNorm(bn) = params {
                for tensor in [&mut bn.moving_mean, &mut bn.moving_variance] {
                    let len = tensor.shape().num_elements();
                    tensor.copy_from(&values[offset..offset + len]);
                    offset += len;
                }
            }
        }
        assert_eq!(
            offset,
            values.len(),
            "moving statistics of the wrong length"
        );
    }
}
