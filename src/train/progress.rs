//! What the trainer shows while it works: an indicatif bar per epoch on a terminal (epoch,
//! loss, accuracy, images/s, ETA), plain lines when stdout is not a terminal, nothing with
//! `--quiet`; and one Keras-like line per finished epoch.

use super::history::EpochRecord;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressMode {
    /// A live bar (stdout is a terminal).
    Bar,
    /// Epoch lines only.
    Lines,
    /// Nothing but errors.
    Quiet,
}

impl ProgressMode {
    /// Bar on a terminal, lines otherwise, nothing when quiet.
    pub fn detect(quiet: bool) -> ProgressMode {
        if quiet {
            ProgressMode::Quiet
        } else if std::io::stdout().is_terminal() {
            ProgressMode::Bar
        } else {
            ProgressMode::Lines
        }
    }
}

/// The progress display of one epoch.
#[derive(Debug)]
pub struct EpochProgress {
    bar: Option<ProgressBar>,
}

impl EpochProgress {
    /// Starts the display of `epoch` of `epochs` with `batches` batches.
    pub fn start(mode: ProgressMode, epoch: u64, epochs: u64, batches: u64) -> EpochProgress {
        let bar = (mode == ProgressMode::Bar).then(|| {
            let bar = ProgressBar::with_draw_target(Some(batches), ProgressDrawTarget::stdout());
            let style = ProgressStyle::with_template(
                "epoch {prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(format!("{epoch}/{epochs}"));
            bar
        });
        EpochProgress { bar }
    }

    /// Updates after a batch.
    pub fn batch(&self, loss: f64, accuracy: f64, images_per_s: f64) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!(
                "loss {loss:.4} accuracy {accuracy:.4} {images_per_s:.0} images/s"
            ));
            bar.inc(1);
        }
    }

    /// Clears the bar.
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

/// The Keras-like line of a finished epoch.
///
/// With `show_lr` (reduce-on-plateau or a schedule is on), the epoch's rate (with a schedule,
/// its last step's) is shown too, as Keras shows `learning_rate` when the rate changes.
pub fn epoch_line(record: &EpochRecord, epochs: u64, show_lr: bool) -> String {
    let mut line = format!(
        "epoch {}/{}: loss {:.4} - accuracy {:.4}",
        record.epoch, epochs, record.loss, record.accuracy
    );
    if let (Some(val_loss), Some(val_accuracy)) = (record.val_loss, record.val_accuracy) {
        line.push_str(&format!(
            " - val_loss {val_loss:.4} - val_accuracy {val_accuracy:.4}"
        ));
    }
    if let (true, Some(lr)) = (show_lr, record.lr) {
        line.push_str(&format!(" - lr {}", lr_text(lr)));
    }
    line.push_str(&format!(" - {:.1}s", record.seconds));
    line
}

/// A learning rate as people read it: the shortest decimal of its f32 value (the precision
/// the optimiser applies it in), so `0.001 * 0.3 * 0.3` shows as `0.00009`, not
/// `0.00008999999999999999`.
pub fn lr_text(lr: f64) -> String {
    format!("{}", lr as f32)
}

#[cfg(test)]
mod tests {
    use super::lr_text;

    #[test]
    fn learning_rates_show_without_binary_noise() {
        assert_eq!(lr_text(0.001 * 0.3 * 0.3), "0.00009");
        assert_eq!(lr_text(0.001), "0.001");
        assert_eq!(lr_text(1e-9), "0.000000001");
    }
}
