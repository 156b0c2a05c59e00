//! The depthwise convolution against a direct f64 reference (forward, input, weight and bias
//! gradients) over strides, Keras padding, rectangular kernels, multipliers, channel counts
//! that are and are not multiples of the vector width, fused relu / relu6; a finite-difference
//! check; the checkpoint layout; and the input gradient adding onto what its slot holds.

use crate::common;

use common::gradcheck::{check, weighted_sum, Rng};
use common::reference::{activated, errors, loss_weights, Worst, ACTIVATIONS};
use dfdx::prelude::*;
use strata::backend::ops::depthwise::{
    depthwise_conv2d, weight_from_checkpoint, weight_to_checkpoint, DepthwiseConfig,
    DepthwiseParams,
};
use strata::backend::ops::depthwise_kernels::FusedActivation;
use strata::backend::ops::geometry::{Axis1, Padding};

type Shape4 = (usize, usize, usize, usize);

/// One layer on one input.
#[derive(Clone, Copy, Debug)]
struct Case {
    input: Shape4,
    cfg: DepthwiseConfig,
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
        let (n, _, _, c) = self.input;
        (n, rows.output, cols.output, c * self.cfg.multiplier)
    }
}

/// The f64 reference: pre-activations, in NHWC with `c * m` channels, from checkpoint-layout
/// weights `[c * m, 1, k_h, k_w]`.
fn reference_preact(case: &Case, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f64> {
    let (n, h, wd, c) = case.input;
    let m = case.cfg.multiplier;
    let (kh, kw) = case.cfg.kernel;
    let (rows, cols) = case.axes();
    let (_, ho, wo, cm) = case.out_shape();
    let mut out = vec![0.0f64; n * ho * wo * cm];
    for b in 0..n {
        for y in 0..ho {
            for xo in 0..wo {
                for o in 0..cm {
                    let mut acc = bias.map_or(0.0, |b| f64::from(b[o]));
                    for i in 0..kh {
                        for j in 0..kw {
                            let (Some(iy), Some(ix)) = (rows.source(y, i), cols.source(xo, j))
                            else {
                                continue;
                            };
                            let v = f64::from(x[((b * h + iy) * wd + ix) * c + o / m]);
                            acc += v * f64::from(w[(o * kh + i) * kw + j]);
                        }
                    }
                    out[((b * ho + y) * wo + xo) * cm + o] = acc;
                }
            }
        }
    }
    out
}

/// The f64 reference gradients `(input, checkpoint weight, bias)` given the gradient of the
/// pre-activations `dz`.
fn reference_grads(case: &Case, x: &[f32], w: &[f32], dz: &[f64]) -> [Vec<f64>; 3] {
    let (n, h, wd, c) = case.input;
    let m = case.cfg.multiplier;
    let (kh, kw) = case.cfg.kernel;
    let (rows, cols) = case.axes();
    let (_, ho, wo, cm) = case.out_shape();
    let mut gx = vec![0.0f64; x.len()];
    let mut gw = vec![0.0f64; w.len()];
    let mut gb = vec![0.0f64; cm];
    for b in 0..n {
        for y in 0..ho {
            for xo in 0..wo {
                for o in 0..cm {
                    let d = dz[((b * ho + y) * wo + xo) * cm + o];
                    gb[o] += d;
                    for i in 0..kh {
                        for j in 0..kw {
                            let (Some(iy), Some(ix)) = (rows.source(y, i), cols.source(xo, j))
                            else {
                                continue;
                            };
                            let at = ((b * h + iy) * wd + ix) * c + o / m;
                            let tap = (o * kh + i) * kw + j;
                            gx[at] += d * f64::from(w[tap]);
                            gw[tap] += d * f64::from(x[at]);
                        }
                    }
                }
            }
        }
    }
    [gx, gw, gb]
}

/// Runs the op with loss weights `go`: its output and `(input, checkpoint weight, bias)`
/// gradients, the input gradient on top of `prior` (what the slot held before).
fn run_op(
    case: &Case,
    x: &[f32],
    w_checkpoint: &[f32],
    bias: Option<&[f32]>,
    go: &[f32],
    prior: Option<&[f32]>,
) -> (Vec<f32>, [Vec<f32>; 3]) {
    let dev = Cpu::default();
    let (_, _, _, c) = case.input;
    let (kh, kw) = case.cfg.kernel;
    let cm = c * case.cfg.multiplier;
    let x = dev.tensor_from_vec(x.to_vec(), case.input);
    let matrix = weight_from_checkpoint(w_checkpoint, (cm, kh, kw));
    let params = DepthwiseParams {
        weight: dev.tensor_from_vec(matrix, (kh * kw, cm)),
        bias: bias.map(|b| dev.tensor_from_vec(b.to_vec(), (cm,))),
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
    let out = depthwise_conv2d(traced, &params, &case.cfg);
    assert_eq!(*out.shape(), case.out_shape());
    let values = out.as_vec();
    let (_, mut grads) = weighted_sum(out, go);
    let gx = if case.cfg.input_grad {
        grads.get(&x).as_vec()
    } else {
        Vec::new()
    };
    let gw = weight_to_checkpoint(&grads.get(&params.weight).as_vec(), (cm, kh, kw));
    let gb = match &params.bias {
        Some(b) => grads.get_or_alloc_mut(b).expect("cpu alloc").to_vec(),
        None => Vec::new(),
    };
    (values, [gx, gw, gb])
}

/// Compares the op with the reference on `case`; returns the worst errors.
fn compare(case: &Case, seed: u64, worst: &mut Worst) {
    let (n, h, w, c) = case.input;
    let (kh, kw) = case.cfg.kernel;
    let cm = c * case.cfg.multiplier;
    let mut rng = Rng::new(seed);
    let x = rng.vec(n * h * w * c, -2.0, 2.0);
    let weights = rng.vec(cm * kh * kw, -1.0, 1.0);
    let bias = case.bias.then(|| rng.vec(cm, -1.0, 1.0));
    let pre = reference_preact(case, &x, &weights, bias.as_deref());
    let act = case.cfg.activation;
    let (go, dz) = loss_weights(&mut rng, &pre, act);
    let (out, [gx, gw, gb]) = run_op(case, &x, &weights, bias.as_deref(), &go, None);
    let expected = activated(&pre, act);
    let [rx, rw, rb] = reference_grads(case, &x, &weights, &dz);
    let label = format!("{case:?}");
    let tolerances = [1e-5, 1e-5, 1e-5, 1e-5];
    let mut compare_one = |which: usize, a: &[f32], b: &[f64]| {
        let e = errors(a, b);
        assert!(
            e.0 <= tolerances[which],
            "{label}: tensor {which}: error {e:?}"
        );
        worst.note(which, e);
    };
    compare_one(0, &out, &expected);
    if case.cfg.input_grad {
        compare_one(1, &gx, &rx);
    } else {
        assert!(gx.is_empty());
    }
    compare_one(2, &gw, &rw);
    if case.bias {
        compare_one(3, &gb, &rb);
    }
}

fn config(
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: Padding,
    multiplier: usize,
    activation: FusedActivation,
) -> DepthwiseConfig {
    DepthwiseConfig {
        kernel,
        stride,
        padding,
        multiplier,
        activation,
        input_grad: true,
    }
}

#[test]
fn depthwise_matches_f64_reference_on_a_grid() {
    let mut worst = Worst::new(&["forward", "input", "weight", "bias"]);
    let mut index = 0u64;
    for channels in [1, 3, 8, 17, 32] {
        for multiplier in [1, 2] {
            for kernel in [(3, 3), (2, 3), (3, 1), (5, 5)] {
                for stride in [(1, 1), (2, 2), (2, 1)] {
                    for padding in [Padding::Same, Padding::Valid] {
                        for (h, w) in [(7, 5), (5, 13)] {
                            if padding == Padding::Valid && (kernel.0 > h || kernel.1 > w) {
                                continue;
                            }
                            index += 1;
                            let act = ACTIVATIONS[index as usize % 3];
                            let mut cfg = config(kernel, stride, padding, multiplier, act);
                            cfg.input_grad = !index.is_multiple_of(7);
                            let case = Case {
                                input: (2, h, w, channels),
                                cfg,
                                bias: !index.is_multiple_of(5),
                            };
                            compare(&case, index, &mut worst);
                        }
                    }
                }
            }
        }
    }
    worst.print(&format!("depthwise grid ({index} cases)"));
}

#[test]
fn depthwise_matches_f64_reference_across_row_blocks() {
    // Tall images: the backward pass splits each into several blocks of rows (even blocks,
    // then odd), whose input rows overlap.
    let mut worst = Worst::new(&["forward", "input", "weight", "bias"]);
    for (seed, (input, kernel, stride, multiplier)) in [
        ((2, 150, 24, 17), (3, 3), (1, 1), 2),
        ((1, 161, 20, 32), (5, 3), (2, 2), 1),
        ((2, 97, 33, 24), (4, 2), (1, 2), 1),
    ]
    .into_iter()
    .enumerate()
    {
        for padding in [Padding::Same, Padding::Valid] {
            let act = ACTIVATIONS[seed];
            let case = Case {
                input,
                cfg: config(kernel, stride, padding, multiplier, act),
                bias: true,
            };
            compare(&case, 100 + seed as u64, &mut worst);
        }
    }
    worst.print("depthwise tall images");
}

#[test]
fn depthwise_finite_differences() {
    let dev = Cpu::default();
    for (name, input, cfg) in [
        (
            "depthwise 3x3 same m1 relu6",
            (2, 5, 6, 3),
            config((3, 3), (1, 1), Padding::Same, 1, FusedActivation::Relu6),
        ),
        (
            "depthwise 2x3 same stride 2 m2",
            (2, 7, 5, 3),
            config((2, 3), (2, 2), Padding::Same, 2, FusedActivation::Linear),
        ),
        (
            "depthwise 3x2 valid stride 2x1 m2 relu",
            (1, 7, 6, 17),
            config((3, 2), (2, 1), Padding::Valid, 2, FusedActivation::Relu),
        ),
    ] {
        let case = Case {
            input,
            cfg,
            bias: true,
        };
        let (n, h, w, c) = input;
        let (kh, kw) = cfg.kernel;
        let cm = c * cfg.multiplier;
        let mut rng = Rng::new(11);
        let x = rng.distinct(n * h * w * c);
        let values = vec![
            x.iter().map(|v| v * 3.0).collect(),
            rng.vec(kh * kw * cm, -1.0, 1.0),
            rng.vec(cm, -0.5, 0.5),
        ];
        let (_, ho, wo, _) = case.out_shape();
        let loss_weights = rng.vec(n * ho * wo * cm, -1.0, 1.0);
        check(name, values, 1e-3, (2e-3, 2e-2), |v| {
            let x = dev.tensor_from_vec(v[0].clone(), input);
            let params = DepthwiseParams {
                weight: dev.tensor_from_vec(v[1].clone(), (kh * kw, cm)),
                bias: Some(dev.tensor_from_vec(v[2].clone(), (cm,))),
            };
            let out = depthwise_conv2d(x.leaky_trace(), &params, &cfg);
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
fn depthwise_checkpoint_layout_round_trips() {
    let mut rng = Rng::new(5);
    let (cm, kh, kw) = (6, 3, 2);
    let checkpoint = rng.vec(cm * kh * kw, -1.0, 1.0);
    let matrix = weight_from_checkpoint(&checkpoint, (cm, kh, kw));
    assert_eq!(weight_to_checkpoint(&matrix, (cm, kh, kw)), checkpoint);
    // Tap (i, j) of output channel o sits at row i * k_w + j, column o.
    for o in 0..cm {
        for i in 0..kh {
            for j in 0..kw {
                assert_eq!(
                    matrix[(i * kw + j) * cm + o],
                    checkpoint[(o * kh + i) * kw + j]
                );
            }
        }
    }
}

#[test]
fn depthwise_input_gradient_adds_to_its_slot() {
    let case = Case {
        input: (2, 7, 9, 5),
        cfg: config((3, 3), (1, 1), Padding::Same, 2, FusedActivation::Relu),
        bias: true,
    };
    let (n, h, w, c) = case.input;
    let mut rng = Rng::new(9);
    let x = rng.vec(n * h * w * c, -1.0, 1.0);
    let weights = rng.vec(c * 2 * 9, -1.0, 1.0);
    let bias = rng.vec(c * 2, -0.5, 0.5);
    let (_, ho, wo, cm) = case.out_shape();
    let go = rng.vec(n * ho * wo * cm, -1.0, 1.0);
    let prior = rng.vec(x.len(), -1.0, 1.0);
    let (_, [alone, _, _]) = run_op(&case, &x, &weights, Some(&bias), &go, None);
    let (_, [added, _, _]) = run_op(&case, &x, &weights, Some(&bias), &go, Some(&prior));
    for ((a, p), s) in added.iter().zip(&prior).zip(&alone) {
        assert!((a - (p + s)).abs() < 1e-6, "{a} vs {p} + {s}");
    }
}

#[test]
fn depthwise_is_deterministic_across_thread_counts() {
    let case = Case {
        input: (5, 64, 17, 19),
        cfg: config((3, 3), (1, 1), Padding::Same, 1, FusedActivation::Relu6),
        bias: true,
    };
    let (n, h, w, c) = case.input;
    let mut rng = Rng::new(21);
    let x = rng.vec(n * h * w * c, -2.0, 2.0);
    let weights = rng.vec(c * 9, -1.0, 1.0);
    let bias = rng.vec(c, -0.5, 0.5);
    let (_, ho, wo, cm) = case.out_shape();
    let go = rng.vec(n * ho * wo * cm, -1.0, 1.0);
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
