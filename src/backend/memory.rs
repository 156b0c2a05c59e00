//! What a batch of a model needs in memory, known from the IR before anything is allocated
//! (the trainer and the commands hold it against the machine's memory: `train::memory`).
//!
//! Two figures, both in bytes of `f32`:
//! - **at least**: what a step cannot do without. Some tensor of the largest layer's output
//!   size exists (the output, or the same-sized input a fused op recomputes it from), and in
//!   training it meets a gradient of that size in the backward pass: twice that per image,
//!   plus the input batch and the parameters (in training with their gradients and two
//!   optimiser moments).
//! - **activations**: every layer's output per image times the batch, but for an `identity`
//!   with no activation, whose output is its input's tensor passed on. Measured peaks of
//!   training runs were 1.0x to 4.6x this (fused ops keep fewer tensors; scratch buffers, the
//!   buffer pools of the threads of a split step and the allocator add some).

use crate::ir::{Layer, Model, Op};

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
    let output = |layer: &Layer| layer.output.len() as u64;
    let largest = model.layers.iter().map(output).max().unwrap_or(0);
    let all = model
        .layers
        .iter()
        .filter(|layer| !passes_its_input_on(layer))
        .map(output)
        .fold(0u64, u64::saturating_add);
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

/// Whether `layer`'s output is its input's tensor, not one of its own: an `identity` with no
/// activation (the backend passes its input on, `forward::run_store`).
fn passes_its_input_on(layer: &Layer) -> bool {
    layer.op == Op::Identity && layer.activation.is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_count_the_largest_output_the_input_and_the_parameters() {
        // 8x8x3 -> conv3(4, same): 256 values, flatten: 256, dense: 4.
        let m = crate::compile(
            "input: 8x8x3\nclasses: 4\nmodel: conv3(4, pad=same) relu -> flatten -> dense4 softmax\n",
            "memory",
        )
        .model
        .expect("compiles");
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
    fn an_identity_passing_its_input_on_adds_no_output() {
        let need = |model: &str| {
            let text = format!("input: 8x8x3\nclasses: 2\nmodel: {model}\n");
            let m = crate::compile(&text, "memory").model.expect("compiles");
            training(&m, 10).activations
        };
        let plain = need(
            "conv3(4, pad=same) -> add(identity, conv3(4, pad=same)) -> gap -> dense2 softmax",
        );
        let activated = need(
            "conv3(4, pad=same) -> add(identity relu, conv3(4, pad=same)) -> gap -> dense2 softmax",
        );
        // conv, conv, add: 256 values each; gap 4, dense 2; the plain identity none, the
        // activated one 256.
        assert_eq!(plain, 4 * 10 * (3 * 256 + 4 + 2));
        assert_eq!(activated, plain + 4 * 10 * 256);
    }
}
