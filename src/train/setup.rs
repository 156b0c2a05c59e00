//! Before the first batch: the spec compiled with the command line's overrides, the data
//! folders resolved, scanned and checked against the model (classes, broken files), the
//! loaders built and the run folder made — or, for `--resume`, all of it read back from the
//! run folder's `last.safetensors`. In a data-parallel run every rank prepares (compiles and
//! checks the data it sees), rank 0 alone claims and writes the run folder, and the ranks
//! agree that all of them are ready before rank 0 commits it ([`prepare_on`]).

use super::class_weight;
use super::history::{self, EpochRecord};
use super::memory;
use super::ranks;
use super::run_folder::RunClaim;
use super::state::{RunState, STATE_KEY};
use super::TrainError;
use crate::backend::checkpoint::{self, Checkpoint, NamedTensor, STATE_PREFIX};
use crate::backend::network::Network;
use crate::backend::optimizer::{import_state, Optimizer};
use crate::backend::schedule::LrSchedule;
use crate::compile::compile;
use crate::data::check::scan_images_with;
use crate::data::image::{decode_converted, ReadLimits};
use crate::data::loader::{cache_budget, split, Loader, Sample};
use crate::data::{errors, folder, paths, ImageSpec};
use crate::diagnostics::{codes, Diagnostic, SourceFile};
use crate::distributed::{Collective, SINGLE};
use crate::ir::Model;
use crate::spec::SpecFile;
use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// What `strata train` was asked.
#[derive(Clone, Debug, Default)]
pub struct TrainRequest {
    /// The spec file (a new run).
    pub spec: Option<PathBuf>,
    /// A run folder to continue.
    pub resume: Option<PathBuf>,
    /// `--data DIR`.
    pub data: Option<PathBuf>,
    /// `--epochs`.
    pub epochs: Option<u64>,
    /// `--batch-size`.
    pub batch_size: Option<u64>,
    /// `--lr`.
    pub lr: Option<f64>,
    /// `--seed`.
    pub seed: Option<u64>,
    /// `--out DIR`.
    pub out: Option<PathBuf>,
    /// `--cache-mb`: the decoded-image cache's budget in MiB, over the spec's `data.cache_mb`
    /// (default: [`crate::data::loader::default_cache_bytes`]).
    pub cache_mb: Option<u64>,
    /// `--force`: replace the earlier run in `--out`.
    pub force: bool,
}

impl TrainRequest {
    /// What was given with `--resume` that a resumed run cannot honour: it continues with
    /// the settings, data and folder it started with, so that it ends as the uninterrupted
    /// run would have.
    fn resume_conflicts(&self) -> Vec<String> {
        let mut given = Vec::new();
        if let Some(spec) = &self.spec {
            given.push(format!("a spec path (`{}`)", spec.display()));
        }
        let flags = [
            ("--data", self.data.is_some()),
            ("--batch-size", self.batch_size.is_some()),
            ("--lr", self.lr.is_some()),
            ("--seed", self.seed.is_some()),
            ("--out", self.out.is_some()),
            ("--force", self.force),
        ];
        given.extend(
            flags
                .into_iter()
                .filter(|(_, present)| *present)
                .map(|(flag, _)| format!("`{flag}`")),
        );
        given
    }
}

/// A run ready to start.
pub struct Prepared {
    /// The checked model (with overrides applied to its train settings).
    pub model: Model,
    /// The spec file's text.
    pub spec_text: String,
    /// The spec as a source for diagnostics.
    pub source: SourceFile,
    /// The run folder.
    pub run_dir: PathBuf,
    /// Training batches.
    pub train: Loader,
    /// Validation batches, if any.
    pub validation: Option<Loader>,
    /// The state to start from (epoch 0 for a new run).
    pub state: RunState,
    /// The checkpoint to resume from.
    pub resume: Option<Checkpoint>,
    /// Warnings found while preparing (broken files).
    pub warnings: Vec<Diagnostic>,
    /// Each class's weight in the training loss (`train.class_weight`); empty: all 1.
    pub class_weights: Vec<f32>,
    /// The finished epochs' history (empty for a new run).
    pub history: Vec<EpochRecord>,
    /// The run folder, locked for as long as this run lives (rank 0's; the other ranks of a
    /// data-parallel run hold none).
    pub claim: Option<RunClaim>,
}

/// Compiles, checks data and makes the run folder; or reads a run back for `--resume`.
pub fn prepare(request: &TrainRequest) -> Result<Prepared, TrainError> {
    prepare_on(request, &SINGLE)
}

/// [`prepare`] as one rank of `world`. Every rank compiles the spec and checks the images it
/// sees; rank 0 alone claims the run folder (for `--resume` it reads the run and sends it to
/// the others). The ranks agree that each of them is ready, that they see the same images and
/// that the batch splits over them, before rank 0 commits the folder; an error on any rank
/// ends [`prepare_on`] on every rank.
pub fn prepare_on(
    request: &TrainRequest,
    world: &'static dyn Collective,
) -> Result<Prepared, TrainError> {
    let gate = Gate {
        world,
        state: Cell::new(GateState::NotReached),
    };
    let prepared = match (&request.resume, &request.spec) {
        (Some(run_dir), _) => {
            let given = request.resume_conflicts();
            if given.is_empty() {
                prepare_resume(run_dir, request, &gate)
            } else {
                Err(TrainError::Refused(resume_conflict(run_dir, &given)))
            }
        }
        (None, Some(spec)) => prepare_new(spec, request, &gate),
        (None, None) => Err(TrainError::Refused(
            Diagnostic::error(codes::RUN_USAGE, "nothing to train")
                .with_help("give a spec file (`strata train SPEC`), or `--resume RUN`"),
        )),
    };
    match prepared {
        Err(err) if world.size() > 1 && gate.state.get() != GateState::Failed => {
            // The other ranks wait in an agreement: the gate's when this rank failed before
            // it, else the start's (`Trainer::new_on`), after rank 0's writes failed.
            Err(ranks::agree_failed(world, err, "could not start"))
        }
        other => other,
    }
}

/// Where a rank is in the agreement that all ranks are ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GateState {
    NotReached,
    /// Some rank failed; every rank knows.
    Failed,
    Passed,
}

/// The agreement before rank 0 writes: every rank ready, with the same images.
struct Gate {
    world: &'static dyn Collective,
    state: Cell<GateState>,
}

impl Gate {
    /// Takes part in the agreement with the loaders this rank built.
    fn pass(
        &self,
        state: &RunState,
        train: &Loader,
        validation: Option<&Loader>,
    ) -> Result<(), TrainError> {
        let (train_hash, train_count) = ranks::data_fingerprint(train, &state.train_dir);
        let validation_root = state.validation_dir.as_ref().unwrap_or(&state.train_dir);
        let (validation_hash, validation_count) = validation.map_or((0, 0), |loader| {
            ranks::data_fingerprint(loader, validation_root)
        });
        let seen = [train_hash, train_count, validation_hash, validation_count];
        let agreed = ranks::agree(self.world, Ok(&seen), "could not start")
            .and_then(|all| ranks::same_data(&all, self.world.size()));
        self.state.set(if agreed.is_ok() {
            GateState::Passed
        } else {
            GateState::Failed
        });
        agreed
    }

    /// Whether this process writes the run folder.
    fn writes(&self) -> bool {
        self.world.rank() == 0
    }
}

/// The `strata::run::out_of_memory` refusal of a training step (on this rank's share of the
/// batch) that cannot fit in this machine's memory; its warning when it may not.
fn check_memory(
    model: &Model,
    state: &RunState,
    world: &dyn Collective,
    source: &SourceFile,
) -> Result<Option<Diagnostic>, TrainError> {
    let share = state.batch_size / (world.size() as u64).max(1);
    let share = usize::try_from(share).unwrap_or(usize::MAX).max(1);
    match memory::check(model, share, memory::Pass::Training, memory::available()) {
        Some(diagnostic) if diagnostic.is_error() => {
            Err(TrainError::Diagnostics(source.clone(), vec![diagnostic]))
        }
        other => Ok(other),
    }
}

/// The `strata::run::usage` refusal of a global batch that does not split over the ranks.
fn check_batch_split(batch_size: u64, world: &dyn Collective) -> Result<(), TrainError> {
    let ranks = world.size() as u64;
    if batch_size.is_multiple_of(ranks) {
        return Ok(());
    }
    let below = batch_size / ranks * ranks;
    let above = batch_size.div_ceil(ranks) * ranks;
    Err(TrainError::Refused(
        Diagnostic::error(
            codes::RUN_USAGE,
            format!(
                "a batch of {batch_size} images cannot be split evenly over {ranks} ranks: each \
                 rank takes the same share of every batch"
            ),
        )
        .with_help(format!(
            "make `train.batch_size` (or `--batch-size`) a multiple of {ranks}, such as {}, or \
             start a number of ranks that divides {batch_size}",
            if below > 0 {
                format!("{below} or {above}")
            } else {
                above.to_string()
            }
        )),
    ))
}

/// The `strata::run::usage` refusal of flags given with `--resume`.
fn resume_conflict(run_dir: &Path, given: &[String]) -> Diagnostic {
    Diagnostic::error(
        codes::RUN_USAGE,
        format!(
            "{} cannot be used with `--resume`: a resumed run continues with the spec, data, \
             settings and folder it started with, so that it ends as the uninterrupted run \
             would have",
            given.join(", ")
        ),
    )
    .with_help(format!(
        "write `strata train --resume {}` alone (only `--epochs`, a new total, `--cache-mb`, \
         `--quiet` and `--format` go with it); to change settings, start a new run from the spec",
        run_dir.display()
    ))
}

/// The checked model and the spec as read (its spans point diagnostics found later, such as
/// [`check_monitors`], at the file).
fn compile_model(
    text: &str,
    source: &SourceFile,
    name: &str,
) -> Result<(Model, Option<SpecFile>), TrainError> {
    let compiled = compile(text, name);
    let has_errors = compiled.has_errors();
    match compiled.model {
        Some(model) if !has_errors => Ok((model, compiled.spec)),
        _ => Err(TrainError::Diagnostics(
            source.clone(),
            compiled.diagnostics,
        )),
    }
}

fn prepare_new(
    spec_path: &Path,
    request: &TrainRequest,
    gate: &Gate,
) -> Result<Prepared, TrainError> {
    let text = crate::spec::read_spec_file(spec_path).map_err(|err| match err {
        crate::spec::SpecReadError::TooLarge { diagnostic, source } => {
            TrainError::Diagnostics(source, vec![diagnostic])
        }
        other => TrainError::Io(other.to_string()),
    })?;
    let source = SourceFile::new(spec_path.display().to_string(), text.clone());
    let stem = spec_path
        .file_stem()
        .map_or_else(|| "model".to_string(), |s| s.to_string_lossy().into_owned());
    let (model, spec) = compile_model(&text, &source, &stem)?;
    let data = paths::resolve(spec_path, &model.data, request.data.as_deref());
    let Some(train_dir) = data.train.clone() else {
        let span = spec.as_ref().and_then(|spec| spec.key_span("data"));
        let diagnostic = Diagnostic::error(
            codes::RUN_NO_TRAINING_DATA,
            format!("`{}` names no training images", spec_path.display()),
        )
        .with_help("add `data: { train: DIR }` to the spec, or give `--data DIR`");
        let diagnostic = match span {
            Some(span) => diagnostic.with_primary(span, "no `train` folder here"),
            None => diagnostic,
        };
        return Err(TrainError::Diagnostics(source, vec![diagnostic]));
    };
    let mut claim = match (&request.out, gate.writes()) {
        (_, false) => None,
        (Some(out), true) => Some(RunClaim::new_run(out, request.force)?),
        (None, true) => Some(claim_default(&model.name)?),
    };
    let absolute = |path: &Path| std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut state = RunState {
        spec_path: absolute(spec_path),
        completed_epochs: 0,
        epochs: request.epochs.unwrap_or(model.train.epochs),
        batch_size: request.batch_size.unwrap_or(model.train.batch_size).max(1),
        lr: request.lr.unwrap_or(model.train.lr),
        base_lr: Some(request.lr.unwrap_or(model.train.lr)),
        steps_per_epoch: None,
        schedule_epochs: None,
        seed: request.seed.unwrap_or(model.train.seed),
        optimizer_step: 0,
        train_dir: absolute(&train_dir),
        validation_dir: data.validation.as_deref().map(absolute),
        validation_split: data.validation_split,
        classes: Vec::new(),
        best_checkpoint: Default::default(),
        stopped_early: false,
        early_stopping: Default::default(),
        reduce_lr: Default::default(),
    };
    check_batch_split(state.batch_size, gate.world)?;
    let memory = check_memory(&model, &state, gate.world, &source)?;
    let (train, validation, classes, mut warnings, counts) =
        data_loaders(&model, &state, &source, request.cache_mb)?;
    warnings.extend(memory);
    check_monitors(&model, spec.as_ref(), &source, validation.is_some())?;
    let class_weights = weights_of(&model, &classes, &counts, spec.as_ref(), &source)?;
    state.classes = classes;
    state.steps_per_epoch = Some(steps_per_epoch(&train, state.batch_size));
    state.schedule_epochs = Some(state.epochs);
    gate.pass(&state, &train, validation.as_ref())?;
    let run_dir = match &mut claim {
        Some(claim) => {
            claim.commit()?;
            let run_dir = claim.dir().to_path_buf();
            super::write_file(&run_dir.join("spec.yaml"), text.as_bytes())?;
            super::write_file(
                &run_dir.join("summary.txt"),
                crate::summary::render_table(&model).as_bytes(),
            )?;
            run_dir
        }
        None => request
            .out
            .clone()
            .unwrap_or_else(|| super::default_run_dir(&model.name)),
    };
    Ok(Prepared {
        model,
        spec_text: text,
        source,
        run_dir,
        train,
        validation,
        state,
        resume: None,
        warnings,
        class_weights,
        history: Vec::new(),
        claim,
    })
}

/// Claims `runs/<name>/<time>`, or `<time>-2`, `-3`, … when runs started in the same second
/// took it.
fn claim_default(name: &str) -> Result<RunClaim, TrainError> {
    let base = super::default_run_dir(name);
    let mut last = None;
    for n in 1..=100 {
        let dir = if n == 1 {
            base.clone()
        } else {
            let mut with_suffix = base.clone().into_os_string();
            with_suffix.push(format!("-{n}"));
            PathBuf::from(with_suffix)
        };
        match RunClaim::new_run(&dir, false) {
            Err(TrainError::Refused(diagnostic)) => last = Some(diagnostic),
            claimed => return claimed,
        }
    }
    Err(TrainError::Refused(last.unwrap_or_else(|| {
        Diagnostic::error(codes::RUN_FOLDER_IN_USE, "no free run folder")
    })))
}

fn prepare_resume(
    run_dir: &Path,
    request: &TrainRequest,
    gate: &Gate,
) -> Result<Prepared, TrainError> {
    let opened = if gate.writes() {
        open_run(run_dir, request)
    } else {
        // Filled in from rank 0's run by `share_run`.
        Err(TrainError::Ranks(String::new()))
    };
    let Opened {
        mut claim,
        checkpoint,
        state,
        history,
        repaired,
    } = if gate.world.size() > 1 {
        share_run(gate.world, opened, run_dir, request)?
    } else {
        opened?
    };
    check_batch_split(state.batch_size, gate.world)?;
    let source = SourceFile::new(
        run_dir.join("spec.yaml").display().to_string(),
        checkpoint.spec.clone(),
    );
    let (model, spec) = compile_model(&checkpoint.spec, &source, "model")?;
    let memory = check_memory(&model, &state, gate.world, &source)?;
    let (train, validation, classes, mut warnings, counts) =
        data_loaders(&model, &state, &source, request.cache_mb)?;
    warnings.extend(memory);
    if classes != state.classes {
        return Err(TrainError::Diagnostics(
            source,
            vec![classes_changed(&state, &classes)],
        ));
    }
    let class_weights = weights_of(&model, &classes, &counts, spec.as_ref(), &source)?;
    gate.pass(&state, &train, validation.as_ref())?;
    if gate.writes() {
        if let Some(claim) = claim.as_mut() {
            claim.commit()?;
        }
        // The files now say exactly what the checkpoint holds: a kill between the history's
        // write and the checkpoint's may have left them one epoch ahead, or damaged.
        history::write(run_dir, &history)?;
        super::write_state(run_dir, &state)?;
    }
    warnings.extend(repaired);
    let text = checkpoint.spec.clone();
    Ok(Prepared {
        model,
        spec_text: text,
        source,
        run_dir: run_dir.to_path_buf(),
        train,
        validation,
        state,
        resume: Some(checkpoint),
        warnings,
        class_weights,
        history,
        claim,
    })
}

/// A run folder read back for `--resume`.
struct Opened {
    /// The folder, locked (rank 0's only).
    claim: Option<RunClaim>,
    /// Its `last.safetensors`.
    checkpoint: Checkpoint,
    /// The state in it, with `--epochs` applied.
    state: RunState,
    /// The finished epochs' history (rank 0's only).
    history: Vec<EpochRecord>,
    /// A warning about history files repaired.
    repaired: Option<Diagnostic>,
}

/// Locks the run folder and reads what `--resume` continues from.
fn open_run(run_dir: &Path, request: &TrainRequest) -> Result<Opened, TrainError> {
    let claim = RunClaim::existing_run(run_dir)?;
    let last = run_dir.join("last.safetensors");
    let checkpoint = checkpoint::load(&last).map_err(|err| {
        TrainError::Refused(
            Diagnostic::error(
                codes::RUN_NO_CHECKPOINT,
                format!(
                    "cannot resume `{}`: `{}` is truncated or corrupt ({err})",
                    run_dir.display(),
                    last.display()
                ),
            )
            .with_help(
                "restore it from a backup, or start the run again with `--force`; \
                 `best.safetensors`, if intact, still serves `predict` and `evaluate`",
            ),
        )
    })?;
    let mut state = run_state(&checkpoint, run_dir)?;
    if let Ok(current) = std::fs::read_to_string(&state.spec_path) {
        if current != checkpoint.spec {
            let path = state.spec_path.display();
            let source = SourceFile::new(path.to_string(), current.clone());
            return Err(TrainError::Diagnostics(
                source,
                vec![Diagnostic::error(
                    codes::RUN_SPEC_CHANGED,
                    format!(
                        "`{path}` changed since this run started; resuming would train a \
                         different model"
                    ),
                )
                .with_help(format!(
                    "restore the spec (the run's copy is `{}`), or start a new run with \
                     `strata train {path}`",
                    run_dir.join("spec.yaml").display()
                ))],
            ));
        }
    }
    apply_epochs(&mut state, request);
    let (history, repaired) = history::recover(
        run_dir,
        checkpoint
            .extra
            .get(history::HISTORY_KEY)
            .map(String::as_str),
        state.completed_epochs,
    )
    .map_err(TrainError::Refused)?;
    Ok(Opened {
        claim: Some(claim),
        checkpoint,
        state,
        history,
        repaired,
    })
}

/// The run state a checkpoint carries.
fn run_state(checkpoint: &Checkpoint, run_dir: &Path) -> Result<RunState, TrainError> {
    checkpoint
        .extra
        .get(STATE_KEY)
        .and_then(|json| serde_json::from_str(json).ok())
        .ok_or_else(|| {
            TrainError::Refused(
                Diagnostic::error(
                    codes::RUN_NO_CHECKPOINT,
                    format!(
                        "cannot resume `{}`: `{}` has no run state",
                        run_dir.display(),
                        run_dir.join("last.safetensors").display()
                    ),
                )
                .with_help("resume needs the `last.safetensors` that `strata train` wrote"),
            )
        })
}

/// `--epochs N` on `--resume`: a new total.
fn apply_epochs(state: &mut RunState, request: &TrainRequest) {
    if let Some(epochs) = request.epochs {
        state.epochs = epochs;
        if state.stopped_early {
            // Asked for more epochs after early stopping ended the run: count afresh, as a
            // second `fit` in Keras would, rather than stopping again after one epoch.
            state.stopped_early = false;
            state.early_stopping.wait = 0;
        }
    }
}

/// Rank 0's opened run on every rank: its checkpoint is sent to the others, which need not
/// see the run folder (it lives on rank 0's host). When rank 0 could not open the run, the
/// others learn it here and stop (rank 0 reports why).
fn share_run(
    world: &dyn Collective,
    opened: Result<Opened, TrainError>,
    run_dir: &Path,
    request: &TrainRequest,
) -> Result<Opened, TrainError> {
    if world.rank() == 0 {
        let bytes = match &opened {
            Ok(opened) => Some(checkpoint::to_bytes(&opened.checkpoint)),
            Err(_) => None,
        };
        return match bytes {
            Some(Ok(bytes)) => {
                world.broadcast_bytes(Some(bytes));
                opened
            }
            Some(Err(err)) => {
                world.broadcast_bytes(None);
                Err(err.into())
            }
            None => {
                world.broadcast_bytes(None);
                opened
            }
        };
    }
    let Some(bytes) = world.broadcast_bytes(None) else {
        return Err(TrainError::Ranks(String::new()));
    };
    let checkpoint = checkpoint::from_bytes(&bytes)
        .map_err(|err| TrainError::Io(format!("the run that rank 0 sent cannot be read: {err}")))?;
    let mut state = run_state(&checkpoint, run_dir)?;
    apply_epochs(&mut state, request);
    Ok(Opened {
        claim: None,
        checkpoint,
        state,
        history: Vec::new(),
        repaired: None,
    })
}

/// The `strata::run::classes_changed` error: which classes came and went.
fn classes_changed(state: &RunState, found: &[String]) -> Diagnostic {
    let list = |names: Vec<&String>| {
        names
            .iter()
            .map(|name| format!("`{}`", crate::text::escape_control(name)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let added = list(
        found
            .iter()
            .filter(|c| !state.classes.contains(c))
            .collect(),
    );
    let gone = list(
        state
            .classes
            .iter()
            .filter(|c| !found.contains(c))
            .collect(),
    );
    let mut notes = Vec::new();
    if !added.is_empty() {
        notes.push(format!("new: {added}"));
    }
    if !gone.is_empty() {
        notes.push(format!("missing: {gone}"));
    }
    if notes.is_empty() {
        notes.push("the same names in another order".to_string());
    }
    Diagnostic::error(
        codes::RUN_CLASSES_CHANGED,
        format!(
            "the classes of `{}` changed since the run started; the model's outputs are the \
             run's {} classes",
            state.train_dir.display(),
            state.classes.len()
        ),
    )
    .with_note(notes.join("; "))
    .with_help("restore the folder's class subfolders, or start a new run on the new classes")
}

/// The loaders, the class names, warnings, and the number of training images of each class.
type Loaders = (
    Loader,
    Option<Loader>,
    Vec<String>,
    Vec<Diagnostic>,
    Vec<usize>,
);

/// `train.class_weight` as one weight per class, or its unknown class names as diagnostics.
fn weights_of(
    model: &Model,
    classes: &[String],
    counts: &[usize],
    spec: Option<&SpecFile>,
    source: &SourceFile,
) -> Result<Vec<f32>, TrainError> {
    class_weight::class_weights(model.train.class_weight.as_ref(), classes, counts, spec)
        .map_err(|diagnostics| TrainError::Diagnostics(source.clone(), diagnostics))
}

/// Scans the folders, checks them against the model, drops broken files, builds loaders.
fn data_loaders(
    model: &Model,
    state: &RunState,
    source: &SourceFile,
    cache_mb: Option<u64>,
) -> Result<Loaders, TrainError> {
    let fail = |diagnostic: Diagnostic| TrainError::Diagnostics(source.clone(), vec![diagnostic]);
    let train_folder = folder::scan(&state.train_dir).map_err(fail)?;
    if train_folder.classes.len() != model.classes {
        return Err(fail(errors::class_count(
            &model.layers,
            model.classes,
            &train_folder,
        )));
    }
    let validation_folder = match &state.validation_dir {
        Some(dir) => {
            let found = folder::scan(dir).map_err(fail)?;
            folder::same_classes(&train_folder, &found).map_err(fail)?;
            Some(found)
        }
        None => None,
    };
    let cache_bytes = cache_budget(cache_mb, model.data.cache_mb);
    let spec = ImageSpec::for_model(model);
    let limits = ReadLimits::for_spec(&spec);
    // The scan decodes every image anyway: what fits in the cache is kept, resized, for the
    // first epoch, which then decodes only the rest.
    let kept = Mutex::new((HashMap::new(), 0_usize));
    let keep = |path: &Path, bytes: &[u8]| {
        let (converted, found) = decode_converted(bytes, &spec, &limits)?;
        if let Ok(mut kept) = kept.lock() {
            if kept.1 + converted.len() <= cache_bytes {
                kept.1 += converted.len();
                kept.0.insert(path.to_path_buf(), converted);
            }
        }
        Ok(found)
    };
    let mut reports = vec![scan_images_with(&train_folder, &limits, keep)];
    if let Some(found) = &validation_folder {
        reports.push(scan_images_with(found, &limits, keep));
    }
    let unreadable: Vec<Diagnostic> = reports
        .iter()
        .flat_map(|report| report.unreadable_classes())
        .collect();
    if !unreadable.is_empty() {
        return Err(TrainError::Diagnostics(source.clone(), unreadable));
    }
    let broken: HashSet<&PathBuf> = reports
        .iter()
        .flat_map(|report| report.broken.iter().map(|(path, _)| path))
        .collect();
    let keep = |samples: Vec<Sample>| -> Vec<Sample> {
        samples
            .into_iter()
            .filter(|(path, _)| !broken.contains(path))
            .collect()
    };
    let mut train_samples = keep(train_folder.samples());
    let mut validation_samples = validation_folder.map(|found| keep(found.samples()));
    if let (None, Some(fraction)) = (&validation_samples, state.validation_split) {
        let (train, validation) = split(&train_samples, model.classes, fraction);
        train_samples = train;
        validation_samples = Some(validation);
    }
    let mut counts = vec![0; train_folder.classes.len()];
    for (_, label) in &train_samples {
        if let Some(count) = counts.get_mut(*label) {
            *count += 1;
        }
    }
    let warnings = if broken.is_empty() {
        Vec::new()
    } else {
        vec![errors::skipped_summary(&reports.iter().collect::<Vec<_>>())]
    };
    // One budget for both loaders, shared in proportion to their images, so the cache never
    // holds more than the budget in all.
    let validation_samples = validation_samples.filter(|samples| !samples.is_empty());
    let n_validation = validation_samples.as_ref().map_or(0, Vec::len);
    let n_all = (train_samples.len() + n_validation).max(1);
    let validation_bytes = (cache_bytes as u128 * n_validation as u128 / n_all as u128) as usize;
    let train = Loader::new(train_samples, spec, cache_bytes - validation_bytes);
    let validation = validation_samples.map(|samples| Loader::new(samples, spec, validation_bytes));
    let mut kept = kept.into_inner().map(|kept| kept.0).unwrap_or_default();
    train.prefill(&mut kept);
    if let Some(loader) = &validation {
        loader.prefill(&mut kept);
    }
    Ok((train, validation, train_folder.classes, warnings, counts))
}

/// A watched `val_…` metric needs validation data: without it early stopping or
/// reduce-on-plateau would never act, which Keras only warns about once per epoch. Refused
/// before training, at the setting.
fn check_monitors(
    model: &Model,
    spec: Option<&SpecFile>,
    source: &SourceFile,
    has_validation: bool,
) -> Result<(), TrainError> {
    if has_validation {
        return Ok(());
    }
    let train = &model.train;
    let watched = [
        ("early_stopping", train.early_stopping.map(|s| s.monitor)),
        ("reduce_lr_on_plateau", train.reduce_lr.map(|s| s.monitor)),
    ];
    let diagnostics: Vec<Diagnostic> = watched
        .into_iter()
        .filter_map(|(key, monitor)| {
            let monitor = monitor.filter(|m| m.needs_validation())?;
            let path = format!("train.{key}");
            let span = spec.and_then(|spec| {
                spec.value_span(&format!("{path}.monitor"))
                    .or_else(|| spec.key_span(&path))
            });
            Some(
                Diagnostic::error(
                    crate::diagnostics::codes::SPEC_INVALID_VALUE,
                    format!(
                        "`{path}` watches `{}`, but this run has no validation data",
                        monitor.name()
                    ),
                )
                .with_primary(span.unwrap_or_default(), "needs validation images")
                .with_help(
                    "add `data.validation` or `data.validation_split`, give `--data DIR` with a \
                     `validation` folder, or write `monitor: loss`",
                ),
            )
        })
        .collect();
    if diagnostics.is_empty() {
        Ok(())
    } else {
        Err(TrainError::Diagnostics(source.clone(), diagnostics))
    }
}

/// The network, optimiser, history and state a run starts from.
pub(super) struct Start {
    pub network: Network,
    pub optimizer: Optimizer,
    pub history: Vec<EpochRecord>,
    pub state: RunState,
}

/// A fresh start, or the resumed one. A checkpoint whose tensors do not fit the model, or
/// whose optimiser state does not, is an error rather than a silent fresh start.
pub(super) fn start(prep: &Prepared) -> Result<Start, TrainError> {
    let mut optimizer = optimizer_for(prep);
    let state = prep.state.clone();
    let Some(checkpoint) = &prep.resume else {
        let mut network = Network::new(&prep.model, state.seed);
        network.set_class_weights(prep.class_weights.clone());
        return Ok(Start {
            network,
            optimizer,
            history: Vec::new(),
            state,
        });
    };
    let last = prep.run_dir.join("last.safetensors");
    let mut network = Network::from_checkpoint(&prep.model, checkpoint).map_err(|err| {
        TrainError::Refused(Diagnostic::error(
            codes::RUN_NO_CHECKPOINT,
            format!("cannot resume from `{}`: {err}", last.display()),
        ))
    })?;
    network.set_class_weights(prep.class_weights.clone());
    let moments: Vec<NamedTensor> = checkpoint
        .tensors
        .iter()
        .filter_map(|t| {
            t.name.strip_prefix(STATE_PREFIX).map(|name| NamedTensor {
                name: name.to_string(),
                ..t.clone()
            })
        })
        .collect();
    import_state(
        &mut optimizer,
        &prep.model,
        &mut network.params,
        &moments,
        state.optimizer_step,
    )
    .map_err(|err| {
        TrainError::Refused(
            Diagnostic::error(
                codes::RUN_OPTIMIZER_STATE,
                format!(
                    "cannot resume from `{}`: its optimiser state does not fit the model: {err}",
                    last.display()
                ),
            )
            .with_help(
                "the file was changed after `strata train` wrote it; restore it, or start the \
                 run again with `--force`",
            ),
        )
    })?;
    Ok(Start {
        network,
        optimizer,
        history: prep.history.clone(),
        state,
    })
}

/// The run's optimiser: at the run's current rate (which reduce-on-plateau may have lowered),
/// or with the schedule planned when the run started, scaled from the rate it started from.
fn optimizer_for(prep: &Prepared) -> Optimizer {
    let state = &prep.state;
    let mut train = prep.model.train.clone();
    train.lr = state.lr;
    let schedule = LrSchedule {
        schedule: train.schedule,
        base_lr: state.base_lr.unwrap_or(state.lr),
        steps_per_epoch: state
            .steps_per_epoch
            .unwrap_or_else(|| steps_per_epoch(&prep.train, state.batch_size)),
        epochs: state.schedule_epochs.unwrap_or(state.epochs),
    };
    Optimizer::new(&train).with_schedule(schedule)
}

/// Optimiser steps per epoch: the training batches, the last partial one included.
fn steps_per_epoch(train: &Loader, batch_size: u64) -> u64 {
    (train.len() as u64).div_ceil(batch_size.max(1))
}
