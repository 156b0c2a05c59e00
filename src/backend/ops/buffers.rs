//! A pool of reusable `f32` buffers, so that steady-state training does not page-fault fresh
//! allocations, and the one way to read a dfdx tensor's data.

use dfdx::shapes::{HasShape, Shape};
use dfdx::tensor::{Cpu, Tensor};
use std::sync::Mutex;

/// Buffers kept for reuse; bounded so that a burst of large tensors does not pin memory forever.
static POOL: Mutex<Vec<Vec<f32>>> = Mutex::new(Vec::new());
/// The most buffers the pool keeps.
const MAX_POOLED: usize = 1024;

/// A buffer of `len` elements whose contents are unspecified (left over from an earlier use).
///
/// The smallest pooled buffer that fits is reused. A pooled buffer's length is the part of it
/// known to be initialised; when that is shorter than `len`, only the difference is zeroed, so
/// a buffer that served a smaller request is not refilled in full, and one that serves the
/// same request every step is not written at all.
pub fn take(len: usize) -> Vec<f32> {
    let reused = {
        let mut pool = POOL.lock().unwrap_or_else(|poison| poison.into_inner());
        // The smallest pooled buffer that fits, so large buffers stay for large requests.
        let best = pool
            .iter()
            .enumerate()
            .filter(|(_, buffer)| buffer.capacity() >= len)
            .min_by_key(|(_, buffer)| buffer.capacity())
            .map(|(idx, _)| idx);
        best.map(|idx| pool.swap_remove(idx))
    };
    match reused {
        Some(mut buffer) => {
            if buffer.len() >= len {
                buffer.truncate(len);
            } else {
                buffer.resize(len, 0.0);
            }
            buffer
        }
        None => vec![0.0; len],
    }
}

/// A buffer of `len` zeros.
pub fn take_zeroed(len: usize) -> Vec<f32> {
    let mut buffer = take(len);
    crate::backend::ops::buffers::fill(&mut buffer, 0.0);
    buffer
}

/// Gives a buffer back to the pool for a later [`take`].
pub fn give(buffer: Vec<f32>) {
    if buffer.capacity() < 1024 {
        return;
    }
    let mut pool = POOL.lock().unwrap_or_else(|poison| poison.into_inner());
    if pool.len() < MAX_POOLED {
        pool.push(buffer);
    }
}

/// Copies `src` over `dst` on all cores.
///
/// # Panics
/// When the two differ in length.
pub fn copy(dst: &mut [f32], src: &[f32]) {
    use rayon::prelude::*;
    assert_eq!(dst.len(), src.len(), "a copy of the same length");
    dst.par_chunks_mut(1 << 16)
        .zip(src.par_chunks(1 << 16))
        .for_each(|(dst, src)| dst.copy_from_slice(src));
}

/// Fills `buffer` with `value` on all cores.
pub fn fill(buffer: &mut [f32], value: f32) {
    use rayon::prelude::*;
    buffer
        .par_chunks_mut(1 << 16)
        .for_each(|chunk| chunk.fill(value));
}

/// A tensor's data as a new `Vec`, in one copy. dfdx's `as_vec` builds its `Vec` an element
/// at a time through the tensor's strided iterator; for a model's weights, read on every pass,
/// that took 6% of `mobilenetv2_small`'s inference. Not pooled: weights and statistics are
/// small, and taking pooled buffers for them would leave large ones out of the pool.
pub fn to_vec<S: Shape, T>(tensor: &Tensor<S, f32, Cpu, T>) -> Vec<f32> {
    let mut data = vec![0.0; tensor.shape().num_elements()];
    tensor.copy_into(&mut data);
    data
}

/// Copies a tensor's data into a pooled buffer (dfdx gives no borrowed view of CPU data).
pub fn read<S: Shape, T>(tensor: &Tensor<S, f32, Cpu, T>) -> Vec<f32> {
    let mut buffer = take(tensor.shape().num_elements());
    tensor.copy_into(&mut buffer);
    buffer
}
