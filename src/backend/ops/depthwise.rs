//! The differentiable depthwise convolution op (Keras `DepthwiseConv2D`): NHWC, Keras padding,
//! a channel multiplier, an optional bias and a fused relu / relu6.
//!
//! Output channel `ci * m + j` is input channel `ci` convolved with its own `k_h x k_w`
//! kernel. The kernels ([`crate::backend::ops::depthwise_kernels`]) vectorise over channels;
//! the op is memory bound, so nothing is stored for the backward pass but the input.

use crate::backend::ops::batch_norm::GradInput;
use crate::backend::ops::buffers;
use crate::backend::ops::depthwise_kernels::{self, DepthwiseGeometry, FusedActivation};
use crate::backend::ops::geometry::{Padding, Window2};
use crate::backend::ops::profile;
use crate::backend::ops::tape;
use crate::backend::ops::{Batch, Image, Input, Vector};
use dfdx::shapes::HasShape;
use dfdx::tensor::{Cpu, PutTape, SplitTape, Tape, Tensor, TensorFromVec};

/// The hyper-parameters of one depthwise convolution layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DepthwiseConfig {
    /// Kernel size (rows, columns).
    pub kernel: (usize, usize),
    /// Stride (rows, columns).
    pub stride: (usize, usize),
    /// Border handling.
    pub padding: Padding,
    /// Output channels per input channel (Keras `depth_multiplier`).
    pub multiplier: usize,
    /// Activation applied inside the op (cheaper than a separate one).
    pub activation: FusedActivation,
    /// Compute the gradient of the input; `false` for a first layer fed by data.
    pub input_grad: bool,
}

/// The parameters of one depthwise convolution layer.
#[derive(Debug, Clone)]
pub struct DepthwiseParams {
    /// Weights as a `(k_h * k_w, c * m)` matrix: row `i * k_w + j` (the tap), column
    /// `ci * m + j` (the output channel). See [`weight_from_checkpoint`].
    pub weight: Tensor<(usize, usize), f32, Cpu>,
    /// One bias per output channel (`c * m`), if the layer has one.
    pub bias: Option<Vector>,
}

/// Converts checkpoint weights `[c * m, 1, k_h, k_w]` into the op's `(k_h * k_w, c * m)`
/// matrix.
///
/// # Panics
/// When `checkpoint` does not hold `c * m * k_h * k_w` values.
pub fn weight_from_checkpoint(
    checkpoint: &[f32],
    (out_channels, k_h, k_w): (usize, usize, usize),
) -> Vec<f32> {
    let taps = k_h * k_w;
    assert_eq!(
        checkpoint.len(),
        out_channels * taps,
        "weights of the wrong size"
    );
    let mut matrix = vec![0.0; checkpoint.len()];
    for (o, kernel) in checkpoint.chunks_exact(taps).enumerate() {
        for (t, &v) in kernel.iter().enumerate() {
            matrix[t * out_channels + o] = v;
        }
    }
    matrix
}

/// Converts the op's `(k_h * k_w, c * m)` matrix back into checkpoint weights
/// `[c * m, 1, k_h, k_w]`.
///
/// # Panics
/// When `matrix` does not hold `c * m * k_h * k_w` values.
pub fn weight_to_checkpoint(
    matrix: &[f32],
    (out_channels, k_h, k_w): (usize, usize, usize),
) -> Vec<f32> {
    let taps = k_h * k_w;
    assert_eq!(
        matrix.len(),
        out_channels * taps,
        "weights of the wrong size"
    );
    let mut checkpoint = vec![0.0; matrix.len()];
    for (o, kernel) in checkpoint.chunks_exact_mut(taps).enumerate() {
        for (t, v) in kernel.iter_mut().enumerate() {
            *v = matrix[t * out_channels + o];
        }
    }
    checkpoint
}

/// The geometry of `cfg` on an `(n, h, w, c)` input with a `(taps, c * m)` weight.
///
/// # Panics
/// When the window does not fit the input or the weight does not match the kernel, the
/// channels and the multiplier; the compiler rejects such models before the backend runs.
pub fn geometry(
    (batch, h, w, c): (usize, usize, usize, usize),
    cfg: &DepthwiseConfig,
    weight_shape: (usize, usize),
) -> DepthwiseGeometry {
    // INVARIANT: shape inference rejects a kernel that does not fit its input, a zero kernel
    // or stride, and an empty input before the backend runs.
    let window = Window2::new((h, w), cfg.kernel, cfg.stride, cfg.padding)
        .expect("the compiler checks that the kernel fits the input");
    let g = DepthwiseGeometry {
        batch,
        channels: c,
        multiplier: cfg.multiplier,
        window,
    };
    assert_eq!(
        weight_shape,
        (g.taps(), g.out_channels()),
        "depthwise weight does not match kernel, channels and multiplier"
    );
    g
}

/// In inference, [`depthwise_conv2d`] on a [`Batch`], read in place (the caller keeps it); the
/// output is a `Batch`.
///
/// # Panics
/// As [`depthwise_conv2d`].
pub fn depthwise_conv2d_batch(x: &Batch, params: &DepthwiseParams, cfg: &DepthwiseConfig) -> Batch {
    let _timer = profile::scope("depthwise.forward");
    let g = geometry(x.shape, cfg, *params.weight.shape());
    if let Some(bias) = &params.bias {
        assert_eq!(bias.shape().0, g.out_channels(), "bias of the wrong length");
    }
    let weight = buffers::to_vec(&params.weight);
    let bias = params.bias.as_ref().map(buffers::to_vec);
    let mut out = buffers::take(g.batch * g.out_image());
    depthwise_kernels::forward(
        &g,
        x.data[..].into(),
        &weight,
        bias.as_deref(),
        cfg.activation,
        &mut out,
    );
    Batch {
        data: out,
        shape: g.out_shape(),
    }
}

/// `depthwise_conv2d(x)`: `(n, h, w, c)` to `(n, h_out, w_out, c * m)`, Keras output sizes.
///
/// Parameter gradients land in the tape's gradients under `params.weight` and `params.bias`;
/// the input gradient is added to whatever the input's slot already holds.
///
/// # Panics
/// See [`geometry`].
pub fn depthwise_conv2d<T: Tape<f32, Cpu>>(
    x: Image<T>,
    params: &DepthwiseParams,
    cfg: &DepthwiseConfig,
) -> Image<T> {
    let _timer = profile::scope("depthwise.forward");
    let g = geometry(*x.shape(), cfg, *params.weight.shape());
    if let Some(bias) = &params.bias {
        assert_eq!(bias.shape().0, g.out_channels(), "bias of the wrong length");
    }
    let (x, mut tape) = x.split_tape();
    let device = x.device().clone();
    let x_ghost = x.ghost();
    let input = buffers::read(&x);
    drop(x);
    let weight = buffers::to_vec(&params.weight);
    let bias = params.bias.as_ref().map(buffers::to_vec);
    let act = cfg.activation;
    let mut out = buffers::take(g.batch * g.out_image());
    depthwise_kernels::forward(
        &g,
        input[..].into(),
        &weight,
        bias.as_deref(),
        act,
        &mut out,
    );
    let out = device.tensor_from_vec(out, g.out_shape());
    if !T::OWNS_TAPE {
        buffers::give(input);
        return out.put_tape(tape);
    }
    let out_ghost = out.ghost();
    let weight_key = params.weight.clone();
    let bias_key = params.bias.clone();
    let input_grad = cfg.input_grad;
    tape.add_backward_op(move |grads| {
        let _timer = profile::scope("depthwise.backward");
        let grad_out = tape::take(grads.get_or_alloc_mut(&out_ghost)?);
        let grad_input = if input_grad {
            GradInput::AddTo(grads.get_or_alloc_mut(&x_ghost)?)
        } else {
            GradInput::None
        };
        let (grad_weight, grad_bias) = parameter_and_input_gradients(
            &g,
            (input[..].into(), &weight, bias.as_deref()),
            act,
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

/// The gradients of the weight and the bias of a depthwise convolution of `g` with
/// `activation` inside it, on `input` with `weight` and `bias`, and the input's gradient put
/// where `grad_input` says.
pub(crate) fn parameter_and_input_gradients(
    g: &DepthwiseGeometry,
    (input, weight, bias): (Input<'_>, &[f32], Option<&[f32]>),
    activation: FusedActivation,
    grad_out: &[f32],
    grad_input: GradInput<'_>,
) -> (Vec<f32>, Vec<f32>) {
    let mut grad_weight = vec![0.0; weight.len()];
    let mut grad_bias = vec![0.0; g.out_channels()];
    depthwise_kernels::backward_into(
        g,
        (input, weight, bias, activation),
        grad_out,
        grad_input.parts(),
        &mut grad_weight,
        Some(&mut grad_bias),
    );
    (grad_weight, grad_bias)
}
