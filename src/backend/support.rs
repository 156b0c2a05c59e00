//! What the backend can run today. The compiler accepts every layer of the language; a model
//! whose layers the backend cannot run yet is refused here, naming the layer, before any
//! tensor is made, so that `train`, `bench`, `predict` and `evaluate` never give a wrong
//! result for it.
#![deny(clippy::wildcard_enum_match_arm)]

use crate::catalogue::decl_of;
use crate::ir::{Activation, Layer, Model, Op};
use std::fmt;

/// A layer the backend cannot run yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsupported {
    /// The layer's name (`add_2`), or `the head`.
    pub layer: String,
    /// The call as written in the spec.
    pub written: String,
    /// What cannot run.
    pub reason: String,
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "layer `{}` (`{}`): {}; `strata check` and `strata summary` accept the model, \
             but it cannot be trained or run yet",
            self.layer, self.written, self.reason
        )
    }
}

impl std::error::Error for Unsupported {}

/// Checks that the backend can run every layer of `model`.
pub fn check(model: &Model) -> Result<(), Unsupported> {
    for layer in &model.layers {
        if let Some(reason) = op_reason(&layer.op) {
            return Err(unsupported(layer, &reason));
        }
        if let Some(activation) = layer.activation {
            if let Some(reason) = activation_reason(activation) {
                return Err(unsupported(layer, &reason));
            }
        }
    }
    Ok(())
}

fn unsupported(layer: &Layer, reason: &str) -> Unsupported {
    Unsupported {
        layer: layer.name.clone(),
        written: layer.origin.text.clone(),
        reason: reason.to_string(),
    }
}

/// Why the backend cannot run `op`, or `None` when it can.
fn op_reason(op: &Op) -> Option<String> {
    let not_yet = |what: &str| Some(format!("{what} is not supported by the backend yet"));
    match op {
        Op::Conv { groups, .. } if *groups > 1 => not_yet("a grouped convolution (`groups`)"),
        Op::DepthwiseConv { .. } | Op::SeparableConv { .. } => {
            not_yet(&format!("`{}`", decl_of(op.kind()).name))
        }
        Op::Activation(activation) => activation_reason(*activation),
        Op::Conv { .. }
        | Op::BatchNorm { .. }
        | Op::Pool { .. }
        | Op::GlobalPool { .. }
        | Op::Flatten
        | Op::Dense { .. }
        | Op::Dropout { .. }
        | Op::Identity
        | Op::Merge(_) => None,
    }
}

/// Why the backend cannot run `activation`, or `None` when it can.
fn activation_reason(activation: Activation) -> Option<String> {
    match activation {
        Activation::Relu
        | Activation::Relu6
        | Activation::Sigmoid
        | Activation::Tanh
        | Activation::Softmax
        | Activation::Gelu
        | Activation::LeakyRelu { .. }
        | Activation::Silu
        | Activation::HardSwish
        | Activation::HardSigmoid
        | Activation::Elu { .. } => None,
    }
}
