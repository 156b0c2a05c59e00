//! The separable convolution (depthwise, then pointwise with bias) against a direct f64
//! reference — forward, input, depthwise, pointwise and bias gradients — over strides, Keras
//! padding, rectangular kernels, multipliers, channel and filter counts, fused relu / relu6;
//! a finite-difference check; the checkpoint layouts; and the input gradient adding onto what
//! its slot holds.

use crate::common;

use common::gradcheck::{check, weighted_sum, Rng};
use common::reference::{activated, errors, loss_weights, Worst, ACTIVATIONS};
use dfdx::prelude::*;
use strata::backend::ops::depthwise_kernels::FusedActivation;
use strata::backend::ops::geometry::{Axis1, Padding};
use strata::backend::ops::separable::{
    depthwise_from_checkpoint, depthwise_to_checkpoint, pointwise_from_checkpoint,
    pointwise_to_checkpoint, separable_conv2d, SeparableConfig, SeparableParams,
};

type Shape4 = (usize, usize, usize, usize);

/// One layer on one input.
#[derive(Clone, Copy, Debug)]
struct Case {
    input: Shape4,
    filters: usize,
    cfg: SeparableConfig,
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
    fn mid_channels(&self) -> usize {
        self.input.3 * self.cfg.multiplier
    }
    fn out_shape(&self) -> Shape4 {
        let (rows, cols) = self.axes();
        (self.input.0, rows.output, cols.output, self.filters)
    }
}

/// Checkpoint-layout weights of a case.
struct Weights {
    /// `[c * m, 1, k_h, k_w]`.
    depthwise: Vec<f32>,
    /// `[filters, c * m, 1, 1]`.
    pointwise: Vec<f32>,
    bias: Option<Vec<f32>>,
}

/// The f64 reference: the intermediate (`pixels x c*m`) and the pre-activations
/// (`pixels x filters`), NHWC.
fn reference_forward(case: &Case, x: &[f32], w: &Weights) -> (Vec<f64>, Vec<f64>) {
    let (n, h, wd, c) = case.input;
    let m = case.cfg.multiplier;
    let (kh, kw) = case.cfg.kernel;
    let (rows, cols) = case.axes();
    let (_, ho, wo, f) = case.out_shape();
    let cm = case.mid_channels();
    let pixels = n * ho * wo;
    let mut mid = vec![0.0f64; pixels * cm];
    for b in 0..n {
        for y in 0..ho {
            for xo in 0..wo {
                for o in 0..cm {
                    let mut acc = 0.0;
                    for i in 0..kh {
                        for j in 0..kw {
                            let (Some(iy), Some(ix)) = (rows.source(y, i), cols.source(xo, j))
                            else {
                                continue;
                            };
                            let v = f64::from(x[((b * h + iy) * wd + ix) * c + o / m]);
                            acc += v * f64::from(w.depthwise[(o * kh + i) * kw + j]);
                        }
                    }
                    mid[((b * ho + y) * wo + xo) * cm + o] = acc;
                }
            }
        }
    }
    let mut pre = vec![0.0f64; pixels * f];
    for p in 0..pixels {
        for fo in 0..f {
            let mut acc = w.bias.as_ref().map_or(0.0, |b| f64::from(b[fo]));
            for o in 0..cm {
                acc += mid[p * cm + o] * f64::from(w.pointwise[fo * cm + o]);
            }
            pre[p * f + fo] = acc;
        }
    }
    (mid, pre)
}

/// The f64 reference gradients `[input, depthwise, pointwise, bias]` (checkpoint layouts)
/// given the gradient `dz` of the pre-activations.
fn reference_grads(case: &Case, x: &[f32], w: &Weights, mid: &[f64], dz: &[f64]) -> [Vec<f64>; 4] {
    let (n, h, wd, c) = case.input;
    let m = case.cfg.multiplier;
    let (kh, kw) = case.cfg.kernel;
    let (rows, cols) = case.axes();
    let (_, ho, wo, f) = case.out_shape();
    let cm = case.mid_channels();
    let pixels = n * ho * wo;
    let mut gb = vec![0.0f64; f];
    let mut gpw = vec![0.0f64; f * cm];
    let mut gmid = vec![0.0f64; pixels * cm];
    for p in 0..pixels {
        for fo in 0..f {
            let d = dz[p * f + fo];
            gb[fo] += d;
            for o in 0..cm {
                gpw[fo * cm + o] += d * mid[p * cm + o];
                gmid[p * cm + o] += d * f64::from(w.pointwise[fo * cm + o]);
            }
        }
    }
    let mut gx = vec![0.0f64; x.len()];
    let mut gdw = vec![0.0f64; w.depthwise.len()];
    for b in 0..n {
        for y in 0..ho {
            for xo in 0..wo {
                for o in 0..cm {
                    let d = gmid[((b * ho + y) * wo + xo) * cm + o];
                    for i in 0..kh {
                        for j in 0..kw {
                            let (Some(iy), Some(ix)) = (rows.source(y, i), cols.source(xo, j))
                            else {
                                continue;
                            };
                            let at = ((b * h + iy) * wd + ix) * c + o / m;
                            let tap = (o * kh + i) * kw + j;
                            gx[at] += d * f64::from(w.depthwise[tap]);
                            gdw[tap] += d * f64::from(x[at]);
                        }
                    }
                }
            }
        }
    }
    [gx, gdw, gpw, gb]
}

/// Runs the op with loss weights `go`: output and gradients `[input, depthwise, pointwise,
/// bias]` in checkpoint layouts, the input gradient on top of `prior`.
fn run_op(
    case: &Case,
    x: &[f32],
    w: &Weights,
    go: &[f32],
    prior: Option<&[f32]>,
) -> (Vec<f32>, [Vec<f32>; 4]) {
    let dev = Cpu::default();
    let (kh, kw) = case.cfg.kernel;
    let cm = case.mid_channels();
    let f = case.filters;
    let x = dev.tensor_from_vec(x.to_vec(), case.input);
    let params = SeparableParams {
        depthwise: dev.tensor_from_vec(
            depthwise_from_checkpoint(&w.depthwise, (cm, kh, kw)),
            (kh * kw, cm),
        ),
        pointwise: dev.tensor_from_vec(pointwise_from_checkpoint(&w.pointwise, (f, cm)), (cm, f)),
        bias: w
            .bias
            .as_ref()
            .map(|b| dev.tensor_from_vec(b.clone(), (f,))),
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
    let out = separable_conv2d(traced, &params, &case.cfg);
    assert_eq!(*out.shape(), case.out_shape());
    let values = out.as_vec();
    let (_, mut grads) = weighted_sum(out, go);
    let gx = if case.cfg.input_grad {
        grads.get(&x).as_vec()
    } else {
        Vec::new()
    };
    let gdw = depthwise_to_checkpoint(&grads.get(&params.depthwise).as_vec(), (cm, kh, kw));
    let gpw = pointwise_to_checkpoint(&grads.get(&params.pointwise).as_vec(), (f, cm));
    let gb = match &params.bias {
        Some(b) => grads.get_or_alloc_mut(b).expect("cpu alloc").to_vec(),
        None => Vec::new(),
    };
    (values, [gx, gdw, gpw, gb])
}

fn random_weights(case: &Case, rng: &mut Rng) -> Weights {
    let (kh, kw) = case.cfg.kernel;
    let cm = case.mid_channels();
    Weights {
        depthwise: rng.vec(cm * kh * kw, -1.0, 1.0),
        pointwise: rng.vec(case.filters * cm, -1.0, 1.0),
        bias: case.bias.then(|| rng.vec(case.filters, -1.0, 1.0)),
    }
}

fn compare(case: &Case, seed: u64, worst: &mut Worst) {
    let (n, h, w, c) = case.input;
    let mut rng = Rng::new(seed);
    let x = rng.vec(n * h * w * c, -2.0, 2.0);
    let weights = random_weights(case, &mut rng);
    let (mid, pre) = reference_forward(case, &x, &weights);
    let act = case.cfg.activation;
    let (go, dz) = loss_weights(&mut rng, &pre, act);
    let (out, grads) = run_op(case, &x, &weights, &go, None);
    let expected = activated(&pre, act);
    let reference = reference_grads(case, &x, &weights, &mid, &dz);
    let label = format!("{case:?}");
    let mut compare_one = |which: usize, a: &[f32], b: &[f64]| {
        let e = errors(a, b);
        assert!(e.0 <= 1e-5, "{label}: tensor {which}: error {e:?}");
        worst.note(which, e);
    };
    compare_one(0, &out, &expected);
    for (t, (a, b)) in grads.iter().zip(&reference).enumerate() {
        let skip = (t == 0 && !case.cfg.input_grad) || (t == 3 && !case.bias);
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
    multiplier: usize,
    activation: FusedActivation,
) -> SeparableConfig {
    SeparableConfig {
        kernel,
        stride,
        padding,
        multiplier,
        activation,
        input_grad: true,
    }
}

#[test]
fn separable_matches_f64_reference_on_a_grid() {
    let mut worst = Worst::new(&["forward", "input", "depthwise", "pointwise", "bias"]);
    let mut index = 0u64;
    for channels in [1, 3, 8, 17, 32] {
        for multiplier in [1, 2] {
            for kernel in [(3, 3), (2, 3), (5, 1)] {
                for stride in [(1, 1), (2, 2), (1, 2)] {
                    for padding in [Padding::Same, Padding::Valid] {
                        index += 1;
                        let act = ACTIVATIONS[index as usize % 3];
                        let mut cfg = config(kernel, stride, padding, multiplier, act);
                        cfg.input_grad = !index.is_multiple_of(7);
                        let case = Case {
                            input: (2, 7, 5 + (index as usize % 2) * 8, channels),
                            filters: [1, 5, 16, 19][index as usize % 4],
                            cfg,
                            bias: !index.is_multiple_of(5),
                        };
                        compare(&case, index, &mut worst);
                    }
                }
            }
        }
    }
    worst.print(&format!("separable grid ({index} cases)"));
}

#[test]
fn separable_matches_f64_reference_across_row_blocks() {
    // Tall images: several blocks of rows per image, whose input rows and halos overlap.
    let mut worst = Worst::new(&["forward", "input", "depthwise", "pointwise", "bias"]);
    for (seed, (input, filters, kernel, stride, multiplier)) in [
        ((2, 120, 20, 17), 24, (3, 3), (1, 1), 2),
        ((1, 133, 16, 32), 9, (5, 3), (2, 2), 1),
    ]
    .into_iter()
    .enumerate()
    {
        for padding in [Padding::Same, Padding::Valid] {
            let case = Case {
                input,
                filters,
                cfg: config(kernel, stride, padding, multiplier, ACTIVATIONS[seed + 1]),
                bias: true,
            };
            compare(&case, 200 + seed as u64, &mut worst);
        }
    }
    worst.print("separable tall images");
}

#[test]
fn separable_finite_differences() {
    let dev = Cpu::default();
    for (name, input, filters, cfg) in [
        (
            "separable 3x3 same m1 relu",
            (2, 5, 6, 3),
            4,
            config((3, 3), (1, 1), Padding::Same, 1, FusedActivation::Relu),
        ),
        (
            "separable 2x3 valid stride 2 m2 relu6",
            (1, 7, 6, 5),
            3,
            config((2, 3), (2, 2), Padding::Valid, 2, FusedActivation::Relu6),
        ),
    ] {
        let case = Case {
            input,
            filters,
            cfg,
            bias: true,
        };
        let (n, h, w, c) = input;
        let (kh, kw) = cfg.kernel;
        let cm = case.mid_channels();
        let mut rng = Rng::new(13);
        let x: Vec<f32> = rng
            .distinct(n * h * w * c)
            .iter()
            .map(|v| v * 4.0)
            .collect();
        let values = vec![
            x,
            rng.vec(kh * kw * cm, -1.0, 1.0),
            rng.vec(cm * filters, -1.0, 1.0),
            rng.vec(filters, -0.5, 0.5),
        ];
        let (_, ho, wo, _) = case.out_shape();
        let loss_weights = rng.vec(n * ho * wo * filters, -1.0, 1.0);
        check(name, values, 1e-3, (2e-3, 2e-2), |v| {
            let x = dev.tensor_from_vec(v[0].clone(), input);
            let params = SeparableParams {
                depthwise: dev.tensor_from_vec(v[1].clone(), (kh * kw, cm)),
                pointwise: dev.tensor_from_vec(v[2].clone(), (cm, filters)),
                bias: Some(dev.tensor_from_vec(v[3].clone(), (filters,))),
            };
            let out = separable_conv2d(x.leaky_trace(), &params, &cfg);
            let (loss, mut grads) = weighted_sum(out, &loss_weights);
            let bias = params.bias.as_ref().expect("bias");
            let all = vec![
                grads.get(&x).as_vec(),
                grads.get(&params.depthwise).as_vec(),
                grads.get(&params.pointwise).as_vec(),
                grads.get_or_alloc_mut(bias).expect("cpu alloc").to_vec(),
            ];
            (loss, all)
        });
    }
}

#[test]
fn separable_checkpoint_layouts_round_trip() {
    let mut rng = Rng::new(6);
    let (filters, cm, kh, kw) = (5, 6, 3, 2);
    let dw = rng.vec(cm * kh * kw, -1.0, 1.0);
    let dims = (cm, kh, kw);
    assert_eq!(
        depthwise_to_checkpoint(&depthwise_from_checkpoint(&dw, dims), dims),
        dw
    );
    let pw = rng.vec(filters * cm, -1.0, 1.0);
    let matrix = pointwise_from_checkpoint(&pw, (filters, cm));
    assert_eq!(pointwise_to_checkpoint(&matrix, (filters, cm)), pw);
    // Filter f's weight on channel o sits at row o, column f.
    for f in 0..filters {
        for o in 0..cm {
            assert_eq!(matrix[o * filters + f], pw[f * cm + o]);
        }
    }
}

#[test]
fn separable_input_gradient_adds_to_its_slot() {
    let case = Case {
        input: (2, 9, 7, 6),
        filters: 5,
        cfg: config((3, 3), (2, 1), Padding::Same, 2, FusedActivation::Relu6),
        bias: true,
    };
    let (n, h, w, c) = case.input;
    let mut rng = Rng::new(10);
    let x = rng.vec(n * h * w * c, -1.0, 1.0);
    let weights = random_weights(&case, &mut rng);
    let (_, ho, wo, f) = case.out_shape();
    let go = rng.vec(n * ho * wo * f, -1.0, 1.0);
    let prior = rng.vec(x.len(), -1.0, 1.0);
    let (_, [alone, ..]) = run_op(&case, &x, &weights, &go, None);
    let (_, [added, ..]) = run_op(&case, &x, &weights, &go, Some(&prior));
    for ((a, p), s) in added.iter().zip(&prior).zip(&alone) {
        assert!((a - (p + s)).abs() < 1e-6, "{a} vs {p} + {s}");
    }
}

#[test]
fn separable_is_deterministic_across_thread_counts() {
    let case = Case {
        input: (3, 70, 19, 24),
        filters: 40,
        cfg: config((3, 3), (1, 1), Padding::Same, 1, FusedActivation::Relu),
        bias: true,
    };
    let (n, h, w, c) = case.input;
    let mut rng = Rng::new(22);
    let x = rng.vec(n * h * w * c, -2.0, 2.0);
    let weights = random_weights(&case, &mut rng);
    let (_, ho, wo, f) = case.out_shape();
    let go = rng.vec(n * ho * wo * f, -1.0, 1.0);
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool")
            .install(|| run_op(&case, &x, &weights, &go, None))
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
