//! The command line: clap definitions and dispatch. Each command lives in its own file and
//! stays thin: it reads files, calls the library and prints.

mod bench;
mod check;
mod data;
mod evaluate;
mod explain;
mod export;
mod layers;
mod lsp;
mod output;
mod predict;
mod preview;
mod schema;
mod summary;
mod train;

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

pub use output::{DiagnosticPrinter, OutputFormat};

/// strata: check, summarise and train layer-stack model specs.
#[derive(Debug, Parser)]
#[command(name = "strata", version, about, long_about = None)]
pub struct Cli {
    /// Output format: `human` (default), `json` (JSON lines / objects on stdout) or `github`
    /// (workflow annotations); `onnx` is the file `strata export` writes (its default).
    #[arg(long, global = true, value_enum, default_value_t = FormatArg::Human)]
    pub format: FormatArg,

    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// `--format` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// Rendered for people: fancy on a terminal, plain when piped.
    Human,
    /// Machine-readable JSON.
    Json,
    /// GitHub Actions workflow annotations.
    Github,
    /// The file format of `strata export` (its default); other commands refuse it.
    Onnx,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check spec files and print their diagnostics; exit 1 on any error.
    Check {
        /// Spec files to check.
        #[arg(required = true)]
        specs: Vec<PathBuf>,
        /// Treat warnings as errors (exit 1 when any is reported).
        #[arg(long)]
        deny_warnings: bool,
    },
    /// Print the Keras-style summary of a spec: layers, output shapes, parameters.
    Summary {
        /// The spec file.
        spec: PathBuf,
    },
    /// Run the language server on stdin and stdout (for editors).
    Lsp,
    /// Print the JSON Schema of the spec file (for yaml-language-server).
    Schema,
    /// List every layer, merge and activation: aliases, shorthand, arguments and defaults,
    /// Keras class, parameter rule.
    Layers,
    /// Explain a diagnostic code (`strata explain layer::unknown`); without one, list them.
    Explain {
        /// The code, with or without `strata::`, with `::` or `.`.
        code: Option<String>,
    },
    /// Draw a labelled grid of sample images after preprocessing.
    Preview {
        /// A spec (its training folder, converted as the model sees it) or an image folder.
        target: PathBuf,
        /// The PNG to write.
        #[arg(long, default_value = "grid.png")]
        out: PathBuf,
        /// Image folder to use instead of the spec's `data` section.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Rows of the grid (at most 100).
        #[arg(long, default_value_t = 2, value_parser = one_to(preview::MAX_GRID_SIDE))]
        rows: usize,
        /// Columns of the grid (at most 100; rows x columns at most 1,000).
        #[arg(long, default_value_t = 5, value_parser = one_to(preview::MAX_GRID_SIDE))]
        columns: usize,
        /// Show the spec's `augment:` section: each row one training image, as the model sees
        /// it and then as epochs 1, 2, … of training augment it.
        #[arg(long)]
        augmented: bool,
    },
    /// Train a spec on its image folders; writes a run folder (checkpoints, history, curves).
    Train {
        /// The spec file (not needed with `--resume`).
        #[arg(required_unless_present = "resume")]
        spec: Option<PathBuf>,
        /// Continue an interrupted run from its last finished epoch, with the settings it
        /// started with (only `--epochs`, `--cache-mb` and output flags go with it).
        #[arg(long, value_name = "RUN")]
        resume: Option<PathBuf>,
        /// Image folder: `DIR/train` and `DIR/validation` when `DIR/train` exists, else `DIR`.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Number of epochs (with `--resume`: the new total).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        epochs: Option<u64>,
        /// Images per batch.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        batch_size: Option<u64>,
        /// Learning rate (positive).
        #[arg(long, value_parser = positive_number)]
        lr: Option<f64>,
        /// Seed for shuffling, initialisation and dropout.
        #[arg(long)]
        seed: Option<u64>,
        /// The run folder (default `runs/<name>/<YYYYmmdd-HHMMSS>`): new or empty; a run
        /// folder belongs to one run.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Replace the earlier run in `--out` (its files only: strata never deletes files it
        /// did not write).
        #[arg(long)]
        force: bool,
        /// Memory for decoded images kept between epochs, in MiB (default: the spec's
        /// `data.cache_mb`, else a quarter of the memory available).
        #[arg(long)]
        cache_mb: Option<u64>,
        /// Print nothing but errors.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Training and inference throughput (images/s) on synthetic input of the spec's shape.
    Bench {
        /// The spec file.
        spec: PathBuf,
        /// Images per batch (default: the spec's `train.batch_size`).
        #[arg(long, value_parser = at_least_one())]
        batch_size: Option<usize>,
        /// Steps per timed repeat (at least 1).
        #[arg(long, default_value_t = 20, value_parser = at_least_one())]
        steps: usize,
        /// Timed repeats, 1 to 1,000; the median is reported.
        #[arg(long, default_value_t = 3, value_parser = one_to(MAX_REPEATS))]
        repeats: usize,
        /// Untimed warm-up steps (0 for none).
        #[arg(long, default_value_t = 5)]
        warmup: usize,
        /// Also print where the time went: total milliseconds per op, forward and backward.
        #[arg(long)]
        profile: bool,
        /// Also time `predict` on one image at a time: the median and 90th percentile of 100
        /// calls (after 10 untimed ones), the model loaded once.
        #[arg(long)]
        latency: bool,
    },
    /// Class probabilities of images with a trained model.
    Predict {
        /// A training run folder (its `best.safetensors`, else `last.safetensors`) or a
        /// checkpoint file.
        run: PathBuf,
        /// Image files, or folders (every image file in them, recursively).
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// Images per forward pass (default: the spec's `train.batch_size`).
        #[arg(long, value_parser = at_least_one())]
        batch_size: Option<usize>,
        /// Classes shown per image in human output, most likely first.
        #[arg(long, default_value_t = 3)]
        top: usize,
    },
    /// Loss, accuracy, per-class accuracy and confusion matrix of a trained model on a folder.
    Evaluate {
        /// A training run folder (its `best.safetensors`, else `last.safetensors`) or a
        /// checkpoint file.
        run: PathBuf,
        /// A folder with one subfolder per class (the model's classes, or some of them).
        #[arg(long)]
        data: PathBuf,
        /// Images per forward pass (default: the spec's `train.batch_size`).
        #[arg(long, value_parser = at_least_one())]
        batch_size: Option<usize>,
    },
    /// Export a trained model as an ONNX file (opset 17) that outputs the class probabilities.
    Export {
        /// A training run folder (its `best.safetensors`, else `last.safetensors`) or a
        /// checkpoint file.
        run: PathBuf,
        /// The file to write (`model.onnx`); written atomically.
        #[arg(long)]
        out: PathBuf,
        /// Take `uint8` pixels and rescale them in the graph, instead of `float32` values
        /// already rescaled as the spec's `data.rescale` says.
        #[arg(long)]
        raw_input: bool,
    },
    /// Image folder tools.
    Data {
        /// What to do with the folder.
        #[command(subcommand)]
        command: DataCommand,
    },
}

/// `strata data …` commands.
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Scan an image folder (one subfolder per class, or `train/` and `validation/` inside):
    /// per-class counts, broken files, colour modes, size range.
    Check {
        /// The folder.
        dir: PathBuf,
    },
    /// Decode + resize throughput (images/s) of an image folder at a model's input size, the
    /// way training's first epoch reads it (no cache).
    Bench {
        /// The folder (one subfolder per class).
        dir: PathBuf,
        /// Take the input size, channels and rescale from this spec.
        #[arg(long, conflicts_with = "size")]
        spec: Option<PathBuf>,
        /// The input size, `HxW` (3 channels) or `HxWxC` (default 224x224x3).
        #[arg(long)]
        size: Option<String>,
        /// Images per batch (at least 1).
        #[arg(long, default_value_t = 32, value_parser = at_least_one())]
        batch_size: usize,
        /// Timed passes over the folder, 1 to 1,000; the median is reported.
        #[arg(long, default_value_t = 3, value_parser = one_to(MAX_REPEATS))]
        repeats: usize,
    },
}

/// The most timed repeats `bench` and `data bench` run (each keeps its rate).
const MAX_REPEATS: usize = 1000;

/// A whole number of at least 1 (a count of steps or images): 0 is a usage error that says so.
fn at_least_one() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
}

/// A whole number from 1 to `max` (repeats, grid rows and columns): a usage error that says
/// the range otherwise.
fn one_to(max: usize) -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..=max as u64)
}

/// Parses a positive, finite number (`--lr`).
fn positive_number(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value > 0.0 && value.is_finite() => Ok(value),
        _ => Err(format!("`{text}` is not a positive number")),
    }
}

/// Exit status: success.
pub const EXIT_OK: u8 = 0;
/// Exit status: a spec or data error was reported.
pub const EXIT_ERROR: u8 = 1;
/// Exit status: usage or I/O error.
pub const EXIT_USAGE: u8 = 2;

/// Parses the arguments and runs the command.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let code = if err.use_stderr() {
                EXIT_USAGE
            } else {
                EXIT_OK
            };
            let _ = err.print();
            return ExitCode::from(code);
        }
    };
    ExitCode::from(run(cli))
}

/// Runs a parsed command line; returns the exit status.
pub fn run(cli: Cli) -> u8 {
    if cli.format == FormatArg::Onnx && !matches!(cli.command, Command::Export { .. }) {
        eprintln!("error: `--format onnx` is the file format of `strata export` only");
        return EXIT_USAGE;
    }
    let format = OutputFormat::from_arg(cli.format);
    let status = match cli.command {
        Command::Check {
            specs,
            deny_warnings,
        } => check::run(&specs, format, deny_warnings),
        Command::Summary { spec } => summary::run(&spec, format),
        Command::Train {
            spec,
            resume,
            data,
            epochs,
            batch_size,
            lr,
            seed,
            out,
            force,
            cache_mb,
            quiet,
        } => {
            let request = crate::train::TrainRequest {
                spec,
                resume,
                data,
                epochs,
                batch_size,
                lr,
                seed,
                out,
                cache_mb,
                force,
            };
            train::run(&request, quiet, format)
        }
        Command::Bench {
            spec,
            batch_size,
            steps,
            repeats,
            warmup,
            profile,
            latency,
        } => bench::run(
            &spec,
            bench::BenchArgs {
                batch_size,
                steps,
                repeats,
                warmup,
                profile,
                latency,
            },
            format,
        ),
        Command::Data {
            command: DataCommand::Check { dir },
        } => data::check(&dir, format),
        Command::Data {
            command:
                DataCommand::Bench {
                    dir,
                    spec,
                    size,
                    batch_size,
                    repeats,
                },
        } => data::bench(
            &data::BenchArgs {
                dir: &dir,
                spec: spec.as_deref(),
                size: size.as_deref(),
                batch_size,
                repeats,
            },
            format,
        ),
        Command::Preview {
            target,
            out,
            data,
            rows,
            columns,
            augmented,
        } => {
            let args = preview::PreviewArgs {
                target: &target,
                out: &out,
                data: data.as_deref(),
                rows,
                columns,
                augmented,
            };
            preview::run(&args, format)
        }
        Command::Predict {
            run,
            images,
            batch_size,
            top,
        } => {
            let args = predict::PredictArgs {
                run: &run,
                images: &images,
                batch_size,
                top,
            };
            predict::run(&args, format)
        }
        Command::Evaluate {
            run,
            data,
            batch_size,
        } => {
            let args = evaluate::EvaluateArgs {
                run: &run,
                data: &data,
                batch_size,
            };
            evaluate::run(&args, format)
        }
        Command::Export {
            run,
            out,
            raw_input,
        } => {
            let args = export::ExportArgs {
                run: &run,
                out: &out,
                raw_input,
            };
            export::run(&args, format)
        }
        Command::Lsp => lsp::run(),
        Command::Schema => schema::run(),
        Command::Layers => layers::run(format),
        Command::Explain { code } => explain::run(code.as_deref(), format),
    };
    // A command whose output could not be written (`> /dev/full`) did not succeed.
    output::exit_status(status)
}
