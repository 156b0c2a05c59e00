//! The differentiable separable convolution op (Keras `SeparableConv2D`, one layer): a
//! depthwise convolution (multiplier `m`, no bias of its own) then a 1x1 pointwise convolution
//! to `filters` with a bias, and an optional fused relu / relu6.
//!
//! The intermediate (`c * m` channels) never exists whole: each block of output rows runs the
//! depthwise kernel ([`crate::backend::ops::depthwise_kernels`]) into a cache-sized scratch
//! and multiplies it by the pointwise matrix at once ([`crate::backend::ops::matmul::gemm`]).
//! The backward pass recomputes a block's intermediate the same way, takes its gradient from
//! the output gradient by the transposed product, and hands it to the depthwise backward
//! kernels; blocks own disjoint input rows, so the input gradient has no races and every sum
//! a fixed order.

use crate::backend::ops::buffers;
use crate::backend::ops::conv_pool_kernels::transpose_padded;
use crate::backend::ops::depthwise::{self, DepthwiseConfig};
use crate::backend::ops::depthwise_kernels::{
    self as dk, DepthwiseGeometry, DwScratch, FusedActivation, Plans, Source,
};
use crate::backend::ops::geometry::Padding;
use crate::backend::ops::matmul::{gemm, View};
use crate::backend::ops::profile;
use crate::backend::ops::reduce::fold_in_order_by;
use crate::backend::ops::simd;
use crate::backend::ops::tape;
use crate::backend::ops::{Image, Vector};
use dfdx::shapes::HasShape;
use dfdx::tensor::{Cpu, PutTape, SplitTape, Tape, Tensor, TensorFromVec};
use rayon::prelude::*;
use std::ops::Range;

/// Output pixels' intermediate values per block: about 128 KiB.
const ELEMENTS_PER_BLOCK: usize = 1 << 15;

/// The hyper-parameters of one separable convolution layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeparableConfig {
    /// Kernel size (rows, columns) of the depthwise part.
    pub kernel: (usize, usize),
    /// Stride (rows, columns).
    pub stride: (usize, usize),
    /// Border handling.
    pub padding: Padding,
    /// Depthwise channels per input channel (Keras `depth_multiplier`).
    pub multiplier: usize,
    /// Activation applied to the output inside the op.
    pub activation: FusedActivation,
    /// Compute the gradient of the input; `false` for a first layer fed by data.
    pub input_grad: bool,
}

/// The parameters of one separable convolution layer.
#[derive(Debug, Clone)]
pub struct SeparableParams {
    /// Depthwise weights, `(k_h * k_w, c * m)` as [`depthwise::DepthwiseParams::weight`];
    /// converted by [`depthwise_from_checkpoint`].
    pub depthwise: Tensor<(usize, usize), f32, Cpu>,
    /// Pointwise weights, `(c * m, filters)` row-major; converted by
    /// [`pointwise_from_checkpoint`].
    pub pointwise: Tensor<(usize, usize), f32, Cpu>,
    /// One bias per filter, if the layer has one.
    pub bias: Option<Vector>,
}

/// Converts checkpoint depthwise weights `[c * m, 1, k_h, k_w]` into the op's
/// `(k_h * k_w, c * m)` matrix (the depthwise op's layout).
pub fn depthwise_from_checkpoint(checkpoint: &[f32], dims: (usize, usize, usize)) -> Vec<f32> {
    depthwise::weight_from_checkpoint(checkpoint, dims)
}

/// Converts the op's `(k_h * k_w, c * m)` depthwise matrix back into `[c * m, 1, k_h, k_w]`.
pub fn depthwise_to_checkpoint(matrix: &[f32], dims: (usize, usize, usize)) -> Vec<f32> {
    depthwise::weight_to_checkpoint(matrix, dims)
}

/// Converts checkpoint pointwise weights `[filters, c * m, 1, 1]` into the op's
/// `(c * m, filters)` matrix.
///
/// # Panics
/// When `checkpoint` does not hold `filters * c * m` values.
pub fn pointwise_from_checkpoint(
    checkpoint: &[f32],
    (filters, channels): (usize, usize),
) -> Vec<f32> {
    assert_eq!(
        checkpoint.len(),
        filters * channels,
        "weights of the wrong size"
    );
    transpose_padded(checkpoint, filters, channels, filters)
}

/// Converts the op's `(c * m, filters)` pointwise matrix back into `[filters, c * m, 1, 1]`.
///
/// # Panics
/// When `matrix` does not hold `filters * c * m` values.
pub fn pointwise_to_checkpoint(matrix: &[f32], (filters, channels): (usize, usize)) -> Vec<f32> {
    assert_eq!(
        matrix.len(),
        filters * channels,
        "weights of the wrong size"
    );
    transpose_padded(matrix, channels, filters, channels)
}

/// A separable convolution's shapes: the depthwise geometry and the filters.
#[derive(Debug, Clone, Copy)]
pub struct SeparableGeometry {
    /// The depthwise part.
    pub depthwise: DepthwiseGeometry,
    /// Output channels.
    pub filters: usize,
}

impl SeparableGeometry {
    /// Elements of one output row.
    fn out_row(&self) -> usize {
        self.depthwise.window.cols.output * self.filters
    }
    /// Elements of one output image.
    fn out_image(&self) -> usize {
        self.depthwise.window.rows.output * self.out_row()
    }
}

/// The geometry of `cfg` on an `(n, h, w, c)` input with the given weight shapes.
///
/// # Panics
/// When the window does not fit the input or the weights do not match the kernel, the
/// channels, the multiplier and each other; the compiler rejects such models first.
pub fn geometry(
    input: (usize, usize, usize, usize),
    cfg: &SeparableConfig,
    depthwise_shape: (usize, usize),
    pointwise_shape: (usize, usize),
) -> SeparableGeometry {
    let dw_cfg = DepthwiseConfig {
        kernel: cfg.kernel,
        stride: cfg.stride,
        padding: cfg.padding,
        multiplier: cfg.multiplier,
        activation: FusedActivation::Linear,
        input_grad: cfg.input_grad,
    };
    let g = depthwise::geometry(input, &dw_cfg, depthwise_shape);
    assert_eq!(
        pointwise_shape.0,
        g.out_channels(),
        "pointwise weight does not match the depthwise channels"
    );
    SeparableGeometry {
        depthwise: g,
        filters: pointwise_shape.1,
    }
}

/// `separable_conv2d(x)`: `(n, h, w, c)` to `(n, h_out, w_out, filters)`, Keras output sizes.
///
/// Parameter gradients land in the tape's gradients under `params.depthwise`,
/// `params.pointwise` and `params.bias`; the input gradient is added to its slot.
///
/// # Panics
/// See [`geometry`].
pub fn separable_conv2d<T: Tape<f32, Cpu>>(
    x: Image<T>,
    params: &SeparableParams,
    cfg: &SeparableConfig,
) -> Image<T> {
    let _timer = profile::scope("separable.forward");
    let sg = geometry(
        *x.shape(),
        cfg,
        *params.depthwise.shape(),
        *params.pointwise.shape(),
    );
    if let Some(bias) = &params.bias {
        assert_eq!(bias.shape().0, sg.filters, "bias of the wrong length");
    }
    let g = sg.depthwise;
    let (x, mut tape) = x.split_tape();
    let device = x.device().clone();
    let x_ghost = x.ghost();
    let input = buffers::read(&x);
    drop(x);
    let weights = Weights {
        depthwise: buffers::to_vec(&params.depthwise),
        pointwise: buffers::to_vec(&params.pointwise),
        bias: params.bias.as_ref().map(buffers::to_vec),
    };
    let act = cfg.activation;
    let mut out = buffers::take(g.batch * sg.out_image());
    let mut mask = (act != FusedActivation::Linear && T::OWNS_TAPE).then(|| vec![0u8; out.len()]);
    forward(&sg, &input, &weights, act, &mut out, mask.as_deref_mut());
    let shape = (
        g.batch,
        g.window.rows.output,
        g.window.cols.output,
        sg.filters,
    );
    let out = device.tensor_from_vec(out, shape);
    if !T::OWNS_TAPE {
        buffers::give(input);
        return out.put_tape(tape);
    }
    let out_ghost = out.ghost();
    let keys = (
        params.depthwise.clone(),
        params.pointwise.clone(),
        params.bias.clone(),
    );
    let input_grad = cfg.input_grad;
    tape.add_backward_op(move |grads| {
        let _timer = profile::scope("separable.backward");
        let mut grad_out = tape::take(grads.get_or_alloc_mut(&out_ghost)?);
        if let Some(mask) = &mask {
            grad_out
                .par_chunks_mut(1 << 15)
                .zip(mask.par_chunks(1 << 15))
                .for_each(|(g, m)| g.iter_mut().zip(m).for_each(|(g, &m)| *g *= f32::from(m)));
        }
        let grad_input = if input_grad {
            Some(&mut **grads.get_or_alloc_mut(&x_ghost)?)
        } else {
            None
        };
        let [d_depthwise, d_pointwise, d_bias] = backward(
            &sg,
            &input,
            &weights,
            &grad_out,
            grad_input.map(|g| g.as_mut_slice()),
        );
        tape::release(grad_out);
        tape::add_into(grads.get_or_alloc_mut(&keys.0)?, &d_depthwise);
        tape::add_into(grads.get_or_alloc_mut(&keys.1)?, &d_pointwise);
        if let Some(bias_key) = &keys.2 {
            tape::add_into(grads.get_or_alloc_mut(bias_key)?, &d_bias);
        }
        buffers::give(input);
        Ok(())
    });
    out.put_tape(tape)
}

/// The weights of a separable convolution as plain vectors.
pub struct Weights {
    /// `(k_h * k_w, c * m)`.
    pub depthwise: Vec<f32>,
    /// `(c * m, filters)`.
    pub pointwise: Vec<f32>,
    /// `filters`, if any.
    pub bias: Option<Vec<f32>>,
}

fn check_lengths(sg: &SeparableGeometry, input: &[f32], w: &Weights) {
    let g = &sg.depthwise;
    assert_eq!(
        input.len(),
        g.batch * g.in_image(),
        "input of the wrong length"
    );
    assert_eq!(
        w.depthwise.len(),
        g.weight_len(),
        "depthwise weight of the wrong length"
    );
    assert_eq!(
        w.pointwise.len(),
        g.out_channels() * sg.filters,
        "pointwise weight of the wrong length"
    );
    if let Some(bias) = &w.bias {
        assert_eq!(bias.len(), sg.filters, "bias of the wrong length");
    }
}

/// Forward: `out` (`batch x out_image`) is the separable convolution plus bias, activated;
/// `mask` (when given) records where the activation passes gradient.
///
/// # Panics
/// When a slice does not match the geometry.
pub fn forward(
    sg: &SeparableGeometry,
    input: &[f32],
    w: &Weights,
    act: FusedActivation,
    out: &mut [f32],
    mask: Option<&mut [u8]>,
) {
    check_lengths(sg, input, w);
    let g = &sg.depthwise;
    assert_eq!(
        out.len(),
        g.batch * sg.out_image(),
        "output of the wrong length"
    );
    if out.is_empty() {
        return;
    }
    let plans = Plans::new(g);
    let block_rows = g.rows_per_block(ELEMENTS_PER_BLOCK);
    let block_len = block_rows * sg.out_row();
    let blocks_per_image = g.window.rows.output.div_ceil(block_rows);
    // One mask slot per block, image by image.
    let mut masks: Vec<Option<&mut [u8]>> = match mask {
        Some(mask) => mask
            .chunks_mut(sg.out_image())
            .flat_map(|image| image.chunks_mut(block_len).map(Some))
            .collect(),
        None => (0..g.batch * blocks_per_image).map(|_| None).collect(),
    };
    out.par_chunks_mut(sg.out_image())
        .zip(masks.par_chunks_mut(blocks_per_image))
        .zip(input.par_chunks(g.in_image()))
        .for_each(|((out_image, masks), image)| {
            out_image
                .par_chunks_mut(block_len)
                .zip(masks.par_iter_mut())
                .enumerate()
                .for_each(|(b, (block, mask))| {
                    let y0 = b * block_rows;
                    let rows = y0..y0 + block.len() / sg.out_row();
                    let mut scratch = DwScratch::take();
                    forward_block(sg, &plans, image, rows, w, block, &mut scratch);
                    scratch.give();
                    if let Some((lo, hi)) = act.bounds() {
                        match mask {
                            Some(mask) => {
                                for (o, m) in block.iter_mut().zip(mask.iter_mut()) {
                                    *m = u8::from(*o > lo && *o < hi);
                                    *o = o.max(lo).min(hi);
                                }
                            }
                            None => block.iter_mut().for_each(|o| *o = o.max(lo).min(hi)),
                        }
                    }
                })
        });
}

/// The depthwise rows `rows` of one image in `scratch.mid`.
fn depthwise_rows<'a>(
    sg: &SeparableGeometry,
    plans: &Plans,
    image: &[f32],
    rows: Range<usize>,
    weight: &[f32],
    scratch: &'a mut DwScratch,
) -> &'a [f32] {
    let g = &sg.depthwise;
    let DwScratch {
        wide, mid, mapped, ..
    } = scratch;
    let src = dk::source(g, (image, None), g.input_rows(&rows), (wide, mapped));
    let mid = dk::sized(mid, rows.len() * g.out_row());
    dk::forward_rows_into(g, plans, &src, rows, weight, None, None, mid);
    mid
}

/// One forward block: output rows `rows` of one image (before the activation).
fn forward_block(
    sg: &SeparableGeometry,
    plans: &Plans,
    image: &[f32],
    rows: Range<usize>,
    w: &Weights,
    out_block: &mut [f32],
    scratch: &mut DwScratch,
) {
    let (cm, f) = (sg.depthwise.out_channels(), sg.filters);
    let pixels = rows.len() * sg.depthwise.window.cols.output;
    let mid = depthwise_rows(sg, plans, image, rows, &w.depthwise, scratch);
    if let Some(bias) = &w.bias {
        out_block
            .chunks_exact_mut(f.max(1))
            .for_each(|px| px.copy_from_slice(bias));
    }
    simd::fast(|| {
        gemm(
            out_block,
            (pixels, f, cm),
            View::rows(mid, cm),
            View::rows(&w.pointwise, f),
            w.bias.is_some(),
            1,
        )
    });
}

/// Gradients `[depthwise, pointwise, bias]` of a separable convolution, given the gradient of
/// its output (already through the activation); the input gradient is added into
/// `grad_input` when given.
///
/// # Panics
/// When a slice does not match the geometry.
pub fn backward(
    sg: &SeparableGeometry,
    input: &[f32],
    w: &Weights,
    grad_out: &[f32],
    grad_input: Option<&mut [f32]>,
) -> [Vec<f32>; 3] {
    check_lengths(sg, input, w);
    let g = &sg.depthwise;
    assert_eq!(
        grad_out.len(),
        g.batch * sg.out_image(),
        "gradient of the wrong length"
    );
    if let Some(grad_input) = &grad_input {
        assert_eq!(
            grad_input.len(),
            input.len(),
            "input gradient of the wrong length"
        );
    }
    let (cm, f, wo) = (g.out_channels(), sg.filters, g.window.cols.output);
    let plans = Plans::new(g);
    let want_input = grad_input.is_some();
    let block_rows = g.rows_per_block(ELEMENTS_PER_BLOCK);
    let items = dk::blocks(g, block_rows, grad_input, g.in_row());
    let zeros = || {
        [
            vec![0.0f32; g.weight_len()],
            vec![0.0f32; cm * f],
            vec![0.0f32; f],
        ]
    };
    fold_in_order_by(
        items,
        |block| block.image,
        zeros,
        |[mut d_dw, mut d_pw, mut d_bias], _, block| {
            let image = &input[block.image * g.in_image()..][..g.in_image()];
            let grad_image = &grad_out[block.image * sg.out_image()..][..sg.out_image()];
            let rows = block.rows;
            let dz_rows = dk::gradient_rows(g, &rows, want_input);
            let mut scratch = DwScratch::take();
            // The block's own output gradient, pixels x filters.
            let go = &grad_image[rows.start * sg.out_row()..rows.end * sg.out_row()];
            for px in go.chunks_exact(f.max(1)) {
                d_bias.iter_mut().zip(px).for_each(|(d, v)| *d += v);
            }
            // Pointwise gradient: the recomputed intermediate, transposed, times `go`.
            let pixels = rows.len() * wo;
            let mid = depthwise_rows(sg, &plans, image, rows.clone(), &w.depthwise, &mut scratch);
            simd::fast(|| {
                gemm(
                    &mut d_pw,
                    (cm, f, pixels),
                    View::transposed(mid, cm),
                    View::rows(go, f),
                    true,
                    1,
                )
            });
            // The intermediate's gradient on the rows the depthwise backward reads.
            let DwScratch {
                wide,
                grad_wide,
                grad_mid,
                mapped,
                ..
            } = &mut scratch;
            let dz_pixels = dz_rows.len() * wo;
            let dz = dk::sized(grad_mid, dz_pixels * cm);
            let go_rows = &grad_image[dz_rows.start * sg.out_row()..dz_rows.end * sg.out_row()];
            simd::fast(|| {
                gemm(
                    dz,
                    (dz_pixels, cm, f),
                    View::rows(go_rows, f),
                    View::transposed(&w.pointwise, f),
                    false,
                    1,
                )
            });
            let dz = Source::rows(dz, dz_rows.start, g.out_row());
            let src = dk::source(g, (image, None), g.input_rows(&rows), (wide, mapped));
            let mut unused_bias = vec![0.0f32; cm];
            dk::backward_rows(
                g,
                &plans,
                &src,
                &w.depthwise,
                &dz,
                rows,
                (block.grad_input, false),
                (&mut d_dw, &mut unused_bias),
                grad_wide,
            );
            scratch.give();
            [d_dw, d_pw, d_bias]
        },
        |[mut a0, mut a1, mut a2], [b0, b1, b2]| {
            for (a, b) in [(&mut a0, b0), (&mut a1, b1), (&mut a2, b2)] {
                a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
            }
            [a0, a1, a2]
        },
    )
}
