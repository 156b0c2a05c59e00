//! The training loop: image folders → epochs of shuffled batches → a run folder with
//! `spec.yaml`, `summary.txt`, `history.csv`, `history.json`, `curves.png`, `last.safetensors`,
//! `best.safetensors` and `state.json` (docs/commands.md). Interrupts finish the batch, keep the
//! last finished epoch and tell how to resume; `--resume` continues exactly where that epoch
//! ended.

pub mod class_weight;
pub mod history;
pub mod memory;
pub mod plateau;
pub mod progress;
pub mod ranks;
pub mod run_folder;
mod setup;
pub mod state;

pub use setup::{prepare, prepare_on, Prepared, TrainRequest};

use crate::backend::checkpoint::{self, Checkpoint, NamedTensor, STATE_PREFIX};
use crate::backend::network::{BatchStats, Network};
use crate::backend::optimizer::{export_state, Optimizer};
use crate::backend::params::to_tensors;
use crate::data::augment::Augmentation;
use crate::data::errors;
use crate::data::loader::Loader;
use crate::diagnostics::Diagnostic;
use crate::distributed::{share, Collective, SINGLE};
use crate::settings::Schedule;
use history::EpochRecord;
use progress::{epoch_line, EpochProgress, ProgressMode};
use state::{RunState, STATE_KEY};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// How a training run ended.
#[derive(Debug)]
pub enum Outcome {
    /// All epochs ran (or early stopping ended the run).
    Finished,
    /// Ctrl-C: the last finished epoch is saved.
    Interrupted,
}

/// Why a run stopped with an error.
#[derive(Debug)]
pub enum TrainError {
    /// Spec or data problems, found before training, with the spec they point into.
    Diagnostics(crate::diagnostics::SourceFile, Vec<Diagnostic>),
    /// A mistake in how the run was asked for (run folder, `--resume` and its flags),
    /// refused before anything is written; not about the spec's text.
    Refused(Diagnostic),
    /// Reading or writing failed; the message names the path.
    Io(String),
    /// Another rank of a data-parallel run failed, or the ranks disagree (their data or
    /// their weights differ); rank 0 reports the message (empty when rank 0's own error
    /// speaks for the run).
    Ranks(String),
    /// The loss became NaN or infinite.
    NonFinite {
        /// 1-based epoch.
        epoch: u64,
        /// 1-based batch within the epoch.
        batch: usize,
    },
}

impl From<checkpoint::CheckpointError> for TrainError {
    fn from(err: checkpoint::CheckpointError) -> TrainError {
        match err {
            checkpoint::CheckpointError::Io(path, err) => {
                run_folder::io_error("write", &path, &err)
            }
            other => TrainError::Io(other.to_string()),
        }
    }
}

/// Writes `state.json`, the run state for people and scripts.
pub(crate) fn write_state(dir: &Path, state: &RunState) -> Result<(), TrainError> {
    let json = serde_json::to_vec_pretty(state)
        .map_err(|err| TrainError::Io(format!("cannot encode the run state: {err}")))?;
    write_file(&dir.join("state.json"), &json)
}

/// Writes `bytes` to `path` atomically; an error names the path.
pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    checkpoint::write_atomic(path, bytes).map_err(|err| run_folder::io_error("write", path, &err))
}

/// A prepared run, ready to train.
pub struct Trainer {
    prep: Prepared,
    network: Network,
    optimizer: Optimizer,
    history: Vec<EpochRecord>,
    state: RunState,
    mode: ProgressMode,
    interrupted: Arc<AtomicBool>,
    /// The ranks of a data-parallel run ([`SINGLE`] for one process).
    world: &'static dyn Collective,
}

impl Trainer {
    /// A trainer for `prep` starting from its initial or resumed state.
    pub fn new(
        prep: Prepared,
        mode: ProgressMode,
        interrupted: Arc<AtomicBool>,
    ) -> Result<Trainer, TrainError> {
        Trainer::new_on(prep, mode, interrupted, &SINGLE)
    }

    /// [`Trainer::new`] as one rank of `world` (`prep` from [`prepare_on`] with the same
    /// world): the ranks agree that each of them started, with the same weights.
    pub fn new_on(
        prep: Prepared,
        mode: ProgressMode,
        interrupted: Arc<AtomicBool>,
        world: &'static dyn Collective,
    ) -> Result<Trainer, TrainError> {
        let started = setup::start(&prep);
        let setup::Start {
            mut network,
            optimizer,
            history,
            state,
        } = ranks::agree_on_start(world, started)?;
        if world.size() > 1 && prep.model.train.sync_bn {
            network.set_batch_norm_sync(Some(world));
        }
        Ok(Trainer {
            prep,
            network,
            optimizer,
            history,
            state,
            mode,
            interrupted,
            world,
        })
    }

    /// The run folder.
    pub fn run_dir(&self) -> &Path {
        &self.prep.run_dir
    }

    /// Trains the remaining epochs.
    pub fn run(&mut self) -> Result<Outcome, TrainError> {
        let first = self.state.completed_epochs + 1;
        for epoch in first..=self.state.epochs {
            if self.state.stopped_early {
                break;
            }
            let start = Instant::now();
            let traffic = self.world.traffic();
            let train = match self.train_epoch(epoch)? {
                Some(stats) => stats,
                None => {
                    self.save_interrupted()?;
                    return Ok(Outcome::Interrupted);
                }
            };
            let training_time = start.elapsed();
            let steps = train.steps;
            let sync_bn = self.prep.model.train.sync_bn;
            let checksum = match self.world.size() {
                1 => 0,
                _ => ranks::settle_epoch(self.world, &mut self.network, sync_bn, epoch)?,
            };
            let traffic = self.world.traffic().since(&traffic);
            let batch_size = (self.state.batch_size as usize / self.world.size()).max(1);
            let validation =
                self.prep.validation.as_ref().map(|loader| {
                    ranks::evaluate(self.world, &mut self.network, loader, batch_size)
                });
            let mut record = EpochRecord {
                epoch,
                loss: train.loss,
                accuracy: train.accuracy(),
                val_loss: validation.map(|v| v.loss),
                val_accuracy: validation.map(|v| v.accuracy),
                seconds: start.elapsed().as_secs_f64(),
                lr: Some(self.optimizer.lr()),
            };
            if self.world.size() > 1 {
                ranks::share_record(self.world, &mut record);
            }
            if self.mode != ProgressMode::Quiet {
                let train = &self.prep.model.train;
                let show_lr = train.reduce_lr.is_some() || train.schedule != Schedule::Constant;
                println!("{}", epoch_line(&record, self.state.epochs, show_lr));
                if self.world.size() > 1 {
                    let line = ranks::epoch_ranks_line(
                        self.world,
                        checksum,
                        &traffic,
                        steps,
                        training_time,
                    );
                    println!("{line}");
                }
            }
            self.history.push(record);
            let saved = self.finish_epoch(&record);
            if self.world.size() > 1 {
                let stage = format!("could not save epoch {epoch}");
                match saved {
                    Ok(()) => ranks::agree(self.world, Ok(&[]), &stage).map(|_| ())?,
                    Err(err) => return Err(ranks::agree_failed(self.world, err, &stage)),
                }
            } else {
                saved?;
            }
        }
        Ok(Outcome::Finished)
    }

    /// One epoch of training; `None` when interrupted.
    fn train_epoch(&mut self, epoch: u64) -> Result<Option<Totals>, TrainError> {
        let seed = self.state.seed;
        // Every rank draws the masks one process draws: dropout keys each image's mask by its
        // place in the whole batch (`set_first_image` below).
        self.network
            .reseed(seed ^ epoch.wrapping_mul(0xA24B_AED4_963E_E407));
        let loader = &self.prep.train;
        let mut batch_size = self.state.batch_size as usize;
        let mut order = loader.order(seed, epoch, true);
        let (images, whole_batch) = (order.len(), batch_size);
        if self.world.size() > 1 {
            order = ranks::local_order(&order, batch_size, self.world);
            batch_size /= self.world.size();
        }
        let progress = EpochProgress::start(
            self.mode,
            epoch,
            self.state.epochs,
            order.len().div_ceil(batch_size) as u64,
        );
        let mut totals = Totals::default();
        let mut skipped = Vec::new();
        let started = Instant::now();
        let augment = self.prep.model.data.augment;
        let augmentation = augment.is_active().then_some(Augmentation {
            config: augment,
            seed,
            epoch,
        });
        let batches = loader.augmented_batches(order, batch_size, augmentation);
        for (batch_idx, batch) in batches.into_iter().enumerate() {
            skipped.extend(batch.skipped.iter().cloned());
            let (stats, stop) = if self.world.size() > 1 {
                let whole = whole_batch.min(images.saturating_sub(batch_idx * whole_batch));
                let mine = share(whole, self.world.rank(), self.world.size());
                self.network.set_first_image(mine.start);
                // The ranks stop together, after the step in which any was interrupted.
                let step = ranks::train_step(
                    self.world,
                    &mut self.network,
                    &mut self.optimizer,
                    (batch, whole),
                    self.interrupted.load(Ordering::SeqCst),
                    self.prep.model.train.sync_bn,
                );
                (step.stats, step.stop)
            } else if batch.is_empty() {
                (None, self.interrupted.load(Ordering::SeqCst))
            } else {
                let stats = self
                    .network
                    .train_step(batch.images, &batch.labels, &mut self.optimizer)
                    .map_err(|err| TrainError::Io(format!("training step failed: {err:?}")))?;
                (Some(stats), self.interrupted.load(Ordering::SeqCst))
            };
            if let Some(stats) = stats {
                if !stats.loss.is_finite() {
                    progress.finish();
                    return Err(TrainError::NonFinite {
                        epoch,
                        batch: batch_idx + 1,
                    });
                }
                totals.add(&stats);
                progress.batch(
                    totals.loss / totals.count.max(1) as f64,
                    totals.accuracy(),
                    totals.count as f64 / started.elapsed().as_secs_f64(),
                );
            }
            if stop {
                progress.finish();
                return Ok(None);
            }
        }
        progress.finish();
        if !skipped.is_empty() && self.mode != ProgressMode::Quiet {
            eprintln!(
                "{}",
                crate::diagnostics::render_human(
                    &errors::skipped_images(&skipped),
                    &crate::diagnostics::SourceFile::new("", ""),
                    crate::diagnostics::HumanStyle::Plain
                )
            );
        }
        totals.loss /= totals.count.max(1) as f64;
        Ok(Some(totals))
    }

    /// Early stopping and reduce-on-plateau after an epoch: updates their counters, the
    /// learning rate and `stopped_early`, and says what happened.
    fn watch_plateaus(&mut self, record: &EpochRecord) {
        let train = &self.prep.model.train;
        let mut said = Vec::new();
        if let Some(settings) = &train.reduce_lr {
            let lr = self.optimizer.lr();
            if let Some(lowered) =
                plateau::lowered_lr(&mut self.state.reduce_lr, settings, record, lr)
            {
                self.optimizer.set_lr(lowered);
                said.push(format!(
                    "epoch {}: {} has not improved for {}; learning rate lowered to {}",
                    record.epoch,
                    settings.monitor.name(),
                    epochs(settings.patience.max(1)),
                    progress::lr_text(lowered)
                ));
            }
        }
        if let Some(settings) = &train.early_stopping {
            if plateau::should_stop(&mut self.state.early_stopping, settings, record) {
                self.state.stopped_early = true;
                let watch = &self.state.early_stopping;
                said.push(format!(
                    "epoch {}: early stopping: {} has not improved for {} (best {:.4} in epoch {})",
                    record.epoch,
                    settings.monitor.name(),
                    epochs(watch.wait),
                    watch.best.unwrap_or(f64::NAN),
                    watch.best_epoch
                ));
            }
        }
        if self.mode != ProgressMode::Quiet {
            said.iter().for_each(|line| println!("{line}"));
        }
    }

    /// Saves everything a finished epoch produces; the checkpoint carrying the state last.
    fn finish_epoch(&mut self, record: &EpochRecord) -> Result<(), TrainError> {
        self.watch_plateaus(record);
        let dir = self.prep.run_dir.clone();
        self.state.completed_epochs = record.epoch;
        self.state.optimizer_step = self.optimizer.step;
        self.state.lr = self.optimizer.lr();
        let improved = plateau::improved_loss(&mut self.state.best_checkpoint, record);
        if self.world.rank() != 0 {
            // Rank 0 alone writes the run folder; the others keep the same state.
            return Ok(());
        }
        if improved {
            checkpoint::save(&dir.join("best.safetensors"), &self.checkpoint(false)?)?;
        }
        history::write(&dir, &self.history)?;
        let points: Vec<_> = self.history.iter().map(EpochRecord::curve_point).collect();
        match crate::plot::curves_png(&points, &self.prep.model.name) {
            Ok(png) => write_file(&dir.join("curves.png"), &png)?,
            Err(err) => eprintln!("warning: {err}"),
        }
        write_state(&dir, &self.state)?;
        // Last: the checkpoint that `--resume` trusts. A kill before this rename leaves the
        // files above one epoch ahead of it, which the resume rewrites.
        checkpoint::save(&dir.join("last.safetensors"), &self.checkpoint(true)?)?;
        Ok(())
    }

    /// The current weights, and with `with_state` the optimiser moments and run state.
    fn checkpoint(&mut self, with_state: bool) -> Result<Checkpoint, TrainError> {
        let mut tensors = to_tensors(&self.prep.model, &self.network.params);
        let mut extra = std::collections::BTreeMap::new();
        if with_state {
            let moments = export_state(
                &mut self.optimizer,
                &self.prep.model,
                &mut self.network.params,
            )
            .map_err(|err| TrainError::Io(format!("{err:?}")))?;
            tensors.extend(moments.into_iter().map(|t| NamedTensor {
                name: format!("{STATE_PREFIX}{}", t.name),
                ..t
            }));
            let encode = |err: serde_json::Error| {
                TrainError::Io(format!("cannot encode the run state: {err}"))
            };
            let state = serde_json::to_string(&self.state).map_err(encode)?;
            extra.insert(STATE_KEY.to_string(), state);
            let history = serde_json::to_string(&self.history).map_err(encode)?;
            extra.insert(history::HISTORY_KEY.to_string(), history);
        }
        Ok(Checkpoint {
            tensors,
            spec: self.prep.spec_text.clone(),
            classes: self.state.classes.clone(),
            extra,
        })
    }

    /// On an interrupt: the weights of the unfinished epoch go to `interrupted.safetensors`;
    /// `last.safetensors` keeps the last finished epoch, which `--resume` continues from.
    fn save_interrupted(&mut self) -> Result<(), TrainError> {
        if self.world.rank() != 0 {
            return Ok(());
        }
        let checkpoint = self.checkpoint(false)?;
        checkpoint::save(
            &self.prep.run_dir.join("interrupted.safetensors"),
            &checkpoint,
        )?;
        Ok(())
    }
}

/// `1 epoch`, `3 epochs`.
fn epochs(count: u64) -> String {
    if count == 1 {
        "1 epoch".to_string()
    } else {
        format!("{count} epochs")
    }
}

/// Sums over the batches of an epoch.
#[derive(Clone, Copy, Debug, Default)]
struct Totals {
    loss: f64,
    correct: usize,
    count: usize,
    /// Batches added.
    steps: usize,
}

impl Totals {
    fn add(&mut self, stats: &BatchStats) {
        self.loss += stats.loss * stats.count as f64;
        self.correct += stats.correct;
        self.count += stats.count;
        self.steps += 1;
    }

    fn accuracy(&self) -> f64 {
        self.correct as f64 / self.count.max(1) as f64
    }
}

/// Loss and accuracy of one pass over a loader.
#[derive(Clone, Copy, Debug)]
pub struct Metrics {
    /// Mean loss.
    pub loss: f64,
    /// Fraction right.
    pub accuracy: f64,
}

/// Evaluates `network` over all of `loader` in inference mode.
pub fn evaluate(network: &mut Network, loader: &Loader, batch_size: usize) -> Metrics {
    let mut totals = Totals::default();
    for batch in loader.batches(loader.order(0, 0, false), batch_size) {
        if batch.is_empty() {
            continue;
        }
        let stats = network.evaluate(batch.images, &batch.labels);
        totals.add(&stats);
    }
    Metrics {
        loss: totals.loss / totals.count.max(1) as f64,
        accuracy: totals.accuracy(),
    }
}

/// The default run folder: `runs/<name>/<YYYYmmdd-HHMMSS>`.
pub fn default_run_dir(name: &str) -> PathBuf {
    PathBuf::from("runs")
        .join(name)
        .join(chrono::Local::now().format("%Y%m%d-%H%M%S").to_string())
}
