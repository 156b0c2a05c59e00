//! One parameter layout per op: the names, checkpoint shapes, roles and Keras initialisers of
//! its parameters. The compiler counts parameters from it; the backend names, shapes and
//! initialises tensors from it, and checks checkpoints against it. A new op gets its
//! parameters here and nowhere else.

use super::{MergeKind, Op, Shape, MAX_VALUES};
use std::fmt;

/// One parameter tensor of a layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamSpec {
    /// The name after `layers.<i>.` in a checkpoint (`weight`, `bias`, `gamma`, …).
    pub name: &'static str,
    /// The checkpoint shape, outermost first: conv `[filters, c_in/groups, k_h, k_w]`,
    /// depthwise `[c*m, 1, k_h, k_w]`, dense `[units, in]`, vectors `[n]`.
    pub shape: Vec<usize>,
    /// Whether the optimiser updates it (batch norm's moving statistics are not).
    pub trainable: bool,
    /// How Keras initialises it.
    pub init: Init,
}

impl ParamSpec {
    /// The number of values.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether it holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Keras's default initialisers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    /// Glorot (Xavier) uniform: ±sqrt(6 / (fan_in + fan_out)).
    GlorotUniform {
        /// Inputs per output (kernel taps × input channels of a conv).
        fan_in: usize,
        /// Outputs per input (kernel taps × output channels of a conv).
        fan_out: usize,
    },
    /// All zeros (biases, β, moving mean).
    Zeros,
    /// All ones (γ, moving variance).
    Ones,
}

/// Why a layout cannot be made: a tensor or the layer's total would pass [`MAX_VALUES`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayoutError;

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "more than {MAX_VALUES} parameters")
    }
}

/// The parameters of `op` on an input of shape `input`, in checkpoint order, every size
/// checked: `Err` when one tensor or their total passes [`MAX_VALUES`].
pub fn layout(op: &Op, input: Shape) -> Result<Vec<ParamSpec>, LayoutError> {
    let c = input.features();
    let mut specs = Vec::new();
    match *op {
        Op::BatchNorm { .. } => {
            for (name, trainable, init) in [
                ("gamma", true, Init::Ones),
                ("beta", true, Init::Zeros),
                ("moving_mean", false, Init::Zeros),
                ("moving_variance", false, Init::Ones),
            ] {
                specs.push(spec(name, vec![c], trainable, init));
            }
        }
        Op::Conv {
            filters,
            kernel: (kh, kw),
            bias,
            groups,
            ..
        } => {
            let c_group = c / groups.max(1);
            let taps = mul(kh, kw)?;
            specs.push(spec(
                "weight",
                vec![filters, c_group, kh, kw],
                true,
                glorot(mul(taps, c_group)?, mul(taps, filters)?),
            ));
            push_bias(&mut specs, bias, filters);
        }
        Op::DepthwiseConv {
            multiplier,
            kernel: (kh, kw),
            bias,
            ..
        } => {
            let out = mul(c, multiplier)?;
            let taps = mul(kh, kw)?;
            specs.push(spec(
                "weight",
                vec![out, 1, kh, kw],
                true,
                glorot(mul(taps, c)?, mul(taps, multiplier)?),
            ));
            push_bias(&mut specs, bias, out);
        }
        Op::SeparableConv {
            filters,
            multiplier,
            kernel: (kh, kw),
            bias,
            ..
        } => {
            let mid = mul(c, multiplier)?;
            let taps = mul(kh, kw)?;
            specs.push(spec(
                "depthwise",
                vec![mid, 1, kh, kw],
                true,
                glorot(mul(taps, c)?, mul(taps, multiplier)?),
            ));
            specs.push(spec(
                "pointwise",
                vec![filters, mid, 1, 1],
                true,
                glorot(mid, filters),
            ));
            push_bias(&mut specs, bias, filters);
        }
        Op::Dense { units, bias } => {
            let inputs = input.len();
            specs.push(spec(
                "weight",
                vec![units, inputs],
                true,
                glorot(inputs, units),
            ));
            push_bias(&mut specs, bias, units);
        }
        Op::Pool { .. }
        | Op::GlobalPool { .. }
        | Op::Flatten
        | Op::Dropout { .. }
        | Op::Identity
        | Op::Merge(MergeKind::Add | MergeKind::Concat | MergeKind::Mul)
        | Op::Activation(_) => {}
    }
    let mut total = 0usize;
    for spec in &specs {
        let len = spec
            .shape
            .iter()
            .try_fold(1usize, |acc, &dim| mul(acc, dim))?;
        total = total.checked_add(len).ok_or(LayoutError)?;
    }
    if total > MAX_VALUES {
        return Err(LayoutError);
    }
    Ok(specs)
}

fn spec(name: &'static str, shape: Vec<usize>, trainable: bool, init: Init) -> ParamSpec {
    ParamSpec {
        name,
        shape,
        trainable,
        init,
    }
}

fn glorot(fan_in: usize, fan_out: usize) -> Init {
    Init::GlorotUniform { fan_in, fan_out }
}

fn push_bias(specs: &mut Vec<ParamSpec>, bias: bool, len: usize) {
    if bias {
        specs.push(spec("bias", vec![len], true, Init::Zeros));
    }
}

/// `a * b`, or the error when it passes [`MAX_VALUES`].
fn mul(a: usize, b: usize) -> Result<usize, LayoutError> {
    a.checked_mul(b)
        .filter(|product| *product <= MAX_VALUES)
        .ok_or(LayoutError)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Padding;

    fn image(channels: usize) -> Shape {
        Shape::Image {
            height: 8,
            width: 8,
            channels,
        }
    }

    #[test]
    fn layouts_count_as_keras() {
        let count = |op: Op, input: Shape| -> usize {
            layout(&op, input)
                .unwrap_or_default()
                .iter()
                .map(ParamSpec::len)
                .sum()
        };
        let sep = Op::SeparableConv {
            filters: 64,
            multiplier: 2,
            kernel: (3, 3),
            stride: (1, 1),
            pad: Padding::Same,
            bias: true,
        };
        assert_eq!(count(sep, image(32)), 3 * 3 * 32 * 2 + 32 * 2 * 64 + 64);
        let grouped = Op::Conv {
            filters: 64,
            kernel: (3, 3),
            stride: (1, 1),
            pad: Padding::Same,
            bias: false,
            groups: 4,
        };
        assert_eq!(count(grouped, image(32)), 3 * 3 * 8 * 64);
        let huge = Op::Conv {
            filters: 1 << 24,
            kernel: (1 << 16, 1 << 16),
            stride: (1, 1),
            pad: Padding::Same,
            bias: true,
            groups: 1,
        };
        assert_eq!(layout(&huge, image(3)), Err(LayoutError));
    }
}
