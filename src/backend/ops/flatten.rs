//! The differentiable flatten op: NHWC images to `(n, h * w * c)` pixel by pixel (a free
//! reshape), or to `(n, c * h * w)` in channel, row, column order.
//!
//! The checkpoint format stores dense weights as `[units, in]` with the flattened image in
//! channel, row, column order (PyTorch's NCHW flatten). A flatten read by one dense layer alone
//! runs pixel by pixel, and that dense keeps its weights permuted to match (see
//! [`crate::backend::params::flattened_image`]); any other flatten transposes into the
//! checkpoint's order, which other readers (a batch norm's per-feature parameters, a merge)
//! assume.

use crate::backend::ops::buffers;
use crate::backend::ops::profile;
use crate::backend::ops::tape;
use crate::backend::ops::{Flat, Image};
use dfdx::shapes::HasShape;
use dfdx::tensor::{Cpu, PutTape, SplitTape, Tape, TensorFromVec};
use dfdx::tensor_ops::ReshapeTo;
use rayon::prelude::*;

/// Flattens `(n, h, w, c)` to `(n, h * w * c)` in memory order: no copy, and the output's
/// gradient is the input's (dfdx keeps a contiguous tensor's id through a reshape, so both
/// name one gradient buffer).
pub fn flatten_pixels<T: Tape<f32, Cpu>>(x: Image<T>) -> Flat<T> {
    let (batch, h, w, c) = *x.shape();
    x.reshape_like(&(batch, h * w * c))
}

/// Flattens `(n, h, w, c)` to `(n, c * h * w)`: element `(y, x, ch)` goes to
/// `ch * h * w + y * w + x`.
pub fn flatten<T: Tape<f32, Cpu>>(x: Image<T>) -> Flat<T> {
    let _timer = profile::scope("flatten.forward");
    let (batch, h, w, c) = *x.shape();
    let (x, mut tape) = x.split_tape();
    let device = x.device().clone();
    let x_ghost = x.ghost();
    let input = buffers::read(&x);
    drop(x);
    let (pixels, len) = (h * w, h * w * c);
    let mut out = buffers::take(batch * len);
    if len > 0 {
        out.par_chunks_mut(len)
            .zip(input.par_chunks(len))
            .for_each(|(o, i)| transpose(i, o, pixels, c));
    }
    buffers::give(input);
    let out = device.tensor_from_vec(out, (batch, len));
    let out_ghost = out.ghost();
    tape.add_backward_op(move |grads| {
        let _timer = profile::scope("flatten.backward");
        let grad_out = tape::take(grads.get_or_alloc_mut(&out_ghost)?);
        let grad_input: &mut [f32] = grads.get_or_alloc_mut(&x_ghost)?;
        if len > 0 {
            grad_input
                .par_chunks_mut(len)
                .zip(grad_out.par_chunks(len))
                .for_each(|(gi, go)| {
                    for ch in 0..c {
                        for p in 0..pixels {
                            gi[p * c + ch] += go[ch * pixels + p];
                        }
                    }
                });
        }
        tape::release(grad_out);
        Ok(())
    });
    out.put_tape(tape)
}

/// `dst[ch * pixels + p] = src[p * channels + ch]`.
fn transpose(src: &[f32], dst: &mut [f32], pixels: usize, channels: usize) {
    for (p, px) in src.chunks_exact(channels).enumerate().take(pixels) {
        for (ch, &v) in px.iter().enumerate() {
            dst[ch * pixels + p] = v;
        }
    }
}
