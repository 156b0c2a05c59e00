//! Where a spec's images are: `data.train` and `data.validation` relative to the spec file's
//! folder, or `--data DIR` (docs/commands.md): `DIR/train` and `DIR/validation` when `DIR/train`
//! exists, else `DIR` itself as the training folder (with the spec's `validation_split`).

use crate::settings::DataConfig;
use std::path::{Path, PathBuf};

/// The resolved folders.
#[derive(Clone, Debug, PartialEq)]
pub struct DataPaths {
    /// Training images, if known.
    pub train: Option<PathBuf>,
    /// Validation images, if a folder is used.
    pub validation: Option<PathBuf>,
    /// Fraction of the training images held out instead, if any.
    pub validation_split: Option<f64>,
}

/// Resolves the data folders of a spec at `spec_path`, with an optional `--data` override.
pub fn resolve(spec_path: &Path, data: &DataConfig, override_dir: Option<&Path>) -> DataPaths {
    if let Some(dir) = override_dir {
        if dir.join("train").is_dir() {
            let validation = ["validation", "val", "test"]
                .iter()
                .map(|name| dir.join(name))
                .find(|path| path.is_dir());
            let validation_split = if validation.is_none() {
                data.validation_split
            } else {
                None
            };
            return DataPaths {
                train: Some(dir.join("train")),
                validation,
                validation_split,
            };
        }
        return DataPaths {
            train: Some(dir.to_path_buf()),
            validation: None,
            validation_split: data.validation_split,
        };
    }
    let base = spec_path.parent().unwrap_or(Path::new(""));
    DataPaths {
        train: data.train.as_ref().map(|path| base.join(path)),
        validation: data.validation.as_ref().map(|path| base.join(path)),
        validation_split: data.validation_split,
    }
}
