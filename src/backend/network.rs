//! The network: the IR's layers with their parameters, the forward pass over the graph
//! (`forward.rs`), and the training and inference steps. The model's final softmax is fused
//! into the loss as log-softmax; `predict` applies it.
#![deny(clippy::wildcard_enum_match_arm)]

use super::checkpoint::NamedTensor;
use super::checkpoint::{check_against, Checkpoint, CheckpointError};
use super::forward::{self, PassConfig};
use super::ops::loss::{binary_cross_entropy, categorical_cross_entropy, BceMode, LossOptions};
use super::ops::{Flat, Image};
use super::optimizer::Optimizer;
use super::params::{self, LayerParams, ParamMut};
use super::split;
use crate::backend::ops::dropout::{mix, DropoutKey};
use crate::distributed::Collective;
use crate::ir::{Head, Model};
use dfdx::prelude::*;
use std::borrow::Cow;

/// A trainable network for a checked model.
#[derive(Debug)]
pub struct Network {
    /// The checked model.
    pub model: Model,
    /// Parameters, one entry per IR layer.
    pub params: Vec<LayerParams>,
    device: Cpu,
    /// Each class's weight in the training loss, by label; empty: all 1.
    class_weights: Vec<f32>,
    /// The ranks whose batch statistics training passes share (`train.sync_bn`).
    pub(super) bn_sync: Option<&'static dyn Collective>,
    /// Dropout's seed ([`Network::reseed`]) and the training passes since it was set.
    dropout_seed: u64,
    dropout_passes: u64,
    /// The place in the whole batch of the next training pass's first image.
    pub(super) first_image: usize,
    /// The ranks a training step or an inference pass splits its batch over ([`split`]),
    /// made at the first split.
    pub(super) split: Option<Box<super::split::Split>>,
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

impl Network {
    /// A Keras-initialised network; all randomness (initialisation, dropout) flows from `seed`.
    pub fn new(model: &Model, seed: u64) -> Network {
        crate::backend::ops::denormals::flush_everywhere();
        let device = Cpu::seed_from_u64(seed ^ 0x5EED_D20F);
        let params = params::initialise(model, &device, seed);
        Network::assemble(model.clone(), params, device, seed ^ 0x5EED_D20F)
    }

    /// A network of `model` with `params`, nothing else set yet.
    fn assemble(model: Model, params: Vec<LayerParams>, device: Cpu, dropout_seed: u64) -> Network {
        Network {
            model,
            params,
            device,
            class_weights: Vec::new(),
            bn_sync: None,
            dropout_seed,
            dropout_passes: 0,
            first_image: 0,
            split: None,
        }
    }

    /// A network with the parameters of `checkpoint`, checked against `model`.
    pub fn from_checkpoint(
        model: &Model,
        checkpoint: &Checkpoint,
    ) -> Result<Network, CheckpointError> {
        check_against(checkpoint, model)?;
        crate::backend::ops::denormals::flush_everywhere();
        let device = Cpu::seed_from_u64(0);
        let params = params::from_tensors(model, &device, &checkpoint.tensors);
        Ok(Network::assemble(model.clone(), params, device, 0))
    }

    /// Re-seeds dropout's random numbers (the trainer does this per epoch, for exact resume):
    /// each training pass after it draws its masks from `seed` and the pass's number.
    pub fn reseed(&mut self, seed: u64) {
        self.device = Cpu::seed_from_u64(seed);
        self.dropout_seed = seed;
        self.dropout_passes = 0;
    }

    /// Where the images of the next training passes start in the whole batch: a data-parallel
    /// rank's share starts past the other ranks' images, and dropout draws each image's mask
    /// by its place in the whole batch ([`crate::backend::ops::dropout`]). 0 by default.
    pub fn set_first_image(&mut self, first_image: usize) {
        self.first_image = first_image;
    }

    /// A batch of `count` images (`n × h × w × c` values) as the network's input tensor; clones
    /// of it share the data, so a benchmark can run many steps on one batch without copying.
    pub fn input_tensor(&self, images: Vec<f32>, count: usize) -> Image<NoneTape> {
        let (h, w, c) = self.model.input.hwc();
        self.device.tensor_from_vec(images, (count, h, w, c))
    }

    /// A network for another rank of a split step ([`split`]): this model, no weights until
    /// [`Network::mirror_into`] lends it this network's.
    pub(super) fn follower(&self) -> Network {
        Network::assemble(self.model.clone(), Vec::new(), Cpu::seed_from_u64(0), 0)
    }

    /// Makes `follower` compute as this network would: its weights (clones sharing their
    /// storage), dropout's seed and pass count, and the class weights.
    pub(super) fn mirror_into(&self, follower: &mut Network) {
        follower.params.clone_from(&self.params);
        follower.dropout_seed = self.dropout_seed;
        follower.dropout_passes = self.dropout_passes;
        follower.class_weights.clone_from(&self.class_weights);
    }

    /// Lets go of the weights [`Network::mirror_into`] lent.
    pub(super) fn release(&mut self) {
        self.params.clear();
    }

    /// Logits (`rows × classes` values) as a tensor for [`Network::loss`].
    pub(super) fn logits_tensor(&self, values: Vec<f32>, shape: (usize, usize)) -> Flat<NoneTape> {
        self.device.tensor_from_vec(values, shape)
    }

    /// Sets each class's weight in the training loss, by label (Keras's `class_weight`);
    /// empty weighs every class 1. Inference-mode losses ([`Network::evaluate`]) stay
    /// unweighted, as Keras's validation loss is.
    pub fn set_class_weights(&mut self, weights: Vec<f32>) {
        self.class_weights = weights;
    }

    /// Makes training passes normalise every batch norm over the batch shares of all ranks of
    /// `world` (`train.sync_bn` in a data-parallel run); `None` (the default): over this
    /// process's batch.
    pub fn set_batch_norm_sync(&mut self, world: Option<&'static dyn Collective>) {
        self.bn_sync = world;
    }

    /// The loss options of a batch: the spec's label smoothing always, the class weights only
    /// in training.
    fn loss_options(&self, training: bool) -> LossOptions<'_> {
        LossOptions {
            label_smoothing: self.model.train.label_smoothing as f32,
            class_weights: if training { &self.class_weights } else { &[] },
        }
    }

    /// One training step on a batch (`images`: `n × h × w × c`): forward in training mode,
    /// backward, and an optimiser update.
    pub fn train_step(
        &mut self,
        images: Vec<f32>,
        labels: &[usize],
        optimizer: &mut Optimizer,
    ) -> Result<BatchStats, CpuError> {
        if let Some(ranks) = self.split_ranks(labels.len(), images.len()) {
            return split::train_step(self, &images, labels, optimizer, ranks);
        }
        let x = self.input_tensor(images, labels.len());
        self.train_step_on(x, labels, optimizer)
    }

    /// Over how many ranks a training step on `count` images (`len` values) is split
    /// ([`split`]); `None`: one pass over the whole batch. A rank of a data-parallel run
    /// (`bn_sync` set) does not split its share further.
    fn split_ranks(&self, count: usize, len: usize) -> Option<usize> {
        let ranks = split::ranks_for(&self.model, count);
        (ranks > 1 && self.bn_sync.is_none() && len > 0).then_some(ranks)
    }

    /// [`Network::train_step`] on an input tensor.
    pub fn train_step_on(
        &mut self,
        x: Image<NoneTape>,
        labels: &[usize],
        optimizer: &mut Optimizer,
    ) -> Result<BatchStats, CpuError> {
        if let Some(ranks) = self.split_ranks(labels.len(), x.shape().num_elements()) {
            return split::train_step(self, &x.as_vec(), labels, optimizer, ranks);
        }
        on_pool(self.bn_sync.is_none(), || {
            let logits = self.forward(x.leaky_trace(), true);
            let (loss, stats_correct) = self.loss(logits, labels, true);
            let value = loss.array();
            let mut grads = loss.backward();
            optimizer.begin_step();
            for (_, param) in params::trainables(&self.model, &mut self.params) {
                match param {
                    ParamMut::Vector(tensor) => optimizer.update(tensor, &mut grads)?,
                    ParamMut::Matrix(tensor) => optimizer.update(tensor, &mut grads)?,
                }
            }
            Ok(BatchStats {
                loss: f64::from(value),
                correct: stats_correct,
                count: labels.len(),
            })
        })
    }

    /// The loss of a batch in training mode and the gradient of every parameter, in the
    /// checkpoint's names and layouts (moving statistics get zeros), without an update; for
    /// gradient checks of whole networks and for combining gradients across processes.
    pub fn loss_and_gradients(
        &mut self,
        images: Vec<f32>,
        labels: &[usize],
    ) -> (BatchStats, Vec<NamedTensor>) {
        let x = self.input_tensor(images, labels.len());
        on_pool(self.bn_sync.is_none(), || {
            let logits = self.forward(x.leaky_trace(), true);
            let (loss, correct) = self.loss(logits, labels, true);
            let value = loss.array();
            let grads = loss.backward();
            let gradients = params::gradient_tensors(&self.model, &self.params, &grads);
            let stats = BatchStats {
                loss: f64::from(value),
                correct,
                count: labels.len(),
            };
            (stats, gradients)
        })
    }

    /// Loss and accuracy of a batch in inference mode (no update).
    pub fn evaluate(&mut self, images: Vec<f32>, labels: &[usize]) -> BatchStats {
        let count = labels.len();
        let ranks = split::inference_ranks(&self.model, count);
        if ranks > 1 {
            let per_image = images.len() / count;
            let pass = |network: &mut Network, range: std::ops::Range<usize>| {
                let share = images[range.start * per_image..range.end * per_image].to_vec();
                let x = network.input_tensor(share, range.len());
                // Rounded as the whole batch's pass is (it is worth splitting).
                network.pass(x, false, true).as_vec()
            };
            if let Ok(logits) = split::infer(self, count, ranks, pass) {
                let (loss, right) = self.loss(logits, labels, false);
                return BatchStats {
                    loss: f64::from(loss.array()),
                    correct: right,
                    count,
                };
            }
        }
        let x = self.input_tensor(images, labels.len());
        on_pool(true, || {
            let logits = self.forward(x, false);
            let (loss, right) = self.loss(logits, labels, false);
            BatchStats {
                loss: f64::from(loss.array()),
                correct: right,
                count: labels.len(),
            }
        })
    }

    /// Class probabilities of each image, in inference mode. A binary head's one probability
    /// `p` (of the second class) is reported as both classes' `[1 - p, p]`.
    pub fn predict(&mut self, images: Vec<f32>, count: usize) -> Vec<Vec<f32>> {
        self.predict_input(Cow::Owned(images), count)
    }

    /// [`Network::predict`] on borrowed images (`count × h × w × c` values): a first layer
    /// that can read them in place does (a batch norm on the input), so that a memory-bound
    /// model reads each image once; otherwise they are copied into the input tensor.
    ///
    /// # Panics
    /// When `images` does not hold `count` images of the model's input shape.
    pub fn predict_values(&mut self, images: &[f32], count: usize) -> Vec<Vec<f32>> {
        self.predict_input(Cow::Borrowed(images), count)
    }

    /// [`Network::predict`] on owned or borrowed images.
    fn predict_input(&mut self, images: Cow<'_, [f32]>, count: usize) -> Vec<Vec<f32>> {
        let (h, w, c) = self.model.input.hwc();
        let cfg = PassConfig {
            training: false,
            fuse: true,
            activation_to_loss: true,
            bn_sync: None,
            dropout: DropoutKey::default(),
            row_stable: split::worth_splitting(&self.model, count),
        };
        let ranks = split::inference_ranks(&self.model, count);
        if ranks > 1 {
            let per_image = h * w * c;
            let values = &*images;
            let pass = |network: &mut Network, range: std::ops::Range<usize>| {
                let share = &values[range.start * per_image..range.end * per_image];
                let Network {
                    model,
                    params,
                    device,
                    ..
                } = network;
                forward::run_values(
                    &model.layers,
                    params,
                    (Cow::Borrowed(share), (range.len(), h, w, c)),
                    device,
                    cfg,
                    &mut |_, _| {},
                )
                .as_vec()
            };
            if let Ok(logits) = split::infer(self, count, ranks, pass) {
                return self.probabilities(logits);
            }
        }
        on_pool(true, || {
            let logits = forward::run_values(
                &self.model.layers,
                &mut self.params,
                (images, (count, h, w, c)),
                &self.device,
                cfg,
                &mut |_, _| {},
            );
            self.probabilities(logits)
        })
    }

    /// [`Network::predict`] on an input tensor.
    pub fn predict_on(&mut self, x: Image<NoneTape>) -> Vec<Vec<f32>> {
        on_pool(true, || {
            let logits = self.forward(x, false);
            self.probabilities(logits)
        })
    }

    /// Class probabilities of a batch's logits: the head's activation applied.
    fn probabilities(&self, logits: Flat<NoneTape>) -> Vec<Vec<f32>> {
        match self.model.head {
            Head::Softmax => logits
                .softmax::<Axis<1>>()
                .as_vec()
                .chunks(self.model.classes.max(1))
                .map(<[f32]>::to_vec)
                .collect(),
            Head::Sigmoid => logits
                .sigmoid()
                .as_vec()
                .into_iter()
                .map(|p| vec![1.0 - p, p])
                .collect(),
        }
    }

    /// The loss of a batch's logits (the head's activation not yet applied) and how many
    /// images are classified right: categorical cross-entropy on softmax, or binary
    /// cross-entropy on the sigmoid as Keras computes it in `fit` (from the logits); with the
    /// spec's label smoothing, and in `training` its class weights.
    pub(super) fn loss<T: Tape<f32, Cpu>>(
        &self,
        logits: Flat<T>,
        labels: &[usize],
        training: bool,
    ) -> (Tensor<(), f32, Cpu, T>, usize) {
        let options = self.loss_options(training);
        match self.model.head {
            Head::Softmax => {
                let right = correct(&logits.retaped::<NoneTape>(), labels);
                (categorical_cross_entropy(logits, labels, options), right)
            }
            Head::Sigmoid => {
                let (loss, stats) = binary_cross_entropy(logits, labels, BceMode::Logits, options);
                (loss, stats.correct)
            }
        }
    }

    /// Logits of a batch: every layer, the final softmax (or sigmoid) left to the loss.
    pub fn forward<T: Tape<f32, Cpu>>(&mut self, x: Image<T>, training: bool) -> Flat<T> {
        let row_stable = training || split::worth_splitting(&self.model, x.shape().0);
        self.pass(x, training, row_stable)
    }

    /// [`Network::forward`], rounding dense products per image with `row_stable` (a share of
    /// a split inference pass rounds as the whole batch's pass does).
    fn pass<T: Tape<f32, Cpu>>(
        &mut self,
        x: Image<T>,
        training: bool,
        row_stable: bool,
    ) -> Flat<T> {
        let dropout = if training {
            self.dropout_passes += 1;
            DropoutKey {
                pass: mix(self.dropout_seed ^ mix(self.dropout_passes)),
                first_image: self.first_image,
            }
        } else {
            DropoutKey::default()
        };
        let cfg = PassConfig {
            training,
            fuse: true,
            activation_to_loss: true,
            bn_sync: if training { self.bn_sync } else { None },
            dropout,
            row_stable,
        };
        forward::run(&self.model.layers, &mut self.params, x, cfg, &mut |_, _| {})
    }

    /// The real output shape of every layer (without the batch axis) for one batch, running
    /// each layer on its own in inference mode; tests compare it with the compiler's shapes.
    pub fn layer_shapes(&mut self, images: Vec<f32>, count: usize) -> Vec<Vec<usize>> {
        let x = self.input_tensor(images, count);
        let mut shapes = Vec::new();
        let cfg = PassConfig {
            training: false,
            fuse: false,
            activation_to_loss: true,
            bn_sync: None,
            dropout: DropoutKey::default(),
            row_stable: false,
        };
        forward::run(
            &self.model.layers,
            &mut self.params,
            x,
            cfg,
            &mut |_, dims| shapes.push(dims),
        );
        shapes
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

/// Runs `f` on a thread of rayon's pool, the calling thread waiting for it, when `move_it` and
/// the caller is not such a thread already; otherwise runs it here.
///
/// A pass is many parallel ops in a row. Started from a thread outside the pool, each op hands
/// its work to the pool and puts the caller to sleep until it is done: two or three context
/// switches an op, and the workers fall asleep in the caller's serial stretches between ops.
/// Started from a worker, an op splits its work with the other workers and the starting
/// thread takes part. Measured on 2 cores (`strata bench`, alternated with the build before):
/// context switches 94,000 to 23,000 in a `fashion_resnet` run; training 7 to 16% more images
/// a second on `fashion_resnet`, `resnet_small` and `mobilenetv2_small`.
///
/// Not for a pass that calls MPI (a data-parallel run's synchronised batch norms): MPI is
/// called only from the thread that started it (`MPI_THREAD_FUNNELED`). Not for work that waits
/// on other threads either (the loader): a worker blocked there could not help them.
pub(super) fn on_pool<R: Send>(move_it: bool, f: impl FnOnce() -> R + Send) -> R {
    if move_it && rayon::current_thread_index().is_none() {
        rayon::join(f, || ()).0
    } else {
        f()
    }
}
