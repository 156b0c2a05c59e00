//! `strata predict RUN IMAGE…`: class probabilities per image with a trained model. `RUN` is a
//! run folder (its `best.safetensors`, else `last.safetensors`) or a checkpoint file; a folder
//! among the images means every image file in it. Human output is one line per image with the
//! top classes; `--format json` prints one `{"path","class","probabilities"}` object per line.

use super::output::{check_memory, outln, shown, DiagnosticPrinter, OutputFormat};
use super::{EXIT_ERROR, EXIT_OK, EXIT_USAGE};
use crate::diagnostics::SourceFile;
use crate::infer::trained::RUN_CHECKPOINTS;
use crate::infer::{errors, image_files, predict_files, LoadError, Prediction, Trained};
use crate::text::escape_control;
use crate::train::memory::Pass;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Options of `strata predict`.
#[derive(Debug)]
pub struct PredictArgs<'a> {
    /// A run folder or a checkpoint file.
    pub run: &'a Path,
    /// Image files and folders.
    pub images: &'a [PathBuf],
    /// Images per forward pass (the spec's batch size unless given).
    pub batch_size: Option<usize>,
    /// Classes shown per image in human output.
    pub top: usize,
}

/// Runs the command; returns the exit status.
pub fn run(args: &PredictArgs<'_>, format: OutputFormat) -> u8 {
    let mut printer = DiagnosticPrinter::new(format);
    let mut trained = match load_trained(args.run, &mut printer) {
        Ok(trained) => trained,
        Err(code) => return code,
    };
    let files = image_files(args.images);
    if files.is_empty() {
        eprintln!("error: no image files found in the given folders");
        return EXIT_ERROR;
    }
    let source = SourceFile::new(args.run.display().to_string(), "");
    let batch_size = match inference_batch(
        &trained,
        args.batch_size,
        files.len(),
        &mut printer,
        &source,
    ) {
        Ok(batch_size) => batch_size,
        Err(code) => return code,
    };
    let result = predict_files(&mut trained, &files, batch_size);
    if !result.skipped.is_empty() {
        printer.print(&[errors::skipped_images(&result.skipped)], &source);
    }
    let width = result
        .predictions
        .iter()
        .map(|p| shown(&p.path).chars().count())
        .max()
        .unwrap_or(0);
    for prediction in &result.predictions {
        match format {
            OutputFormat::Json => outln!("{}", json_line(prediction, &trained.classes)),
            _ => outln!(
                "{}",
                human_line(prediction, &trained.classes, width, args.top)
            ),
        }
    }
    if result.predictions.is_empty() {
        eprintln!("error: none of the {} file(s) could be read", files.len());
        EXIT_ERROR
    } else {
        EXIT_OK
    }
}

/// The images per forward pass of `predict` and `evaluate`: `--batch-size`, else the spec's;
/// `Err` with the exit status when an inference pass on that many of the `images` cannot fit
/// in memory (the memory check's warning, when it may not, is printed).
pub(super) fn inference_batch(
    trained: &Trained,
    flag: Option<usize>,
    images: usize,
    printer: &mut DiagnosticPrinter,
    source: &SourceFile,
) -> Result<usize, u8> {
    let batch_size = flag.unwrap_or(trained.model.train.batch_size as usize);
    let batch = batch_size.clamp(1, images.max(1));
    check_memory(&trained.model, batch, Pass::Inference, printer, source)?;
    Ok(batch_size)
}

/// Loads the model of `run`; prints what went wrong and returns the exit status otherwise:
/// 1 when the embedded spec no longer compiles or the weights are not finite
/// (`strata::model::non_finite_weights`), 2 for a missing, unreadable or corrupt checkpoint.
pub(super) fn load_trained(run: &Path, printer: &mut DiagnosticPrinter) -> Result<Trained, u8> {
    match Trained::load(run) {
        Ok(trained) => Ok(trained),
        Err(LoadError::NonFinite(path, tensors)) => {
            let source = SourceFile::new(path.display().to_string(), "");
            printer.print(&[errors::non_finite_weights(&path, &tensors)], &source);
            Err(EXIT_ERROR)
        }
        Err(LoadError::Spec {
            source,
            diagnostics,
        }) => {
            printer.print(&diagnostics, &source);
            eprintln!(
                "error: the spec inside `{}` no longer compiles",
                run.display()
            );
            Err(EXIT_ERROR)
        }
        Err(err) => {
            eprintln!("error: {}", escape_control(&err.to_string()));
            if let LoadError::Checkpoint(failed, _) = &err {
                let others = RUN_CHECKPOINTS
                    .iter()
                    .map(|name| run.join(name))
                    .filter(|other| run.is_dir() && other != failed && other.is_file());
                for other in others {
                    eprintln!(
                        "help: this run's other checkpoint `{}` may still be readable: give it \
                         as RUN",
                        shown(&other)
                    );
                }
            }
            Err(EXIT_USAGE)
        }
    }
}

/// `path  class 97.3%  (other 2.1%, third 0.6%)`, control characters in the path and the class
/// names escaped.
fn human_line(prediction: &Prediction, classes: &[String], width: usize, top: usize) -> String {
    let name = |class: usize| escape_control(classes.get(class).map_or("?", String::as_str));
    let ranked = prediction.top(top.max(1));
    let mut line = format!("{:<width$}", shown(&prediction.path));
    if let Some((class, p)) = ranked.first() {
        line.push_str(&format!("  {} {:.1}%", name(*class), p * 100.0));
    }
    let others: Vec<String> = ranked
        .iter()
        .skip(1)
        .map(|(class, p)| format!("{} {:.1}%", name(*class), p * 100.0))
        .collect();
    if !others.is_empty() {
        line.push_str(&format!("  ({})", others.join(", ")));
    }
    line
}

/// One JSON object (docs/commands.md), classes in output order.
fn json_line(prediction: &Prediction, classes: &[String]) -> String {
    let json = PredictionJson {
        path: prediction.path.display().to_string(),
        class: classes.get(prediction.class()).map_or("", String::as_str),
        probabilities: ClassProbabilities(classes, &prediction.probabilities),
    };
    serde_json::to_string(&json).unwrap_or_default()
}

/// The JSON of one prediction.
#[derive(Serialize)]
struct PredictionJson<'a> {
    path: String,
    class: &'a str,
    probabilities: ClassProbabilities<'a>,
}

/// Class names with their probabilities, serialised as a map in class order.
struct ClassProbabilities<'a>(&'a [String], &'a [f32]);

impl Serialize for ClassProbabilities<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (class, p) in self.0.iter().zip(self.1) {
            map.serialize_entry(class, p)?;
        }
        map.end()
    }
}
