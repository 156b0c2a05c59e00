//! What `--resume` needs, saved with every finished epoch. The authoritative copy travels
//! inside `last.safetensors` (metadata key `strata.state`, beside the weights and the
//! optimiser moments, written in one atomic rename), so a kill at any moment leaves a
//! consistent pair; `state.json` is the same data for people and scripts.

use super::plateau::Watch;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Metadata key of the run state inside `last.safetensors`.
pub const STATE_KEY: &str = "strata.state";

/// The state of a run after its last finished epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// The spec file the run was started from (as given).
    pub spec_path: PathBuf,
    /// Epochs finished.
    pub completed_epochs: u64,
    /// Epochs planned.
    pub epochs: u64,
    /// Images per batch.
    pub batch_size: u64,
    /// The learning rate now: reduce-on-plateau may have lowered it; with a schedule, the
    /// rate of the last step taken.
    pub lr: f64,
    /// The rate the run started from (`train.lr` or `--lr`), which a schedule scales; absent
    /// from runs saved before schedules, whose `lr` is it.
    #[serde(default)]
    pub base_lr: Option<f64>,
    /// Optimiser steps per epoch when the run started (its training batches, the last
    /// partial one included): the unit the schedule's periods are counted in.
    #[serde(default)]
    pub steps_per_epoch: Option<u64>,
    /// The epochs the schedule was planned over when the run started. `--resume --epochs N`
    /// extends the run, not the schedule, as a Keras schedule is fixed when its optimiser is
    /// made.
    #[serde(default)]
    pub schedule_epochs: Option<u64>,
    /// The run's seed.
    pub seed: u64,
    /// Optimiser steps taken.
    pub optimizer_step: i32,
    /// The training folder.
    pub train_dir: PathBuf,
    /// The validation folder, if one is used.
    pub validation_dir: Option<PathBuf>,
    /// The validation split, if one is used.
    pub validation_split: Option<f64>,
    /// Class names in output order.
    pub classes: Vec<String>,
    /// The loss `best.safetensors` was saved at (validation loss, or training loss without
    /// validation) and its epoch.
    #[serde(default)]
    pub best_checkpoint: Watch,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
    /// Early stopping's counters.
    #[serde(default)]
    pub early_stopping: Watch,
    /// Reduce-on-plateau's counters.
    #[serde(default)]
    pub reduce_lr: Watch,
}
