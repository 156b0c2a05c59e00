//! Adam over runtime-shaped parameter tensors, using dfdx's `AdamConfig` update kernel.
//!
//! dfdx's `Adam` optimiser needs a compile-time module; this keeps the moments per parameter id
//! instead. Note: dfdx's update is `lr * m_hat / (sqrt(v_hat) + eps)` (PyTorch's form); Keras
//! uses the same form with `eps = 1e-7` by default.

use crate::backend::ops::tape::Grads;
use dfdx::optim::AdamConfig;
use dfdx::shapes::Shape;
use dfdx::tensor::{Cpu, CpuError, Gradients, Tensor};

/// Adam state: the configuration, the step count and both moments of every parameter.
#[derive(Debug)]
pub struct Adam {
    /// Hyper-parameters (learning rate, betas, eps, weight decay).
    pub config: AdamConfig,
    step: i32,
    first_moment: Grads,
    second_moment: Grads,
}

impl Adam {
    /// A fresh optimiser at step 0.
    pub fn new(config: AdamConfig) -> Self {
        Self {
            config,
            step: 0,
            first_moment: Gradients::leaky(),
            second_moment: Gradients::leaky(),
        }
    }

    /// Starts an optimisation step; call once per batch before the [`Adam::update`] calls.
    pub fn begin_step(&mut self) {
        self.step += 1;
    }

    /// The number of steps begun so far.
    pub fn step(&self) -> i32 {
        self.step
    }

    /// Updates one parameter with its gradient from `grads` (zero if it has none).
    pub fn update<S: Shape>(
        &mut self,
        param: &mut Tensor<S, f32, Cpu>,
        grads: &mut Grads,
    ) -> Result<(), CpuError> {
        let step = self.step.max(1);
        let grad = grads.get_or_alloc_mut(&*param)?;
        let first = self.first_moment.get_or_alloc_mut(&*param)?;
        let second = self.second_moment.get_or_alloc_mut(&*param)?;
        self.config.try_update(step, param, first, second, grad)
    }
}
