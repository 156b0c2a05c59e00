//! Differentiable ops on runtime-shaped dfdx tensors, images in NHWC layout.
//!
//! Layout: images are `Tensor<(n, h, w, c), f32, Cpu, T>` (NHWC): the channels of one pixel are
//! contiguous, which turns a `k_h x k_w` convolution into one small matrix product per block of
//! pixels and makes pooling vectorise over channels. Flat activations are `(n, features)`.
//! Each op takes its input by value with whatever tape it carries, computes on plain `Vec<f32>`
//! buffers with rayon, and registers its backward pass on the tape; parameters are plain tensors
//! (no tape) whose gradients land in the [`dfdx::tensor::Gradients`] under their own id.

pub mod activation;
pub mod adam;
pub mod batch_norm;
pub mod batch_norm_kernels;
pub mod bn_dense;
pub mod buffers;
pub mod conv2d;
pub mod conv_kernels;
pub mod conv_pool;
pub mod conv_pool_kernels;
pub mod conv_pool_planar;
pub mod denormals;
pub mod dense;
pub mod depthwise;
pub mod depthwise_kernels;
pub mod dropout;
pub mod flatten;
pub mod geometry;
pub mod grouped;
pub mod grouped_kernels;
pub mod lanes;
pub mod linear_bn;
pub mod loss;
pub mod matmul;
pub mod merge;
pub mod pointwise_grad;
pub mod pool2d;
pub mod pool_kernels;
pub mod profile;
pub mod reduce;
pub mod separable;
pub mod simd;
pub mod small_gemm;
pub mod tape;
pub mod winograd;

use dfdx::tensor::{Cpu, NoneTape, Tensor, TensorFromVec};

/// The shape of an NHWC image batch: `(n, h, w, c)`.
pub type Shape4 = (usize, usize, usize, usize);
/// The shape of a flat batch: `(n, features)`.
pub type Shape2 = (usize, usize);
/// The shape of a vector parameter such as a bias: `(len,)`.
pub type Shape1 = (usize,);

/// An NHWC image batch on the CPU with tape `T`.
pub type Image<T> = Tensor<Shape4, f32, Cpu, T>;
/// A flat `(n, features)` batch on the CPU with tape `T`.
pub type Flat<T> = Tensor<Shape2, f32, Cpu, T>;
/// A vector parameter (bias, gamma, beta, moving statistics).
pub type Vector = Tensor<Shape1, f32, Cpu>;

pub use geometry::Padding;

/// An inference pass's NHWC image batch in a [`buffers`] buffer rather than a dfdx tensor.
///
/// dfdx 0.13 lends no view of a tensor's data, so an op on a tensor first copies its input
/// out, and a tensor's buffer is freed with it, so the next pass allocates (and the allocator
/// zeroes) every output again. The ops that take a `Batch` read it in place, give its buffer
/// back when done and hand their output on as a `Batch`, so a pass of such ops neither copies
/// its activations nor allocates them in the steady state.
pub struct Batch {
    /// `shape`'s elements, NHWC.
    pub data: Vec<f32>,
    /// `(n, h, w, c)`.
    pub shape: Shape4,
}

impl Batch {
    /// The batch as a tensor (the buffer moves into it, no copy).
    pub fn into_tensor(self, device: &Cpu) -> Image<NoneTape> {
        device.tensor_from_vec(self.data, self.shape)
    }
}

/// Makes input rows of the values they are read from: `map(values, rows)` writes the rows
/// made of `values` (whole rows of pixels) over `rows`, the same length: a batch norm and its
/// activation, run by the op that reads its output (see `linear_bn`'s deferred mirror).
pub type RowMap<'a> = dyn Fn(&[f32], &mut [f32]) + Sync + 'a;

/// A convolution's input (depthwise or plain): the values themselves, or values and the
/// [`RowMap`] that makes the input of them as the kernels read it.
#[derive(Clone, Copy)]
pub struct Input<'a> {
    /// `batch x in_image` values.
    pub values: &'a [f32],
    /// Makes input rows of `values`' rows; `None`: the values are the input.
    pub map: Option<&'a RowMap<'a>>,
}

impl<'a> From<&'a [f32]> for Input<'a> {
    fn from(values: &'a [f32]) -> Self {
        Input { values, map: None }
    }
}

/// What the ops' unit tests share.
#[cfg(test)]
pub(crate) mod test_values {
    /// `len` values drawn uniformly from [-1, 1), seeded.
    pub fn uniform(len: usize, seed: u64) -> Vec<f32> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..len).map(|_| rng.gen_range(-1.0f32..1.0)).collect()
    }

    /// A [`RowMap`](super::RowMap) for the tests of mapped inputs: `clamp(x * scale + shift,
    /// 0, 6)` per channel (`scale.len()` of them), so that a row read from the wrong place
    /// gives other values.
    pub fn per_channel_map<'a>(
        scale: &'a [f32],
        shift: &'a [f32],
    ) -> impl Fn(&[f32], &mut [f32]) + Sync + 'a {
        let c = scale.len();
        move |rows: &[f32], out: &mut [f32]| {
            for (out, rows) in out.chunks_exact_mut(c).zip(rows.chunks_exact(c)) {
                for (((o, &x), &a), &b) in out.iter_mut().zip(rows).zip(scale).zip(shift) {
                    *o = (x * a + b).clamp(0.0, 6.0);
                }
            }
        }
    }
}
