//! What a batch of a model needs in memory, known from the IR before anything is allocated,
//! against what the machine has: a run that cannot fit is refused with
//! `strata::run::out_of_memory` instead of ending in an allocation failure (an abort) or the
//! kernel's out-of-memory kill (no message at all), and one that may not fit is warned about.
//!
//! Two figures, both in bytes of `f32`:
//! - **at least**: what a step cannot do without. Some tensor of the largest layer's output
//!   size exists (the output, or the same-sized input a fused op recomputes it from), and in
//!   training it meets a gradient of that size in the backward pass: twice that per image,
//!   plus the input batch and the parameters (in training with their gradients and two
//!   optimiser moments). Above the memory available (free and reclaimable memory plus free
//!   swap), the run is refused.
//! - **activations**: every layer's output per image times the batch. Measured peaks of
//!   training runs were 0.8x to 3.1x this (fused ops keep fewer tensors; scratch buffers and
//!   the allocator add some); above half the memory available, the run is warned that it may
//!   not fit.

use crate::diagnostics::{codes, Diagnostic};
use crate::ir::Model;

/// Bytes of one value.
const FLOAT: u64 = std::mem::size_of::<f32>() as u64;

/// What a pass over a batch needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    /// Bytes it cannot do without.
    pub at_least: u64,
    /// Bytes of every layer's output for the batch.
    pub activations: u64,
}

/// A training step on `batch` images of `model`.
pub fn training(model: &Model, batch: usize) -> Need {
    need(model, batch, 2, 4)
}

/// An inference pass on `batch` images of `model`.
pub fn inference(model: &Model, batch: usize) -> Need {
    need(model, batch, 1, 1)
}

/// [`Need`] with `largest_copies` tensors of the largest output per image and `param_copies`
/// copies of the parameters.
fn need(model: &Model, batch: usize, largest_copies: u64, param_copies: u64) -> Need {
    let batch = batch as u64;
    let outputs = model.layers.iter().map(|layer| layer.output.len() as u64);
    let largest = outputs.clone().max().unwrap_or(0);
    let all = outputs.fold(0u64, u64::saturating_add);
    let input = model.input.len() as u64;
    let per_image = largest.saturating_mul(largest_copies).saturating_add(input);
    let at_least = per_image
        .saturating_mul(batch)
        .saturating_add(model.params.total().saturating_mul(param_copies))
        .saturating_mul(FLOAT);
    Need {
        at_least,
        activations: all.saturating_mul(batch).saturating_mul(FLOAT),
    }
}

/// The memory a run may use: `MemAvailable` plus `SwapFree` of `/proc/meminfo`; `None` where
/// that cannot be read (then nothing is checked).
pub fn available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    available_in(&text)
}

/// [`available`] of a `/proc/meminfo` text.
pub fn available_in(meminfo: &str) -> Option<u64> {
    let memory = meminfo_bytes(meminfo, "MemAvailable")?;
    Some(memory.saturating_add(meminfo_bytes(meminfo, "SwapFree").unwrap_or(0)))
}

/// The field `name` (`MemAvailable`, `SwapFree`, …) of a `/proc/meminfo` text, in bytes.
pub fn meminfo_bytes(meminfo: &str, name: &str) -> Option<u64> {
    meminfo.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix(':')?;
        let kib: u64 = rest.trim().strip_suffix("kB")?.trim().parse().ok()?;
        Some(kib.saturating_mul(1024))
    })
}

/// What a pass is, for the messages: "a training step" or "an inference pass".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    Training,
    Inference,
}

impl Pass {
    fn words(self) -> &'static str {
        match self {
            Pass::Training => "a training step",
            Pass::Inference => "an inference pass",
        }
    }

    fn need(self, model: &Model, batch: usize) -> Need {
        match self {
            Pass::Training => training(model, batch),
            Pass::Inference => inference(model, batch),
        }
    }
}

/// The `strata::run::out_of_memory` error when `pass` on `batch` images of `model` cannot fit
/// in `available` bytes, else its warning when it may not; `None` when it fits or `available`
/// is unknown.
pub fn check(
    model: &Model,
    batch: usize,
    pass: Pass,
    available: Option<u64>,
) -> Option<Diagnostic> {
    let available = available?;
    let need = pass.need(model, batch);
    let what = format!("{} on {batch} images of {}", pass.words(), model.input);
    let help = match pass {
        Pass::Training => "lower `train.batch_size` (or `--batch-size`) or the input size",
        Pass::Inference => "give a smaller `--batch-size`, or lower the input size",
    };
    if need.at_least > available {
        return Some(
            Diagnostic::error(
                codes::RUN_OUT_OF_MEMORY,
                format!(
                    "{what} needs at least {}, and {} is available",
                    bytes(need.at_least),
                    bytes(available)
                ),
            )
            .with_help(help),
        );
    }
    if need.activations > available / 2 {
        return Some(
            Diagnostic::warning(
                codes::RUN_OUT_OF_MEMORY,
                format!(
                    "{what} may not fit in memory: its layers' outputs alone take {}, and {} is \
                     available",
                    bytes(need.activations),
                    bytes(available)
                ),
            )
            .with_help(help),
        );
    }
    None
}

/// `bytes` for people: "512 MB", "17.2 GB".
fn bytes(bytes: u64) -> String {
    const MB: f64 = 1e6;
    const GB: f64 = 1e9;
    let value = bytes as f64;
    if value >= GB {
        format!("{:.1} GB", value / GB)
    } else {
        format!("{:.0} MB", (value / MB).max(1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(text: &str) -> Model {
        let compiled = crate::compile(text, "memory");
        compiled.model.expect("compiles")
    }

    #[test]
    fn needs_count_the_largest_output_the_input_and_the_parameters() {
        // 8x8x3 -> conv3(4, same): 256 values, flatten: 256, dense: 4.
        let m = model("input: 8x8x3\nclasses: 4\nmodel: conv3(4, pad=same) relu -> flatten -> dense4 softmax\n");
        let params = m.params.total();
        let largest = 256u64;
        let all = 256 + 256 + 4;
        let input = 192u64;
        let train = training(&m, 10);
        assert_eq!(
            train.at_least,
            4 * ((2 * largest + input) * 10 + 4 * params)
        );
        assert_eq!(train.activations, 4 * all * 10);
        let infer = inference(&m, 10);
        assert_eq!(infer.at_least, 4 * ((largest + input) * 10 + params));
        assert_eq!(infer.activations, train.activations);
    }

    #[test]
    fn a_run_that_cannot_fit_is_an_error_and_one_that_may_not_a_warning() {
        let m = model("input: 64x64x3\nclasses: 2\nmodel: (conv3(64, pad=same) relu)x3 -> gap -> dense2 softmax\n");
        let need = training(&m, 32);
        let error = check(&m, 32, Pass::Training, Some(need.at_least - 1)).expect("refused");
        assert!(error.is_error());
        assert_eq!(error.code, codes::RUN_OUT_OF_MEMORY);
        assert!(error
            .message
            .contains("a training step on 32 images of 64x64x3 needs at least"));
        let warning =
            check(&m, 32, Pass::Training, Some(need.activations * 2 - 1)).expect("warned");
        assert!(!warning.is_error());
        assert!(
            warning.message.contains("may not fit"),
            "{}",
            warning.message
        );
        assert_eq!(
            check(&m, 32, Pass::Training, Some(need.activations * 2)),
            None
        );
        assert_eq!(check(&m, 32, Pass::Training, None), None);
        let infer = check(
            &m,
            32,
            Pass::Inference,
            Some(inference(&m, 32).at_least - 1),
        )
        .expect("refused");
        assert!(infer.message.starts_with("an inference pass on 32 images"));
    }

    #[test]
    fn available_memory_adds_free_swap_and_needs_mem_available() {
        let text = "MemTotal:  1000 kB\nMemFree: 10 kB\nMemAvailable:   500 kB\nSwapFree: 20 kB\n";
        assert_eq!(available_in(text), Some(520 * 1024));
        assert_eq!(available_in("MemAvailable: 3 kB\n"), Some(3 * 1024));
        assert_eq!(available_in("MemTotal: 3 kB\n"), None);
        assert_eq!(available_in("MemAvailable: lots\n"), None);
    }

    #[test]
    fn sizes_read_in_megabytes_or_gigabytes() {
        assert_eq!(bytes(17_200_000_000), "17.2 GB");
        assert_eq!(bytes(512_000_000), "512 MB");
        assert_eq!(bytes(10), "1 MB");
    }
}
