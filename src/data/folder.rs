//! Image folders as Keras's `flow_from_directory` reads them: one subfolder per class, classes
//! sorted by name, files in each class (recursively) sorted by path.
//!
//! Folders that fight back are walked safely: each directory is entered once (by device and
//! inode), so a symlink loop ends and counts its files once; class names must be valid UTF-8,
//! so two folders whose names differ only in invalid bytes never merge into one class.

use super::errors;
use crate::diagnostics::Diagnostic;
use std::collections::HashSet;
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
    let mut class_dirs: Vec<(String, PathBuf)> = Vec::new();
    let mut not_utf8: Vec<PathBuf> = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if is_hidden(&path) || !path.is_dir() {
            continue;
        }
        match entry.file_name().into_string() {
            Ok(name) => class_dirs.push((name, path)),
            Err(_) => not_utf8.push(path),
        }
    }
    if !not_utf8.is_empty() {
        not_utf8.sort();
        return Err(errors::class_name_not_utf8(dir, &not_utf8));
    }
    class_dirs.sort();
    if class_dirs.is_empty() {
        return Err(errors::no_classes(dir));
    }
    let mut files = Vec::with_capacity(class_dirs.len());
    for (name, path) in &class_dirs {
        let class_files = walk_files(path);
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

/// Every non-directory entry under `dir`, recursively, sorted; hidden entries are skipped.
/// Symlinks are followed, but each directory is entered once (identified by device and inode),
/// so a symlink loop, or two links to one folder, list each file once and the walk ends.
/// Entries that are not regular files (FIFOs, devices, dangling links) are listed too: reading
/// them fails with a reason ([`super::image::read_file`]), which the scan reports.
pub fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut visited = HashSet::new();
    walk(dir, &mut visited, &mut out);
    out.sort();
    out
}

fn walk(dir: &Path, visited: &mut HashSet<DirId>, out: &mut Vec<PathBuf>) {
    let Some(id) = dir_id(dir) else {
        return;
    };
    if !visited.insert(id) {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if is_hidden(&path) {
            continue;
        }
        // `metadata` follows symlinks; a link loop or a dangling link is an error here and
        // is listed as a file, to be reported as unreadable.
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => walk(&path, visited, out),
            _ => out.push(path),
        }
    }
}

/// What identifies a directory however it is reached.
#[cfg(unix)]
type DirId = (u64, u64);
#[cfg(not(unix))]
type DirId = PathBuf;

#[cfg(unix)]
fn dir_id(dir: &Path) -> Option<DirId> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir).ok()?;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn dir_id(dir: &Path) -> Option<DirId> {
    std::fs::canonicalize(dir).ok()
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|name| name.to_string_lossy().starts_with('.'))
}
