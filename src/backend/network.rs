//! The network: the IR's layers with their parameters, a forward pass on a dfdx tape, and the
//! training and inference steps. A conv (with or without relu) feeding a max pool whose stride
//! is its size runs as one fused op. The model's final softmax is fused into the loss as
//! log-softmax; `predict` applies it.
#![deny(clippy::wildcard_enum_match_arm)]

use super::checkpoint::{check_against, Checkpoint, CheckpointError};
use super::ops::activation::{gelu, leaky_relu, relu};
use super::ops::batch_norm::{batch_norm, BatchNormConfig};
use super::ops::conv2d::{conv2d, Conv2dConfig};
use super::ops::conv_pool::{conv2d_max_pool, fusable};
use super::ops::dense::dense;
use super::ops::flatten::flatten;
use super::ops::geometry::Padding as OpPadding;
use super::ops::pool2d::{avg_pool2d, global_avg_pool, max_pool2d, Pool2dConfig};
use super::ops::{Flat, Image};
use super::optimizer::Optimizer;
use super::params::{self, LayerParams};
use super::support::{self, Unsupported};
use crate::ir::{Activation, Layer, Model, Op, Padding, PoolKind};
use dfdx::prelude::*;

/// A trainable network for a checked model.
#[derive(Debug)]
pub struct Network {
    /// The checked model.
    pub model: Model,
    /// Parameters, one entry per IR layer.
    pub params: Vec<LayerParams>,
    device: Cpu,
}

/// Loss and accuracy of one batch.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BatchStats {
    /// Mean cross-entropy over the batch.
    pub loss: f64,
    /// Images classified right.
    pub correct: usize,
    /// Images in the batch.
    pub count: usize,
}

/// An activation between layers.
enum Act<T: Tape<f32, Cpu>> {
    Image(Image<T>),
    Flat(Flat<T>),
}

impl Network {
    /// A Keras-initialised network; all randomness (initialisation, dropout) flows from `seed`.
    /// Refuses a model with a layer the backend cannot run yet ([`support::check`]).
    pub fn new(model: &Model, seed: u64) -> Result<Network, Unsupported> {
        support::check(model)?;
        crate::backend::ops::denormals::flush_everywhere();
        let device = Cpu::seed_from_u64(seed ^ 0x5EED_D20F);
        let params = params::initialise(model, &device, seed);
        Ok(Network {
            model: model.clone(),
            params,
            device,
        })
    }

    /// A network with the parameters of `checkpoint`, checked against `model`.
    pub fn from_checkpoint(
        model: &Model,
        checkpoint: &Checkpoint,
    ) -> Result<Network, CheckpointError> {
        check_against(checkpoint, model)?;
        support::check(model).map_err(|err| CheckpointError::Unsupported(err.to_string()))?;
        crate::backend::ops::denormals::flush_everywhere();
        let device = Cpu::seed_from_u64(0);
        let params = params::from_tensors(model, &device, &checkpoint.tensors);
        Ok(Network {
            model: model.clone(),
            params,
            device,
        })
    }

    /// Re-seeds dropout's random numbers (the trainer does this per epoch, for exact resume).
    pub fn reseed(&mut self, seed: u64) {
        self.device = Cpu::seed_from_u64(seed);
    }

    fn input_tensor(&self, images: Vec<f32>, count: usize) -> Image<NoneTape> {
        let (h, w, c) = self.model.input.hwc();
        self.device.tensor_from_vec(images, (count, h, w, c))
    }

    fn targets(&self, labels: &[usize]) -> Tensor<(usize, usize), f32, Cpu> {
        let classes = self.model.classes;
        let mut one_hot = vec![0.0; labels.len() * classes];
        for (row, label) in labels.iter().enumerate() {
            if *label < classes {
                one_hot[row * classes + label] = 1.0;
            }
        }
        self.device
            .tensor_from_vec(one_hot, (labels.len(), classes))
    }

    /// One training step on a batch (`images`: `n × h × w × c`): forward in training mode,
    /// backward, and an optimiser update.
    pub fn train_step(
        &mut self,
        images: Vec<f32>,
        labels: &[usize],
        optimizer: &mut Optimizer,
    ) -> Result<BatchStats, CpuError> {
        let x = self.input_tensor(images, labels.len());
        let logits = self.forward(x.leaky_trace(), true);
        let stats_correct = correct(&logits.retaped::<NoneTape>(), labels);
        let loss = cross_entropy_with_logits_loss(logits, self.targets(labels));
        let value = loss.array();
        let mut grads = loss.backward();
        optimizer.begin_step();
        for params in &mut self.params {
            match params {
                LayerParams::Conv(p) => {
                    optimizer.update(&mut p.weight, &mut grads)?;
                    if let Some(bias) = &mut p.bias {
                        optimizer.update(bias, &mut grads)?;
                    }
                }
                LayerParams::Dense(p) => {
                    optimizer.update(&mut p.weight, &mut grads)?;
                    if let Some(bias) = &mut p.bias {
                        optimizer.update(bias, &mut grads)?;
                    }
                }
                LayerParams::BatchNorm(p) => {
                    optimizer.update(&mut p.gamma, &mut grads)?;
                    optimizer.update(&mut p.beta, &mut grads)?;
                }
                LayerParams::None => {}
            }
        }
        Ok(BatchStats {
            loss: f64::from(value),
            correct: stats_correct,
            count: labels.len(),
        })
    }

    /// Loss and accuracy of a batch in inference mode (no update).
    pub fn evaluate(&mut self, images: Vec<f32>, labels: &[usize]) -> BatchStats {
        let x = self.input_tensor(images, labels.len());
        let logits = self.forward(x, false);
        let right = correct(&logits, labels);
        let loss = cross_entropy_with_logits_loss(logits, self.targets(labels));
        BatchStats {
            loss: f64::from(loss.array()),
            correct: right,
            count: labels.len(),
        }
    }

    /// Class probabilities of each image, in inference mode.
    pub fn predict(&mut self, images: Vec<f32>, count: usize) -> Vec<Vec<f32>> {
        let x = self.input_tensor(images, count);
        let probabilities = self.forward(x, false).softmax::<Axis<1>>().as_vec();
        probabilities
            .chunks(self.model.classes.max(1))
            .map(<[f32]>::to_vec)
            .collect()
    }

    /// Logits of a batch: every layer, the final softmax left to the loss.
    pub fn forward<T: Tape<f32, Cpu>>(&mut self, x: Image<T>, training: bool) -> Flat<T> {
        self.forward_observed(x, training, true, &mut |_, _| {})
    }

    /// The real output shape of every layer (without the batch axis) for one batch, running
    /// each layer on its own in inference mode; tests compare it with the compiler's shapes.
    pub fn layer_shapes(&mut self, images: Vec<f32>, count: usize) -> Vec<Vec<usize>> {
        let x = self.input_tensor(images, count);
        let mut shapes = Vec::new();
        self.forward_observed(x, false, false, &mut |_, dims| shapes.push(dims));
        shapes
    }

    /// The forward pass; `fuse` allows fused conv + pool; `observe` sees each layer's index
    /// and output dims (not called for the conv inside a fused pair).
    fn forward_observed<T: Tape<f32, Cpu>>(
        &mut self,
        x: Image<T>,
        training: bool,
        fuse: bool,
        observe: &mut dyn FnMut(usize, Vec<usize>),
    ) -> Flat<T> {
        let layers = self.model.layers.clone();
        let mut act = Act::Image(x);
        let mut idx = 0;
        while idx < layers.len() {
            let layer = &layers[idx];
            let is_last = idx + 1 == layers.len();
            if let (Some(pool), Act::Image(_), true) = (fusable_pool(&layers, idx), &act, fuse) {
                let Act::Image(x) = act else {
                    unreachable!("matched an image above")
                };
                let LayerParams::Conv(params) = &self.params[idx] else {
                    unreachable!("IR conv has conv params")
                };
                act = Act::Image(conv2d_max_pool(x, params, &conv_config(layer, idx), &pool));
                observe(idx + 1, dims(&act));
                idx += 2;
                continue;
            }
            act = self.layer_forward(idx, layer, act, training);
            if let Some(activation) = layer.activation {
                let fused_relu =
                    matches!(layer.op, Op::Conv { .. }) && activation == Activation::Relu;
                let fused_into_loss = is_last && activation == Activation::Softmax;
                if !(fused_relu || fused_into_loss) {
                    act = activate(act, activation);
                }
            }
            observe(idx, dims(&act));
            idx += 1;
        }
        match act {
            Act::Flat(logits) => logits,
            Act::Image(x) => {
                let (n, h, w, c) = *x.shape();
                x.reshape_like(&(n, h * w * c))
            }
        }
    }

    fn layer_forward<T: Tape<f32, Cpu>>(
        &mut self,
        idx: usize,
        layer: &Layer,
        act: Act<T>,
        training: bool,
    ) -> Act<T> {
        let is_last = idx + 1 == self.model.layers.len();
        match (layer.op, act, &mut self.params[idx]) {
            (Op::BatchNorm { momentum, eps }, act, LayerParams::BatchNorm(params)) => {
                let cfg = BatchNormConfig {
                    momentum: momentum as f32,
                    eps: eps as f32,
                    training,
                    input_grad: idx > 0,
                };
                match act {
                    Act::Image(x) => Act::Image(batch_norm(x, params, &cfg)),
                    Act::Flat(x) => Act::Flat(batch_norm(x, params, &cfg)),
                }
            }
            (Op::Conv { .. }, Act::Image(x), LayerParams::Conv(params)) => {
                Act::Image(conv2d(x, params, &conv_config(layer, idx)))
            }
            (
                Op::Pool {
                    kind,
                    size,
                    stride,
                    pad,
                },
                Act::Image(x),
                _,
            ) => {
                let cfg = Pool2dConfig {
                    size,
                    stride,
                    padding: op_padding(pad),
                };
                Act::Image(match kind {
                    PoolKind::Max => max_pool2d(x, &cfg),
                    PoolKind::Avg => avg_pool2d(x, &cfg),
                })
            }
            (
                Op::GlobalPool {
                    kind: PoolKind::Avg,
                },
                Act::Image(x),
                _,
            ) => Act::Flat(global_avg_pool(x)),
            (Op::Flatten, Act::Image(x), _) => Act::Flat(flatten(x)),
            (Op::Dense { .. }, Act::Flat(x), LayerParams::Dense(params)) => {
                Act::Flat(dense(x, params))
            }
            (Op::Dropout { rate }, act, _) if training && rate > 0.0 => match act {
                Act::Image(x) => Act::Image(x.dropout(rate)),
                Act::Flat(x) => Act::Flat(x.dropout(rate)),
            },
            (Op::Activation(Activation::Softmax), act, _) if is_last => act,
            (Op::Activation(activation), act, _) => activate(act, activation),
            (Op::Dropout { .. } | Op::Identity, act, _) => act,
            // INVARIANT: the compiler's shape inference gives each op the rank it needs
            // (flatten before dense, images for conv and pool) and the params match;
            // `support::check` refused every op this backend cannot run before the network
            // was made.
            (
                Op::BatchNorm { .. }
                | Op::Conv { .. }
                | Op::DepthwiseConv { .. }
                | Op::SeparableConv { .. }
                | Op::Pool { .. }
                | Op::GlobalPool { .. }
                | Op::Flatten
                | Op::Dense { .. }
                | Op::Merge(_),
                act,
                _,
            ) => act,
        }
    }
}

/// An activation's dims without the batch axis.
fn dims<T: Tape<f32, Cpu>>(act: &Act<T>) -> Vec<usize> {
    match act {
        Act::Image(x) => {
            let (_, h, w, c) = *x.shape();
            vec![h, w, c]
        }
        Act::Flat(x) => vec![x.shape().1],
    }
}

/// The max pool right after conv `idx`, when the two can run fused.
fn fusable_pool(layers: &[Layer], idx: usize) -> Option<Pool2dConfig> {
    let conv = layers.get(idx)?;
    let next = layers.get(idx + 1)?;
    let relu_or_none = matches!(conv.activation, None | Some(Activation::Relu));
    match (conv.op, next.op) {
        (
            Op::Conv { .. },
            Op::Pool {
                kind: PoolKind::Max,
                size,
                stride,
                pad,
            },
        ) if relu_or_none && next.activation.is_none() => {
            let cfg = Pool2dConfig {
                size,
                stride,
                padding: op_padding(pad),
            };
            fusable(&cfg).then_some(cfg)
        }
        _ => None,
    }
}

fn conv_config(layer: &Layer, idx: usize) -> Conv2dConfig {
    let (kernel, stride, pad) = if let Op::Conv {
        kernel,
        stride,
        pad,
        ..
    } = layer.op
    {
        (kernel, stride, pad)
    } else {
        ((1, 1), (1, 1), Padding::Valid)
    };
    Conv2dConfig {
        kernel,
        stride,
        padding: op_padding(pad),
        relu: layer.activation == Some(Activation::Relu),
        input_grad: idx > 0,
    }
}

fn op_padding(pad: Padding) -> OpPadding {
    match pad {
        Padding::Valid => OpPadding::Valid,
        Padding::Same => OpPadding::Same,
    }
}

fn activate<T: Tape<f32, Cpu>>(act: Act<T>, activation: Activation) -> Act<T> {
    match act {
        Act::Image(x) => Act::Image(apply_image(x, activation)),
        Act::Flat(x) => Act::Flat(apply_flat(x, activation)),
    }
}

fn apply_image<T: Tape<f32, Cpu>>(x: Image<T>, activation: Activation) -> Image<T> {
    match activation {
        Activation::Relu => relu(x),
        Activation::Sigmoid => x.sigmoid(),
        Activation::Tanh => x.tanh(),
        Activation::Softmax => x.softmax::<Axis<3>>(),
        Activation::Gelu => gelu(x),
        Activation::LeakyRelu { alpha } => leaky_relu(x, alpha as f32),
        // INVARIANT: `support::check` refused these before the network was made.
        Activation::Relu6
        | Activation::Silu
        | Activation::HardSwish
        | Activation::HardSigmoid
        | Activation::Elu { .. } => x,
    }
}

fn apply_flat<T: Tape<f32, Cpu>>(x: Flat<T>, activation: Activation) -> Flat<T> {
    match activation {
        Activation::Relu => relu(x),
        Activation::Sigmoid => x.sigmoid(),
        Activation::Tanh => x.tanh(),
        Activation::Softmax => x.softmax::<Axis<1>>(),
        Activation::Gelu => gelu(x),
        Activation::LeakyRelu { alpha } => leaky_relu(x, alpha as f32),
        // INVARIANT: `support::check` refused these before the network was made.
        Activation::Relu6
        | Activation::Silu
        | Activation::HardSwish
        | Activation::HardSigmoid
        | Activation::Elu { .. } => x,
    }
}

/// How many rows of `logits` have their largest value at the label.
fn correct(logits: &Flat<NoneTape>, labels: &[usize]) -> usize {
    let (_, classes) = *logits.shape();
    let values = logits.as_vec();
    values
        .chunks(classes.max(1))
        .zip(labels)
        .filter(|(row, label)| {
            let best = row
                .iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (idx, v)| {
                    if *v > best.1 {
                        (idx, *v)
                    } else {
                        best
                    }
                });
            best.0 == **label
        })
        .count()
}
