//! The diagnostics of inference: an evaluation folder whose classes differ from the model's,
//! and unreadable images, which reuse the `strata::data::…` codes, and a checkpoint whose
//! weights are not finite (`strata::model::non_finite_weights`). Data and checkpoint problems
//! have no spec characters to point at.

use crate::backend::checkpoint::NonFinite;
use crate::data::errors as data_errors;
use crate::data::{ImageFolder, ImageProblem};
use crate::diagnostics::{codes, Diagnostic};
use std::path::{Path, PathBuf};

/// Error: the folder has class folders the model has no output for.
pub fn unknown_classes(folder: &ImageFolder, model_classes: &[String]) -> Diagnostic {
    let unknown: Vec<&String> = folder
        .classes
        .iter()
        .filter(|class| !model_classes.contains(class))
        .collect();
    Diagnostic::error(
        codes::DATA_CLASS_MISMATCH,
        format!(
            "`{}` has {} class folder(s) the model was not trained on",
            folder.root.display(),
            unknown.len()
        ),
    )
    .with_note(format!(
        "only in `{}`: {}",
        folder.root.display(),
        quoted(&unknown)
    ))
    .with_note(format!(
        "the model's classes: {}",
        quoted(&model_classes.iter().collect::<Vec<_>>())
    ))
    .with_help("evaluate on a folder whose subfolders are the model's classes (or some of them)")
}

/// Warning: the folder has only some of the model's classes; evaluation goes on with those.
pub fn missing_classes(folder: &ImageFolder, model_classes: &[String]) -> Diagnostic {
    let missing: Vec<&String> = model_classes
        .iter()
        .filter(|class| !folder.classes.contains(class))
        .collect();
    Diagnostic::warning(
        codes::DATA_CLASS_MISMATCH,
        format!(
            "`{}` has {} of the model's {} classes",
            folder.root.display(),
            folder.classes.len(),
            model_classes.len()
        ),
    )
    .with_note(format!("no folder for: {}", quoted(&missing)))
    .with_help("their rows of the confusion matrix are empty and their accuracy is left out")
}

/// Warning: one line per file that was skipped.
pub fn skipped_images(problems: &[(PathBuf, ImageProblem)]) -> Diagnostic {
    data_errors::skipped_images(problems)
        .with_help("remove or replace these files; the other images are still used")
}

/// Error: the checkpoint at `path` has model parameters that are NaN or infinite (`tensors`,
/// in layer order, not empty).
pub fn non_finite_weights(path: &Path, tensors: &[NonFinite]) -> Diagnostic {
    let first = tensors.first();
    let name = first.map_or("?", |tensor| tensor.name.as_str());
    let mut diagnostic = Diagnostic::error(
        codes::MODEL_NON_FINITE_WEIGHTS,
        format!(
            "`{name}` in `{}` holds NaN or infinite values",
            path.display()
        ),
    );
    if let Some(first) = first {
        diagnostic = diagnostic.with_note(format!(
            "{} of its {} values are not finite; the first, at index {}, is {}",
            first.count, first.len, first.first_index, first.first_value
        ));
    }
    if tensors.len() > 1 {
        let others: Vec<String> = tensors
            .iter()
            .skip(1)
            .take(5)
            .map(|tensor| format!("`{}` ({} of {})", tensor.name, tensor.count, tensor.len))
            .collect();
        let more = tensors.len().saturating_sub(6);
        let tail = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        diagnostic = diagnostic.with_note(format!("also: {}{tail}", others.join(", ")));
    }
    diagnostic.with_help(
        "training diverged before this checkpoint was saved; predictions from it would all be \
         NaN: train again with a lower `lr`, or use a checkpoint saved before it diverged",
    )
}

fn quoted(names: &[&String]) -> String {
    names
        .iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
