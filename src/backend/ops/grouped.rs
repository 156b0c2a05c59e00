//! The differentiable grouped 2-D convolution op (Keras `Conv2D(groups=g)`): NHWC, Keras
//! padding, an optional bias and a fused relu / relu6.
//!
//! Filter `f` reads the input channels of group `f / (filters / g)`; the kernels are in
//! [`crate::backend::ops::grouped_kernels`]. With one group this is an ordinary convolution.

use crate::backend::ops::buffers;
use crate::backend::ops::depthwise_kernels::FusedActivation;
use crate::backend::ops::geometry::{Padding, Window2};
use crate::backend::ops::grouped_kernels::{self, GroupedGeometry};
use crate::backend::ops::profile;
use crate::backend::ops::tape;
use crate::backend::ops::{Image, Vector};
use dfdx::shapes::HasShape;
use dfdx::tensor::{Cpu, PutTape, SplitTape, Tape, Tensor, TensorFromVec};
use rayon::prelude::*;

/// The hyper-parameters of one grouped convolution layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupedConfig {
    /// Kernel size (rows, columns).
    pub kernel: (usize, usize),
    /// Stride (rows, columns).
    pub stride: (usize, usize),
    /// Border handling.
    pub padding: Padding,
    /// Groups; divides the input channels and the filters.
    pub groups: usize,
    /// Activation applied to the output inside the op.
    pub activation: FusedActivation,
    /// Compute the gradient of the input; `false` for a first layer fed by data.
    pub input_grad: bool,
}

/// The parameters of one grouped convolution layer.
#[derive(Debug, Clone)]
pub struct GroupedParams {
    /// Weights as a `(groups * k_h * k_w * c_in / groups, filters / groups)` matrix: group
    /// `g`'s HWIO matrix in rows `g * K_g .. (g + 1) * K_g` (`K_g = k_h * k_w * c_in /
    /// groups`), row `(i * k_w + j) * c_in / groups + c` within it, column = filter within
    /// the group. See [`weight_from_checkpoint`].
    pub weight: Tensor<(usize, usize), f32, Cpu>,
    /// One bias per filter, if the layer has one.
    pub bias: Option<Vector>,
}

/// Converts checkpoint weights `[filters, c_in / groups, k_h, k_w]` into the op's matrix.
///
/// # Panics
/// When `groups` does not divide `filters` or the weights are of the wrong size.
pub fn weight_from_checkpoint(
    checkpoint: &[f32],
    (filters, group_in, k_h, k_w): (usize, usize, usize, usize),
    groups: usize,
) -> Vec<f32> {
    let mut matrix = vec![0.0; checkpoint.len()];
    for_each_weight(
        (filters, group_in, k_h, k_w),
        groups,
        checkpoint.len(),
        |ck, op| {
            matrix[op] = checkpoint[ck];
        },
    );
    matrix
}

/// Converts the op's matrix back into checkpoint weights `[filters, c_in / groups, k_h, k_w]`.
///
/// # Panics
/// When `groups` does not divide `filters` or the weights are of the wrong size.
pub fn weight_to_checkpoint(
    matrix: &[f32],
    (filters, group_in, k_h, k_w): (usize, usize, usize, usize),
    groups: usize,
) -> Vec<f32> {
    let mut checkpoint = vec![0.0; matrix.len()];
    for_each_weight(
        (filters, group_in, k_h, k_w),
        groups,
        matrix.len(),
        |ck, op| {
            checkpoint[ck] = matrix[op];
        },
    );
    checkpoint
}

/// Calls `f(checkpoint index, matrix index)` for every weight.
fn for_each_weight(
    (filters, group_in, k_h, k_w): (usize, usize, usize, usize),
    groups: usize,
    len: usize,
    mut f: impl FnMut(usize, usize),
) {
    assert!(
        groups > 0 && filters.is_multiple_of(groups),
        "groups must divide the filters"
    );
    assert_eq!(
        len,
        filters * group_in * k_h * k_w,
        "weights of the wrong size"
    );
    let fg = filters / groups;
    let kg = k_h * k_w * group_in;
    for filter in 0..filters {
        let (gi, fo) = (filter / fg, filter % fg);
        for c in 0..group_in {
            for i in 0..k_h {
                for j in 0..k_w {
                    let row = gi * kg + (i * k_w + j) * group_in + c;
                    f(((filter * group_in + c) * k_h + i) * k_w + j, row * fg + fo);
                }
            }
        }
    }
}

/// The geometry of `cfg` on an `(n, h, w, c_in)` input with a weight of `weight_shape`.
///
/// # Panics
/// When the window does not fit the input, the groups do not divide the channels and the
/// filters, or the weight does not match; the compiler rejects such models first.
pub fn geometry(
    (batch, h, w, c_in): (usize, usize, usize, usize),
    cfg: &GroupedConfig,
    weight_shape: (usize, usize),
) -> GroupedGeometry {
    // INVARIANT: shape inference rejects a kernel that does not fit its input, a zero kernel
    // or stride, and an empty input before the backend runs.
    let window = Window2::new((h, w), cfg.kernel, cfg.stride, cfg.padding)
        .expect("the compiler checks that the kernel fits the input");
    let g = GroupedGeometry {
        batch,
        c_in,
        filters: weight_shape.1 * cfg.groups,
        groups: cfg.groups,
        window,
    };
    assert!(
        g.is_valid(),
        "groups must divide the channels and the filters"
    );
    assert_eq!(
        weight_shape,
        g.weight_shape(),
        "grouped weight does not match kernel, channels and groups"
    );
    g
}

/// `grouped_conv2d(x)`: `(n, h, w, c_in)` to `(n, h_out, w_out, filters)`, Keras output
/// sizes; `filters` is the weight's columns times the groups.
///
/// Parameter gradients land in the tape's gradients under `params.weight` and `params.bias`;
/// the input gradient is added to its slot.
///
/// # Panics
/// See [`geometry`].
pub fn grouped_conv2d<T: Tape<f32, Cpu>>(
    x: Image<T>,
    params: &GroupedParams,
    cfg: &GroupedConfig,
) -> Image<T> {
    let _timer = profile::scope("grouped.forward");
    let g = geometry(*x.shape(), cfg, *params.weight.shape());
    if let Some(bias) = &params.bias {
        assert_eq!(bias.shape().0, g.filters, "bias of the wrong length");
    }
    let (x, mut tape) = x.split_tape();
    let device = x.device().clone();
    let x_ghost = x.ghost();
    let input = buffers::read(&x);
    drop(x);
    let weight = buffers::to_vec(&params.weight);
    let bias = params.bias.as_ref().map(buffers::to_vec);
    let mut out = buffers::take(g.batch * g.out_image());
    grouped_kernels::forward(&g, &input, &weight, bias.as_deref(), &mut out);
    let mut mask = None;
    if let Some((lo, hi)) = cfg.activation.bounds() {
        if T::OWNS_TAPE {
            let mut m = vec![0u8; out.len()];
            out.par_chunks_mut(1 << 15)
                .zip(m.par_chunks_mut(1 << 15))
                .for_each(|(o, m)| {
                    for (o, m) in o.iter_mut().zip(m) {
                        *m = u8::from(*o > lo && *o < hi);
                        *o = o.max(lo).min(hi);
                    }
                });
            mask = Some(m);
        } else {
            out.par_chunks_mut(1 << 15)
                .for_each(|o| o.iter_mut().for_each(|o| *o = o.max(lo).min(hi)));
        }
    }
    let shape = (
        g.batch,
        g.window.rows.output,
        g.window.cols.output,
        g.filters,
    );
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
        let _timer = profile::scope("grouped.backward");
        let mut grad_out = tape::take(grads.get_or_alloc_mut(&out_ghost)?);
        if let Some(mask) = &mask {
            grad_out
                .par_chunks_mut(1 << 15)
                .zip(mask.par_chunks(1 << 15))
                .for_each(|(g, m)| g.iter_mut().zip(m).for_each(|(g, &m)| *g *= f32::from(m)));
        }
        let mut grad_weight = vec![0.0; weight.len()];
        let mut grad_bias = vec![0.0; g.filters];
        let grad_input = if input_grad {
            Some(&mut **grads.get_or_alloc_mut(&x_ghost)?)
        } else {
            None
        };
        grouped_kernels::backward(
            &g,
            &input,
            &weight,
            &grad_out,
            grad_input.map(|g| g.as_mut_slice()),
            &mut grad_weight,
            Some(&mut grad_bias),
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
