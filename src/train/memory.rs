//! A batch's memory ([`crate::backend::memory`]) held against the machine's, before anything
//! is allocated: a run that cannot fit is refused with `strata::run::out_of_memory` instead of
//! ending in an allocation failure (an abort) or the kernel's out-of-memory kill (no message
//! at all); one that may not fit is warned about. What a step cannot do without, above the
//! memory available (free and reclaimable memory plus free swap), is the error; every layer's
//! output for the batch (an `identity` passing its input on adds none), above half of it, the
//! warning (measured training peaks were 1.0x to 4.6x that figure).

use crate::backend::memory::{inference, training, Need};
use crate::data::loader::meminfo_bytes;
use crate::diagnostics::{codes, Diagnostic};
use crate::ir::Model;
use crate::summary::bytes_text;

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
                    bytes_text(need.at_least),
                    bytes_text(available)
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
                    bytes_text(need.activations),
                    bytes_text(available)
                ),
            )
            .with_help(help),
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(text: &str) -> Model {
        let compiled = crate::compile(text, "memory");
        compiled.model.expect("compiles")
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
}
