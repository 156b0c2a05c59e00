//! A trained model from a run folder or a checkpoint file: the checkpoint's embedded spec
//! (`strata.spec`) is compiled again, its tensors are checked against the model (names, shapes,
//! and finite values: a diverged run's NaN weights are refused, not predicted with), and its
//! class names (`strata.classes`) name the outputs, so nothing but the checkpoint is needed.

use crate::backend::checkpoint::{self, Checkpoint, CheckpointError, NonFinite};
use crate::backend::network::Network;
use crate::compile::compile;
use crate::data::ImageSpec;
use crate::diagnostics::{Diagnostic, SourceFile};
use crate::ir::Model;
use std::fmt;
use std::path::{Path, PathBuf};

/// The checkpoint a run folder's predictions use, best first.
pub const RUN_CHECKPOINTS: [&str; 2] = ["best.safetensors", "last.safetensors"];

/// A model ready for inference.
#[derive(Debug)]
pub struct Trained {
    /// The checkpoint file it came from.
    pub path: PathBuf,
    /// The compiled embedded spec.
    pub model: Model,
    /// Class names in output order.
    pub classes: Vec<String>,
    /// The network with the checkpoint's parameters.
    pub network: Network,
}

/// Why a trained model cannot be loaded.
#[derive(Debug)]
pub enum LoadError {
    /// The path does not exist.
    Missing(PathBuf),
    /// A folder without `best.safetensors` or `last.safetensors`.
    NoCheckpoint(PathBuf),
    /// The checkpoint cannot be read, or its tensors do not fit its spec.
    Checkpoint(PathBuf, CheckpointError),
    /// Model parameters are NaN or infinite: the checkpoint and those tensors, in layer order.
    NonFinite(PathBuf, Vec<NonFinite>),
    /// The embedded spec no longer compiles; its diagnostics, against its text.
    Spec {
        /// The embedded spec, named after the checkpoint, for rendering the diagnostics.
        source: SourceFile,
        /// What the compiler reported.
        diagnostics: Vec<Diagnostic>,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Missing(path) => write!(f, "`{}` does not exist", path.display()),
            LoadError::NoCheckpoint(dir) => write!(
                f,
                "`{}` holds neither `{}` nor `{}`: not a training run folder",
                dir.display(),
                RUN_CHECKPOINTS[0],
                RUN_CHECKPOINTS[1]
            ),
            LoadError::Checkpoint(
                _,
                err @ (CheckpointError::Io(..) | CheckpointError::NotAFile(..)),
            ) => write!(f, "{err}"),
            LoadError::Checkpoint(path, CheckpointError::Truncated(err)) => {
                write!(f, "`{}` is truncated or corrupt: {err}", path.display())
            }
            LoadError::Checkpoint(path, err) => write!(f, "`{}`: {err}", path.display()),
            LoadError::NonFinite(path, tensors) => write!(
                f,
                "`{}` in `{}` holds NaN or infinite values",
                tensors.first().map_or("?", |tensor| tensor.name.as_str()),
                path.display()
            ),
            LoadError::Spec { source, .. } => {
                write!(f, "the spec inside `{}` does not compile", source.name)
            }
        }
    }
}

impl std::error::Error for LoadError {}

/// The checkpoint file of `run`: the file itself, or a run folder's best (else last) checkpoint.
pub fn checkpoint_path(run: &Path) -> Result<PathBuf, LoadError> {
    if run.is_dir() {
        RUN_CHECKPOINTS
            .iter()
            .map(|name| run.join(name))
            .find(|path| path.is_file())
            .ok_or_else(|| LoadError::NoCheckpoint(run.to_path_buf()))
    } else if run.exists() {
        Ok(run.to_path_buf())
    } else {
        Err(LoadError::Missing(run.to_path_buf()))
    }
}

impl Trained {
    /// Loads the checkpoint of `run` (a run folder or a `.safetensors` file).
    pub fn load(run: &Path) -> Result<Trained, LoadError> {
        let path = checkpoint_path(run)?;
        let checkpoint =
            checkpoint::load(&path).map_err(|err| LoadError::Checkpoint(path.clone(), err))?;
        Trained::from_checkpoint(path, &checkpoint)
    }

    /// Compiles `checkpoint`'s spec and builds its network; `path` names it in messages.
    pub fn from_checkpoint(path: PathBuf, checkpoint: &Checkpoint) -> Result<Trained, LoadError> {
        let compiled = compile(&checkpoint.spec, "model");
        let Some(model) = compiled.model else {
            let name = format!("{} ({})", path.display(), checkpoint::SPEC_KEY);
            return Err(LoadError::Spec {
                source: SourceFile::new(name, checkpoint.spec.clone()),
                diagnostics: compiled.diagnostics,
            });
        };
        if checkpoint.classes.len() != model.classes {
            let err = CheckpointError::Metadata(format!(
                "`{}` names {} classes but the model outputs {}",
                checkpoint::CLASSES_KEY,
                checkpoint.classes.len(),
                model.classes
            ));
            return Err(LoadError::Checkpoint(path, err));
        }
        let network = Network::from_checkpoint(&model, checkpoint)
            .map_err(|err| LoadError::Checkpoint(path.clone(), err))?;
        let non_finite = checkpoint::non_finite_tensors(checkpoint);
        if !non_finite.is_empty() {
            return Err(LoadError::NonFinite(path, non_finite));
        }
        Ok(Trained {
            path,
            classes: checkpoint.classes.clone(),
            model,
            network,
        })
    }

    /// How each image is converted for the model: its input size and channels, the spec's
    /// rescale.
    pub fn image_spec(&self) -> ImageSpec {
        ImageSpec::for_model(&self.model)
    }
}
