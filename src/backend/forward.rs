//! The forward pass over the IR's graph. Layers run in expansion order (a topological order);
//! each output is kept, without a tape, until its last consumer has read it, then dropped. The
//! one tape of the pass travels through every op in that order, so backward runs the ops in
//! reverse, and a tensor read by several layers gets the sum of their gradients (every op adds
//! into its inputs' gradient slots).
//!
//! Fusions: a conv whose only reader is a max pool with stride equal to its size runs as one
//! op (`conv_pool`); a conv's `relu` suffix runs inside the conv; the model's final softmax is
//! left to the loss.
#![deny(clippy::wildcard_enum_match_arm)]

use super::ops::activation::{elu, gelu, hard_sigmoid, hard_swish, leaky_relu, relu, relu6, silu};
use super::ops::batch_norm::{
    self, batch_norm, batch_norm_add, batch_norm_inference_values, BatchNormConfig, BatchNormParams,
};
use super::ops::bn_dense::{self, batch_norm_dense};
use super::ops::buffers;
use super::ops::conv2d::{conv2d_activated, conv2d_batch, Conv2dConfig, Conv2dParams};
use super::ops::conv_pool::{conv2d_max_pool, conv2d_max_pool_batch, fusable};
use super::ops::dense::{dense, dense_of_affine, dense_of_affine_values};
use super::ops::depthwise::{
    depthwise_conv2d, depthwise_conv2d_batch, DepthwiseConfig, DepthwiseParams,
};
use super::ops::depthwise_kernels::FusedActivation;
use super::ops::dropout::{dropout, DropoutKey};
use super::ops::flatten::{flatten, flatten_pixels};
use super::ops::geometry::Padding as OpPadding;
use super::ops::grouped::{grouped_conv2d, GroupedConfig};
use super::ops::linear_bn::{
    conv2d_batch_norm, depthwise_batch_norm, Handoff, Mirror, Skip, Traced,
};
use super::ops::merge::{add_activated, merge, Merged, Operand};
use super::ops::pool2d::{avg_pool2d, global_avg_pool, global_max_pool, max_pool2d, Pool2dConfig};
use super::ops::separable::{separable_conv2d, SeparableConfig};
use super::ops::winograd;
use super::ops::{Batch, Flat, Image, Shape4, Vector};
use super::params::{self, LayerParams};
use crate::distributed::Collective;
use crate::ir::{Activation, Layer, MergeKind, Op, Padding, PoolKind, Source};
use dfdx::prelude::*;
use std::borrow::Cow;
use std::rc::Rc;

/// An activation between layers, as an image batch or a flat batch.
pub enum Act<T: Tape<f32, Cpu>> {
    /// `(n, h, w, c)`.
    Image(Image<T>),
    /// `(n, features)`.
    Flat(Flat<T>),
}

/// A stored activation: no tape (the pass holds the one tape).
pub type Value = Act<NoneTape>;

impl Clone for Act<NoneTape> {
    fn clone(&self) -> Self {
        match self {
            Act::Image(x) => Act::Image(x.clone()),
            Act::Flat(x) => Act::Flat(x.clone()),
        }
    }
}

impl Act<NoneTape> {
    /// The value carrying `tape`.
    pub fn with_tape<T: Tape<f32, Cpu>>(self, tape: T) -> Act<T> {
        match self {
            Act::Image(x) => Act::Image(x.put_tape(tape)),
            Act::Flat(x) => Act::Flat(x.put_tape(tape)),
        }
    }
}

impl<T: Tape<f32, Cpu>> Act<T> {
    /// The value without its tape, and the tape.
    pub fn split(self) -> (Value, T) {
        match self {
            Act::Image(x) => {
                let (x, tape) = x.split_tape();
                (Act::Image(x), tape)
            }
            Act::Flat(x) => {
                let (x, tape) = x.split_tape();
                (Act::Flat(x), tape)
            }
        }
    }

    /// The dims without the batch axis.
    pub fn dims(&self) -> Vec<usize> {
        match self {
            Act::Image(x) => {
                let (_, h, w, c) = *x.shape();
                vec![h, w, c]
            }
            Act::Flat(x) => vec![x.shape().1],
        }
    }

    /// A flat batch: an image is reshaped in its NHWC order.
    pub fn into_flat(self) -> Flat<T> {
        match self {
            Act::Flat(x) => x,
            Act::Image(x) => {
                let (n, h, w, c) = *x.shape();
                x.reshape_like(&(n, h * w * c))
            }
        }
    }
}

/// How a pass runs.
#[derive(Clone, Copy, Debug)]
pub struct PassConfig {
    /// Batch statistics, dropout and moving-statistics updates.
    pub training: bool,
    /// Run fusable conv + pool pairs as one op.
    pub fuse: bool,
    /// Leave the last layer's activation to the loss (softmax or sigmoid).
    pub activation_to_loss: bool,
    /// The ranks whose batch statistics a training pass's batch norms share (`train.sync_bn`
    /// in a data-parallel run); `None`: this process's batch alone.
    pub bn_sync: Option<&'static dyn Collective>,
    /// What a training pass's dropout masks are drawn from.
    pub dropout: DropoutKey,
    /// Compute each image's dense products with the same bits whatever the batch size, as
    /// training always does: for an inference pass that may be split over the cores
    /// (`backend::split`), so that a share of the batch gives what the whole batch gives.
    pub row_stable: bool,
}

/// The model input of a pass: a tensor, or the caller's values, kept as they are until a layer
/// needs them as a tensor (ops that read values in place never copy them).
enum Input<'a> {
    /// A tensor (clones share its data).
    Tensor(Value),
    /// `(n, h, w, c)` values, borrowed or owned.
    Values {
        values: Cow<'a, [f32]>,
        shape: Shape4,
    },
    /// Read by its last reader.
    Gone,
}

/// A layer output as the pass keeps it: a tensor, or in inference a [`Batch`] for the ops that
/// read one in place, shared while several of them are still to read it.
enum Stored {
    Tensor(Value),
    /// In training, the output of a fused conv + batch norm handed on as a mirror (see
    /// `linear_bn`), and the tensor made from it once a reader reads a tensor.
    Mirrored(Mirror, Option<Image<NoneTape>>),
    Batch(Batch),
    /// A batch that more than one reader reads in place (a block's input, read by the
    /// block's first convolution and by its residual add); the store keeps a clone until the
    /// last read.
    Shared(Rc<Batch>),
}

impl Stored {
    /// The output as a tensor: a batch's buffer moves into it (no copy), unless a shared
    /// batch is still held elsewhere, which is copied.
    fn into_value(self, device: &Cpu) -> Value {
        match self {
            Stored::Tensor(value) => value,
            Stored::Mirrored(mirror, Some(tensor)) => {
                mirror.release();
                Act::Image(tensor)
            }
            Stored::Mirrored(mirror, None) => Act::Image(mirror.tensor(device)),
            Stored::Batch(batch) => Act::Image(batch.into_tensor(device)),
            Stored::Shared(shared) => Act::Image(unshare(shared).into_tensor(device)),
        }
    }

    /// The output as a batch of its own: an image tensor's data is copied out, as is a shared
    /// batch still held elsewhere; `None` for a flat batch.
    fn into_batch(self) -> Option<Batch> {
        match self {
            Stored::Batch(batch) => Some(batch),
            Stored::Shared(shared) => Some(unshare(shared)),
            Stored::Tensor(Act::Image(x)) => Some(Batch {
                data: buffers::read(&x),
                shape: *x.shape(),
            }),
            // Only a pass with a tape hands on mirrors, and it reads no batches; here so that
            // the match is whole.
            Stored::Mirrored(mirror, _) => Some(Batch {
                shape: mirror.shape(),
                data: mirror.into_values(),
            }),
            Stored::Tensor(Act::Flat(_)) => None,
        }
    }

    /// The output for an op that reads a batch in place without keeping it: a shared batch
    /// stays shared (no copy), any other is its reader's alone; `None` for a flat batch. Hand
    /// it to [`release`] once read.
    fn into_readable(self) -> Option<Rc<Batch>> {
        match self {
            Stored::Shared(shared) => Some(shared),
            other @ (Stored::Tensor(_) | Stored::Mirrored(..) | Stored::Batch(_)) => {
                other.into_batch().map(Rc::new)
            }
        }
    }

    /// The dims without the batch axis.
    fn dims(&self) -> Vec<usize> {
        let (_, h, w, c) = match self {
            Stored::Tensor(value) => return value.dims(),
            Stored::Mirrored(mirror, _) => mirror.shape(),
            Stored::Batch(batch) => batch.shape,
            Stored::Shared(batch) => batch.shape,
        };
        vec![h, w, c]
    }
}

/// The batch of a shared one: moved out when nothing else holds it, else copied.
fn unshare(shared: Rc<Batch>) -> Batch {
    Rc::try_unwrap(shared).unwrap_or_else(|shared| {
        let mut data = buffers::take(shared.data.len());
        data.copy_from_slice(&shared.data);
        Batch {
            data,
            shape: shared.shape,
        }
    })
}

/// Done reading `batch` in place: its buffer goes back to the pool, unless a reader still to
/// come holds it.
fn release(batch: Rc<Batch>) {
    if let Ok(batch) = Rc::try_unwrap(batch) {
        buffers::give(batch.data);
    }
}

/// The outputs of the layers of one pass, each kept until its last reader has read it.
struct Store<'a> {
    values: Vec<Option<Stored>>,
    input: Input<'a>,
    /// Readers still to come, per layer; the last entry counts the model input's readers.
    uses: Vec<usize>,
    /// Where batches become tensors.
    device: Cpu,
}

impl<'a> Store<'a> {
    fn new(layers: &[Layer], input: Input<'a>, device: Cpu) -> Store<'a> {
        let mut uses = vec![0; layers.len() + 1];
        for layer in layers {
            for edge in &layer.inputs {
                let slot = match edge.source {
                    Source::Input => layers.len(),
                    Source::Layer(idx) => idx,
                };
                if let Some(count) = uses.get_mut(slot) {
                    *count += 1;
                }
            }
        }
        Store {
            values: (0..layers.len()).map(|_| None).collect(),
            input,
            uses,
            device,
        }
    }

    /// The value of `source` for one reader, as a tensor: see [`Store::read_stored`].
    fn read(&mut self, source: Source) -> Option<Value> {
        let device = self.device.clone();
        self.read_stored(source, false, false)
            .map(|stored| stored.into_value(&device))
    }

    /// The value of `source` for one reader: moved out at its last read, cloned before. Before
    /// the last read, a layer's batch stays a batch, shared, when this reader reads batches in
    /// place (`reads_batch`), and becomes a tensor, whose clones share its data, when it does
    /// not. Input values become a batch at their last read (owned ones move into it, borrowed
    /// ones are copied), a tensor before. A mirrored output stays a mirror for a reader that
    /// reads mirrors (`reads_mirror`); for any other, its tensor is made once and kept for
    /// the readers after it (see [`Stored::Mirrored`]).
    fn read_stored(
        &mut self,
        source: Source,
        reads_batch: bool,
        reads_mirror: bool,
    ) -> Option<Stored> {
        let n = self.values.len();
        let slot = match source {
            Source::Input => n,
            Source::Layer(idx) => idx,
        };
        let uses = self.uses.get_mut(slot)?;
        *uses = uses.saturating_sub(1);
        let last = *uses == 0;
        let stored = match source {
            Source::Input => match std::mem::replace(&mut self.input, Input::Gone) {
                Input::Tensor(value) => Stored::Tensor(value),
                Input::Values { values, shape } => Stored::Batch(Batch {
                    data: values.into_owned(),
                    shape,
                }),
                Input::Gone => return None,
            },
            Source::Layer(idx) => self.values.get_mut(idx)?.take()?,
        };
        let stored = match (source, stored) {
            (Source::Layer(idx), Stored::Mirrored(mirror, tensor)) => {
                if last {
                    // The mirror, or its tensor (see `Stored::into_value`).
                    return Some(if reads_mirror {
                        Stored::Mirrored(mirror, tensor)
                    } else {
                        Stored::Tensor(Stored::Mirrored(mirror, tensor).into_value(&self.device))
                    });
                }
                // A mirror reader gets the tensor made so far too: an identity hands both on,
                // so that its readers that read tensors read that one.
                let (tensor, read) = if reads_mirror {
                    let read = Stored::Mirrored(mirror.clone(), tensor.clone());
                    (tensor, read)
                } else {
                    let tensor = tensor.unwrap_or_else(|| mirror.clone().tensor(&self.device));
                    let read = Stored::Tensor(Act::Image(tensor.clone()));
                    (Some(tensor), read)
                };
                self.values[idx] = Some(Stored::Mirrored(mirror, tensor));
                return Some(read);
            }
            (_, stored) => stored,
        };
        if last {
            return Some(stored);
        }
        let shared = match (source, stored) {
            (Source::Layer(_), Stored::Batch(batch)) if reads_batch => Rc::new(batch),
            (Source::Layer(_), Stored::Shared(batch)) if reads_batch => batch,
            (_, stored) => {
                let value = stored.into_value(&self.device);
                match source {
                    Source::Input => self.input = Input::Tensor(value.clone()),
                    Source::Layer(idx) => self.values[idx] = Some(Stored::Tensor(value.clone())),
                }
                return Some(Stored::Tensor(value));
            }
        };
        if let Source::Layer(idx) = source {
            self.values[idx] = Some(Stored::Shared(Rc::clone(&shared)));
        }
        Some(Stored::Shared(shared))
    }

    /// The borrowed input values, their shape and device when `layer` reads the model input
    /// alone and is its last reader.
    fn input_values(&self, layer: &Layer) -> Option<(&[f32], Shape4, Cpu)> {
        let reads_input_alone =
            matches!(layer.inputs.as_slice(), [edge] if edge.source == Source::Input);
        let Input::Values { values, shape } = &self.input else {
            return None;
        };
        (reads_input_alone && self.uses.last() == Some(&1))
            .then(|| (&**values, *shape, self.device.clone()))
    }

    /// Counts the read of the borrowed input values by their last reader.
    fn consume_input(&mut self) {
        if let Some(uses) = self.uses.last_mut() {
            *uses = 0;
        }
        self.input = Input::Gone;
    }

    fn readers(&self, idx: usize) -> usize {
        self.uses.get(idx).copied().unwrap_or(0)
    }

    fn put(&mut self, idx: usize, value: Stored) {
        if let Some(slot) = self.values.get_mut(idx) {
            *slot = Some(value);
        }
    }
}

/// Runs `layers` on `x`; `observe` sees each layer's index and output dims (not the conv of a
/// fused conv + pool). Returns the last layer's output as a flat batch.
///
/// # Panics
/// When a layer's input is missing or its params do not match its op: the compiler orders the
/// graph and `params` gives every layer the params of its op.
pub fn run<T: Tape<f32, Cpu>>(
    layers: &[Layer],
    params: &mut [LayerParams],
    x: Image<T>,
    cfg: PassConfig,
    observe: &mut dyn FnMut(usize, Vec<usize>),
) -> Flat<T> {
    let (x, tape) = x.split_tape();
    let device = x.device().clone();
    let store = Store::new(layers, Input::Tensor(Act::Image(x)), device);
    run_store(layers, params, store, tape, cfg, observe)
}

/// [`run`] in inference on `(n, h, w, c)` values: a first layer that can read them in place
/// (a batch norm, alone or fused with a flatten and dense layer) does; any other reader of the model
/// input gets them as a tensor (owned values move into it, borrowed ones are copied).
///
/// # Panics
/// When `values` does not hold `shape`'s elements, or as [`run`].
pub fn run_values(
    layers: &[Layer],
    params: &mut [LayerParams],
    (values, shape): (Cow<'_, [f32]>, Shape4),
    device: &Cpu,
    cfg: PassConfig,
    observe: &mut dyn FnMut(usize, Vec<usize>),
) -> Flat<NoneTape> {
    let (n, h, w, c) = shape;
    assert_eq!(
        values.len(),
        n * h * w * c,
        "input values of the wrong length"
    );
    let input = Input::Values { values, shape };
    let store = Store::new(layers, input, device.clone());
    let cfg = PassConfig {
        training: false,
        ..cfg
    };
    run_store(layers, params, store, NoneTape, cfg, observe)
}

/// The pass of [`run`] over `store`, which holds the model input.
fn run_store<T: Tape<f32, Cpu>>(
    layers: &[Layer],
    params: &mut [LayerParams],
    mut store: Store<'_>,
    mut tape: T,
    cfg: PassConfig,
    observe: &mut dyn FnMut(usize, Vec<usize>),
) -> Flat<T> {
    let mut last: Option<Stored> = None;
    let mut idx = 0;
    while idx < layers.len() {
        let layer = &layers[idx];
        let streamed = if cfg.training || T::OWNS_TAPE {
            None
        } else {
            store
                .input_values(layer)
                .and_then(|view| input_layers(layers, idx, params, view, cfg))
        };
        if streamed.is_some() {
            store.consume_input();
        }
        if let Some((out, ran)) = streamed {
            let at = idx + ran - 1;
            observe(at, out.dims());
            if at + 1 == layers.len() {
                last = Some(out);
            } else {
                store.put(at, out);
            }
            idx += ran;
            continue;
        }
        let device = store.device.clone();
        // The inputs as tensors, for every op but those that read batches.
        let tensors = |inputs: Vec<Stored>| -> Vec<Value> {
            inputs
                .into_iter()
                .map(|stored| stored.into_value(&device))
                .collect()
        };
        let is_last = idx + 1 == layers.len();
        let pool = (cfg.fuse && store.readers(idx) == 1)
            .then(|| fusable_pool(layers, idx))
            .flatten();
        let folds_bn = cfg.fuse
            && !cfg.training
            && !T::OWNS_TAPE
            && store.readers(idx) == 1
            && foldable_bn(layers, idx);
        let folds_bn_dense = cfg.fuse
            && !cfg.training
            && !T::OWNS_TAPE
            && store.readers(idx) == 1
            && foldable_bn_dense(layers, idx);
        let trains_bn_dense =
            cfg.fuse && T::OWNS_TAPE && store.readers(idx) == 1 && trainable_bn_dense(layers, idx);
        let trains_conv_bn = cfg.fuse
            && T::OWNS_TAPE
            && pool.is_none()
            && store.readers(idx) == 1
            && foldable_bn(layers, idx);
        let skip = (cfg.fuse && store.readers(idx) == 1)
            .then(|| fusable_add(layers, idx))
            .flatten();
        // An identity with no activation (in inference a dropout too) hands its input on as
        // it is stored. Read as a tensor, a block's input would stop being a batch (or in
        // training a mirror), and the block's convolution and its residual add would each
        // copy it back out (two copies of every basic block's input in `resnet_small`); in
        // training dfdx would also zero a gradient slot for it. The identity's gradient is
        // its output's, so the readers sum theirs where its input's readers do, in the same
        // order.
        let passes_on = !is_last
            && layer.activation.is_none()
            && layer.inputs.len() == 1
            && (layer.op == Op::Identity
                || matches!(layer.op, Op::Dropout { .. }) && !cfg.training && !T::OWNS_TAPE);
        let inputs: Vec<Stored> = layer
            .inputs
            .iter()
            .map(|edge| {
                store
                    .read_stored(
                        edge.source,
                        folds_bn || passes_on,
                        trains_conv_bn || passes_on,
                    )
                    .expect("INVARIANT: the compiler orders every layer after its inputs")
            })
            .collect();
        let (out, next_tape, ran) = match (pool, &mut params[idx]) {
            (None, _) if passes_on => {
                let Some(input) = inputs.into_iter().next() else {
                    unreachable!("an identity or a dropout reads one input")
                };
                (input, tape, 1)
            }
            (None, LayerParams::BatchNorm(bn)) if skip.is_some() => {
                let add = &layers[idx + 1];
                let skip = skip.and_then(|source| store.read(source));
                let (Some(Act::Image(skip)), Some(Act::Image(x))) =
                    (skip, tensors(inputs).into_iter().next())
                else {
                    unreachable!("fusable_add checked that both inputs are images")
                };
                let Op::BatchNorm { momentum, eps } = layer.op else {
                    unreachable!("batch norm params belong to a batch norm")
                };
                let bn_cfg = BatchNormConfig {
                    momentum: momentum as f32,
                    eps: eps as f32,
                    training: cfg.training,
                    input_grad: !layer.inputs.iter().any(|edge| edge.source == Source::Input),
                    activation: fused_activation(add),
                    sync: cfg.bn_sync,
                };
                let out = Act::Image(batch_norm_add(x.put_tape(tape), &skip, bn, &bn_cfg));
                let is_last = idx + 2 == layers.len();
                let out = suffix(out, add, bn_cfg.activation, is_last, cfg);
                let (out, tape) = out.split();
                (Stored::Tensor(out), tape, 2)
            }
            (None, LayerParams::Conv(_) | LayerParams::Depthwise(_)) if trains_conv_bn => {
                // An image as a mirror when it is one, else as a tensor.
                let image = |stored: Option<Stored>| match stored {
                    Some(Stored::Mirrored(mirror, _)) => Traced::Mirror(mirror, NoneTape),
                    Some(other) => match other.into_value(&device) {
                        Act::Image(x) => Traced::Tensor(x),
                        Act::Flat(_) => unreachable!("foldable_bn checked that it is an image"),
                    },
                    None => unreachable!("the compiler orders every layer after its inputs"),
                };
                let x = image(inputs.into_iter().next()).put_tape(tape);
                // The block's residual add too, when it alone reads the batch norm.
                let skip = (store.readers(idx + 1) == 1)
                    .then(|| fusable_add(layers, idx + 1))
                    .flatten()
                    .map(|source| image(store.read_stored(source, false, true)));
                let ran = if skip.is_some() { 3 } else { 2 };
                let is_last = idx + ran == layers.len();
                let defer = skip.is_none() && deferrable(layers, &store, idx + 1);
                let skip_operand = skip.as_ref().map(Traced::as_skip);
                let (out, activation) = conv_bn_training(
                    layers,
                    idx,
                    params,
                    x,
                    skip_operand,
                    (cfg, ran, is_last, defer),
                );
                if let Some(Traced::Mirror(mirror, _)) = skip {
                    mirror.release();
                }
                match out {
                    Traced::Mirror(mirror, tape) => (Stored::Mirrored(mirror, None), tape, ran),
                    Traced::Tensor(out) => {
                        let last_layer = &layers[idx + ran - 1];
                        let out = suffix(Act::Image(out), last_layer, activation, is_last, cfg);
                        let (out, tape) = out.split();
                        (Stored::Tensor(out), tape, ran)
                    }
                }
            }
            (None, LayerParams::Conv(_) | LayerParams::Depthwise(_)) if folds_bn => {
                // The block's residual add too, when it alone reads the batch norm.
                let plain = matches!(layer.op, Op::Conv { .. });
                let skip = (plain && store.readers(idx + 1) == 1)
                    .then(|| fusable_add(layers, idx + 1))
                    .flatten();
                let residual = skip.and_then(|source| store.read_stored(source, true, false));
                let ran = if residual.is_some() { 3 } else { 2 };
                let is_last = idx + ran == layers.len();
                let (out, tape) = conv_bn_inference(
                    layers,
                    idx,
                    params,
                    inputs,
                    residual,
                    (tape, &device),
                    cfg,
                    is_last,
                );
                (out, tape, ran)
            }
            (None, LayerParams::BatchNorm(_)) if folds_bn_dense => {
                let Some(Act::Image(x)) = tensors(inputs).into_iter().next() else {
                    unreachable!("foldable_bn_dense checked that the batch norm reads an image")
                };
                let is_last = idx + 3 == layers.len();
                let (out, tape) = bn_dense_inference(layers, idx, params, x, tape, cfg, is_last);
                (Stored::Tensor(out), tape, 3)
            }
            (None, LayerParams::BatchNorm(_)) if trains_bn_dense => {
                let Some(Act::Image(x)) = tensors(inputs).into_iter().next() else {
                    unreachable!("trainable_bn_dense checked that the batch norm reads an image")
                };
                let is_last = idx + 3 == layers.len();
                let x = x.put_tape(tape);
                let (out, tape) = bn_dense_training(layers, idx, params, x, cfg, is_last);
                (Stored::Tensor(out), tape, 3)
            }
            (None, LayerParams::None)
                if layer.op == Op::Flatten && params::pixel_major_flatten(layers, idx) =>
            {
                let Some(Act::Image(x)) = tensors(inputs).into_iter().next() else {
                    unreachable!("a pixel-major flatten reads an image")
                };
                let out = Act::Flat(flatten_pixels(x.put_tape(tape)));
                let (out, tape) = suffix(out, layer, FusedActivation::Linear, is_last, cfg).split();
                (Stored::Tensor(out), tape, 1)
            }
            // In inference, the fused conv + pool reads and writes batches.
            (Some(pool), LayerParams::Conv(conv)) if !T::OWNS_TAPE => {
                let Some(x) = inputs.into_iter().next().and_then(Stored::into_batch) else {
                    unreachable!("fusable_pool checked that the conv reads one image")
                };
                let out = conv2d_max_pool_batch(x, conv, &conv_config(layer), &pool, &device);
                (Stored::Batch(out), tape, 2)
            }
            (Some(pool), LayerParams::Conv(conv)) => {
                let Some(Act::Image(x)) = tensors(inputs).into_iter().next() else {
                    unreachable!("fusable_pool checked that the conv reads one image")
                };
                let out = conv2d_max_pool(x.put_tape(tape), conv, &conv_config(layer), &pool);
                let (out, tape) = Act::Image(out).split();
                (Stored::Tensor(out), tape, 2)
            }
            _ => {
                let (out, tape) =
                    layer_forward(layer, tensors(inputs), &mut params[idx], tape, cfg, is_last);
                (Stored::Tensor(out), tape, 1)
            }
        };
        tape = next_tape;
        let at = idx + ran - 1;
        observe(at, out.dims());
        if at + 1 == layers.len() {
            last = Some(out);
        } else {
            store.put(at, out);
        }
        idx += ran;
    }
    let last = last.expect("INVARIANT: a checked model has at least one layer");
    last.into_value(&store.device).with_tape(tape).into_flat()
}

/// One layer: its op, then its suffix activation (unless fused into the op or left to the
/// loss).
fn layer_forward<T: Tape<f32, Cpu>>(
    layer: &Layer,
    inputs: Vec<Value>,
    params: &mut LayerParams,
    tape: T,
    cfg: PassConfig,
    is_last: bool,
) -> (Value, T) {
    let reads_input = layer.inputs.iter().any(|edge| edge.source == Source::Input);
    if let Op::Merge(kind) = layer.op {
        let operands = inputs
            .into_iter()
            .map(|value| match value {
                Act::Image(x) => Operand::Image(x),
                Act::Flat(x) => Operand::Flat(x),
            })
            .collect();
        let fused = fused_activation(layer);
        let merged = match kind {
            MergeKind::Add => add_activated(operands, fused, tape),
            MergeKind::Concat | MergeKind::Mul => merge(kind, operands, tape),
        };
        let out = match merged {
            Merged::Image(x) => Act::Image(x),
            Merged::Flat(x) => Act::Flat(x),
        };
        return suffix(out, layer, fused, is_last, cfg).split();
    }
    let mut inputs = inputs.into_iter();
    let first = inputs
        .next()
        .expect("INVARIANT: every layer of a checked model has an input");
    let x = first.with_tape(tape);
    let out = match (layer.op, x, params) {
        (Op::BatchNorm { momentum, eps }, act, LayerParams::BatchNorm(params)) => {
            let bn = BatchNormConfig {
                momentum: momentum as f32,
                eps: eps as f32,
                training: cfg.training,
                input_grad: !reads_input,
                activation: fused_activation(layer),
                sync: cfg.bn_sync,
            };
            match act {
                Act::Image(x) => Act::Image(batch_norm(x, params, &bn)),
                Act::Flat(x) => Act::Flat(batch_norm(x, params, &bn)),
            }
        }
        (Op::Conv { .. }, Act::Image(x), LayerParams::Conv(params)) => {
            let mut conv = conv_config(layer);
            conv.input_grad = !reads_input;
            Act::Image(conv2d_activated(x, params, &conv, fused_activation(layer)))
        }
        (
            Op::Conv {
                kernel,
                stride,
                pad,
                groups,
                ..
            },
            Act::Image(x),
            LayerParams::Grouped(params),
        ) => {
            let cfg = GroupedConfig {
                kernel,
                stride,
                padding: op_padding(pad),
                groups,
                activation: fused_activation(layer),
                input_grad: !reads_input,
            };
            Act::Image(grouped_conv2d(x, params, &cfg))
        }
        (Op::DepthwiseConv { .. }, Act::Image(x), LayerParams::Depthwise(params)) => {
            let cfg = depthwise_config(layer, fused_activation(layer));
            Act::Image(depthwise_conv2d(x, params, &cfg))
        }
        (
            Op::SeparableConv {
                multiplier,
                kernel,
                stride,
                pad,
                ..
            },
            Act::Image(x),
            LayerParams::Separable(params),
        ) => {
            let cfg = SeparableConfig {
                kernel,
                stride,
                padding: op_padding(pad),
                multiplier,
                activation: fused_activation(layer),
                input_grad: !reads_input,
            };
            Act::Image(separable_conv2d(x, params, &cfg))
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
            let pool = Pool2dConfig {
                size,
                stride,
                padding: op_padding(pad),
            };
            Act::Image(match kind {
                PoolKind::Max => max_pool2d(x, &pool),
                PoolKind::Avg => avg_pool2d(x, &pool),
            })
        }
        (
            Op::GlobalPool {
                kind: PoolKind::Avg,
            },
            Act::Image(x),
            _,
        ) => Act::Flat(global_avg_pool(x)),
        (
            Op::GlobalPool {
                kind: PoolKind::Max,
            },
            Act::Image(x),
            _,
        ) => Act::Flat(global_max_pool(x)),
        (Op::Flatten, Act::Image(x), _) => Act::Flat(flatten(x)),
        (Op::Dense { .. }, Act::Flat(x), LayerParams::Dense(params)) => {
            Act::Flat(dense(x, params, cfg.row_stable))
        }
        (Op::Dropout { rate }, act, _) if cfg.training && rate > 0.0 => match act {
            Act::Image(x) => Act::Image(dropout(x, rate as f32, cfg.dropout, layer.index)),
            Act::Flat(x) => Act::Flat(dropout(x, rate as f32, cfg.dropout, layer.index)),
        },
        (Op::Activation(activation), act, _)
            if is_last && cfg.activation_to_loss && is_loss_activation(activation) =>
        {
            act
        }
        (Op::Activation(activation), act, _) => activate(act, activation),
        (Op::Dropout { .. } | Op::Identity, act, _) => act,
        // INVARIANT: the compiler gives each op the rank it needs (flatten before dense,
        // images for conv and pool), and `params::initialise` / `from_tensors` give each op
        // the params of its kind.
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
            _,
            _,
        ) => unreachable!(
            "layer `{}` got an input of the wrong rank or params of another op",
            layer.name
        ),
    };
    let out = suffix(out, layer, fused_activation(layer), is_last, cfg);
    drop(inputs);
    out.split()
}

/// The suffix activation (relu or relu6) a convolution of any kind, a batch norm or an `add`
/// runs inside itself.
fn fused_activation(layer: &Layer) -> FusedActivation {
    let fuses = matches!(
        layer.op,
        Op::Conv { .. }
            | Op::DepthwiseConv { .. }
            | Op::SeparableConv { .. }
            | Op::BatchNorm { .. }
            | Op::Merge(MergeKind::Add)
    );
    if fuses {
        clamp(layer.activation)
    } else {
        FusedActivation::Linear
    }
}

/// The clamp an op runs for a `relu` or `relu6` suffix; linear for any other activation.
fn clamp(activation: Option<Activation>) -> FusedActivation {
    match activation {
        Some(Activation::Relu) => FusedActivation::Relu,
        Some(Activation::Relu6) => FusedActivation::Relu6,
        Some(_) | None => FusedActivation::Linear,
    }
}

/// `layer`'s suffix activation on `out`, unless its op already ran it (`fused`) or it is the
/// model's final softmax or sigmoid, left to the loss.
fn suffix<T: Tape<f32, Cpu>>(
    out: Act<T>,
    layer: &Layer,
    fused: FusedActivation,
    is_last: bool,
    cfg: PassConfig,
) -> Act<T> {
    match layer.activation {
        Some(activation) if runs_suffix(layer, fused, is_last, cfg) => activate(out, activation),
        Some(_) | None => out,
    }
}

/// Whether [`suffix`] applies `layer`'s activation.
fn runs_suffix(layer: &Layer, fused: FusedActivation, is_last: bool, cfg: PassConfig) -> bool {
    layer.activation.is_some_and(|activation| {
        fused == FusedActivation::Linear
            && !(is_last && cfg.activation_to_loss && is_loss_activation(activation))
    })
}

/// Whether the loss applies this activation itself (softmax or sigmoid on the logits).
fn is_loss_activation(activation: Activation) -> bool {
    matches!(activation, Activation::Softmax | Activation::Sigmoid)
}

/// The other input of the two-input `add` right after batch norm `idx` (a linear batch norm on
/// images, read by that `add` alone), when it is computed before the batch norm: then the
/// batch norm adds it and runs the add's activation itself (`batch_norm_add`).
fn fusable_add(layers: &[Layer], idx: usize) -> Option<Source> {
    let bn = layers.get(idx)?;
    let add = layers.get(idx + 1)?;
    if !matches!(bn.op, Op::BatchNorm { .. })
        || bn.activation.is_some()
        || !matches!(bn.output, crate::ir::Shape::Image { .. })
        || add.op != Op::Merge(MergeKind::Add)
    {
        return None;
    }
    let [a, b] = add.inputs.as_slice() else {
        return None;
    };
    let other = match (a.source, b.source) {
        (Source::Layer(a), other) | (other, Source::Layer(a)) if a == idx => other,
        _ => return None,
    };
    let earlier = match other {
        Source::Input => true,
        Source::Layer(other) => other < idx,
    };
    // The model's input is always an image.
    let image = match other {
        Source::Input => true,
        Source::Layer(other) => matches!(layers[other].output, crate::ir::Shape::Image { .. }),
    };
    (earlier && image).then_some(other)
}

/// Whether conv `idx` (plain or depthwise, linear) is read by the batch norm right after it
/// alone, so that in inference the two run as one convolution with the normalisation folded
/// into its weights and bias, and in training as one op (`linear_bn`).
fn foldable_bn(layers: &[Layer], idx: usize) -> bool {
    let (Some(conv), Some(next)) = (layers.get(idx), layers.get(idx + 1)) else {
        return false;
    };
    let conv_op = matches!(
        conv.op,
        Op::Conv { groups: 1, .. } | Op::DepthwiseConv { .. }
    );
    let reads_conv = matches!(next.inputs.as_slice(), [edge] if edge.source == Source::Layer(idx));
    conv_op
        && conv.activation.is_none()
        && matches!(next.op, Op::BatchNorm { .. })
        && reads_conv
        && matches!(conv.input(), crate::ir::Shape::Image { .. })
}

/// Whether the output of batch norm `bn` (run inside a training conv + batch norm, no skip)
/// may be handed on deferred ([`Handoff::Deferred`]): its one reader is a linear convolution
/// that runs as one op with the batch norm after it (as `trains_conv_bn` decides for it), and
/// makes its input rows of the batch norm's input as it reads them: a depthwise one, or a
/// plain one the Winograd kernels compute.
fn deferrable(layers: &[Layer], store: &Store<'_>, bn: usize) -> bool {
    if store.readers(bn) != 1 {
        return false;
    }
    let reads_bn = |layer: &Layer| {
        layer
            .inputs
            .iter()
            .any(|edge| edge.source == Source::Layer(bn))
    };
    let Some(reader) = layers
        .iter()
        .skip(bn + 1)
        .position(reads_bn)
        .map(|r| bn + 1 + r)
    else {
        return false;
    };
    let channels = layers[bn].output.features();
    let op = &layers[reader].op;
    let maps_rows = matches!(op, Op::DepthwiseConv { .. })
        || matches!(*op, Op::Conv { kernel, stride, groups: 1, .. }
            if winograd::takes_conv(kernel, stride, channels));
    maps_rows
        && layers[reader].inputs.len() == 1
        && store.readers(reader) == 1
        && foldable_bn(layers, reader)
}

/// Conv `idx` (plain or depthwise) and the batch norm after it in training, as one op
/// ([`conv2d_batch_norm`], [`depthwise_batch_norm`]), with the residual add after the batch
/// norm when its other operand `skip` is given; `ran` layers run as one, the last of them the
/// model's last when `is_last`. Returns the output and the activation run inside the op (the
/// batch norm's, or the add's). The output is handed on as a mirror when no activation runs
/// after the op and a later layer reads it, deferred when `defer` (see [`deferrable`]).
fn conv_bn_training<T: Tape<f32, Cpu>>(
    layers: &[Layer],
    idx: usize,
    params: &mut [LayerParams],
    x: Traced<T>,
    skip: Option<Skip<'_>>,
    (cfg, ran, is_last, defer): (PassConfig, usize, bool, bool),
) -> (Traced<T>, FusedActivation) {
    let (conv_layer, bn_layer) = (&layers[idx], &layers[idx + 1]);
    let Op::BatchNorm { momentum, eps } = bn_layer.op else {
        unreachable!("foldable_bn checked that a batch norm follows")
    };
    let activation = match skip {
        Some(_) => fused_activation(&layers[idx + 2]),
        None => fused_activation(bn_layer),
    };
    let handoff = match (
        is_last || runs_suffix(&layers[idx + ran - 1], activation, is_last, cfg),
        defer,
    ) {
        (true, _) => Handoff::Tensor,
        (false, false) => Handoff::Mirror,
        (false, true) => Handoff::Deferred,
    };
    let bn_cfg = BatchNormConfig {
        momentum: momentum as f32,
        eps: eps as f32,
        training: cfg.training,
        input_grad: true,
        activation,
        sync: cfg.bn_sync,
    };
    let (head, tail) = params.split_at_mut(idx + 1);
    let LayerParams::BatchNorm(bn) = &mut tail[0] else {
        unreachable!("a batch norm layer has batch norm params")
    };
    let out = match &head[idx] {
        LayerParams::Conv(conv) => {
            let conv_cfg = conv_config(conv_layer);
            conv2d_batch_norm(x, (conv, &conv_cfg), (bn, &bn_cfg), (skip, handoff))
        }
        LayerParams::Depthwise(dw) => {
            let dw_cfg = depthwise_config(conv_layer, FusedActivation::Linear);
            depthwise_batch_norm(x, (dw, &dw_cfg), (bn, &bn_cfg), (skip, handoff))
        }
        LayerParams::None
        | LayerParams::Dense(_)
        | LayerParams::BatchNorm(_)
        | LayerParams::Separable(_)
        | LayerParams::Grouped(_) => {
            unreachable!("foldable_bn checked that the layer is a plain or depthwise conv")
        }
    };
    (out, activation)
}

/// Conv `idx` and the batch norm after it, in inference: `bn(conv(x)) = conv'(x)` with each
/// output channel's weights scaled by `gamma / sqrt(var + eps)` and its bias
/// `(bias - mean) * scale + beta`; the batch norm's `relu` (`relu6` for a depthwise conv) runs
/// inside the convolution, any other activation after it.
#[allow(clippy::too_many_arguments)]
fn conv_bn_inference<T: Tape<f32, Cpu>>(
    layers: &[Layer],
    idx: usize,
    params: &mut [LayerParams],
    inputs: Vec<Stored>,
    residual: Option<Stored>,
    (tape, device): (T, &Cpu),
    cfg: PassConfig,
    is_last: bool,
) -> (Stored, T) {
    let (conv_layer, bn_layer) = (&layers[idx], &layers[idx + 1]);
    let Op::BatchNorm { eps, .. } = bn_layer.op else {
        unreachable!("foldable_bn checked that a batch norm follows")
    };
    let (head, tail) = params.split_at_mut(idx + 1);
    let LayerParams::BatchNorm(bn) = &tail[0] else {
        unreachable!("a batch norm layer has batch norm params")
    };
    let (scale, shift) = inference_scale_shift(bn, eps);
    let fold = |weight: &Tensor<(usize, usize), f32, Cpu>, bias: Option<&Vector>| {
        let mut w = buffers::to_vec(weight);
        w.chunks_exact_mut(scale.len().max(1)).for_each(|row| {
            row.iter_mut().zip(&scale).for_each(|(w, s)| *w *= s);
        });
        let b: Vec<f32> = match bias {
            Some(bias) => buffers::to_vec(bias),
            None => vec![0.0; scale.len()],
        };
        let b: Vec<f32> = (0..scale.len())
            .map(|f| b[f] * scale[f] + shift[f])
            .collect();
        let device = weight.device().clone();
        let weight = device.tensor_from_vec(w, *weight.shape());
        let bias = device.tensor_from_vec(b, (scale.len(),));
        (weight, bias)
    };
    let Some(x) = inputs.into_iter().next().and_then(Stored::into_readable) else {
        unreachable!("foldable_bn checked that the conv reads one image")
    };
    let residual = residual.map(|residual| {
        residual
            .into_readable()
            .expect("fusable_add checked the skip is an image")
    });
    // With a residual, the layer ending the fused run (whose activation applies) is the add;
    // the batch norm before it is linear.
    let last_layer = match residual {
        Some(_) => &layers[idx + 2],
        None => bn_layer,
    };
    let activation = last_layer.activation;
    let (out, fused) = match &head[idx] {
        LayerParams::Conv(conv) => {
            let (weight, bias) = fold(&conv.weight, conv.bias.as_ref());
            let folded = Conv2dParams {
                weight,
                bias: Some(bias),
            };
            let fused = clamp(activation);
            let conv_cfg = conv_config(conv_layer);
            let out = conv2d_batch(&x, &folded, &conv_cfg, fused, residual.as_deref());
            (out, fused)
        }
        LayerParams::Depthwise(dw) => {
            let (weight, bias) = fold(&dw.weight, dw.bias.as_ref());
            let folded = DepthwiseParams {
                weight,
                bias: Some(bias),
            };
            let fused = clamp(activation);
            let dw_cfg = depthwise_config(conv_layer, fused);
            (depthwise_conv2d_batch(&x, &folded, &dw_cfg), fused)
        }
        LayerParams::None
        | LayerParams::Dense(_)
        | LayerParams::BatchNorm(_)
        | LayerParams::Separable(_)
        | LayerParams::Grouped(_) => {
            unreachable!("foldable_bn checked that the layer is a plain or depthwise conv")
        }
    };
    release(x);
    if let Some(residual) = residual {
        release(residual);
    }
    if !runs_suffix(last_layer, fused, is_last, cfg) {
        return (Stored::Batch(out), tape);
    }
    let out = Act::Image(out.into_tensor(device).put_tape(tape));
    let (out, tape) = suffix(out, last_layer, fused, is_last, cfg).split();
    (Stored::Tensor(out), tape)
}

/// An inference-mode batch norm as `x * scale + shift` per channel, as the batch norm op
/// computes it from the moving statistics.
fn inference_scale_shift(bn: &BatchNormParams, eps: f64) -> (Vec<f32>, Vec<f32>) {
    let map = batch_norm::moving_affine(bn, eps as f32);
    (map.scale, map.shift)
}

/// Whether batch norm `idx` (linear, on an image) is read alone by a pixel-major `flatten`
/// that a dense layer reads alone, so that in inference the three run as one dense product
/// with the normalisation folded into the weights.
fn foldable_bn_dense(layers: &[Layer], idx: usize) -> bool {
    let (Some(bn), Some(flatten)) = (layers.get(idx), layers.get(idx + 1)) else {
        return false;
    };
    let reads_bn = matches!(flatten.inputs.as_slice(), [edge] if edge.source == Source::Layer(idx));
    matches!(bn.op, Op::BatchNorm { .. })
        && bn.activation.is_none()
        && matches!(bn.output, crate::ir::Shape::Image { .. })
        && reads_bn
        && flatten.activation.is_none()
        && params::pixel_major_flatten(layers, idx + 1)
        && params::flattened_image(layers, idx + 2).is_some()
}

/// The first layers of an inference pass on borrowed input values `view`, which layer `idx`
/// alone reads, when they can read them in place: the fused batch norm -> flatten -> dense
/// product, or a batch norm on its own. Returns the output and the layers run; `None` when
/// the layer needs a tensor.
fn input_layers(
    layers: &[Layer],
    idx: usize,
    params: &[LayerParams],
    (values, shape, device): (&[f32], Shape4, Cpu),
    cfg: PassConfig,
) -> Option<(Stored, usize)> {
    // A batch norm that fuses with the layers after it (a residual add) runs as the pass
    // runs it, on a tensor.
    let fuses_after =
        cfg.fuse && (foldable_bn_dense(layers, idx) || fusable_add(layers, idx).is_some());
    if let (Op::BatchNorm { eps, .. }, Some(LayerParams::BatchNorm(bn)), false) =
        (layers.get(idx)?.op, params.get(idx), fuses_after)
    {
        let layer = &layers[idx];
        let fused = fused_activation(layer);
        let out = batch_norm_inference_values(values, shape, bn, eps as f32, fused);
        let is_last = idx + 1 == layers.len();
        if !runs_suffix(layer, fused, is_last, cfg) {
            return Some((Stored::Batch(out), 1));
        }
        let out = Act::Image(out.into_tensor(&device));
        let (out, _) = suffix(out, layer, fused, is_last, cfg).split();
        return Some((Stored::Tensor(out), 1));
    }
    if !(cfg.fuse && foldable_bn_dense(layers, idx)) {
        return None;
    }
    let (bn_layer, dense_layer) = (layers.get(idx)?, layers.get(idx + 2)?);
    let (Op::BatchNorm { eps, .. }, LayerParams::BatchNorm(bn), LayerParams::Dense(linear)) =
        (bn_layer.op, params.get(idx)?, params.get(idx + 2)?)
    else {
        return None;
    };
    let (scale, shift) = inference_scale_shift(bn, eps);
    let (n, h, w, c) = shape;
    let out = dense_of_affine_values(values, (n, h * w * c), linear, &scale, &shift, &device);
    let is_last = idx + 3 == layers.len();
    let (out, _) = suffix(
        Act::Flat(out),
        dense_layer,
        FusedActivation::Linear,
        is_last,
        cfg,
    )
    .split();
    Some((Stored::Tensor(out), 3))
}

/// Batch norm `idx`, the flatten and the dense layer after it, in inference: the dense product
/// of the normalised input, normalised on the fly (`dense_of_affine`).
fn bn_dense_inference<T: Tape<f32, Cpu>>(
    layers: &[Layer],
    idx: usize,
    params: &[LayerParams],
    x: Image<NoneTape>,
    tape: T,
    cfg: PassConfig,
    is_last: bool,
) -> (Value, T) {
    let (bn_layer, dense_layer) = (&layers[idx], &layers[idx + 2]);
    let (Op::BatchNorm { eps, .. }, LayerParams::BatchNorm(bn), LayerParams::Dense(linear)) =
        (bn_layer.op, &params[idx], &params[idx + 2])
    else {
        unreachable!("foldable_bn_dense checked batch norm, flatten and dense")
    };
    let (scale, shift) = inference_scale_shift(bn, eps);
    let out = dense_of_affine(flatten_pixels(x), linear, &scale, &shift);
    let out = Act::Flat(out.put_tape(tape));
    suffix(out, dense_layer, FusedActivation::Linear, is_last, cfg).split()
}

/// Whether batch norm `idx` on the model's input can run with the flatten and dense layer
/// after it as one op with a tape ([`batch_norm_dense`]): [`foldable_bn_dense`], and a dense
/// layer narrow enough for its streaming product.
fn trainable_bn_dense(layers: &[Layer], idx: usize) -> bool {
    let reads_input = layers
        .get(idx)
        .is_some_and(|bn| matches!(bn.inputs.as_slice(), [edge] if edge.source == Source::Input));
    let Some(Op::Dense { units, .. }) = layers.get(idx + 2).map(|dense| dense.op) else {
        return false;
    };
    reads_input && bn_dense::fits(units) && foldable_bn_dense(layers, idx)
}

/// Batch norm `idx` on the model's input, the flatten and the dense layer after it, as one op
/// on the tape (in training, or inference with gradients wanted).
fn bn_dense_training<T: Tape<f32, Cpu>>(
    layers: &[Layer],
    idx: usize,
    params: &mut [LayerParams],
    x: Image<T>,
    cfg: PassConfig,
    is_last: bool,
) -> (Value, T) {
    let (bn_layer, dense_layer) = (&layers[idx], &layers[idx + 2]);
    let (head, tail) = params.split_at_mut(idx + 1);
    let (Op::BatchNorm { momentum, eps }, LayerParams::BatchNorm(bn), LayerParams::Dense(linear)) =
        (bn_layer.op, &mut head[idx], &tail[1])
    else {
        unreachable!("trainable_bn_dense checked batch norm, flatten and dense")
    };
    let bn_cfg = BatchNormConfig {
        momentum: momentum as f32,
        eps: eps as f32,
        training: cfg.training,
        input_grad: false,
        activation: FusedActivation::Linear,
        sync: cfg.bn_sync,
    };
    let out = Act::Flat(batch_norm_dense(x, bn, &bn_cfg, linear));
    suffix(out, dense_layer, FusedActivation::Linear, is_last, cfg).split()
}

/// The max pool that alone reads conv `idx`, when the two can run fused.
fn fusable_pool(layers: &[Layer], idx: usize) -> Option<Pool2dConfig> {
    let conv = layers.get(idx)?;
    let next = layers.get(idx + 1)?;
    let relu_or_none = matches!(conv.activation, None | Some(Activation::Relu));
    let reads_conv = matches!(next.inputs.as_slice(), [edge] if edge.source == Source::Layer(idx));
    let image_in = matches!(conv.input(), crate::ir::Shape::Image { .. });
    let Op::Conv { groups: 1, .. } = conv.op else {
        return None;
    };
    let Op::Pool {
        kind: PoolKind::Max,
        size,
        stride,
        pad,
    } = next.op
    else {
        return None;
    };
    if !(relu_or_none && reads_conv && image_in && next.activation.is_none()) {
        return None;
    }
    let pool = Pool2dConfig {
        size,
        stride,
        padding: op_padding(pad),
    };
    fusable(&pool).then_some(pool)
}

fn conv_config(layer: &Layer) -> Conv2dConfig {
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
        input_grad: !layer.inputs.iter().any(|edge| edge.source == Source::Input),
    }
}

/// The depthwise convolution of `layer` (a depthwise conv layer), with `activation` run
/// inside it.
fn depthwise_config(layer: &Layer, activation: FusedActivation) -> DepthwiseConfig {
    let Op::DepthwiseConv {
        multiplier,
        kernel,
        stride,
        pad,
        ..
    } = layer.op
    else {
        unreachable!("depthwise params belong to a depthwise conv layer")
    };
    DepthwiseConfig {
        kernel,
        stride,
        padding: op_padding(pad),
        multiplier,
        activation,
        input_grad: !layer.inputs.iter().any(|edge| edge.source == Source::Input),
    }
}

fn op_padding(pad: Padding) -> OpPadding {
    match pad {
        Padding::Valid => OpPadding::Valid,
        Padding::Same => OpPadding::Same,
    }
}

/// Applies an activation to either rank.
pub fn activate<T: Tape<f32, Cpu>>(act: Act<T>, activation: Activation) -> Act<T> {
    match act {
        Act::Image(x) => Act::Image(apply(x, activation, |x| x.softmax::<Axis<3>>())),
        Act::Flat(x) => Act::Flat(apply(x, activation, |x| x.softmax::<Axis<1>>())),
    }
}

fn apply<S: Shape, T: Tape<f32, Cpu>>(
    x: Tensor<S, f32, Cpu, T>,
    activation: Activation,
    softmax: impl FnOnce(Tensor<S, f32, Cpu, T>) -> Tensor<S, f32, Cpu, T>,
) -> Tensor<S, f32, Cpu, T> {
    match activation {
        Activation::Relu => relu(x),
        Activation::Sigmoid => x.sigmoid(),
        Activation::Tanh => x.tanh(),
        Activation::Softmax => softmax(x),
        Activation::Gelu => gelu(x),
        Activation::LeakyRelu { alpha } => leaky_relu(x, alpha as f32),
        Activation::Relu6 => relu6(x),
        Activation::Silu => silu(x),
        Activation::HardSwish => hard_swish(x),
        Activation::HardSigmoid => hard_sigmoid(x),
        Activation::Elu { alpha } => elu(x, alpha as f32),
    }
}
