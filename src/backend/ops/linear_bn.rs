//! In training, a linear convolution (plain or depthwise) and the batch norm that alone reads
//! its output, as one op: `activation(batch_norm(conv(x)) [+ skip])`, with the batch norm's
//! activation and a block's residual add run inside the batch norm as
//! [`batch_norm_add`](super::batch_norm::batch_norm_add) runs them.
//!
//! Run as two ops, the convolution's output becomes a tensor that the batch norm copies back
//! out, and in the backward the batch norm adds its input gradient into a zeroed gradient on
//! the tape, which the convolution's backward then takes. Here the output goes straight to the
//! batch norm, and the batch norm writes its input gradient over a pooled buffer that the
//! convolution's backward reads: two passes over the convolution's output fewer each way. The
//! values, the gradients and the moving statistics have the same bits as the two ops'.

use crate::backend::ops::batch_norm::{self, BatchNormConfig, BatchNormParams, GradInput};
use crate::backend::ops::buffers;
use crate::backend::ops::conv2d::{self, Conv2dConfig, Conv2dParams};
use crate::backend::ops::conv_kernels::{self, ConvGeometry};
use crate::backend::ops::depthwise::{self, DepthwiseConfig, DepthwiseParams};
use crate::backend::ops::depthwise_kernels::{self, DepthwiseGeometry, FusedActivation};
use crate::backend::ops::profile;
use crate::backend::ops::tape;
use crate::backend::ops::{Flat, Image, Shape4, Vector};
use dfdx::shapes::HasShape;
use dfdx::tensor::{Cpu, NoneTape, PutTape, SplitTape, Tape, TensorFromVec};

/// A linear convolution as the first half of the fused op.
trait Linear: Send + Sync + 'static {
    /// The profile's names of the forward and the backward.
    const NAMES: (&'static str, &'static str);
    /// The output batch's shape.
    fn out_shape(&self) -> Shape4;
    /// Writes the output of `input` over `out`.
    fn forward(&self, input: &[f32], out: &mut [f32]);
    /// The weight's and the bias's gradients, and the input's added into `grad_input`.
    fn backward(
        &self,
        input: &[f32],
        grad_out: &[f32],
        grad_input: Option<&mut [f32]>,
    ) -> (Vec<f32>, Vec<f32>);
}

/// A plain convolution, its weight and bias read out.
struct Conv {
    geometry: ConvGeometry,
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
}

impl Linear for Conv {
    const NAMES: (&'static str, &'static str) = ("conv2d.forward", "conv2d.backward");

    fn out_shape(&self) -> Shape4 {
        self.geometry.out_shape()
    }

    fn forward(&self, input: &[f32], out: &mut [f32]) {
        let bias = self.bias.as_deref();
        conv_kernels::forward_residual(
            &self.geometry,
            input,
            &self.weight,
            bias,
            None,
            None,
            out,
            None,
        );
    }

    fn backward(
        &self,
        input: &[f32],
        grad_out: &[f32],
        grad_input: Option<&mut [f32]>,
    ) -> (Vec<f32>, Vec<f32>) {
        conv2d::parameter_and_input_gradients(
            &self.geometry,
            input,
            &self.weight,
            grad_out,
            grad_input,
        )
    }
}

/// A depthwise convolution, its weight and bias read out.
struct Depthwise {
    geometry: DepthwiseGeometry,
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
}

impl Linear for Depthwise {
    const NAMES: (&'static str, &'static str) = ("depthwise.forward", "depthwise.backward");

    fn out_shape(&self) -> Shape4 {
        self.geometry.out_shape()
    }

    fn forward(&self, input: &[f32], out: &mut [f32]) {
        let (g, bias) = (&self.geometry, self.bias.as_deref());
        depthwise_kernels::forward(g, input, &self.weight, bias, FusedActivation::Linear, out);
    }

    fn backward(
        &self,
        input: &[f32],
        grad_out: &[f32],
        grad_input: Option<&mut [f32]>,
    ) -> (Vec<f32>, Vec<f32>) {
        depthwise::parameter_and_input_gradients(
            &self.geometry,
            (input, &self.weight, self.bias.as_deref()),
            FusedActivation::Linear,
            grad_out,
            grad_input,
        )
    }
}

/// `activation(batch_norm(conv2d(x)) [+ skip])` in training, `bn_cfg.activation` the
/// activation; `conv_cfg.relu` must be off (the convolution is linear).
///
/// # Panics
/// As [`conv2d::conv2d`] does, and when `skip` differs from the output in shape.
pub fn conv2d_batch_norm<T: Tape<f32, Cpu>>(
    x: Image<T>,
    (conv, conv_cfg): (&Conv2dParams, &Conv2dConfig),
    (bn, bn_cfg): (&mut BatchNormParams, &BatchNormConfig),
    skip: Option<&Image<NoneTape>>,
) -> Image<T> {
    assert!(
        !conv_cfg.relu,
        "the convolution before a batch norm is linear"
    );
    let linear = Conv {
        geometry: conv2d::geometry(*x.shape(), conv, conv_cfg),
        weight: buffers::to_vec(&conv.weight),
        bias: conv.bias.as_ref().map(buffers::to_vec),
    };
    let keys = (&conv.weight, conv.bias.as_ref());
    with_batch_norm(x, linear, keys, conv_cfg.input_grad, (bn, bn_cfg), skip)
}

/// `activation(batch_norm(depthwise_conv2d(x)) [+ skip])` in training, `bn_cfg.activation`
/// the activation; `dw_cfg.activation` must be linear.
///
/// # Panics
/// As [`depthwise::depthwise_conv2d`] does, and when `skip` differs from the output in shape.
pub fn depthwise_batch_norm<T: Tape<f32, Cpu>>(
    x: Image<T>,
    (dw, dw_cfg): (&DepthwiseParams, &DepthwiseConfig),
    (bn, bn_cfg): (&mut BatchNormParams, &BatchNormConfig),
    skip: Option<&Image<NoneTape>>,
) -> Image<T> {
    assert_eq!(
        dw_cfg.activation,
        FusedActivation::Linear,
        "the convolution before a batch norm is linear"
    );
    let linear = Depthwise {
        geometry: depthwise::geometry(*x.shape(), dw_cfg, *dw.weight.shape()),
        weight: buffers::to_vec(&dw.weight),
        bias: dw.bias.as_ref().map(buffers::to_vec),
    };
    let keys = (&dw.weight, dw.bias.as_ref());
    with_batch_norm(x, linear, keys, dw_cfg.input_grad, (bn, bn_cfg), skip)
}

/// The fused op of `linear`, whose parameters' gradients go to `keys` (weight, bias).
fn with_batch_norm<T: Tape<f32, Cpu>, L: Linear>(
    x: Image<T>,
    linear: L,
    (weight_key, bias_key): (&Flat<NoneTape>, Option<&Vector>),
    input_grad: bool,
    (bn, bn_cfg): (&mut BatchNormParams, &BatchNormConfig),
    skip: Option<&Image<NoneTape>>,
) -> Image<T> {
    let timer = profile::scope(L::NAMES.0);
    let (x, mut tape) = x.split_tape();
    let device = x.device().clone();
    let x_ghost = x.ghost();
    let input = buffers::read(&x);
    drop(x);
    let shape = linear.out_shape();
    let mut linear_out = buffers::take(shape.0 * shape.1 * shape.2 * shape.3);
    linear.forward(&input, &mut linear_out);
    drop(timer);
    let skip_data = skip.map(|skip| {
        assert_eq!(*skip.shape(), shape, "the skip has the output's shape");
        buffers::read(skip)
    });
    let skip_key = skip.map(|skip| skip.ghost());
    let (out, normalised) = batch_norm::forward_values(
        linear_out,
        skip_data.as_deref(),
        shape.0,
        bn,
        bn_cfg,
        T::OWNS_TAPE,
    );
    if let Some(skip) = skip_data {
        buffers::give(skip);
    }
    let out = device.tensor_from_vec(out, shape);
    if !T::OWNS_TAPE {
        normalised.release();
        buffers::give(input);
        return out.put_tape(tape);
    }
    let out_ghost = out.ghost();
    let (weight_key, bias_key) = (weight_key.clone(), bias_key.cloned());
    let (gamma_key, beta_key) = (bn.gamma.clone(), bn.beta.clone());
    tape.add_backward_op(move |grads| {
        let mut grad_out = tape::take(grads.get_or_alloc_mut(&out_ghost)?);
        let mut grad_linear = buffers::take(grad_out.len());
        let (grad_gamma, grad_beta) =
            normalised.backward(&mut grad_out, GradInput::Overwrite(&mut grad_linear));
        if let Some(skip_key) = &skip_key {
            tape::add_into(grads.get_or_alloc_mut(skip_key)?, &grad_out);
        }
        tape::release(grad_out);
        tape::add_into(grads.get_or_alloc_mut(&gamma_key)?, &grad_gamma);
        tape::add_into(grads.get_or_alloc_mut(&beta_key)?, &grad_beta);
        let _timer = profile::scope(L::NAMES.1);
        let grad_input = if input_grad {
            Some(&mut **grads.get_or_alloc_mut(&x_ghost)?)
        } else {
            None
        };
        let (grad_weight, grad_bias) =
            linear.backward(&input, &grad_linear, grad_input.map(|g| g.as_mut_slice()));
        buffers::give(grad_linear);
        tape::add_weight_and_bias(
            grads,
            (&weight_key, &grad_weight),
            (bias_key.as_ref(), &grad_bias),
        )?;
        buffers::give(input);
        Ok(())
    });
    out.put_tape(tape)
}
