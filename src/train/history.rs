//! The per-epoch history: `history.csv` (`epoch,loss,accuracy,val_loss,val_accuracy,seconds,lr`)
//! and `history.json`, rewritten atomically after every epoch. `last.safetensors` carries a
//! third copy (metadata key `strata.history`), written in the same rename as the run state, so
//! `--resume` can always tell which epochs are finished and repair a damaged history file.

use super::{write_file, TrainError};
use crate::diagnostics::{codes, Diagnostic};
use crate::plot::CurvePoint;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Metadata key of the history inside `last.safetensors` (a JSON array of epochs).
pub const HISTORY_KEY: &str = "strata.history";

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
pub fn write(dir: &Path, records: &[EpochRecord]) -> Result<(), TrainError> {
    write_file(&dir.join("history.csv"), to_csv(records).as_bytes())?;
    let json = serde_json::to_vec_pretty(records)
        .map_err(|err| TrainError::Io(format!("cannot encode the history: {err}")))?;
    write_file(&dir.join("history.json"), &json)
}

/// The records of a `history.csv` text, as [`to_csv`] writes it (values rounded as written).
pub fn from_csv(text: &str) -> Result<Vec<EpochRecord>, String> {
    let mut lines = text.lines();
    match lines.next() {
        Some(header) if header.starts_with("epoch,loss,accuracy,val_loss,val_accuracy,seconds") => {
        }
        _ => return Err("its header is not `epoch,loss,accuracy,…`".to_string()),
    }
    lines
        .enumerate()
        .map(|(i, line)| parse_row(line).ok_or_else(|| format!("line {} is malformed", i + 2)))
        .collect()
}

fn parse_row(line: &str) -> Option<EpochRecord> {
    let fields: Vec<&str> = line.split(',').collect();
    if !(6..=7).contains(&fields.len()) {
        return None;
    }
    let number = |text: &str| text.parse::<f64>().ok();
    let optional = |text: &str| -> Option<Option<f64>> {
        if text.is_empty() {
            Some(None)
        } else {
            number(text).map(Some)
        }
    };
    Some(EpochRecord {
        epoch: fields[0].parse().ok()?,
        loss: number(fields[1])?,
        accuracy: number(fields[2])?,
        val_loss: optional(fields[3])?,
        val_accuracy: optional(fields[4])?,
        seconds: number(fields[5])?,
        lr: match fields.get(6) {
            Some(text) => optional(text)?,
            None => None,
        },
    })
}

/// The history of a run resumed after `completed` epochs: from the copy inside
/// `last.safetensors` (`saved`), else `history.json`, else `history.csv` — the first that
/// holds epochs 1..=`completed` — cut to those epochs, with a warning naming the files that
/// were damaged (the caller rewrites both files from the result). When no copy holds them,
/// the `strata::run::history` error: the history is never silently dropped.
pub fn recover(
    dir: &Path,
    saved: Option<&str>,
    completed: u64,
) -> Result<(Vec<EpochRecord>, Option<Diagnostic>), Diagnostic> {
    let wanted = usize::try_from(completed).unwrap_or(usize::MAX);
    let holds = |records: Vec<EpochRecord>| -> Result<Vec<EpochRecord>, String> {
        let in_order = records
            .iter()
            .take(wanted)
            .enumerate()
            .all(|(i, record)| record.epoch == i as u64 + 1);
        if records.len() < wanted {
            Err(format!(
                "it has {} of the {completed} finished epochs",
                records.len()
            ))
        } else if !in_order {
            Err("its epochs are out of order".to_string())
        } else {
            Ok(records.into_iter().take(wanted).collect())
        }
    };
    let read = |name: &str| -> Result<String, String> {
        std::fs::read(dir.join(name))
            .map_err(|err| err.to_string())
            .and_then(|bytes| String::from_utf8(bytes).map_err(|_| "it is not UTF-8".to_string()))
    };
    let copies: [(&str, Result<Vec<EpochRecord>, String>); 3] = [
        (
            "last.safetensors",
            saved
                .ok_or_else(|| "it was written before strata kept the history there".to_string())
                .and_then(|json| serde_json::from_str(json).map_err(|err| err.to_string()))
                .and_then(holds),
        ),
        (
            "history.json",
            read("history.json")
                .and_then(|text| serde_json::from_str(&text).map_err(|err| err.to_string()))
                .and_then(holds),
        ),
        (
            "history.csv",
            read("history.csv")
                .and_then(|text| from_csv(&text))
                .and_then(holds),
        ),
    ];
    let problems: Vec<String> = copies
        .iter()
        .filter_map(|(name, copy)| copy.as_ref().err().map(|why| format!("`{name}`: {why}")))
        .collect();
    let Some((source, records)) = copies
        .into_iter()
        .find_map(|(name, copy)| copy.ok().map(|records| (name, records)))
    else {
        return Err(Diagnostic::error(
            codes::RUN_HISTORY,
            format!(
                "cannot resume `{}`: no intact copy of its history of {completed} epoch(s) is left",
                dir.display()
            ),
        )
        .with_note(problems.join("\n"))
        .with_help(
            "restore `history.json` or `history.csv` from a backup; or start the run again \
             with `--force`",
        ));
    };
    // The copy inside the checkpoint is written with it; the files may lawfully be one epoch
    // ahead of it (a kill between the two writes), which is not damage.
    let damaged: Vec<&String> = problems
        .iter()
        .filter(|problem| !problem.starts_with("`last.safetensors`"))
        .collect();
    let warning = (!damaged.is_empty()).then(|| {
        let rounded = if source == "history.csv" {
            " (values as rounded there)"
        } else {
            ""
        };
        Diagnostic::warning(
            codes::RUN_HISTORY,
            format!(
                "the history of `{}` was damaged; both history files are rewritten from \
                 `{source}`{rounded}",
                dir.display()
            ),
        )
        .with_note(
            damaged
                .iter()
                .map(|problem| problem.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
        )
    });
    Ok((records, warning))
}
