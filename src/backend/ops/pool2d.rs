//! The differentiable pooling ops: max pool, average pool (NHWC), global average pool and global
//! max pool.

use crate::backend::ops::buffers;
use crate::backend::ops::geometry::{Padding, Window2};
use crate::backend::ops::pool_kernels::{self, PoolGeometry};
use crate::backend::ops::profile;
use crate::backend::ops::tape;
use crate::backend::ops::{Flat, Image};
use dfdx::shapes::HasShape;
use dfdx::tensor::{Cpu, PutTape, SplitTape, Tape, TensorFromVec};
use rayon::prelude::*;

/// The hyper-parameters of one pooling layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool2dConfig {
    /// Window size (rows, columns).
    pub size: (usize, usize),
    /// Stride (rows, columns); Keras's default is the window size.
    pub stride: (usize, usize),
    /// Border handling.
    pub padding: Padding,
}

fn geometry(shape: (usize, usize, usize, usize), cfg: &Pool2dConfig) -> PoolGeometry {
    let (batch, h, w, channels) = shape;
    let window = Window2::new((h, w), cfg.size, cfg.stride, cfg.padding)
        .expect("the compiler checks that the pool window fits the input");
    PoolGeometry {
        batch,
        channels,
        window,
    }
}

/// Max pooling: `(n, h, w, c)` to `(n, h_out, w_out, c)`.
///
/// # Panics
/// When the window does not fit the input (the compiler rejects such models).
pub fn max_pool2d<T: Tape<f32, Cpu>>(x: Image<T>, cfg: &Pool2dConfig) -> Image<T> {
    let _timer = profile::scope("max_pool2d.forward");
    let g = geometry(*x.shape(), cfg);
    let (x, mut tape) = x.split_tape();
    let device = x.device().clone();
    let x_ghost = x.ghost();
    let input = buffers::read(&x);
    drop(x);
    let mut out = buffers::take(g.batch * g.out_image());
    let mut argmax = T::OWNS_TAPE.then(|| vec![0u32; out.len()]);
    pool_kernels::max_forward(&g, &input, &mut out, argmax.as_deref_mut());
    buffers::give(input);
    let shape = (
        g.batch,
        g.window.rows.output,
        g.window.cols.output,
        g.channels,
    );
    let out = device.tensor_from_vec(out, shape);
    let Some(argmax) = argmax else {
        return out.put_tape(tape);
    };
    let out_ghost = out.ghost();
    tape.add_backward_op(move |grads| {
        let _timer = profile::scope("max_pool2d.backward");
        let grad_out = tape::take(grads.get_or_alloc_mut(&out_ghost)?);
        pool_kernels::max_backward(&g, &argmax, &grad_out, grads.get_or_alloc_mut(&x_ghost)?);
        tape::release(grad_out);
        Ok(())
    });
    out.put_tape(tape)
}

/// Average pooling: `(n, h, w, c)` to `(n, h_out, w_out, c)`; `same` padding averages only the
/// window elements inside the input, as Keras does.
///
/// # Panics
/// When the window does not fit the input (the compiler rejects such models).
pub fn avg_pool2d<T: Tape<f32, Cpu>>(x: Image<T>, cfg: &Pool2dConfig) -> Image<T> {
    let _timer = profile::scope("avg_pool2d.forward");
    let g = geometry(*x.shape(), cfg);
    let (x, mut tape) = x.split_tape();
    let device = x.device().clone();
    let x_ghost = x.ghost();
    let input = buffers::read(&x);
    drop(x);
    let mut out = buffers::take(g.batch * g.out_image());
    pool_kernels::avg_forward(&g, &input, &mut out);
    buffers::give(input);
    let shape = (
        g.batch,
        g.window.rows.output,
        g.window.cols.output,
        g.channels,
    );
    let out = device.tensor_from_vec(out, shape);
    let out_ghost = out.ghost();
    tape.add_backward_op(move |grads| {
        let _timer = profile::scope("avg_pool2d.backward");
        let grad_out = tape::take(grads.get_or_alloc_mut(&out_ghost)?);
        pool_kernels::avg_backward(&g, &grad_out, grads.get_or_alloc_mut(&x_ghost)?);
        tape::release(grad_out);
        Ok(())
    });
    out.put_tape(tape)
}

/// Global average pooling: `(n, h, w, c)` to `(n, c)`, the mean of each channel.
pub fn global_avg_pool<T: Tape<f32, Cpu>>(x: Image<T>) -> Flat<T> {
    let _timer = profile::scope("global_avg_pool.forward");
    let (batch, h, w, c) = *x.shape();
    let (x, mut tape) = x.split_tape();
    let device = x.device().clone();
    let x_ghost = x.ghost();
    let input = buffers::read(&x);
    drop(x);
    let pixels = h * w;
    let scale = 1.0 / pixels.max(1) as f32;
    let mut out = vec![0.0; batch * c];
    out.par_chunks_mut(c.max(1))
        .zip(input.par_chunks(pixels * c.max(1)))
        .for_each(|(o, image)| {
            image
                .chunks_exact(c)
                .for_each(|px| o.iter_mut().zip(px).for_each(|(a, v)| *a += v));
            o.iter_mut().for_each(|a| *a *= scale);
        });
    buffers::give(input);
    let out = device.tensor_from_vec(out, (batch, c));
    let out_ghost = out.ghost();
    tape.add_backward_op(move |grads| {
        let _timer = profile::scope("global_avg_pool.backward");
        let grad_out = tape::take(grads.get_or_alloc_mut(&out_ghost)?);
        let grad_input: &mut [f32] = grads.get_or_alloc_mut(&x_ghost)?;
        grad_input
            .par_chunks_mut(pixels * c.max(1))
            .zip(grad_out.par_chunks(c.max(1)))
            .for_each(|(gi, go)| {
                gi.chunks_exact_mut(c)
                    .for_each(|px| px.iter_mut().zip(go).for_each(|(d, g)| *d += g * scale));
            });
        tape::release(grad_out);
        Ok(())
    });
    out.put_tape(tape)
}

/// Global max pooling: `(n, h, w, c)` to `(n, c)`, the largest value of each channel (Keras
/// `GlobalMaxPooling2D`, `tf.reduce_max` over rows and columns).
///
/// Gradient as TensorFlow's `reduce_max` gradient (`_MinOrMaxGrad` in
/// `tensorflow/python/ops/math_grad.py`): every input equal to the maximum gets
/// `grad / count`, where `count` is how many inputs equal it, so ties share the gradient
/// equally instead of the first one taking it all. NaN inputs are skipped (a channel of only
/// NaN gives -inf and no gradient); an empty image gives -inf.
pub fn global_max_pool<T: Tape<f32, Cpu>>(x: Image<T>) -> Flat<T> {
    let _timer = profile::scope("global_max_pool.forward");
    let (batch, h, w, c) = *x.shape();
    let (x, mut tape) = x.split_tape();
    let device = x.device().clone();
    let x_ghost = x.ghost();
    let input = buffers::read(&x);
    drop(x);
    let image = h * w * c;
    let mut out = vec![f32::NEG_INFINITY; batch * c];
    if c > 0 && image > 0 {
        out.par_chunks_mut(c)
            .zip(input.par_chunks(image))
            .for_each(|(best, image)| {
                for px in image.chunks_exact(c) {
                    for (b, &v) in best.iter_mut().zip(px) {
                        if v > *b {
                            *b = v;
                        }
                    }
                }
            });
    }
    let maxima = out.clone();
    let out = device.tensor_from_vec(out, (batch, c));
    if !T::OWNS_TAPE || c == 0 || image == 0 {
        buffers::give(input);
        return out.put_tape(tape);
    }
    let out_ghost = out.ghost();
    tape.add_backward_op(move |grads| {
        let _timer = profile::scope("global_max_pool.backward");
        let grad_out = tape::take(grads.get_or_alloc_mut(&out_ghost)?);
        let grad_input: &mut [f32] = grads.get_or_alloc_mut(&x_ghost)?;
        grad_input
            .par_chunks_mut(image)
            .zip(input.par_chunks(image))
            .zip(grad_out.par_chunks(c).zip(maxima.par_chunks(c)))
            .for_each(|((gi, image), (go, best))| {
                let mut count = vec![0u32; c];
                for px in image.chunks_exact(c) {
                    for ((n, &v), &b) in count.iter_mut().zip(px).zip(best) {
                        *n += u32::from(v == b);
                    }
                }
                // TensorFlow: (indicator / count) * grad.
                let share: Vec<f32> = count
                    .iter()
                    .zip(go)
                    .map(|(&n, &g)| if n > 0 { (1.0 / n as f32) * g } else { 0.0 })
                    .collect();
                for (gpx, px) in gi.chunks_exact_mut(c).zip(image.chunks_exact(c)) {
                    for (((d, &v), &b), &s) in gpx.iter_mut().zip(px).zip(best).zip(&share) {
                        if v == b {
                            *d += s;
                        }
                    }
                }
            });
        tape::release(grad_out);
        buffers::give(input);
        Ok(())
    });
    out.put_tape(tape)
}
