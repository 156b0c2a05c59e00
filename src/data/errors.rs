//! The `strata::data::…` diagnostics. Data problems have no spec characters to point at,
//! except the class count, which points at the model's last dense layer.

use super::check::FolderReport;
use super::folder::ImageFolder;
use super::image::ImageProblem;
use crate::diagnostics::{codes, Diagnostic};
use crate::ir::{Layer, Op};
use std::path::{Path, PathBuf};

/// The folder does not exist or cannot be listed.
pub fn missing_folder(dir: &Path, err: &std::io::Error) -> Diagnostic {
    Diagnostic::error(
        codes::DATA_MISSING_FOLDER,
        format!("cannot read the image folder `{}`", dir.display()),
    )
    .with_note(err.to_string())
    .with_help("give a folder with one subfolder per class, e.g. `--data path/to/images`")
}

/// The folder has no class subfolders.
pub fn no_classes(dir: &Path) -> Diagnostic {
    Diagnostic::error(
        codes::DATA_NO_CLASSES,
        format!("`{}` has no class folders", dir.display()),
    )
    .with_help(format!(
        "put the images in one subfolder per class: `{0}/cats/…`, `{0}/dogs/…`",
        dir.display()
    ))
}

/// A class folder has no files.
pub fn empty_class(dir: &Path, class: &str) -> Diagnostic {
    Diagnostic::error(
        codes::DATA_EMPTY_CLASS,
        format!("the class folder `{class}` in `{}` is empty", dir.display()),
    )
    .with_help("add images to it, or remove the folder")
}

/// A class folder has files, but none of them is a readable image: training it would give an
/// output unit that never sees an example.
pub fn unreadable_class(dir: &Path, class: &str, n_files: usize) -> Diagnostic {
    Diagnostic::error(
        codes::DATA_EMPTY_CLASS,
        format!(
            "the class folder `{class}` in `{}` has no readable image",
            dir.display()
        ),
    )
    .with_note(format!("none of its {n_files} file(s) decodes"))
    .with_help(format!(
        "`strata data check {}` lists why each file was skipped; replace them, or remove the folder",
        dir.display()
    ))
}

/// Class folders whose names are not valid UTF-8: they cannot be shown or saved as class
/// names, and two that differ only in invalid bytes would read as one class.
pub fn class_name_not_utf8(dir: &Path, folders: &[PathBuf]) -> Diagnostic {
    let names: Vec<String> = folders
        .iter()
        .map(|path| {
            let name = path.file_name().unwrap_or(path.as_os_str());
            format!("`{}`", name.to_string_lossy())
        })
        .collect();
    Diagnostic::error(
        codes::DATA_CLASS_NAME,
        format!(
            "{} class folder name(s) in `{}` are not valid UTF-8",
            names.len(),
            dir.display()
        ),
    )
    .with_note(format!(
        "with `\u{FFFD}` for each invalid byte: {}",
        names.join(", ")
    ))
    .with_help("rename the folders to valid UTF-8 names; the names become the model's classes")
}

/// Training and validation folders name different classes.
pub fn class_mismatch(train: &ImageFolder, validation: &ImageFolder) -> Diagnostic {
    let only = |a: &ImageFolder, b: &ImageFolder| -> Vec<String> {
        a.classes
            .iter()
            .filter(|class| !b.classes.contains(class))
            .map(|class| format!("`{class}`"))
            .collect()
    };
    let mut diagnostic = Diagnostic::error(
        codes::DATA_CLASS_MISMATCH,
        "training and validation folders have different classes",
    );
    let (train_only, validation_only) = (only(train, validation), only(validation, train));
    if !train_only.is_empty() {
        diagnostic = diagnostic.with_note(format!(
            "only in `{}`: {}",
            train.root.display(),
            train_only.join(", ")
        ));
    }
    if !validation_only.is_empty() {
        diagnostic = diagnostic.with_note(format!(
            "only in `{}`: {}",
            validation.root.display(),
            validation_only.join(", ")
        ));
    }
    diagnostic.with_help("give both folders the same class subfolders")
}

/// The data's class count differs from the model's output units; points at the last dense layer.
pub fn class_count(layers: &[Layer], units: usize, folder: &ImageFolder) -> Diagnostic {
    let n_classes = folder.classes.len();
    let mut diagnostic = Diagnostic::error(
        codes::DATA_CLASS_COUNT,
        format!("the data has {n_classes} classes but the model outputs {units}"),
    );
    if let Some(dense) = layers
        .iter()
        .rev()
        .find(|layer| matches!(layer.op, Op::Dense { .. }))
    {
        diagnostic = diagnostic
            .with_primary(dense.origin.span, format!("{units} units"))
            .with_help(format!(
                "write `dense{n_classes}` for the classes of `{}`",
                folder.root.display()
            ));
    }
    let names: Vec<String> = folder
        .classes
        .iter()
        .map(|class| format!("`{class}`"))
        .collect();
    diagnostic.with_note(format!("classes: {}", names.join(", ")))
}

/// How many skipped files a training run names; `strata data check` names them all.
pub const SKIPPED_SHOWN: usize = 5;

/// One warning for the files of the scanned folders that were skipped: the count, the count of
/// each class that has any, and the first [`SKIPPED_SHOWN`] files with why.
pub fn skipped_summary(reports: &[&FolderReport]) -> Diagnostic {
    let problems: Vec<&(PathBuf, ImageProblem)> =
        reports.iter().flat_map(|report| &report.broken).collect();
    let mut diagnostic = Diagnostic::warning(
        codes::DATA_UNREADABLE_IMAGE,
        format!("{} file(s) skipped: not readable images", problems.len()),
    );
    for report in reports {
        let per_class: Vec<String> = report
            .classes
            .iter()
            .filter(|class| class.files > class.images)
            .map(|class| format!("`{}` {}", class.name, class.files - class.images))
            .collect();
        if !per_class.is_empty() {
            diagnostic = diagnostic.with_note(format!(
                "in `{}`: {}",
                report.root.display(),
                per_class.join(", ")
            ));
        }
    }
    for (path, problem) in problems.iter().take(SKIPPED_SHOWN) {
        diagnostic = diagnostic.with_note(format!("`{}` {problem}", path.display()));
    }
    if problems.len() > SKIPPED_SHOWN {
        let roots: Vec<String> = reports
            .iter()
            .filter(|report| !report.broken.is_empty())
            .map(|report| format!("`strata data check {}`", report.root.display()))
            .collect();
        diagnostic = diagnostic.with_note(format!(
            "and {} more; {} lists them all",
            problems.len() - SKIPPED_SHOWN,
            roots.join(", ")
        ));
    }
    diagnostic.with_help("remove or replace these files; training uses the rest")
}

/// One warning naming every file that was skipped, with the count.
pub fn skipped_images(problems: &[(PathBuf, ImageProblem)]) -> Diagnostic {
    let mut diagnostic = Diagnostic::warning(
        codes::DATA_UNREADABLE_IMAGE,
        format!("{} file(s) skipped: not readable images", problems.len()),
    );
    for (path, problem) in problems {
        diagnostic = diagnostic.with_note(format!("`{}` {problem}", path.display()));
    }
    diagnostic.with_help("remove or replace these files; training uses the rest")
}
