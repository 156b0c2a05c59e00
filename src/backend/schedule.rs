//! Learning-rate schedules evaluated per optimiser step, as Keras 3's `LearningRateSchedule`
//! classes compute them, with the periods a spec writes in epochs turned into steps.
//!
//! Keras evaluates a schedule at the optimiser's `iterations` before it counts the step, so the
//! first batch of a run trains at `lr_at(0)`. The formulas, with `s` the step, `E` the steps
//! per epoch and `lr` the base rate (`train.lr` or `--lr`):
//!
//! - constant: `lr`;
//! - cosine: `W = warmup_epochs * E` warm-up steps, `D = epochs * E - W` decay steps; below
//!   `W` the rate is `lr * (s / W)` (Keras's `CosineDecay` warm-up from 0 to `warmup_target`),
//!   after it `lr * ((1 - alpha) * 0.5 * (1 + cos(pi * min(s - W, D) / D)) + alpha)`;
//! - step: `lr * factor ^ floor(s / (every * E))` (`ExponentialDecay`, `staircase=True`);
//! - exponential: `lr * rate ^ (s / E)` (`ExponentialDecay` with `decay_steps = E`).

use crate::settings::Schedule;

/// A schedule bound to a run: its base rate and how many optimiser steps an epoch and the
/// whole run have.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LrSchedule {
    /// The schedule as the spec wrote it.
    pub schedule: Schedule,
    /// The rate the schedule starts from (the warm-up's target for `cosine`).
    pub base_lr: f64,
    /// Optimiser steps per epoch: training batches, the last partial batch included.
    pub steps_per_epoch: u64,
    /// The epochs of the whole run (the cosine decay ends with the last).
    pub epochs: u64,
}

impl LrSchedule {
    /// The learning rate of the optimiser step `step` (0 for a run's first batch).
    pub fn lr_at(&self, step: u64) -> f64 {
        let step = step as f64;
        let per_epoch = self.steps_per_epoch.max(1) as f64;
        let lr = self.base_lr;
        match self.schedule {
            Schedule::Constant => lr,
            Schedule::Cosine {
                warmup_epochs,
                alpha,
            } => {
                let warmup = warmup_epochs * per_epoch;
                let decay = (self.epochs as f64 * per_epoch - warmup).max(0.0);
                let step = step.min(decay + warmup);
                if step < warmup {
                    lr * (step / warmup)
                } else {
                    // Past the run's end (no decay steps left) the rate stays at its floor.
                    let fraction = if decay > 0.0 {
                        (step - warmup) / decay
                    } else {
                        1.0
                    };
                    let cosine = 0.5 * (1.0 + (std::f64::consts::PI * fraction).cos());
                    lr * ((1.0 - alpha) * cosine + alpha)
                }
            }
            Schedule::Step { every, factor } => {
                let period = every.max(1) as f64 * per_epoch;
                lr * factor.powf((step / period).floor())
            }
            Schedule::Exponential { rate } => lr * rate.powf(step / per_epoch),
        }
    }
}
