//! `strata export RUN --format onnx --out model.onnx [--raw-input]`: a trained model as an ONNX
//! file (docs/export.md). `RUN` is loaded exactly as `predict` loads it, so a checkpoint that
//! does not fit its spec gets the same error; the file is written atomically (a temporary file
//! beside it, then a rename). Human output is one line; `--format json` prints one object.

use super::output::{check_out_file, shown, DiagnosticPrinter, OutputFormat};
use super::predict::load_trained;
use super::{EXIT_ERROR, EXIT_OK, EXIT_USAGE};
use crate::backend::checkpoint::write_atomic;
use crate::backend::params;
use crate::export::{self, OnnxOptions, INPUT_NAME, OPSET, OUTPUT_NAME};
use serde::Serialize;
use std::path::Path;

/// Options of `strata export`.
#[derive(Debug)]
pub struct ExportArgs<'a> {
    /// A run folder or a checkpoint file.
    pub run: &'a Path,
    /// The ONNX file to write.
    pub out: &'a Path,
    /// Whether the graph reads `uint8` pixels and rescales them itself.
    pub raw_input: bool,
}

/// The JSON of `strata export --format json`.
#[derive(Debug, Serialize)]
struct ExportJson<'a> {
    checkpoint: String,
    out: String,
    format: &'static str,
    opset: i64,
    bytes: usize,
    input: InputJson,
    output: &'static str,
    classes: &'a [String],
}

/// The exported graph's input.
#[derive(Debug, Serialize)]
struct InputJson {
    name: &'static str,
    dtype: &'static str,
    /// `[h, w, c]`, without the batch axis (symbolic in the file), as `summary` writes shapes.
    shape: [usize; 3],
    layout: &'static str,
    rescale: f64,
    rescaled_in_graph: bool,
}

/// Runs the command; returns the exit status: 1 when the embedded spec no longer compiles or
/// the model cannot be exported, 2 for a missing or unusable checkpoint and for I/O errors.
pub fn run(args: &ExportArgs<'_>, format: OutputFormat) -> u8 {
    let mut printer = DiagnosticPrinter::new(format);
    let trained = match load_trained(args.run, &mut printer) {
        Ok(trained) => trained,
        Err(code) => return code,
    };
    if let Err(message) = check_out_file(args.out, "model.onnx") {
        eprintln!("error: cannot write `{}`: {message}", shown(args.out));
        return EXIT_USAGE;
    }
    let tensors = params::to_tensors(&trained.model, &trained.network.params);
    let options = OnnxOptions {
        raw_input: args.raw_input,
    };
    let bytes = match export::to_onnx(&trained.model, &tensors, &trained.classes, options) {
        Ok(bytes) => bytes,
        Err(err) => {
            eprintln!("error: cannot export `{}`: {err}", trained.path.display());
            return EXIT_ERROR;
        }
    };
    if let Err(err) = write_atomic(args.out, &bytes) {
        eprintln!("error: cannot write `{}`: {err}", args.out.display());
        return EXIT_USAGE;
    }
    let (h, w, c) = trained.model.input.hwc();
    let input = InputJson {
        name: INPUT_NAME,
        dtype: if args.raw_input { "uint8" } else { "float32" },
        shape: [h, w, c],
        layout: "NHWC",
        rescale: trained.model.data.rescale,
        rescaled_in_graph: args.raw_input,
    };
    match format {
        OutputFormat::Json => {
            let json = ExportJson {
                checkpoint: trained.path.display().to_string(),
                out: args.out.display().to_string(),
                format: "onnx",
                opset: OPSET,
                bytes: bytes.len(),
                input,
                output: OUTPUT_NAME,
                classes: &trained.classes,
            };
            println!("{}", serde_json::to_string(&json).unwrap_or_default());
        }
        OutputFormat::Human { .. } | OutputFormat::Github => println!(
            "exported `{}` to `{}`: ONNX opset {OPSET}, {} bytes; input `{INPUT_NAME}` {} [N, {h}, {w}, {c}] (NHWC{}), output `{OUTPUT_NAME}` [N, {}]",
            trained.path.display(),
            args.out.display(),
            bytes.len(),
            input.dtype,
            if args.raw_input {
                format!(", rescaled by {} in the graph", input.rescale)
            } else {
                format!(", pixels times {}", input.rescale)
            },
            trained.classes.len()
        ),
    }
    EXIT_OK
}
