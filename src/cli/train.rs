//! `strata train SPEC [--data DIR] [--epochs N] …` and `strata train --resume RUN`, also as
//! one rank of `mpirun -n N strata train …` (docs/distributed.md): rank 0 prints and writes,
//! the other ranks print only their own errors.

use super::output::{DiagnosticPrinter, OutputFormat};
use super::{EXIT_ERROR, EXIT_OK, EXIT_USAGE};
use crate::distributed::{describe, Collective, SINGLE};
use crate::text::escape_control;
use crate::train::progress::ProgressMode;
use crate::train::{prepare_on, Outcome, TrainError, TrainRequest, Trainer};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Exit status after Ctrl-C (128 + SIGINT), as shells report it.
pub const EXIT_INTERRUPTED: u8 = 130;

/// Runs the command; returns the exit status. Started by an MPI launcher (`mpirun`), a build
/// with the feature `mpi` trains as one rank of the run; one without it refuses.
pub fn run(request: &TrainRequest, quiet: bool, format: OutputFormat) -> u8 {
    let launched = launcher_ranks();
    #[cfg(feature = "mpi")]
    let session = match launched {
        Some(_) => match crate::distributed::mpi::start() {
            Ok(session) => Some(session),
            Err(err) => {
                eprintln!("error: cannot start MPI: {err}");
                return EXIT_USAGE;
            }
        },
        None => None,
    };
    #[cfg(feature = "mpi")]
    let world: &'static dyn Collective = match &session {
        Some(session) => session.world(),
        None => &SINGLE,
    };
    #[cfg(not(feature = "mpi"))]
    let world: &'static dyn Collective = match launched {
        Some(ranks) if ranks != 1 => {
            eprintln!(
                "error: this `strata` was started by an MPI launcher but built without MPI, so \
                 its ranks would each train alone\n  help: build it with \
                 `cargo build --release --features mpi` (see docs/distributed.md)"
            );
            return EXIT_USAGE;
        }
        _ => &SINGLE,
    };
    if world.size() > 1 {
        abort_every_rank_on_panic(world);
    }
    // MPI ends (`MPI_Finalize`) when `session` drops, after the run on every rank.
    run_on(request, quiet, format, world)
}

/// The number of ranks an MPI launcher started this process among, from the variables Open
/// MPI, MPICH and Intel MPI (Hydra), MVAPICH and PMIx set (`Some(0)`: started by one, number
/// unknown); `None` when no launcher started it.
fn launcher_ranks() -> Option<usize> {
    let sizes = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE"];
    let size = sizes
        .iter()
        .find_map(|name| std::env::var(name).ok()?.trim().parse().ok());
    size.or_else(|| std::env::var_os("PMIX_RANK").map(|_| 0))
}

/// A panic on one rank (a bug) ends every rank, rather than leaving them waiting for it.
fn abort_every_rank_on_panic(world: &'static dyn Collective) {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        eprintln!(
            "error: {} stopped on a fault; ending every rank",
            describe(world)
        );
        world.abort(101);
    }));
}

/// The command as one rank of `world`.
fn run_on(
    request: &TrainRequest,
    quiet: bool,
    format: OutputFormat,
    world: &'static dyn Collective,
) -> u8 {
    let mut printer = DiagnosticPrinter::new(format);
    let prep = match prepare_on(request, world) {
        Ok(prep) => prep,
        Err(err) => return report(err, &mut printer, None, world),
    };
    let root = world.rank() == 0;
    if root && !prep.warnings.is_empty() {
        printer.print(&prep.warnings, &prep.source);
    }
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&interrupted);
    if ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)).is_err() {
        eprintln!("warning: cannot catch Ctrl-C; an interrupt will stop without saving");
    }
    let quiet = quiet || matches!(format, OutputFormat::Json) || !root;
    let mode = match ProgressMode::detect(quiet) {
        // `mpirun` gives ranks a terminal even when its own output goes to a file: epoch
        // lines, not a live bar, keep logs of data-parallel runs readable.
        ProgressMode::Bar if world.size() > 1 => ProgressMode::Lines,
        mode => mode,
    };
    if mode != ProgressMode::Quiet {
        let resumed = prep.state.completed_epochs;
        let what = if resumed > 0 {
            format!("resuming after epoch {resumed}")
        } else {
            "training".to_string()
        };
        let ranks = match world.size() {
            1 => String::new(),
            n => format!(" on {n} ranks"),
        };
        println!(
            "{what} `{}`{ranks}: {} training images{}, {} classes, into {}",
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
    let mut trainer = match Trainer::new_on(prep, mode, interrupted, world) {
        Ok(trainer) => trainer,
        Err(err) => return report(err, &mut printer, None, world),
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
            if root && matches!(format, OutputFormat::Json) {
                println!("{}", serde_json::json!({ "run": run_dir }));
            }
            EXIT_OK
        }
        Ok(Outcome::Interrupted) => {
            if !root {
                return EXIT_INTERRUPTED;
            }
            eprintln!(
                "interrupted: the last finished epoch is saved in {0}; continue with\n  strata train --resume {0}",
                escape_control(&run_dir.display().to_string())
            );
            EXIT_INTERRUPTED
        }
        Err(err) => report(err, &mut printer, Some((&source, &run_dir)), world),
    }
}

/// Prints `err` and returns the exit status. In a data-parallel run, errors every rank has
/// alike (a disagreement between ranks, a loss that became NaN) are printed by rank 0 alone,
/// and another rank's own error is headed by its rank and host.
fn report(
    err: TrainError,
    printer: &mut DiagnosticPrinter,
    run: Option<(&crate::diagnostics::SourceFile, &std::path::Path)>,
    world: &dyn Collective,
) -> u8 {
    if world.rank() != 0 {
        match err {
            TrainError::Ranks(_) | TrainError::NonFinite { .. } => return EXIT_ERROR,
            _ => eprintln!("{}:", describe(world)),
        }
    }
    match err {
        TrainError::Ranks(message) => {
            if !message.is_empty() {
                eprintln!("error: {message}");
            }
            EXIT_ERROR
        }
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
