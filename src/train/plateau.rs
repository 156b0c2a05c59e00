//! Early stopping and reduce-learning-rate-on-plateau, with Keras's bookkeeping
//! (`keras.callbacks.EarlyStopping` and `ReduceLROnPlateau`): the same defaults, the same
//! meaning of `patience`, `min_delta` and `cooldown`, so a setting copied from a Keras script
//! stops or lowers at the same epoch. The counters live in the run state, so a resumed run
//! carries on counting where it stopped.

use super::history::EpochRecord;
use crate::settings::{EarlyStopping, Monitor, ReduceLr};
use serde::{Deserialize, Serialize};

/// The counters of one watched metric.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Watch {
    /// The best value seen (`None` before the first epoch).
    pub best: Option<f64>,
    /// The epoch that had it.
    pub best_epoch: u64,
    /// Epochs since then that did not improve on it.
    pub wait: u64,
    /// Epochs of cooldown left after a lowering (reduce-on-plateau only).
    pub cooldown: u64,
}

/// The value of `monitor` in an epoch's record; `None` when the run has no validation data.
pub fn metric(record: &EpochRecord, monitor: Monitor) -> Option<f64> {
    match monitor {
        Monitor::ValLoss => record.val_loss,
        Monitor::ValAccuracy => record.val_accuracy,
        Monitor::Loss => Some(record.loss),
        Monitor::Accuracy => Some(record.accuracy),
    }
}

/// Whether `current` beats `best` by more than `min_delta` in the metric's direction.
fn improves(current: f64, best: Option<f64>, monitor: Monitor, min_delta: f64) -> bool {
    match best {
        None => true,
        Some(best) if monitor.higher_is_better() => current - min_delta > best,
        Some(best) => current + min_delta < best,
    }
}

impl Watch {
    /// Records `current` if it improves; returns whether it did.
    fn see(&mut self, current: f64, epoch: u64, monitor: Monitor, min_delta: f64) -> bool {
        let better = improves(current, self.best, monitor, min_delta);
        if better {
            self.best = Some(current);
            self.best_epoch = epoch;
            self.wait = 0;
        }
        better
    }
}

/// After an epoch: whether its loss is the lowest so far (validation loss, or training loss
/// without validation data), as Keras's `ModelCheckpoint` decides by default.
pub fn improved_loss(watch: &mut Watch, record: &EpochRecord) -> bool {
    let monitor = if record.val_loss.is_some() {
        Monitor::ValLoss
    } else {
        Monitor::Loss
    };
    let Some(current) = metric(record, monitor) else {
        return false;
    };
    let better = watch.see(current, record.epoch, monitor, 0.0);
    if !better {
        watch.wait += 1;
    }
    better
}

/// After an epoch: whether early stopping ends the run. As Keras: an epoch that does not
/// improve adds one to the wait, and the run stops once the wait reaches `patience` (so
/// `patience: 0` stops at the first epoch that does not improve, like `patience: 1`).
pub fn should_stop(watch: &mut Watch, settings: &EarlyStopping, record: &EpochRecord) -> bool {
    let Some(current) = metric(record, settings.monitor) else {
        return false;
    };
    if watch.see(current, record.epoch, settings.monitor, settings.min_delta) {
        return false;
    }
    watch.wait += 1;
    watch.wait >= settings.patience
}

/// After an epoch: the lowered learning rate, when the metric has not improved for
/// `patience` epochs outside a cooldown and `lr` is above `min_lr` (Keras's rules).
pub fn lowered_lr(
    watch: &mut Watch,
    settings: &ReduceLr,
    record: &EpochRecord,
    lr: f64,
) -> Option<f64> {
    let current = metric(record, settings.monitor)?;
    if watch.cooldown > 0 {
        watch.cooldown -= 1;
        watch.wait = 0;
    }
    if watch.see(current, record.epoch, settings.monitor, settings.min_delta) || watch.cooldown > 0
    {
        return None;
    }
    watch.wait += 1;
    // Keras compares in float32, so a rate already at the floor is not lowered again.
    if watch.wait < settings.patience || lr as f32 <= settings.min_lr as f32 {
        return None;
    }
    watch.cooldown = settings.cooldown;
    watch.wait = 0;
    Some((lr * settings.factor).max(settings.min_lr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(epoch: u64, val_loss: f64) -> EpochRecord {
        EpochRecord {
            epoch,
            loss: 1.0,
            accuracy: 0.5,
            val_loss: Some(val_loss),
            val_accuracy: Some(1.0 - val_loss),
            seconds: 0.0,
            lr: None,
        }
    }

    /// The epoch (1-based) at which early stopping ends a run with these validation losses.
    fn stop_epoch(losses: &[f64], settings: EarlyStopping) -> Option<u64> {
        let mut watch = Watch::default();
        losses
            .iter()
            .enumerate()
            .map(|(idx, &loss)| record(idx as u64 + 1, loss))
            .find(|r| should_stop(&mut watch, &settings, r))
            .map(|r| r.epoch)
    }

    #[test]
    fn early_stopping_counts_like_keras() {
        let losses = [1.0, 0.8, 0.9, 0.85, 0.7, 0.75, 0.76, 0.77];
        let with = |patience, min_delta| EarlyStopping {
            monitor: Monitor::ValLoss,
            patience,
            min_delta,
        };
        // Keras: patience 0 and 1 both stop at the first epoch that does not improve.
        assert_eq!(stop_epoch(&losses, with(0, 0.0)), Some(3));
        assert_eq!(stop_epoch(&losses, with(1, 0.0)), Some(3));
        assert_eq!(stop_epoch(&losses, with(2, 0.0)), Some(4));
        assert_eq!(stop_epoch(&losses, with(3, 0.0)), Some(8));
        assert_eq!(stop_epoch(&losses, with(4, 0.0)), None);
        // 0.7 beats 0.8 by 0.1, not by more than 0.15: epochs 3..=5 do not improve.
        assert_eq!(stop_epoch(&losses, with(3, 0.15)), Some(5));
        let accuracy = EarlyStopping {
            monitor: Monitor::ValAccuracy,
            ..with(1, 0.0)
        };
        // Accuracy is 1 - loss here, so it must rise: the same epochs count.
        assert_eq!(stop_epoch(&losses, accuracy), Some(3));
    }

    #[test]
    fn reduce_on_plateau_lowers_after_patience_and_waits_out_the_cooldown() {
        let settings = ReduceLr {
            monitor: Monitor::ValLoss,
            factor: 0.5,
            patience: 2,
            min_delta: 0.0,
            cooldown: 2,
            min_lr: 0.02,
        };
        let mut watch = Watch::default();
        let mut lr = 0.1;
        let mut lowered = Vec::new();
        for (idx, loss) in [1.0, 0.9, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95]
            .into_iter()
            .enumerate()
        {
            if let Some(new) = lowered_lr(&mut watch, &settings, &record(idx as u64 + 1, loss), lr)
            {
                lr = new;
                lowered.push((idx + 1, lr));
            }
        }
        // Epochs 3 and 4 do not improve → lowered after 4. As in Keras, a cooldown of 2 skips
        // one epoch (5) and the epoch that ends it (6) counts again, so 6 and 7 → lowered after
        // 7; likewise after 10, to the floor 0.02 rather than 0.0125.
        assert_eq!(lowered, vec![(4, 0.05), (7, 0.025), (10, 0.02)]);
    }

    #[test]
    fn the_best_checkpoint_follows_the_lowest_loss() {
        let mut watch = Watch::default();
        let saved: Vec<bool> = [0.5, 0.4, 0.45, 0.3]
            .into_iter()
            .enumerate()
            .map(|(idx, loss)| improved_loss(&mut watch, &record(idx as u64 + 1, loss)))
            .collect();
        assert_eq!(saved, [true, true, false, true]);
        assert_eq!((watch.best, watch.best_epoch), (Some(0.3), 4));
        // Without validation data the training loss decides.
        let mut watch = Watch::default();
        let mut r = record(1, 0.5);
        r.val_loss = None;
        assert!(improved_loss(&mut watch, &r));
        assert_eq!(watch.best, Some(r.loss));
    }

    #[test]
    fn without_validation_data_nothing_is_watched() {
        let mut r = record(1, 0.5);
        r.val_loss = None;
        let mut watch = Watch::default();
        assert!(!should_stop(&mut watch, &EarlyStopping::default(), &r));
        assert_eq!(lowered_lr(&mut watch, &ReduceLr::default(), &r, 0.1), None);
    }
}
