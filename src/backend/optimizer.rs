//! Optimisers over the runtime list of parameters: Adam and AdamW (Keras defaults β 0.9 /
//! 0.999, ε 1e-7), SGD (momentum, Nesterov) and RMSprop (ρ 0.9, ε 1e-7), using dfdx's update
//! kernels with moment buffers of our own, keyed by parameter; with decoupled weight decay and
//! a per-step learning-rate schedule as Keras 3's `BaseOptimizer` applies them.
//!
//! Weight decay is Keras's `_apply_weight_decay`: before a parameter's gradient update,
//! `variable -= variable * weight_decay * lr` in f32, with `lr` the step's scheduled rate, on
//! every trainable parameter. dfdx's `WeightDecay::Decoupled` is the same sum in another order
//! (`p - (update + (wd * lr) * p)`, rounded differently), so the decay is applied here instead.

use super::ops::tape::Grads;
use super::schedule::LrSchedule;
use crate::settings::{OptimizerKind, Schedule, TrainConfig};
use dfdx::optim::{AdamConfig, Momentum, RMSpropConfig, SgdConfig};
use dfdx::shapes::Shape;
use dfdx::tensor::{Cpu, CpuError, Gradients, Tensor};

/// Keras's epsilon for Adam and RMSprop.
pub const KERAS_EPSILON: f64 = 1e-7;

/// An optimiser with its state.
#[derive(Debug)]
pub struct Optimizer {
    rule: Rule,
    /// Optimisation steps taken.
    pub step: i32,
    /// First moment (Adam), velocity (SGD) or momentum (RMSprop).
    pub first: Grads,
    /// Second moment (Adam) or square average (RMSprop).
    pub second: Grads,
    /// Gradient average (centred RMSprop; unused otherwise).
    pub third: Grads,
    /// Decoupled weight decay (0 for none).
    weight_decay: f64,
    /// The rate of each step, unless the rate is constant.
    schedule: Option<LrSchedule>,
}

#[derive(Debug, Clone, Copy)]
enum Rule {
    Adam(AdamConfig),
    Sgd(SgdConfig),
    RmsProp(RMSpropConfig),
}

impl Optimizer {
    /// The optimiser a spec's `train:` section names, with its weight decay, at the constant
    /// rate `train.lr`; [`Optimizer::with_schedule`] adds the schedule, which needs the run's
    /// steps per epoch.
    pub fn new(train: &TrainConfig) -> Optimizer {
        let rule = match train.optimizer {
            OptimizerKind::Adam | OptimizerKind::Adamw => Rule::Adam(AdamConfig {
                lr: train.lr,
                betas: [0.9, 0.999],
                eps: KERAS_EPSILON,
                weight_decay: None,
            }),
            OptimizerKind::Sgd => Rule::Sgd(SgdConfig {
                lr: train.lr,
                momentum: match (train.momentum, train.nesterov) {
                    (0.0, _) => None,
                    (m, true) => Some(Momentum::Nesterov(m)),
                    (m, false) => Some(Momentum::Classic(m)),
                },
                weight_decay: None,
            }),
            OptimizerKind::Rmsprop => Rule::RmsProp(RMSpropConfig {
                lr: train.lr,
                alpha: 0.9,
                eps: KERAS_EPSILON,
                momentum: None,
                centered: false,
                weight_decay: None,
            }),
        };
        Optimizer {
            rule,
            step: 0,
            first: Gradients::leaky(),
            second: Gradients::leaky(),
            third: Gradients::leaky(),
            weight_decay: train.weight_decay(),
            schedule: None,
        }
    }

    /// This optimiser with its rate set by `schedule` at every step. A constant schedule
    /// leaves the rate as it is, so that [`Optimizer::set_lr`] (reduce-on-plateau) may change
    /// it.
    pub fn with_schedule(mut self, schedule: LrSchedule) -> Optimizer {
        self.schedule = (schedule.schedule != Schedule::Constant).then_some(schedule);
        self
    }

    /// The decoupled weight decay in effect.
    pub fn weight_decay(&self) -> f64 {
        self.weight_decay
    }

    /// The learning rate: with a schedule, the rate of the latest step begun.
    pub fn lr(&self) -> f64 {
        match self.rule {
            Rule::Adam(cfg) => cfg.lr,
            Rule::Sgd(cfg) => cfg.lr,
            Rule::RmsProp(cfg) => cfg.lr,
        }
    }

    /// Changes the learning rate (reduce-on-plateau, `--lr`).
    pub fn set_lr(&mut self, lr: f64) {
        match &mut self.rule {
            Rule::Adam(cfg) => cfg.lr = lr,
            Rule::Sgd(cfg) => cfg.lr = lr,
            Rule::RmsProp(cfg) => cfg.lr = lr,
        }
    }

    /// Starts a step; call once per batch before [`Optimizer::update`]. With a schedule the
    /// step's rate is the schedule's at the steps taken so far (Keras's `iterations` before
    /// the update counts it).
    pub fn begin_step(&mut self) {
        if let Some(schedule) = self.schedule {
            self.set_lr(schedule.lr_at(u64::try_from(self.step).unwrap_or(0)));
        }
        self.step += 1;
    }

    /// Updates `param` with its gradient in `grads` (zero when it has none).
    pub fn update<S: Shape>(
        &mut self,
        param: &mut Tensor<S, f32, Cpu>,
        grads: &mut Grads,
    ) -> Result<(), CpuError> {
        if self.weight_decay != 0.0 {
            decay(param, self.weight_decay, self.lr());
        }
        let grad = grads.get_or_alloc_mut(&*param)?;
        let first = self.first.get_or_alloc_mut(&*param)?;
        match self.rule {
            Rule::Adam(cfg) => {
                let second = self.second.get_or_alloc_mut(&*param)?;
                cfg.try_update(self.step.max(1), param, first, second, grad)
            }
            Rule::Sgd(cfg) => cfg.try_update(param, first, grad),
            Rule::RmsProp(cfg) => {
                let second = self.second.get_or_alloc_mut(&*param)?;
                let third = self.third.get_or_alloc_mut(&*param)?;
                cfg.try_update(param, first, second, third, grad)
            }
        }
    }
}

/// Keras's decoupled weight decay of one parameter: `variable - variable * wd * lr`, in f32
/// with `wd` and `lr` cast to f32 first, as `BaseOptimizer._apply_weight_decay` computes it.
fn decay<S: Shape>(param: &mut Tensor<S, f32, Cpu>, weight_decay: f64, lr: f64) {
    let (wd, lr) = (weight_decay as f32, lr as f32);
    let mut values = param.as_vec();
    values.iter_mut().for_each(|v| *v -= *v * wd * lr);
    param.copy_from(&values);
}

/// The optimiser's moment buffers of every parameter, as named tensors for a checkpoint
/// (`<param>.first`, `.second`, `.third`), so that a resumed run continues exactly.
pub fn export_state(
    optimizer: &mut Optimizer,
    model: &crate::ir::Model,
    params: &mut [super::params::LayerParams],
) -> Result<Vec<super::checkpoint::NamedTensor>, CpuError> {
    use super::params::ParamMut;
    let mut out = Vec::new();
    for (name, param) in super::params::trainables(model, params) {
        for (suffix, store) in [
            ("first", &mut optimizer.first),
            ("second", &mut optimizer.second),
            ("third", &mut optimizer.third),
        ] {
            let data: Vec<f32> = match &param {
                ParamMut::Vector(t) => store.get_or_alloc_mut(&**t)?.to_vec(),
                ParamMut::Matrix(t) => store.get_or_alloc_mut(&**t)?.to_vec(),
            };
            let len = data.len();
            out.push(super::checkpoint::NamedTensor {
                name: format!("{name}.{suffix}"),
                shape: vec![len],
                data,
            });
        }
    }
    Ok(out)
}

/// Why a checkpoint's optimiser state cannot be restored.
#[derive(Debug)]
pub enum StateError {
    /// A moment buffer the optimiser needs is not in the checkpoint.
    Missing(String),
    /// A buffer holds another number of values than its parameter.
    Length {
        /// The buffer's name (`layers.3.weight.first`).
        name: String,
        /// The parameter's number of values.
        expected: usize,
        /// The buffer's.
        found: usize,
    },
    /// A buffer that belongs to no parameter of the model.
    Unexpected(String),
    /// The tensor backend failed.
    Backend(CpuError),
}

impl std::fmt::Display for StateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateError::Missing(name) => write!(f, "`{name}` is missing"),
            StateError::Length {
                name,
                expected,
                found,
            } => write!(f, "`{name}` has {found} values, not {expected}"),
            StateError::Unexpected(name) => {
                write!(f, "`{name}` belongs to no parameter of the model")
            }
            StateError::Backend(err) => write!(f, "{err:?}"),
        }
    }
}

impl std::error::Error for StateError {}

/// Restores the moment buffers written by [`export_state`]. The checkpoint must hold exactly
/// the buffers `export_state` writes for this model, each as long as its parameter; anything
/// else is an error, never a silent restart of the moments from zero.
pub fn import_state(
    optimizer: &mut Optimizer,
    model: &crate::ir::Model,
    params: &mut [super::params::LayerParams],
    tensors: &[super::checkpoint::NamedTensor],
    step: i32,
) -> Result<(), StateError> {
    use super::params::ParamMut;
    optimizer.step = step;
    let mut used = std::collections::HashSet::new();
    for (name, param) in super::params::trainables(model, params) {
        for (suffix, store) in [
            ("first", &mut optimizer.first),
            ("second", &mut optimizer.second),
            ("third", &mut optimizer.third),
        ] {
            let wanted = format!("{name}.{suffix}");
            let Some(saved) = tensors.iter().find(|t| t.name == wanted) else {
                return Err(StateError::Missing(wanted));
            };
            used.insert(wanted.clone());
            let slot = match &param {
                ParamMut::Vector(t) => store.get_or_alloc_mut(&**t),
                ParamMut::Matrix(t) => store.get_or_alloc_mut(&**t),
            }
            .map_err(StateError::Backend)?;
            if slot.len() != saved.data.len() {
                return Err(StateError::Length {
                    name: wanted,
                    expected: slot.len(),
                    found: saved.data.len(),
                });
            }
            slot.copy_from_slice(&saved.data);
        }
    }
    match tensors.iter().find(|t| !used.contains(&t.name)) {
        Some(extra) => Err(StateError::Unexpected(extra.name.clone())),
        None => Ok(()),
    }
}
