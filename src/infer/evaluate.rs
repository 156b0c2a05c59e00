//! Metrics of a trained model on a folder of class folders: mean cross-entropy, accuracy,
//! per-class accuracy and the confusion matrix. Images are decoded by the data loader (in
//! parallel, a few batches ahead) and forwarded in inference mode.

use super::errors;
use super::trained::Trained;
use crate::data::loader::Loader;
use crate::data::{ImageFolder, ImageProblem};
use crate::diagnostics::Diagnostic;
use std::path::PathBuf;

/// The metrics of one evaluation.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    /// Class names in the model's output order; the confusion matrix's rows and columns.
    pub classes: Vec<String>,
    /// Images evaluated (readable ones).
    pub count: usize,
    /// Images whose most likely class is their folder's class.
    pub correct: usize,
    /// Mean categorical cross-entropy.
    pub loss: f64,
    /// `confusion[true][predicted]`: image counts.
    pub confusion: Vec<Vec<usize>>,
    /// Files that could not be used, with why.
    pub skipped: Vec<(PathBuf, ImageProblem)>,
}

impl Evaluation {
    /// Fraction classified right (0 without images).
    pub fn accuracy(&self) -> f64 {
        ratio(self.correct, self.count)
    }

    /// For each class, the fraction of its images classified right; `None` for a class without
    /// images.
    pub fn per_class_accuracy(&self) -> Vec<Option<f64>> {
        self.confusion
            .iter()
            .enumerate()
            .map(|(class, row)| {
                let n: usize = row.iter().sum();
                (n > 0).then(|| ratio(row[class], n))
            })
            .collect()
    }
}

/// For each class folder of `folder`, the model's output index. An error when the folder has a
/// class the model lacks; a warning (second value) when it has only some of the model's.
pub fn match_classes(
    folder: &ImageFolder,
    model_classes: &[String],
) -> Result<(Vec<usize>, Option<Diagnostic>), Diagnostic> {
    let labels: Option<Vec<usize>> = folder
        .classes
        .iter()
        .map(|class| model_classes.iter().position(|known| known == class))
        .collect();
    let Some(labels) = labels else {
        return Err(errors::unknown_classes(folder, model_classes));
    };
    let warning = (labels.len() < model_classes.len())
        .then(|| errors::missing_classes(folder, model_classes));
    Ok((labels, warning))
}

/// Evaluates `trained` on `folder`; `labels` maps the folder's classes to model outputs
/// ([`match_classes`]).
pub fn evaluate(
    trained: &mut Trained,
    folder: &ImageFolder,
    labels: &[usize],
    batch_size: usize,
) -> Evaluation {
    let n_classes = trained.classes.len();
    let samples: Vec<(PathBuf, usize)> = folder
        .samples()
        .into_iter()
        .filter_map(|(path, class)| labels.get(class).map(|label| (path, *label)))
        .collect();
    let loader = Loader::new(samples, trained.image_spec(), 0);
    let mut result = Evaluation {
        classes: trained.classes.clone(),
        count: 0,
        correct: 0,
        loss: 0.0,
        confusion: vec![vec![0; n_classes]; n_classes],
        skipped: Vec::new(),
    };
    let mut loss_sum = 0.0;
    for batch in loader.batches(loader.order(0, 0, false), batch_size.max(1)) {
        result.skipped.extend(batch.skipped);
        if batch.labels.is_empty() {
            continue;
        }
        let probabilities = trained.network.predict(batch.images, batch.labels.len());
        for (row, &label) in probabilities.iter().zip(&batch.labels) {
            let predicted = argmax(row);
            result.count += 1;
            result.correct += usize::from(predicted == label);
            if let Some(cell) = result
                .confusion
                .get_mut(label)
                .and_then(|cells| cells.get_mut(predicted))
            {
                *cell += 1;
            }
            loss_sum += cross_entropy(row, label);
        }
    }
    result.loss = if result.count > 0 {
        loss_sum / result.count as f64
    } else {
        0.0
    };
    result
}

/// `-ln p[label]`, with `p` floored at the smallest normal `f32` so that a probability that
/// underflowed to 0 gives a large, finite loss (about 87) rather than infinity.
fn cross_entropy(probabilities: &[f32], label: usize) -> f64 {
    let p = probabilities.get(label).copied().unwrap_or(0.0);
    -f64::from(p.max(f32::MIN_POSITIVE)).ln()
}

/// The index of the largest value (the first on a tie), as `Network::evaluate` counts.
fn argmax(values: &[f32]) -> usize {
    let mut best = (0, f32::NEG_INFINITY);
    for (idx, value) in values.iter().enumerate() {
        if *value > best.1 {
            best = (idx, *value);
        }
    }
    best.0
}

fn ratio(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}
