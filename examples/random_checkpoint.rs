//! A checkpoint with random weights for a spec, so that a model can be exported, predicted and
//! benchmarked without training it (`scripts/onnx_check.py` uses it for every spec under
//! `specs/`).
//!
//!     cargo run --release --example random_checkpoint -- SPEC OUT.safetensors [SEED]
//!
//! Weights are initialised as training would (Keras's initialisers, from SEED, default 0);
//! biases and batch-norm statistics, which start as zeros and ones, get random values too, so
//! that every parameter shows in the output. Classes are named `class0`, `class1`, ….

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;
use strata::backend::checkpoint::{self, Checkpoint};
use strata::backend::network::Network;
use strata::backend::params;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(spec_path), Some(out)) = (args.first(), args.get(1)) else {
        return Err("usage: random_checkpoint SPEC OUT.safetensors [SEED]".into());
    };
    let seed: u64 = args.get(2).map_or(Ok(0), |s| s.parse())?;
    let text = std::fs::read_to_string(spec_path)?;
    let model = strata::compile(&text, "model")
        .model
        .ok_or("the spec does not compile (run `strata check` on it)")?;
    let network = Network::new(&model, seed);
    let mut tensors = params::to_tensors(&model, &network.params);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xB1A5);
    for tensor in &mut tensors {
        let range = match tensor.name.rsplit('.').next() {
            Some("bias" | "beta" | "moving_mean") => -0.3..0.3,
            Some("gamma" | "moving_variance") => 0.5..1.5,
            _ => continue,
        };
        for value in &mut tensor.data {
            *value = rng.gen_range(range.clone());
        }
    }
    let checkpoint = Checkpoint {
        tensors,
        spec: text,
        classes: (0..model.classes)
            .map(|idx| format!("class{idx}"))
            .collect(),
        extra: Default::default(),
    };
    checkpoint::save(&PathBuf::from(out), &checkpoint)?;
    println!(
        "{out}: {} ({} parameters)",
        model.name,
        model.params.total()
    );
    Ok(())
}
