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
pub mod loss;
pub mod matmul;
pub mod merge;
pub mod pool2d;
pub mod pool_kernels;
pub mod profile;
pub mod reduce;
pub mod separable;
pub mod simd;
pub mod small_gemm;
pub mod tape;
pub mod winograd;

use dfdx::tensor::{Cpu, Tensor};

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
