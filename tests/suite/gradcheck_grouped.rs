//! The grouped convolution against a direct f64 reference — forward, input, weight and bias
//! gradients — over groups, strides, Keras padding, rectangular kernels, channel counts,
//! fused relu / relu6; a finite-difference check; the checkpoint layout; and the input
//! gradient adding onto what its slot holds.

use crate::common;

use common::gradcheck::{check, weighted_sum, Rng};
use common::reference::{activated, errors, loss_weights, Worst, ACTIVATIONS};
use dfdx::prelude::*;
use strata::backend::ops::depthwise_kernels::FusedActivation;
use strata::backend::ops::geometry::{Axis1, Padding};
use strata::backend::ops::grouped::{
    grouped_conv2d, weight_from_checkpoint, weight_to_checkpoint, GroupedConfig, GroupedParams,
};

type Shape4 = (usize, usize, usize, usize);

/// One layer on one input.
#[derive(Clone, Copy, Debug)]
struct Case {
    input: Shape4,
    filters: usize,
    cfg: GroupedConfig,
    bias: bool,
}

impl Case {
    fn axes(&self) -> (Axis1, Axis1) {
        let (_, h, w, _) = self.input;
        let c = &self.cfg;
        (
            Axis1::new(h, c.kernel.0, c.stride.0, c.padding).expect("case fits"),
            Axis1::new(w, c.kernel.1, c.stride.1, c.padding).expect("case fits"),
        )
    }
    fn out_shape(&self) -> Shape4 {
        let (rows, cols) = self.axes();
        (self.input.0, rows.output, cols.output, self.filters)
    }
    /// Checkpoint dims `(filters, c_in / groups, k_h, k_w)`.
    fn dims(&self) -> (usize, usize, usize, usize) {
        let (kh, kw) = self.cfg.kernel;
        (self.filters, self.input.3 / self.cfg.groups, kh, kw)
    }
}

/// The f64 reference pre-activations, NHWC, from checkpoint weights
/// `[filters, c_in / groups, k_h, k_w]`.
fn reference_preact(case: &Case, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f64> {
    let (n, h, wd, c) = case.input;
    let (f, cg, kh, kw) = case.dims();
    let fg = f / case.cfg.groups;
    let (rows, cols) = case.axes();
    let (_, ho, wo, _) = case.out_shape();
    let mut out = vec![0.0f64; n * ho * wo * f];
    for b in 0..n {
        for y in 0..ho {
            for xo in 0..wo {
                for fo in 0..f {
                    let group = fo / fg;
                    let mut acc = bias.map_or(0.0, |b| f64::from(b[fo]));
                    for ci in 0..cg {
                        for i in 0..kh {
                            for j in 0..kw {
                                let (Some(iy), Some(ix)) = (rows.source(y, i), cols.source(xo, j))
                                else {
                                    continue;
                                };
                                let v =
                                    f64::from(x[((b * h + iy) * wd + ix) * c + group * cg + ci]);
                                acc += v * f64::from(w[((fo * cg + ci) * kh + i) * kw + j]);
                            }
                        }
                    }
                    out[((b * ho + y) * wo + xo) * f + fo] = acc;
                }
            }
        }
    }
    out
}

/// The f64 reference gradients `[input, checkpoint weight, bias]` given `dz`.
fn reference_grads(case: &Case, x: &[f32], w: &[f32], dz: &[f64]) -> [Vec<f64>; 3] {
    let (n, h, wd, c) = case.input;
    let (f, cg, kh, kw) = case.dims();
    let fg = f / case.cfg.groups;
    let (rows, cols) = case.axes();
    let (_, ho, wo, _) = case.out_shape();
    let mut gx = vec![0.0f64; x.len()];
    let mut gw = vec![0.0f64; w.len()];
    let mut gb = vec![0.0f64; f];
    for b in 0..n {
        for y in 0..ho {
            for xo in 0..wo {
                for fo in 0..f {
                    let d = dz[((b * ho + y) * wo + xo) * f + fo];
                    gb[fo] += d;
                    let group = fo / fg;
                    for ci in 0..cg {
                        for i in 0..kh {
                            for j in 0..kw {
                                let (Some(iy), Some(ix)) = (rows.source(y, i), cols.source(xo, j))
                                else {
                                    continue;
                                };
                                let at = ((b * h + iy) * wd + ix) * c + group * cg + ci;
                                let tap = ((fo * cg + ci) * kh + i) * kw + j;
                                gx[at] += d * f64::from(w[tap]);
                                gw[tap] += d * f64::from(x[at]);
                            }
                        }
                    }
                }
            }
        }
    }
    [gx, gw, gb]
}

/// Runs the op with loss weights `go`: output and `[input, checkpoint weight, bias]`
/// gradients, the input gradient on top of `prior`.
fn run_op(
    case: &Case,
    x: &[f32],
    w_checkpoint: &[f32],
    bias: Option<&[f32]>,
    go: &[f32],
    prior: Option<&[f32]>,
) -> (Vec<f32>, [Vec<f32>; 3]) {
    let dev = Cpu::default();
    let dims = case.dims();
    let groups = case.cfg.groups;
    let (f, cg, kh, kw) = dims;
    let x = dev.tensor_from_vec(x.to_vec(), case.input);
    let params = GroupedParams {
        weight: dev.tensor_from_vec(
            weight_from_checkpoint(w_checkpoint, dims, groups),
            (groups * kh * kw * cg, f / groups),
        ),
        bias: bias.map(|b| dev.tensor_from_vec(b.to_vec(), (f,))),
    };
    let traced = match prior {
        None => x.leaky_trace(),
        Some(prior) => {
            let mut grads = Gradients::leaky();
            grads
                .get_or_alloc_mut(&x)
                .expect("cpu alloc")
                .copy_from_slice(prior);
            x.trace(grads)
        }
    };
    let out = grouped_conv2d(traced, &params, &case.cfg);
    assert_eq!(*out.shape(), case.out_shape());
    let values = out.as_vec();
    let (_, mut grads) = weighted_sum(out, go);
    let gx = if case.cfg.input_grad {
        grads.get(&x).as_vec()
    } else {
        Vec::new()
    };
    let gw = weight_to_checkpoint(&grads.get(&params.weight).as_vec(), dims, groups);
    let gb = match &params.bias {
        Some(b) => grads.get_or_alloc_mut(b).expect("cpu alloc").to_vec(),
        None => Vec::new(),
    };
    (values, [gx, gw, gb])
}

fn compare(case: &Case, seed: u64, worst: &mut Worst) {
    let (n, h, w, c) = case.input;
    let (f, cg, kh, kw) = case.dims();
    let mut rng = Rng::new(seed);
    let x = rng.vec(n * h * w * c, -2.0, 2.0);
    let weights = rng.vec(f * cg * kh * kw, -1.0, 1.0);
    let bias = case.bias.then(|| rng.vec(f, -1.0, 1.0));
    let pre = reference_preact(case, &x, &weights, bias.as_deref());
    let act = case.cfg.activation;
    let (go, dz) = loss_weights(&mut rng, &pre, act);
    let (out, grads) = run_op(case, &x, &weights, bias.as_deref(), &go, None);
    let expected = activated(&pre, act);
    let reference = reference_grads(case, &x, &weights, &dz);
    let label = format!("{case:?}");
    let mut compare_one = |which: usize, a: &[f32], b: &[f64]| {
        let e = errors(a, b);
        assert!(e.0 <= 1e-5, "{label}: tensor {which}: error {e:?}");
        worst.note(which, e);
    };
    compare_one(0, &out, &expected);
    for (t, (a, b)) in grads.iter().zip(&reference).enumerate() {
        let skip = (t == 0 && !case.cfg.input_grad) || (t == 2 && !case.bias);
        if skip {
            assert!(a.is_empty());
        } else {
            compare_one(t + 1, a, b);
        }
    }
}

fn config(
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: Padding,
    groups: usize,
    activation: FusedActivation,
) -> GroupedConfig {
    GroupedConfig {
        kernel,
        stride,
        padding,
        groups,
        activation,
        input_grad: true,
    }
}

#[test]
fn grouped_matches_f64_reference_on_a_grid() {
    let mut worst = Worst::new(&["forward", "input", "weight", "bias"]);
    let mut index = 0u64;
    // (groups, input channels, filters): counts per group of 1, 2, 3, 4, 8, 17 and 32.
    for (groups, channels, filters) in [
        (1, 3, 5),
        (4, 4, 8),
        (2, 4, 6),
        (4, 16, 8),
        (2, 34, 8),
        (4, 8, 4),
        (4, 12, 20),
        (4, 32, 32),
        (2, 64, 18),
    ] {
        for kernel in [(3, 3), (2, 3), (1, 1)] {
            for stride in [(1, 1), (2, 2), (2, 1)] {
                for padding in [Padding::Same, Padding::Valid] {
                    index += 1;
                    let act = ACTIVATIONS[index as usize % 3];
                    let mut cfg = config(kernel, stride, padding, groups, act);
                    cfg.input_grad = !index.is_multiple_of(7);
                    let case = Case {
                        input: (2, 7, 5, channels),
                        filters,
                        cfg,
                        bias: !index.is_multiple_of(5),
                    };
                    compare(&case, index, &mut worst);
                }
            }
        }
    }
    worst.print(&format!("grouped grid ({index} cases)"));
}

#[test]
fn grouped_matches_f64_reference_across_blocks() {
    // Images of several blocks of output rows (the forward and backward work block by block).
    let mut worst = Worst::new(&["forward", "input", "weight", "bias"]);
    for (seed, (input, filters, kernel, stride, groups)) in [
        ((2, 40, 23, 16), 12, (3, 3), (1, 1), 4),
        ((1, 37, 30, 6), 9, (5, 3), (2, 2), 3),
    ]
    .into_iter()
    .enumerate()
    {
        for padding in [Padding::Same, Padding::Valid] {
            let case = Case {
                input,
                filters,
                cfg: config(kernel, stride, padding, groups, ACTIVATIONS[seed + 1]),
                bias: true,
            };
            compare(&case, 300 + seed as u64, &mut worst);
        }
    }
    worst.print("grouped larger images");
}

#[test]
fn grouped_finite_differences() {
    let dev = Cpu::default();
    for (name, input, filters, cfg) in [
        (
            "grouped 3x3 same groups 2 relu",
            (2, 5, 6, 4),
            6,
            config((3, 3), (1, 1), Padding::Same, 2, FusedActivation::Relu),
        ),
        (
            "grouped 2x3 valid stride 2 groups 4",
            (1, 7, 6, 8),
            4,
            config((2, 3), (2, 2), Padding::Valid, 4, FusedActivation::Linear),
        ),
    ] {
        let case = Case {
            input,
            filters,
            cfg,
            bias: true,
        };
        let (n, h, w, c) = input;
        let (f, cg, kh, kw) = case.dims();
        let groups = cfg.groups;
        let mut rng = Rng::new(17);
        let x: Vec<f32> = rng
            .distinct(n * h * w * c)
            .iter()
            .map(|v| v * 3.0)
            .collect();
        let values = vec![
            x,
            rng.vec(f * cg * kh * kw, -1.0, 1.0),
            rng.vec(f, -0.5, 0.5),
        ];
        let (_, ho, wo, _) = case.out_shape();
        let loss_weights = rng.vec(n * ho * wo * f, -1.0, 1.0);
        check(name, values, 1e-3, (2e-3, 2e-2), |v| {
            let x = dev.tensor_from_vec(v[0].clone(), input);
            let params = GroupedParams {
                weight: dev.tensor_from_vec(v[1].clone(), (groups * kh * kw * cg, f / groups)),
                bias: Some(dev.tensor_from_vec(v[2].clone(), (f,))),
            };
            let out = grouped_conv2d(x.leaky_trace(), &params, &cfg);
            let (loss, mut grads) = weighted_sum(out, &loss_weights);
            let bias = params.bias.as_ref().expect("bias");
            let all = vec![
                grads.get(&x).as_vec(),
                grads.get(&params.weight).as_vec(),
                grads.get_or_alloc_mut(bias).expect("cpu alloc").to_vec(),
            ];
            (loss, all)
        });
    }
}

#[test]
fn grouped_checkpoint_layout_round_trips() {
    let mut rng = Rng::new(8);
    let (filters, cg, kh, kw, groups) = (6, 4, 3, 2, 3);
    let checkpoint = rng.vec(filters * cg * kh * kw, -1.0, 1.0);
    let dims = (filters, cg, kh, kw);
    let matrix = weight_from_checkpoint(&checkpoint, dims, groups);
    assert_eq!(weight_to_checkpoint(&matrix, dims, groups), checkpoint);
    // Filter f = g * fg + fo: group g's rows, tap (i, j), channel c, column fo.
    let fg = filters / groups;
    let kg = kh * kw * cg;
    for f in 0..filters {
        for c in 0..cg {
            for i in 0..kh {
                for j in 0..kw {
                    let row = (f / fg) * kg + (i * kw + j) * cg + c;
                    assert_eq!(
                        matrix[row * fg + f % fg],
                        checkpoint[((f * cg + c) * kh + i) * kw + j]
                    );
                }
            }
        }
    }
}

#[test]
fn grouped_input_gradient_adds_to_its_slot() {
    let case = Case {
        input: (2, 6, 7, 8),
        filters: 12,
        cfg: config((3, 3), (1, 1), Padding::Same, 4, FusedActivation::Relu6),
        bias: true,
    };
    let (n, h, w, c) = case.input;
    let (f, cg, kh, kw) = case.dims();
    let mut rng = Rng::new(12);
    let x = rng.vec(n * h * w * c, -1.0, 1.0);
    let weights = rng.vec(f * cg * kh * kw, -1.0, 1.0);
    let bias = rng.vec(f, -0.5, 0.5);
    let (_, ho, wo, _) = case.out_shape();
    let go = rng.vec(n * ho * wo * f, -1.0, 1.0);
    let prior = rng.vec(x.len(), -1.0, 1.0);
    let (_, [alone, ..]) = run_op(&case, &x, &weights, Some(&bias), &go, None);
    let (_, [added, ..]) = run_op(&case, &x, &weights, Some(&bias), &go, Some(&prior));
    for ((a, p), s) in added.iter().zip(&prior).zip(&alone) {
        assert!((a - (p + s)).abs() < 1e-6, "{a} vs {p} + {s}");
    }
}

#[test]
fn grouped_is_deterministic_across_thread_counts() {
    // 4 groups of 4 filters run through the depthwise kernels, 2 groups of 16 through
    // products.
    for (groups, filters) in [(4, 16), (2, 32)] {
        deterministic(Case {
            input: (5, 20, 13, 16),
            filters,
            cfg: config(
                (3, 3),
                (1, 1),
                Padding::Same,
                groups,
                FusedActivation::Linear,
            ),
            bias: true,
        });
    }
}

fn deterministic(case: Case) {
    let (n, h, w, c) = case.input;
    let (f, cg, kh, kw) = case.dims();
    let mut rng = Rng::new(23);
    let x = rng.vec(n * h * w * c, -2.0, 2.0);
    let weights = rng.vec(f * cg * kh * kw, -1.0, 1.0);
    let bias = rng.vec(f, -0.5, 0.5);
    let (_, ho, wo, _) = case.out_shape();
    let go = rng.vec(n * ho * wo * f, -1.0, 1.0);
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool")
            .install(|| run_op(&case, &x, &weights, Some(&bias), &go, None))
    };
    let one = run(1);
    for threads in [2, 3, 7] {
        let other = run(threads);
        assert_eq!(other.0, one.0);
        for (a, b) in other.1.iter().zip(&one.1) {
            assert!(a.iter().zip(b).all(|(a, b)| a.to_bits() == b.to_bits()));
        }
    }
}
