//! A network's parameters. Names, checkpoint shapes and Keras initialisers come from each op's
//! layout ([`crate::ir::layout`]), the one place that declares them; this file only turns them
//! into the backend's tensors (conv weights as an HWIO matrix, the rest as laid out) and back.
//! Initial values are drawn from the spec's seed (Glorot-uniform kernels, zero biases, batch
//! norm γ 1, β 0, moving mean 0 and variance 1).
#![deny(clippy::wildcard_enum_match_arm)]

use super::checkpoint::NamedTensor;
use super::ops::batch_norm::BatchNormParams;
use super::ops::conv2d::{weight_from_checkpoint, weight_to_checkpoint, Conv2dParams};
use super::ops::dense::DenseParams;
use super::ops::depthwise::{self, DepthwiseParams};
use super::ops::grouped::{self, GroupedParams};
use super::ops::separable::{self, SeparableParams};
use super::ops::{buffers, Shape2, Shape4};
use crate::ir::{Init, Layer, Model, Op, ParamSpec, Shape, Source};
use dfdx::shapes::HasShape;
use dfdx::tensor::{Cpu, TensorFromVec};
use rand::distributions::{Distribution, Uniform};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;

/// The parameters of one layer.
#[derive(Debug, Clone)]
pub enum LayerParams {
    /// A layer without parameters.
    None,
    /// Convolution weights (HWIO) and bias.
    Conv(Conv2dParams),
    /// Dense weights `[units, in]` and bias.
    Dense(DenseParams),
    /// Batch norm scale, shift and moving statistics.
    BatchNorm(BatchNormParams),
    /// Depthwise weights (`(k_h * k_w, c * m)`) and bias.
    Depthwise(DepthwiseParams),
    /// Separable weights (depthwise, pointwise) and bias.
    Separable(SeparableParams),
    /// Grouped convolution weights (one HWIO matrix per group, stacked) and bias.
    Grouped(GroupedParams),
}

/// Keras-initialised parameters for every layer of `model`, from `seed`. Values are drawn in
/// the backend's layout, layer by layer, in the order of each layout.
pub fn initialise(model: &Model, device: &Cpu, seed: u64) -> Vec<LayerParams> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    model
        .layers
        .iter()
        .enumerate()
        .map(|(idx, layer)| {
            // A pixel-major dense weight is drawn in the checkpoint's order, as every dense
            // weight was before that layout existed, so a seed gives the same model.
            let image = flattened_image(&model.layers, idx);
            let values = layer
                .layout()
                .iter()
                .map(|spec| {
                    let data = draw(spec, &mut rng);
                    match image {
                        Some(image) => relayout(layer, spec, data, Some(image), &INTO_BACKEND),
                        None => data,
                    }
                })
                .collect();
            build(layer, values, device)
        })
        .collect()
}

/// The `(h, w, c)` image a dense layer's input was flattened from, when the backend keeps that
/// layer's weights in pixel-major order: dense `idx` reads a `flatten` of an image and is its
/// only reader. The checkpoint orders a flattened image by channel, then row and column
/// (`[units, c * h * w]`, PyTorch's order); the backend flattens such an image for free (a
/// reshape, pixel by pixel) and permutes the dense weights once, at load and save, instead.
pub fn flattened_image(layers: &[Layer], idx: usize) -> Option<(usize, usize, usize)> {
    let dense = layers.get(idx)?;
    let [edge] = dense.inputs.as_slice() else {
        return None;
    };
    let Source::Layer(source) = edge.source else {
        return None;
    };
    let image = matches!(dense.op, Op::Dense { .. }) && pixel_major_flatten(layers, source);
    image.then(|| layers.get(source).map(|flatten| flatten.input().hwc()))?
}

/// Whether `flatten` layer `idx` flattens an image pixel by pixel (`(y, x, c)` order, a free
/// reshape): when a dense layer is its only reader (see [`flattened_image`]).
pub fn pixel_major_flatten(layers: &[Layer], idx: usize) -> bool {
    let Some(flatten) = layers.get(idx) else {
        return false;
    };
    let mut readers = layers.iter().filter(|layer| {
        layer
            .inputs
            .iter()
            .any(|edge| edge.source == Source::Layer(idx))
    });
    let only_reader = match (readers.next(), readers.next()) {
        (Some(reader), None) => reader.inputs.len() == 1 && matches!(reader.op, Op::Dense { .. }),
        _ => false,
    };
    flatten.op == Op::Flatten && matches!(flatten.input(), Shape::Image { .. }) && only_reader
}

/// Dense weights `[units, c * h * w]` (channel-major, the checkpoint's) as
/// `[units, h * w * c]` (pixel-major, the backend's), or back with `to_checkpoint`.
fn permute_flattened(
    data: &[f32],
    (h, w, c): (usize, usize, usize),
    to_checkpoint: bool,
) -> Vec<f32> {
    let (pixels, len) = (h * w, h * w * c);
    let mut out = vec![0.0; data.len()];
    if len == 0 {
        return out;
    }
    for (src, dst) in data.chunks_exact(len).zip(out.chunks_exact_mut(len)) {
        for ch in 0..c {
            for p in 0..pixels {
                let (channel_major, pixel_major) = (ch * pixels + p, p * c + ch);
                if to_checkpoint {
                    dst[channel_major] = src[pixel_major];
                } else {
                    dst[pixel_major] = src[channel_major];
                }
            }
        }
    }
    out
}

/// The values of one parameter tensor drawn as Keras initialises it.
fn draw(spec: &ParamSpec, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let len = spec.len();
    match spec.init {
        Init::GlorotUniform { fan_in, fan_out } => {
            let limit = (6.0 / (fan_in + fan_out).max(1) as f64).sqrt() as f32;
            let uniform = Uniform::new_inclusive(-limit, limit);
            (0..len).map(|_| uniform.sample(rng)).collect()
        }
        Init::Zeros => vec![0.0; len],
        Init::Ones => vec![1.0; len],
    }
}

/// The backend tensors of `layer` from one value list per layout entry, each in the backend's
/// layout (conv weights HWIO).
fn build(layer: &Layer, mut values: Vec<Vec<f32>>, device: &Cpu) -> LayerParams {
    let vector = |data: Vec<f32>| {
        let len = data.len();
        device.tensor_from_vec(data, (len,))
    };
    let mut take = |idx: usize| std::mem::take(values.get_mut(idx).unwrap_or(&mut Vec::new()));
    let c = layer.input().features();
    match layer.op {
        Op::Conv {
            filters,
            kernel,
            bias,
            groups,
            ..
        } if groups > 1 => {
            let rows = kernel.0 * kernel.1 * c;
            LayerParams::Grouped(GroupedParams {
                weight: device.tensor_from_vec(take(0), (rows, filters / groups)),
                bias: bias.then(|| vector(take(1))),
            })
        }
        Op::Conv {
            filters,
            kernel,
            bias,
            ..
        } => {
            let rows = kernel.0 * kernel.1 * c;
            LayerParams::Conv(Conv2dParams {
                weight: device.tensor_from_vec(take(0), (rows, filters)),
                bias: bias.then(|| vector(take(1))),
            })
        }
        Op::DepthwiseConv {
            multiplier,
            kernel,
            bias,
            ..
        } => LayerParams::Depthwise(DepthwiseParams {
            weight: device.tensor_from_vec(take(0), (kernel.0 * kernel.1, c * multiplier)),
            bias: bias.then(|| vector(take(1))),
        }),
        Op::SeparableConv {
            filters,
            multiplier,
            kernel,
            bias,
            ..
        } => LayerParams::Separable(SeparableParams {
            depthwise: device.tensor_from_vec(take(0), (kernel.0 * kernel.1, c * multiplier)),
            pointwise: device.tensor_from_vec(take(1), (c * multiplier, filters)),
            bias: bias.then(|| vector(take(2))),
        }),
        Op::Dense { units, bias } => LayerParams::Dense(DenseParams {
            weight: device.tensor_from_vec(take(0), (units, layer.input().len())),
            bias: bias.then(|| vector(take(1))),
        }),
        Op::BatchNorm { .. } => LayerParams::BatchNorm(BatchNormParams {
            gamma: vector(take(0)),
            beta: vector(take(1)),
            moving_mean: vector(take(2)),
            moving_variance: vector(take(3)),
        }),
        Op::Pool { .. }
        | Op::GlobalPool { .. }
        | Op::Flatten
        | Op::Dropout { .. }
        | Op::Identity
        | Op::Merge(_)
        | Op::Activation(_) => LayerParams::None,
    }
}

/// A depthwise kernel's dims: `(out channels, k_h, k_w)`.
type DepthwiseDims = (usize, usize, usize);

/// One direction of [`relayout`]: each op's conversion of its weights that way.
struct Direction {
    conv: fn(&[f32], Shape4) -> Vec<f32>,
    grouped: fn(&[f32], Shape4, usize) -> Vec<f32>,
    depthwise: fn(&[f32], DepthwiseDims) -> Vec<f32>,
    pointwise: fn(&[f32], Shape2) -> Vec<f32>,
    to_checkpoint: bool,
}

/// Checkpoint tensors into the backend's layouts.
const INTO_BACKEND: Direction = Direction {
    conv: weight_from_checkpoint,
    grouped: grouped::weight_from_checkpoint,
    depthwise: depthwise::weight_from_checkpoint,
    pointwise: separable::pointwise_from_checkpoint,
    to_checkpoint: false,
};

/// Backend tensors into the checkpoint's layouts.
const INTO_CHECKPOINT: Direction = Direction {
    conv: weight_to_checkpoint,
    grouped: grouped::weight_to_checkpoint,
    depthwise: depthwise::weight_to_checkpoint,
    pointwise: separable::pointwise_to_checkpoint,
    to_checkpoint: true,
};

/// A tensor of `spec` converted between the checkpoint's layout and the backend's for
/// `layer`, the way `direction` says; `image` is its [`flattened_image`].
fn relayout(
    layer: &Layer,
    spec: &ParamSpec,
    data: Vec<f32>,
    image: Option<(usize, usize, usize)>,
    direction: &Direction,
) -> Vec<f32> {
    let dims3 = |shape: &[usize]| match shape {
        [out, _, k_h, k_w] => (*out, *k_h, *k_w),
        _ => (0, 0, 0),
    };
    match (layer.op, spec.name) {
        (Op::Conv { groups, .. }, "weight") if groups > 1 => {
            (direction.grouped)(&data, conv_dims(spec), groups)
        }
        (Op::Conv { .. }, "weight") => (direction.conv)(&data, conv_dims(spec)),
        (Op::DepthwiseConv { .. }, "weight") | (Op::SeparableConv { .. }, "depthwise") => {
            (direction.depthwise)(&data, dims3(&spec.shape))
        }
        (Op::SeparableConv { .. }, "pointwise") => {
            let (filters, channels, _, _) = conv_dims(spec);
            (direction.pointwise)(&data, (filters, channels))
        }
        (Op::Dense { .. }, "weight") => match image {
            Some(image) => permute_flattened(&data, image, direction.to_checkpoint),
            None => data,
        },
        // Biases, batch-norm statistics and layers without parameters keep their layout; the
        // ops are listed so that a new one must say how its tensors are laid out.
        (
            Op::Conv { .. }
            | Op::DepthwiseConv { .. }
            | Op::SeparableConv { .. }
            | Op::Dense { .. }
            | Op::BatchNorm { .. }
            | Op::Pool { .. }
            | Op::GlobalPool { .. }
            | Op::Flatten
            | Op::Dropout { .. }
            | Op::Identity
            | Op::Merge(_)
            | Op::Activation(_),
            _,
        ) => data,
    }
}

/// The backend tensors of one layer's parameters, in layout order.
fn backend_data(params: &LayerParams) -> Vec<Vec<f32>> {
    let mut data = Vec::new();
    match params {
        LayerParams::Conv(p) => {
            data.push(buffers::read(&p.weight));
            data.extend(p.bias.as_ref().map(|bias| bias.as_vec()));
        }
        LayerParams::Grouped(p) => {
            data.push(buffers::read(&p.weight));
            data.extend(p.bias.as_ref().map(|bias| bias.as_vec()));
        }
        LayerParams::Depthwise(p) => {
            data.push(p.weight.as_vec());
            data.extend(p.bias.as_ref().map(|bias| bias.as_vec()));
        }
        LayerParams::Separable(p) => {
            data.push(p.depthwise.as_vec());
            data.push(p.pointwise.as_vec());
            data.extend(p.bias.as_ref().map(|bias| bias.as_vec()));
        }
        LayerParams::Dense(p) => {
            data.push(p.weight.as_vec());
            data.extend(p.bias.as_ref().map(|bias| bias.as_vec()));
        }
        LayerParams::BatchNorm(p) => {
            data.push(p.gamma.as_vec());
            data.push(p.beta.as_vec());
            data.push(p.moving_mean.as_vec());
            data.push(p.moving_variance.as_vec());
        }
        LayerParams::None => {}
    }
    data
}

/// The dims of a conv weight in checkpoint order: `(filters, c_in, k_h, k_w)`.
fn conv_dims(spec: &ParamSpec) -> (usize, usize, usize, usize) {
    match spec.shape.as_slice() {
        [filters, c_in, k_h, k_w] => (*filters, *c_in, *k_h, *k_w),
        _ => (0, 0, 0, 0),
    }
}

/// The checkpoint tensors of `params`, named `layers.<i>.<param>` in the layouts' order and
/// shapes.
pub fn to_tensors(model: &Model, params: &[LayerParams]) -> Vec<NamedTensor> {
    let mut out = Vec::new();
    for (idx, (layer, params)) in model.layers.iter().zip(params).enumerate() {
        let image = flattened_image(&model.layers, idx);
        for (spec, data) in layer.layout().into_iter().zip(backend_data(params)) {
            out.push(NamedTensor {
                name: format!("layers.{}.{}", layer.index, spec.name),
                data: relayout(layer, &spec, data, image, &INTO_CHECKPOINT),
                shape: spec.shape,
            });
        }
    }
    out
}

/// Parameters from checkpoint tensors whose names and shapes were checked against `model`
/// (`checkpoint::check_against`).
pub fn from_tensors(model: &Model, device: &Cpu, tensors: &[NamedTensor]) -> Vec<LayerParams> {
    let by_name: HashMap<&str, &NamedTensor> =
        tensors.iter().map(|t| (t.name.as_str(), t)).collect();
    model
        .layers
        .iter()
        .enumerate()
        .map(|(idx, layer)| {
            let image = flattened_image(&model.layers, idx);
            let values = layer
                .layout()
                .iter()
                .map(|spec| {
                    let name = format!("layers.{}.{}", layer.index, spec.name);
                    let data = by_name
                        .get(name.as_str())
                        .map_or_else(|| vec![0.0; spec.len()], |t| t.data.clone());
                    relayout(layer, spec, data, image, &INTO_BACKEND)
                })
                .collect();
            build(layer, values, device)
        })
        .collect()
}

/// The gradients of `params` in `grads`, as checkpoint tensors (names and layouts of
/// [`to_tensors`]); parameters without a gradient (moving statistics) get zeros.
pub fn gradient_tensors(
    model: &Model,
    params: &[LayerParams],
    grads: &dfdx::tensor::Gradients<f32, Cpu>,
) -> Vec<NamedTensor> {
    let zero = |v: &super::ops::Vector| {
        let len = v.shape().0;
        v.device().tensor_from_vec(vec![0.0; len], (len,))
    };
    let gradients: Vec<LayerParams> = params
        .iter()
        .map(|params| match params {
            LayerParams::Conv(p) => LayerParams::Conv(Conv2dParams {
                weight: grads.get(&p.weight),
                bias: p.bias.as_ref().map(|bias| grads.get(bias)),
            }),
            LayerParams::Dense(p) => LayerParams::Dense(DenseParams {
                weight: grads.get(&p.weight),
                bias: p.bias.as_ref().map(|bias| grads.get(bias)),
            }),
            LayerParams::BatchNorm(p) => LayerParams::BatchNorm(BatchNormParams {
                gamma: grads.get(&p.gamma),
                beta: grads.get(&p.beta),
                moving_mean: zero(&p.moving_mean),
                moving_variance: zero(&p.moving_variance),
            }),
            LayerParams::Depthwise(p) => LayerParams::Depthwise(DepthwiseParams {
                weight: grads.get(&p.weight),
                bias: p.bias.as_ref().map(|bias| grads.get(bias)),
            }),
            LayerParams::Separable(p) => LayerParams::Separable(SeparableParams {
                depthwise: grads.get(&p.depthwise),
                pointwise: grads.get(&p.pointwise),
                bias: p.bias.as_ref().map(|bias| grads.get(bias)),
            }),
            LayerParams::Grouped(p) => LayerParams::Grouped(GroupedParams {
                weight: grads.get(&p.weight),
                bias: p.bias.as_ref().map(|bias| grads.get(bias)),
            }),
            LayerParams::None => LayerParams::None,
        })
        .collect();
    to_tensors(model, &gradients)
}

/// A trainable parameter tensor of either rank.
#[derive(Debug)]
pub enum ParamMut<'a> {
    /// A vector (bias, γ, β).
    Vector(&'a mut super::ops::Vector),
    /// A matrix (conv HWIO or dense weights).
    Matrix(&'a mut dfdx::tensor::Tensor<(usize, usize), f32, Cpu>),
}

/// Every trainable parameter with a stable name (`layers.<i>.<param>`), in layer order.
pub fn trainables<'a>(model: &Model, params: &'a mut [LayerParams]) -> Vec<(String, ParamMut<'a>)> {
    let mut out = Vec::new();
    for (layer, params) in model.layers.iter().zip(params.iter_mut()) {
        let name = |param: &str| format!("layers.{}.{param}", layer.index);
        match params {
            LayerParams::Conv(Conv2dParams { weight, bias })
            | LayerParams::Dense(DenseParams { weight, bias })
            | LayerParams::Depthwise(DepthwiseParams { weight, bias })
            | LayerParams::Grouped(GroupedParams { weight, bias }) => {
                out.push((name("weight"), ParamMut::Matrix(weight)));
                if let Some(bias) = bias {
                    out.push((name("bias"), ParamMut::Vector(bias)));
                }
            }
            LayerParams::Separable(p) => {
                out.push((name("depthwise"), ParamMut::Matrix(&mut p.depthwise)));
                out.push((name("pointwise"), ParamMut::Matrix(&mut p.pointwise)));
                if let Some(bias) = &mut p.bias {
                    out.push((name("bias"), ParamMut::Vector(bias)));
                }
            }
            LayerParams::BatchNorm(p) => {
                out.push((name("gamma"), ParamMut::Vector(&mut p.gamma)));
                out.push((name("beta"), ParamMut::Vector(&mut p.beta)));
            }
            LayerParams::None => {}
        }
    }
    out
}
