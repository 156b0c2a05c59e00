//! A network's parameters: built from the IR with Keras's initialisation (Glorot-uniform
//! kernels, zero biases, batch norm γ 1, β 0, moving mean 0 and variance 1) drawn from the
//! spec's seed, and converted to and from checkpoint tensors.

use super::checkpoint::NamedTensor;
use super::ops::batch_norm::BatchNormParams;
use super::ops::buffers;
use super::ops::conv2d::{weight_from_checkpoint, weight_to_checkpoint, Conv2dParams};
use super::ops::dense::DenseParams;
use crate::ir::{Model, Op, Shape};
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
}

/// Channels (or features) of a layer's input.
fn features(shape: Shape) -> usize {
    match shape {
        Shape::Image { channels, .. } => channels,
        Shape::Flat(n) => n,
    }
}

/// Keras-initialised parameters for every layer of `model`, from `seed`.
pub fn initialise(model: &Model, device: &Cpu, seed: u64) -> Vec<LayerParams> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut glorot = |fan_in: usize, fan_out: usize, len: usize| -> Vec<f32> {
        let limit = (6.0 / (fan_in + fan_out) as f64).sqrt() as f32;
        let uniform = Uniform::new_inclusive(-limit, limit);
        (0..len).map(|_| uniform.sample(&mut rng)).collect()
    };
    let vector = |value: f32, len: usize| device.tensor_from_vec(vec![value; len], (len,));
    model
        .layers
        .iter()
        .map(|layer| match layer.op {
            Op::Conv {
                filters,
                kernel,
                bias,
                ..
            } => {
                let c_in = features(layer.input);
                let taps = kernel.0 * kernel.1;
                let rows = taps * c_in;
                let weight = glorot(rows, taps * filters, rows * filters);
                LayerParams::Conv(Conv2dParams {
                    weight: device.tensor_from_vec(weight, (rows, filters)),
                    bias: bias.then(|| vector(0.0, filters)),
                })
            }
            Op::Dense { units, bias } => {
                let inputs = layer.input.len();
                let weight = glorot(inputs, units, inputs * units);
                LayerParams::Dense(DenseParams {
                    weight: device.tensor_from_vec(weight, (units, inputs)),
                    bias: bias.then(|| vector(0.0, units)),
                })
            }
            Op::BatchNorm { .. } => {
                let c = features(layer.input);
                LayerParams::BatchNorm(BatchNormParams {
                    gamma: vector(1.0, c),
                    beta: vector(0.0, c),
                    moving_mean: vector(0.0, c),
                    moving_variance: vector(1.0, c),
                })
            }
            _ => LayerParams::None,
        })
        .collect()
}

/// The checkpoint tensors of `params` (DESIGN §4 names and layouts).
pub fn to_tensors(model: &Model, params: &[LayerParams]) -> Vec<NamedTensor> {
    let mut out = Vec::new();
    for (layer, params) in model.layers.iter().zip(params) {
        let mut push = |name: &str, shape: Vec<usize>, data: Vec<f32>| {
            out.push(NamedTensor {
                name: format!("layers.{}.{name}", layer.index),
                shape,
                data,
            });
        };
        match (params, layer.op) {
            (
                LayerParams::Conv(p),
                Op::Conv {
                    filters, kernel, ..
                },
            ) => {
                let dims = (filters, features(layer.input), kernel.0, kernel.1);
                push(
                    "weight",
                    vec![dims.0, dims.1, dims.2, dims.3],
                    weight_to_checkpoint(&buffers::read(&p.weight), dims),
                );
                if let Some(bias) = &p.bias {
                    push("bias", vec![filters], bias.as_vec());
                }
            }
            (LayerParams::Dense(p), Op::Dense { units, .. }) => {
                push("weight", vec![units, layer.input.len()], p.weight.as_vec());
                if let Some(bias) = &p.bias {
                    push("bias", vec![units], bias.as_vec());
                }
            }
            (LayerParams::BatchNorm(p), _) => {
                let c = features(layer.input);
                push("gamma", vec![c], p.gamma.as_vec());
                push("beta", vec![c], p.beta.as_vec());
                push("moving_mean", vec![c], p.moving_mean.as_vec());
                push("moving_variance", vec![c], p.moving_variance.as_vec());
            }
            _ => {}
        }
    }
    out
}

/// Parameters from checkpoint tensors whose names and shapes were checked against `model`
/// (`checkpoint::check_against`).
pub fn from_tensors(model: &Model, device: &Cpu, tensors: &[NamedTensor]) -> Vec<LayerParams> {
    let by_name: HashMap<&str, &NamedTensor> =
        tensors.iter().map(|t| (t.name.as_str(), t)).collect();
    let mut params = initialise(model, device, 0);
    for (layer, params) in model.layers.iter().zip(params.iter_mut()) {
        let get = |name: &str| {
            by_name
                .get(format!("layers.{}.{name}", layer.index).as_str())
                .map(|t| t.data.clone())
        };
        let vector = |data: Vec<f32>| {
            let len = data.len();
            device.tensor_from_vec(data, (len,))
        };
        match (params, layer.op) {
            (
                LayerParams::Conv(p),
                Op::Conv {
                    filters, kernel, ..
                },
            ) => {
                if let Some(weight) = get("weight") {
                    let dims = (filters, features(layer.input), kernel.0, kernel.1);
                    let rows = kernel.0 * kernel.1 * dims.1;
                    p.weight = device
                        .tensor_from_vec(weight_from_checkpoint(&weight, dims), (rows, filters));
                }
                if let (Some(bias), Some(_)) = (get("bias"), &p.bias) {
                    p.bias = Some(vector(bias));
                }
            }
            (LayerParams::Dense(p), Op::Dense { units, .. }) => {
                if let Some(weight) = get("weight") {
                    p.weight = device.tensor_from_vec(weight, (units, layer.input.len()));
                }
                if let (Some(bias), Some(_)) = (get("bias"), &p.bias) {
                    p.bias = Some(vector(bias));
                }
            }
            (LayerParams::BatchNorm(p), _) => {
                for (name, slot) in [
                    ("gamma", &mut p.gamma),
                    ("beta", &mut p.beta),
                    ("moving_mean", &mut p.moving_mean),
                    ("moving_variance", &mut p.moving_variance),
                ] {
                    if let Some(data) = get(name) {
                        *slot = vector(data);
                    }
                }
            }
            _ => {}
        }
    }
    params
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
            | LayerParams::Dense(DenseParams { weight, bias }) => {
                out.push((name("weight"), ParamMut::Matrix(weight)));
                if let Some(bias) = bias {
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
