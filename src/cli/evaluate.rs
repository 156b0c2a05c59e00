//! `strata evaluate RUN --data DIR`: loss, accuracy, per-class accuracy and the confusion
//! matrix of a trained model on a folder of class folders. The folder's classes must be the
//! model's (all, or some of them: a warning then names the missing ones).

use super::output::{out, outln, shown, DiagnosticPrinter, OutputFormat};
use super::predict::{inference_batch, load_trained};
use super::{EXIT_ERROR, EXIT_OK};
use crate::data::folder;
use crate::diagnostics::SourceFile;
use crate::infer::evaluate::match_classes;
use crate::infer::{errors, evaluate, Evaluation};
use crate::text::escape_control;
use std::path::Path;

/// Options of `strata evaluate`.
#[derive(Debug)]
pub struct EvaluateArgs<'a> {
    /// A run folder or a checkpoint file.
    pub run: &'a Path,
    /// The folder of class folders.
    pub data: &'a Path,
    /// Images per forward pass (the spec's batch size unless given).
    pub batch_size: Option<usize>,
}

/// Runs the command; returns the exit status.
pub fn run(args: &EvaluateArgs<'_>, format: OutputFormat) -> u8 {
    let mut printer = DiagnosticPrinter::new(format);
    let mut trained = match load_trained(args.run, &mut printer) {
        Ok(trained) => trained,
        Err(code) => return code,
    };
    let source = SourceFile::new(args.data.display().to_string(), "");
    let found = match folder::scan(args.data) {
        Ok(found) => found,
        Err(diagnostic) => {
            printer.print(&[diagnostic], &source);
            return EXIT_ERROR;
        }
    };
    let labels = match match_classes(&found, &trained.classes) {
        Ok((labels, warning)) => {
            printer.print(warning.as_slice(), &source);
            labels
        }
        Err(diagnostic) => {
            printer.print(&[diagnostic], &source);
            return EXIT_ERROR;
        }
    };
    let batch_size = match inference_batch(
        &trained,
        args.batch_size,
        found.len(),
        &mut printer,
        &source,
    ) {
        Ok(batch_size) => batch_size,
        Err(code) => return code,
    };
    let result = evaluate(&mut trained, &found, &labels, batch_size);
    if !result.skipped.is_empty() {
        printer.print(&[errors::skipped_images(&result.skipped)], &source);
    }
    if result.count == 0 {
        eprintln!(
            "error: none of the images in `{}` could be read",
            shown(args.data)
        );
        return EXIT_ERROR;
    }
    match format {
        OutputFormat::Json => outln!("{}", json(&result)),
        _ => out!("{}", render(&result, args, &trained.path)),
    }
    EXIT_OK
}

/// `{"loss","accuracy","count","classes","per_class_accuracy","confusion_matrix"}`.
fn json(result: &Evaluation) -> serde_json::Value {
    let per_class: serde_json::Map<String, serde_json::Value> = result
        .classes
        .iter()
        .zip(result.per_class_accuracy())
        .map(|(class, accuracy)| (class.clone(), serde_json::json!(accuracy)))
        .collect();
    serde_json::json!({
        "loss": result.loss,
        "accuracy": result.accuracy(),
        "count": result.count,
        "classes": result.classes,
        "per_class_accuracy": per_class,
        "confusion_matrix": result.confusion,
    })
}

/// The human report: totals, a per-class table and the confusion matrix, control characters
/// in class names and paths escaped.
fn render(result: &Evaluation, args: &EvaluateArgs<'_>, checkpoint: &Path) -> String {
    let mut out = format!(
        "`{}` on `{}`: {} images\n  loss      {:.4}\n  accuracy  {:.2}% ({} of {})\n\n",
        shown(checkpoint),
        shown(args.data),
        result.count,
        result.loss,
        result.accuracy() * 100.0,
        result.correct,
        result.count
    );
    let names: Vec<String> = result
        .classes
        .iter()
        .map(|class| escape_control(class).into_owned())
        .collect();
    let name_width = names
        .iter()
        .map(|class| class.chars().count())
        .chain([5])
        .max()
        .unwrap_or(5);
    out.push_str(&format!("  {:<name_width$}  images  accuracy\n", "class"));
    for ((class, row), accuracy) in names
        .iter()
        .zip(&result.confusion)
        .zip(result.per_class_accuracy())
    {
        let accuracy = accuracy.map_or("-".to_string(), |a| format!("{:.2}%", a * 100.0));
        let images: usize = row.iter().sum();
        out.push_str(&format!(
            "  {class:<name_width$}  {images:>6}  {accuracy:>8}\n"
        ));
    }
    out.push_str("\nconfusion matrix (rows: true class, columns: predicted class)\n");
    out.push_str(&confusion_table(result, &names, name_width));
    out
}

/// The confusion matrix with class names (`names`, escaped) on both axes, columns as wide as
/// their names.
fn confusion_table(result: &Evaluation, names: &[String], name_width: usize) -> String {
    let widths: Vec<usize> = names
        .iter()
        .enumerate()
        .map(|(col, class)| {
            let widest = result
                .confusion
                .iter()
                .map(|row| row.get(col).copied().unwrap_or(0).to_string().len())
                .max()
                .unwrap_or(1);
            class.chars().count().max(widest)
        })
        .collect();
    let mut out = format!("  {:<name_width$}", "");
    for (class, width) in names.iter().zip(&widths) {
        out.push_str(&format!("  {class:>width$}"));
    }
    out.push('\n');
    for (class, row) in names.iter().zip(&result.confusion) {
        out.push_str(&format!("  {class:<name_width$}"));
        for (count, width) in row.iter().zip(&widths) {
            out.push_str(&format!("  {count:>width$}"));
        }
        out.push('\n');
    }
    out
}
