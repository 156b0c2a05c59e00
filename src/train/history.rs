//! The per-epoch history: `history.csv` (`epoch,loss,accuracy,val_loss,val_accuracy,seconds,lr`)
//! and `history.json`, rewritten atomically after every epoch.

use crate::backend::checkpoint::write_atomic;
use crate::plot::CurvePoint;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One finished epoch.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch.
    pub epoch: u64,
    /// Mean training loss over the epoch.
    pub loss: f64,
    /// Training accuracy.
    pub accuracy: f64,
    /// Validation loss, if there is validation data.
    pub val_loss: Option<f64>,
    /// Validation accuracy.
    pub val_accuracy: Option<f64>,
    /// Wall-clock seconds of the epoch.
    pub seconds: f64,
    /// The learning rate of the epoch's last step (with a schedule; without one the rate of
    /// the whole epoch), as Keras's history has `learning_rate`. Absent from histories
    /// written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
}

impl EpochRecord {
    /// The point of the curves plot.
    pub fn curve_point(&self) -> CurvePoint {
        CurvePoint {
            epoch: self.epoch as usize,
            loss: self.loss,
            accuracy: self.accuracy,
            val_loss: self.val_loss,
            val_accuracy: self.val_accuracy,
        }
    }
}

/// The CSV text of `records`.
pub fn to_csv(records: &[EpochRecord]) -> String {
    let optional = |value: Option<f64>| value.map_or(String::new(), |v| format!("{v:.6}"));
    let mut out = String::from("epoch,loss,accuracy,val_loss,val_accuracy,seconds,lr\n");
    for r in records {
        out.push_str(&format!(
            "{},{:.6},{:.6},{},{},{:.3},{}\n",
            r.epoch,
            r.loss,
            r.accuracy,
            optional(r.val_loss),
            optional(r.val_accuracy),
            r.seconds,
            r.lr.map_or(String::new(), |lr| lr.to_string())
        ));
    }
    out
}

/// Writes `history.csv` and `history.json` into `dir`, each atomically.
pub fn write(dir: &Path, records: &[EpochRecord]) -> std::io::Result<()> {
    write_atomic(&dir.join("history.csv"), to_csv(records).as_bytes())?;
    let json = serde_json::to_vec_pretty(records).map_err(std::io::Error::other)?;
    write_atomic(&dir.join("history.json"), &json)
}

/// Reads `history.json` from `dir`.
pub fn read(dir: &Path) -> std::io::Result<Vec<EpochRecord>> {
    let bytes = std::fs::read(dir.join("history.json"))?;
    serde_json::from_slice(&bytes).map_err(std::io::Error::other)
}
