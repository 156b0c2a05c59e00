//! The fused op `conv2d (+relu) -> max_pool2d` for the common case of a pool whose stride is
//! its size and which has no padding (the seed's `conv2x2 relu -> pool2`).
//!
//! The convolution output is never materialised: at 224x224x20 it is 40 MB per batch of 10,
//! and writing, copying and re-reading it cost more than the arithmetic. Other pool settings
//! fall back to [`conv2d`] followed by [`max_pool2d`], so callers may always use this op when a
//! conv feeds only a max pool.

use crate::backend::ops::buffers;
use crate::backend::ops::conv2d::{conv2d, Conv2dConfig, Conv2dParams};
use crate::backend::ops::conv_kernels::ConvGeometry;
use crate::backend::ops::conv_pool_kernels::{self, ConvPoolGeometry, PaddedBatch};
use crate::backend::ops::geometry::{Padding, Window2};
use crate::backend::ops::pool2d::{max_pool2d, Pool2dConfig};
use crate::backend::ops::profile;
use crate::backend::ops::tape;
use crate::backend::ops::{Batch, Image, Shape4};
use dfdx::shapes::HasShape;
use dfdx::tensor::{Cpu, PutTape, SplitTape, Tape, TensorFromVec};

/// Whether [`conv2d_max_pool`] runs fused for this pool (stride = size, `valid` padding).
pub fn fusable(pool: &Pool2dConfig) -> bool {
    pool.stride == pool.size && pool.padding == Padding::Valid && pool.size.0 * pool.size.1 < 65535
}

/// `max_pool2d(conv2d(x))`, with the relu of `conv.relu` between them; same result and
/// gradients as the two ops in a row, fused when [`fusable`].
///
/// # Panics
/// When the kernel or the pool does not fit (the compiler rejects such models).
pub fn conv2d_max_pool<T: Tape<f32, Cpu>>(
    x: Image<T>,
    params: &Conv2dParams,
    conv: &Conv2dConfig,
    pool: &Pool2dConfig,
) -> Image<T> {
    let Some(g) = geometry(*x.shape(), params, conv, pool) else {
        return max_pool2d(conv2d(x, params, conv), pool);
    };
    let _timer = profile::scope("conv2d_max_pool.forward");
    let (batch, filters) = (g.conv.batch, g.conv.filters);
    let pooled = g.out_size();
    let (x, mut tape) = x.split_tape();
    let device = x.device().clone();
    let x_ghost = x.ghost();
    let input = PaddedBatch::new(&g.conv, buffers::read(&x));
    drop(x);
    let weight = buffers::to_vec(&params.weight);
    let bias = params.bias.as_ref().map(buffers::to_vec);
    let mut out = buffers::take(batch * g.out_image());
    let mut argmax = T::OWNS_TAPE.then(|| vec![0u16; out.len()]);
    let bias_slice = bias.as_deref();
    conv_pool_kernels::forward(
        &g,
        &input,
        &weight,
        bias_slice,
        &mut out,
        argmax.as_deref_mut(),
    );
    let out = device.tensor_from_vec(out, (batch, pooled.0, pooled.1, filters));
    let Some(argmax) = argmax else {
        buffers::give(input.into_vec());
        return out.put_tape(tape);
    };
    let out_ghost = out.ghost();
    let weight_key = params.weight.clone();
    let bias_key = params.bias.clone();
    let input_grad = conv.input_grad;
    tape.add_backward_op(move |grads| {
        let _timer = profile::scope("conv2d_max_pool.backward");
        let grad_out = tape::take(grads.get_or_alloc_mut(&out_ghost)?);
        let mut grad_weight = vec![0.0; weight.len()];
        let mut grad_bias = vec![0.0; filters];
        let grad_input = if input_grad {
            Some(grads.get_or_alloc_mut(&x_ghost)?.as_mut_slice())
        } else {
            None
        };
        conv_pool_kernels::backward(
            &g,
            &input,
            &weight,
            &grad_out,
            &argmax,
            grad_input,
            &mut grad_weight,
            &mut grad_bias,
        );
        tape::release(grad_out);
        tape::add_weight_and_bias(
            grads,
            (&weight_key, &grad_weight),
            (bias_key.as_ref(), &grad_bias),
        )?;
        buffers::give(input.into_vec());
        Ok(())
    });
    out.put_tape(tape)
}

/// [`conv2d_max_pool`] in inference on a [`Batch`], read in place and given back to the pool;
/// the output is a `Batch` too. An unfused conv and pool run on tensors, their output copied
/// into a pooled buffer.
pub fn conv2d_max_pool_batch(
    x: Batch,
    params: &Conv2dParams,
    conv: &Conv2dConfig,
    pool: &Pool2dConfig,
    device: &Cpu,
) -> Batch {
    let Some(g) = geometry(x.shape, params, conv, pool) else {
        let out = conv2d_max_pool(x.into_tensor(device), params, conv, pool);
        let shape = *out.shape();
        return Batch {
            data: buffers::read(&out),
            shape,
        };
    };
    let _timer = profile::scope("conv2d_max_pool.forward");
    let input = PaddedBatch::new(&g.conv, x.data);
    let weight = buffers::to_vec(&params.weight);
    let bias = params.bias.as_ref().map(buffers::to_vec);
    let mut out = buffers::take(g.conv.batch * g.out_image());
    conv_pool_kernels::forward(&g, &input, &weight, bias.as_deref(), &mut out, None);
    buffers::give(input.into_vec());
    let (rows, cols) = g.out_size();
    Batch {
        data: out,
        shape: (g.conv.batch, rows, cols, g.conv.filters),
    }
}

/// The geometry of the fused op on an input of `shape`, or `None` when it runs as a conv and
/// then a pool (see [`fusable`]).
///
/// # Panics
/// When the kernel does not fit (the compiler rejects such models).
fn geometry(
    (batch, h, w, c_in): Shape4,
    params: &Conv2dParams,
    conv: &Conv2dConfig,
    pool: &Pool2dConfig,
) -> Option<ConvPoolGeometry> {
    let window = Window2::new((h, w), conv.kernel, conv.stride, conv.padding)
        .expect("the compiler checks that the kernel fits the input");
    let pooled = (
        window.rows.output / pool.size.0,
        window.cols.output / pool.size.1,
    );
    if !fusable(pool) || pooled.0 == 0 || pooled.1 == 0 {
        return None;
    }
    Some(ConvPoolGeometry {
        conv: ConvGeometry::for_weight(batch, c_in, window, *params.weight.shape()),
        pool: pool.size,
        relu: conv.relu,
    })
}
