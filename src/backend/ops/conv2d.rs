//! The differentiable 2-D convolution op (NHWC, HWIO weights, Keras padding, fused relu).

use crate::backend::ops::batch_norm::GradInput;
use crate::backend::ops::buffers;
use crate::backend::ops::conv_kernels::{self, ConvGeometry};
use crate::backend::ops::depthwise_kernels::FusedActivation;
use crate::backend::ops::geometry::{Padding, Window2};
use crate::backend::ops::profile;
use crate::backend::ops::tape;
use crate::backend::ops::{Batch, Image, Input, Shape4, Vector};
use dfdx::shapes::HasShape;
use dfdx::tensor::{Cpu, PutTape, SplitTape, Tape, Tensor, TensorFromVec};
use rayon::prelude::*;

/// The hyper-parameters of one convolution layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dConfig {
    /// Kernel size (rows, columns).
    pub kernel: (usize, usize),
    /// Stride (rows, columns).
    pub stride: (usize, usize),
    /// Border handling.
    pub padding: Padding,
    /// Apply relu to the output inside the op (cheaper than a separate relu).
    pub relu: bool,
    /// Compute the gradient of the input; `false` for a first layer fed by data.
    pub input_grad: bool,
}

/// The parameters of one convolution layer.
#[derive(Debug, Clone)]
pub struct Conv2dParams {
    /// Weights as a `(k_h * k_w * c_in, filters)` matrix in HWIO order: row
    /// `(i * k_w + j) * c_in + c`, column `f`. See [`weight_from_checkpoint`].
    pub weight: Tensor<(usize, usize), f32, Cpu>,
    /// One bias per filter, if the layer has one.
    pub bias: Option<Vector>,
}

/// Converts checkpoint weights `[filters, c_in, k_h, k_w]` into the op's HWIO matrix.
pub fn weight_from_checkpoint(
    checkpoint: &[f32],
    (filters, c_in, k_h, k_w): (usize, usize, usize, usize),
) -> Vec<f32> {
    assert_eq!(
        checkpoint.len(),
        filters * c_in * k_h * k_w,
        "weights of the wrong size"
    );
    let mut hwio = vec![0.0; checkpoint.len()];
    for f in 0..filters {
        for c in 0..c_in {
            for i in 0..k_h {
                for j in 0..k_w {
                    let row = (i * k_w + j) * c_in + c;
                    hwio[row * filters + f] = checkpoint[((f * c_in + c) * k_h + i) * k_w + j];
                }
            }
        }
    }
    hwio
}

/// Converts the op's HWIO matrix back into checkpoint weights `[filters, c_in, k_h, k_w]`.
pub fn weight_to_checkpoint(
    hwio: &[f32],
    (filters, c_in, k_h, k_w): (usize, usize, usize, usize),
) -> Vec<f32> {
    assert_eq!(
        hwio.len(),
        filters * c_in * k_h * k_w,
        "weights of the wrong size"
    );
    let mut checkpoint = vec![0.0; hwio.len()];
    for f in 0..filters {
        for c in 0..c_in {
            for i in 0..k_h {
                for j in 0..k_w {
                    let row = (i * k_w + j) * c_in + c;
                    checkpoint[((f * c_in + c) * k_h + i) * k_w + j] = hwio[row * filters + f];
                }
            }
        }
    }
    checkpoint
}

/// `conv2d(x)`: `(n, h, w, c_in)` to `(n, h_out, w_out, filters)`, Keras output sizes.
///
/// Parameter gradients land in the tape's gradients under `params.weight` and `params.bias`.
///
/// # Panics
/// When the window does not fit the input or the weight shape does not match `c_in` and the
/// kernel; the compiler rejects such models before the backend runs.
pub fn conv2d<T: Tape<f32, Cpu>>(
    x: Image<T>,
    params: &Conv2dParams,
    cfg: &Conv2dConfig,
) -> Image<T> {
    let activation = if cfg.relu {
        FusedActivation::Relu
    } else {
        FusedActivation::Linear
    };
    conv2d_activated(x, params, cfg, activation)
}

/// In inference, [`conv2d_activated`] on a [`Batch`], plus `residual` when given (the residual
/// `add` at the end of a block, run inside the block's last convolution): the input and the
/// residual are read in place (the caller keeps them), and the output is a `Batch`.
///
/// # Panics
/// When `residual` differs from the output in shape (the compiler's `add` rule prevents it).
pub fn conv2d_batch(
    x: &Batch,
    params: &Conv2dParams,
    cfg: &Conv2dConfig,
    activation: FusedActivation,
    residual: Option<&Batch>,
) -> Batch {
    let _timer = profile::scope("conv2d.forward");
    let geometry = geometry(x.shape, params, cfg);
    let weight = buffers::to_vec(&params.weight);
    let bias = params.bias.as_ref().map(buffers::to_vec);
    let mut out = buffers::take(geometry.batch * geometry.out_image());
    let residual = residual.map(|residual| {
        assert_eq!(
            residual.data.len(),
            out.len(),
            "a residual of the output's shape"
        );
        &residual.data[..]
    });
    conv_kernels::forward_residual(
        &geometry,
        x.data[..].into(),
        &weight,
        bias.as_deref(),
        residual,
        activation.bounds(),
        &mut out,
        None,
    );
    Batch {
        data: out,
        shape: geometry.out_shape(),
    }
}

/// The convolution of `params` and `cfg` on an input of `shape`.
///
/// # Panics
/// When the window does not fit (the compiler rejects such models).
pub(crate) fn geometry(
    (batch, h, w, c_in): Shape4,
    params: &Conv2dParams,
    cfg: &Conv2dConfig,
) -> ConvGeometry {
    let window = Window2::new((h, w), cfg.kernel, cfg.stride, cfg.padding)
        .expect("the compiler checks that the kernel fits the input");
    ConvGeometry::for_weight(batch, c_in, window, *params.weight.shape())
}

/// [`conv2d`] with `activation` (relu or relu6; `cfg.relu` is ignored) applied inside: the
/// output is clamped as it is written, and the backward masks the output gradient where the
/// activation's derivative is 0 (at and beyond the kinks, as Keras).
pub fn conv2d_activated<T: Tape<f32, Cpu>>(
    x: Image<T>,
    params: &Conv2dParams,
    cfg: &Conv2dConfig,
    activation: FusedActivation,
) -> Image<T> {
    let _timer = profile::scope("conv2d.forward");
    let geometry = geometry(*x.shape(), params, cfg);
    let batch = geometry.batch;
    let (x, mut tape) = x.split_tape();
    let device = x.device().clone();
    let x_ghost = x.ghost();
    let input = buffers::read(&x);
    drop(x);
    let weight = buffers::to_vec(&params.weight);
    let bias = params.bias.as_ref().map(buffers::to_vec);
    let mut out = buffers::take(batch * geometry.out_image());
    let bounds = activation.bounds();
    let mut mask = (bounds.is_some() && T::OWNS_TAPE).then(|| vec![0u8; out.len()]);
    let bias_slice = bias.as_deref();
    conv_kernels::forward_residual(
        &geometry,
        input[..].into(),
        &weight,
        bias_slice,
        None,
        bounds,
        &mut out,
        mask.as_deref_mut(),
    );
    let shape = geometry.out_shape();
    let out = device.tensor_from_vec(out, shape);
    if !T::OWNS_TAPE {
        buffers::give(input);
        return out.put_tape(tape);
    }
    let out_ghost = out.ghost();
    let weight_key = params.weight.clone();
    let bias_key = params.bias.clone();
    let input_grad = cfg.input_grad;
    tape.add_backward_op(move |grads| {
        let _timer = profile::scope("conv2d.backward");
        let mut grad_out = tape::take(grads.get_or_alloc_mut(&out_ghost)?);
        if let Some(mask) = &mask {
            grad_out
                .par_chunks_mut(1 << 15)
                .zip(mask.par_chunks(1 << 15))
                .for_each(|(g, m)| g.iter_mut().zip(m).for_each(|(g, &m)| *g *= f32::from(m)));
        }
        let grad_input = if input_grad {
            GradInput::AddTo(grads.get_or_alloc_mut(&x_ghost)?)
        } else {
            GradInput::None
        };
        let (grad_weight, grad_bias) = parameter_and_input_gradients(
            &geometry,
            input[..].into(),
            &weight,
            &grad_out,
            grad_input,
        );
        tape::release(grad_out);
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

/// The gradients of the weight and the bias of a convolution of `geometry`, and the input's
/// gradient put where `grad_input` says (the input may be made by a map as it is read: see
/// `conv_kernels::backward_into`).
pub(crate) fn parameter_and_input_gradients(
    geometry: &ConvGeometry,
    input: Input<'_>,
    weight: &[f32],
    grad_out: &[f32],
    grad_input: GradInput<'_>,
) -> (Vec<f32>, Vec<f32>) {
    let mut grad_weight = vec![0.0; weight.len()];
    let mut grad_bias = vec![0.0; geometry.filters];
    let (grad_input, fresh) = grad_input.parts();
    let grads = (grad_input, &mut grad_weight[..], Some(&mut grad_bias[..]));
    conv_kernels::backward_into(geometry, (input, weight, grad_out), grads, fresh);
    (grad_weight, grad_bias)
}
