//! `strata bench SPEC [--batch-size N] [--steps N]`: training and inference throughput in
//! images/s on synthetic input of the spec's shape (docs/commands.md). Warm-up steps first, then
//! the median of several timed repeats.

use super::output::{check_memory, file_stem, outln, read_spec, DiagnosticPrinter, OutputFormat};
use super::{EXIT_ERROR, EXIT_OK, EXIT_USAGE};
use crate::backend::network::Network;
use crate::backend::ops::profile;
use crate::backend::optimizer::Optimizer;
use crate::compile::compile;
use crate::text::escape_control;
use crate::train::memory::Pass;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

/// The JSON of `strata bench --format json`.
#[derive(Debug, Serialize)]
pub struct BenchJson {
    /// Training steps (forward, backward, update) per second, times the batch size.
    pub train_images_per_s: f64,
    /// Inference forward passes per second, times the batch size.
    pub infer_images_per_s: f64,
    /// Images per batch.
    pub batch_size: usize,
    /// Worker threads.
    pub threads: usize,
    /// The machine's read bandwidth on the batch's own bytes: a parallel streaming sum over
    /// one input batch, in GB/s (median of the timed repeats).
    pub read_gb_per_s: f64,
    /// Images/s a pass that only reads each input image once could reach at that bandwidth:
    /// the ceiling of a memory-bound model's inference.
    pub read_limit_images_per_s: f64,
    /// With `--latency`: milliseconds of `predict` on one image, median and 90th percentile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<Latency>,
}

/// Single-image `predict` times, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Latency {
    /// Median of the timed calls.
    pub median: f64,
    /// 90th percentile.
    pub p90: f64,
    /// Timed calls.
    pub calls: usize,
}

/// Options of `strata bench` (clap keeps `steps` and `repeats` at least 1, `repeats` at most
/// 1,000).
#[derive(Debug, Clone, Copy)]
pub struct BenchArgs {
    /// Batch size (the spec's unless given).
    pub batch_size: Option<usize>,
    /// Steps per timed repeat.
    pub steps: usize,
    /// Timed repeats (the median is reported).
    pub repeats: usize,
    /// Untimed steps first.
    pub warmup: usize,
    /// Print the time per op of the timed training steps.
    pub profile: bool,
    /// Also time single-image `predict` calls.
    pub latency: bool,
}

/// Untimed and timed single-image calls of `--latency`.
const LATENCY_WARMUP: usize = 10;
const LATENCY_CALLS: usize = 100;

/// Runs the command; returns the exit status.
pub fn run(path: &Path, args: BenchArgs, format: OutputFormat) -> u8 {
    let mut printer = DiagnosticPrinter::new(format);
    let source = match read_spec(path, &mut printer) {
        Ok(source) => source,
        Err(code) => return code,
    };
    let compiled = compile(&source.text, &file_stem(path));
    printer.print(&compiled.diagnostics, &source);
    let Some(model) = compiled.model else {
        return EXIT_ERROR;
    };
    let batch = args
        .batch_size
        .unwrap_or(model.train.batch_size as usize)
        .max(1);
    let per_image = model.input.len();
    if let Err(message) = check_batch_bytes(batch, per_image) {
        eprintln!("error: {message}");
        return EXIT_USAGE;
    }
    if let Err(code) = check_memory(&model, batch, Pass::Training, &mut printer, &source) {
        return code;
    }
    let mut network = Network::new(&model, model.train.seed);
    let mut optimizer = Optimizer::new(&model.train);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let images: Vec<f32> = (0..batch * per_image).map(|_| rng.gen::<f32>()).collect();
    let labels: Vec<usize> = (0..batch)
        .map(|_| rng.gen_range(0..model.classes))
        .collect();
    // One input tensor for every training step (clones share its data), and the batch itself
    // for inference (borrowed by each pass), as the peers' benchmarks reuse one batch: the steps
    // time the network, not copying the batch.
    let read_gb_per_s = read_bandwidth(&images, args);
    let batch_bytes = std::mem::size_of_val(images.as_slice()) as f64;
    let one: Vec<f32> = images[..per_image].to_vec();
    let x = network.input_tensor(images.clone(), batch);
    let mut train = || {
        network
            .train_step_on(x.clone(), &labels, &mut optimizer)
            .map(|_| ())
    };
    let train_rate = match timed(&mut train, args, batch) {
        Ok(rate) => rate,
        Err(err) => {
            eprintln!("error: training step failed: {err:?}");
            return EXIT_USAGE;
        }
    };
    if args.profile {
        print_profile("training steps", args);
    }
    let mut network = Network::new(&model, model.train.seed);
    let mut infer = || {
        network.predict_values(&images, batch);
        Ok::<(), std::convert::Infallible>(())
    };
    let infer_rate = timed(&mut infer, args, batch).unwrap_or(0.0);
    if args.profile {
        print_profile("inference", args);
    }
    let latency_ms = args
        .latency
        .then(|| single_image_latency(&mut network, &one));
    let result = BenchJson {
        train_images_per_s: train_rate,
        infer_images_per_s: infer_rate,
        batch_size: batch,
        threads: rayon::current_num_threads(),
        read_gb_per_s,
        read_limit_images_per_s: read_gb_per_s * 1e9 / batch_bytes * batch as f64,
        latency_ms,
    };
    match format {
        OutputFormat::Json => outln!("{}", serde_json::to_string(&result).unwrap_or_default()),
        _ => {
            outln!(
                "{}: train {:.1} images/s, inference {:.1} images/s (batch {}, {} threads; median of {} x {} steps)",
                escape_control(&model.name), result.train_images_per_s, result.infer_images_per_s, batch, result.threads, args.repeats, args.steps
            );
            outln!(
                "read bandwidth on one input batch: {:.1} GB/s, {:.0} images/s read once each; inference at {:.0}% of that",
                result.read_gb_per_s,
                result.read_limit_images_per_s,
                100.0 * result.infer_images_per_s / result.read_limit_images_per_s.max(f64::MIN_POSITIVE)
            );
            if let Some(latency) = result.latency_ms {
                outln!(
                    "predict on one image: median {:.3} ms, p90 {:.3} ms ({} calls)",
                    latency.median,
                    latency.p90,
                    latency.calls
                );
            }
        }
    }
    EXIT_OK
}

/// The most bytes of synthetic input one batch may take: 4 GiB.
const MAX_BATCH_BYTES: u64 = 4 << 30;

/// Refuses a batch whose synthetic input alone (`batch` images of `per_image` `f32` values)
/// would take more than [`MAX_BATCH_BYTES`]; the network's activations take more still.
fn check_batch_bytes(batch: usize, per_image: usize) -> Result<(), String> {
    let bytes = (batch as u64)
        .saturating_mul(per_image as u64)
        .saturating_mul(std::mem::size_of::<f32>() as u64);
    if bytes <= MAX_BATCH_BYTES {
        return Ok(());
    }
    Err(format!(
        "a batch of {batch} images of {per_image} values takes {} MiB of input alone; the \
         limit is {} MiB: give a smaller `--batch-size`",
        bytes >> 20,
        MAX_BATCH_BYTES >> 20
    ))
}

/// GB/s of a parallel streaming sum over `values` (on the bench's threads), the median of
/// the timed repeats after the warm-up: the rate at which a pass can read the input at all.
fn read_bandwidth(values: &[f32], args: BenchArgs) -> f64 {
    use rayon::prelude::*;
    let mut pass = || {
        let sum: f32 = values
            .par_chunks(1 << 14)
            .map(|chunk| {
                let mut lanes = [0.0f32; 16];
                for block in chunk.chunks_exact(16) {
                    lanes.iter_mut().zip(block).for_each(|(l, v)| *l += v);
                }
                lanes.iter().sum::<f32>() + chunk.chunks_exact(16).remainder().iter().sum::<f32>()
            })
            .sum();
        std::hint::black_box(sum);
        Ok::<(), std::convert::Infallible>(())
    };
    let quiet = BenchArgs {
        profile: false,
        ..args
    };
    // `timed` counts items per pass; one pass reads every byte once.
    let passes_per_s = timed(&mut pass, quiet, 1).unwrap_or(0.0);
    passes_per_s * std::mem::size_of_val(values) as f64 / 1e9
}

/// `predict` on one image, [`LATENCY_CALLS`] times after [`LATENCY_WARMUP`] untimed calls.
fn single_image_latency(network: &mut Network, image: &[f32]) -> Latency {
    for _ in 0..LATENCY_WARMUP {
        std::hint::black_box(network.predict(image.to_vec(), 1));
    }
    let mut ms: Vec<f64> = (0..LATENCY_CALLS)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(network.predict(image.to_vec(), 1));
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    Latency {
        median: ms[ms.len() / 2],
        p90: ms[ms.len() * 9 / 10],
        calls: ms.len(),
    }
}

/// The per-op times of the timed steps, per step, on stderr.
fn print_profile(what: &str, args: BenchArgs) {
    let steps = args.repeats.max(1) as f64 * args.steps.max(1) as f64;
    let mut rows = profile::totals();
    rows.sort_by_key(|row| std::cmp::Reverse(row.1));
    eprintln!(
        "{:<28} {:>10} {:>8}",
        format!("op ({what})"),
        "ms/step",
        "calls"
    );
    for (name, total, calls) in rows {
        eprintln!(
            "{name:<28} {:>10.2} {:>8}",
            total.as_secs_f64() * 1e3 / steps,
            calls
        );
    }
}

/// Images/s of `step`: warm-up, then the median over repeats.
fn timed<E>(
    step: &mut impl FnMut() -> Result<(), E>,
    args: BenchArgs,
    batch: usize,
) -> Result<f64, E> {
    for _ in 0..args.warmup {
        step()?;
    }
    profile::reset();
    profile::enable(args.profile);
    let mut rates = Vec::with_capacity(args.repeats);
    for _ in 0..args.repeats.max(1) {
        let start = Instant::now();
        for _ in 0..args.steps.max(1) {
            step()?;
        }
        let items = args.steps.max(1) as f64 * batch as f64;
        rates.push(items / start.elapsed().as_secs_f64().max(1e-9));
    }
    profile::enable(false);
    rates.sort_by(f64::total_cmp);
    Ok(rates[rates.len() / 2])
}
