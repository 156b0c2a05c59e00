//! `strata train SPEC [--data DIR] [--epochs N] …` and `strata train --resume RUN`.

use super::output::{DiagnosticPrinter, OutputFormat};
use super::{EXIT_ERROR, EXIT_OK, EXIT_USAGE};
use crate::text::escape_control;
use crate::train::progress::ProgressMode;
use crate::train::{prepare, Outcome, TrainError, TrainRequest, Trainer};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Exit status after Ctrl-C (128 + SIGINT), as shells report it.
pub const EXIT_INTERRUPTED: u8 = 130;

/// Runs the command; returns the exit status.
pub fn run(request: &TrainRequest, quiet: bool, format: OutputFormat) -> u8 {
    let mut printer = DiagnosticPrinter::new(format);
    let prep = match prepare(request) {
        Ok(prep) => prep,
        Err(err) => return report(err, &mut printer, None),
    };
    if !prep.warnings.is_empty() {
        printer.print(&prep.warnings, &prep.source);
    }
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&interrupted);
    if ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)).is_err() {
        eprintln!("warning: cannot catch Ctrl-C; an interrupt will stop without saving");
    }
    let quiet = quiet || matches!(format, OutputFormat::Json);
    let mode = ProgressMode::detect(quiet);
    if mode != ProgressMode::Quiet {
        let resumed = prep.state.completed_epochs;
        let what = if resumed > 0 {
            format!("resuming after epoch {resumed}")
        } else {
            "training".to_string()
        };
        println!(
            "{what} `{}`: {} training images{}, {} classes, into {}",
            prep.model.name,
            prep.train.len(),
            prep.validation.as_ref().map_or(String::new(), |v| format!(
                ", {} validation images",
                v.len()
            )),
            prep.state.classes.len(),
            escape_control(&prep.run_dir.display().to_string())
        );
    }
    let source = prep.source.clone();
    let mut trainer = match Trainer::new(prep, mode, interrupted) {
        Ok(trainer) => trainer,
        Err(err) => return report(err, &mut printer, None),
    };
    let run_dir = trainer.run_dir().to_path_buf();
    match trainer.run() {
        Ok(Outcome::Finished) => {
            if mode != ProgressMode::Quiet {
                println!(
                    "saved to {}",
                    escape_control(&run_dir.display().to_string())
                );
            }
            if matches!(format, OutputFormat::Json) {
                println!("{}", serde_json::json!({ "run": run_dir }));
            }
            EXIT_OK
        }
        Ok(Outcome::Interrupted) => {
            eprintln!(
                "interrupted: the last finished epoch is saved in {0}; continue with\n  strata train --resume {0}",
                escape_control(&run_dir.display().to_string())
            );
            EXIT_INTERRUPTED
        }
        Err(err) => report(err, &mut printer, Some((&source, &run_dir))),
    }
}

fn report(
    err: TrainError,
    printer: &mut DiagnosticPrinter,
    run: Option<(&crate::diagnostics::SourceFile, &std::path::Path)>,
) -> u8 {
    match err {
        TrainError::Diagnostics(source, diagnostics) => {
            printer.print(&diagnostics, &source);
            EXIT_ERROR
        }
        TrainError::Refused(diagnostic) => {
            printer.print(&[diagnostic], &crate::diagnostics::SourceFile::new("", ""));
            EXIT_USAGE
        }
        TrainError::NonFinite { epoch, batch } => {
            let saved = match run {
                Some((_, dir)) if epoch > 1 => {
                    format!(
                        "; the last finished epoch is saved in {}",
                        escape_control(&dir.display().to_string())
                    )
                }
                _ => "; no epoch finished, so no checkpoint was saved".to_string(),
            };
            eprintln!("error: the loss became NaN or infinite in epoch {epoch}, batch {batch}{saved}\n  help: lower the learning rate (`--lr`), e.g. by 10x");
            EXIT_ERROR
        }
        TrainError::Io(message) => {
            eprintln!("error: {}", escape_control(&message));
            EXIT_USAGE
        }
    }
}
