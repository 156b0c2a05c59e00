//! Image folders as Keras's `flow_from_directory` reads them: one subfolder per class, classes
//! sorted by name, files in each class (recursively) sorted by path.

use super::errors;
use crate::diagnostics::Diagnostic;
use std::path::{Path, PathBuf};

/// A scanned image folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageFolder {
    /// The folder.
    pub root: PathBuf,
    /// Class names, sorted (the order of the model's output units).
    pub classes: Vec<String>,
    /// For each class, its files, sorted.
    pub files: Vec<Vec<PathBuf>>,
}

impl ImageFolder {
    /// Every file with its class index, class by class.
    pub fn samples(&self) -> Vec<(PathBuf, usize)> {
        self.files
            .iter()
            .enumerate()
            .flat_map(|(class, files)| files.iter().map(move |file| (file.clone(), class)))
            .collect()
    }

    /// The number of files.
    pub fn len(&self) -> usize {
        self.files.iter().map(Vec::len).sum()
    }

    /// Whether there are no files.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Scans `dir`: its subfolders are the classes. Hidden files and folders (`.name`) are skipped.
pub fn scan(dir: &Path) -> Result<ImageFolder, Diagnostic> {
    let entries = std::fs::read_dir(dir).map_err(|err| errors::missing_folder(dir, &err))?;
    let mut class_dirs: Vec<(String, PathBuf)> = entries
        .flatten()
        .filter(|entry| entry.path().is_dir() && !is_hidden(&entry.path()))
        .map(|entry| {
            (
                entry.file_name().to_string_lossy().into_owned(),
                entry.path(),
            )
        })
        .collect();
    class_dirs.sort();
    if class_dirs.is_empty() {
        return Err(errors::no_classes(dir));
    }
    let mut files = Vec::with_capacity(class_dirs.len());
    for (name, path) in &class_dirs {
        let mut class_files = Vec::new();
        collect_files(path, &mut class_files);
        class_files.sort();
        if class_files.is_empty() {
            return Err(errors::empty_class(dir, name));
        }
        files.push(class_files);
    }
    Ok(ImageFolder {
        root: dir.to_path_buf(),
        classes: class_dirs.into_iter().map(|(name, _)| name).collect(),
        files,
    })
}

/// Checks that training and validation folders have the same classes.
pub fn same_classes(train: &ImageFolder, validation: &ImageFolder) -> Result<(), Diagnostic> {
    if train.classes == validation.classes {
        Ok(())
    } else {
        Err(errors::class_mismatch(train, validation))
    }
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if is_hidden(&path) {
            continue;
        }
        if path.is_dir() {
            collect_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|name| name.to_string_lossy().starts_with('.'))
}
