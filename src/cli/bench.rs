//! `strata bench SPEC [--batch-size N] [--steps N]`: training and inference throughput in
//! images/s on synthetic input of the spec's shape (docs/commands.md). Warm-up steps first, then
//! the median of several timed repeats.

use super::output::{file_stem, read_spec, DiagnosticPrinter, OutputFormat};
use super::{EXIT_ERROR, EXIT_OK, EXIT_USAGE};
use crate::backend::network::Network;
use crate::backend::ops::profile;
use crate::backend::optimizer::Optimizer;
use crate::compile::compile;
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
}

/// Options of `strata bench`.
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
}

/// Runs the command; returns the exit status.
pub fn run(path: &Path, args: BenchArgs, format: OutputFormat) -> u8 {
    let Some(source) = read_spec(path) else {
        return EXIT_USAGE;
    };
    let compiled = compile(&source.text, &file_stem(path));
    DiagnosticPrinter::new(format).print(&compiled.diagnostics, &source);
    let Some(model) = compiled.model else {
        return EXIT_ERROR;
    };
    let batch = args
        .batch_size
        .unwrap_or(model.train.batch_size as usize)
        .max(1);
    let mut network = Network::new(&model, model.train.seed);
    let mut optimizer = Optimizer::new(&model.train);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let per_image = model.input.len();
    let images: Vec<f32> = (0..batch * per_image).map(|_| rng.gen::<f32>()).collect();
    let labels: Vec<usize> = (0..batch)
        .map(|_| rng.gen_range(0..model.classes))
        .collect();
    // One input tensor for every step (clones share its data), as the peers' benchmarks
    // reuse one batch: the steps time the network, not copying the batch.
    let x = network.input_tensor(images, batch);
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
        network.predict_on(x.clone());
        Ok::<(), std::convert::Infallible>(())
    };
    let infer_rate = timed(&mut infer, args, batch).unwrap_or(0.0);
    if args.profile {
        print_profile("inference", args);
    }
    let result = BenchJson {
        train_images_per_s: train_rate,
        infer_images_per_s: infer_rate,
        batch_size: batch,
        threads: rayon::current_num_threads(),
    };
    match format {
        OutputFormat::Json => println!("{}", serde_json::to_string(&result).unwrap_or_default()),
        _ => println!(
            "{}: train {:.1} images/s, inference {:.1} images/s (batch {}, {} threads; median of {} x {} steps)",
            model.name, result.train_images_per_s, result.infer_images_per_s, batch, result.threads, args.repeats, args.steps
        ),
    }
    EXIT_OK
}

/// The per-op times of the timed steps, per step, on stderr.
fn print_profile(what: &str, args: BenchArgs) {
    let steps = (args.repeats.max(1) * args.steps.max(1)) as f64;
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
        rates.push((args.steps.max(1) * batch) as f64 / start.elapsed().as_secs_f64());
    }
    profile::enable(false);
    rates.sort_by(f64::total_cmp);
    Ok(rates[rates.len() / 2])
}
