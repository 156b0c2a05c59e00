//! The depthwise convolution on MobileNetV2-like layers (batch 32, 3x3, `same`, no bias):
//! 56x56x144 stride 1, 28x28x192 stride 2 and 4x4x384 stride 1; forward (inference) and forward + backward (a
//! training step's share).
//!
//! Each layer is timed four ways on preallocated buffers — the kernels with AVX-512, with AVX2,
//! with one lane (`lanes::force`), and a plain scalar implementation (the direct loops, one
//! image per task, as a straightforward port would be) — and once as the taped dfdx op a
//! network calls (which adds dfdx's gradient allocations and the op's copy of its input).
//!
//! Run with `cargo bench --bench depthwise` (criterion, then a summary table), or
//! `cargo bench --bench depthwise -- --summary` for the table alone. The table prints
//! images/s and the achieved memory bandwidth: the bytes the computation must move over the
//! median time — forward: input read once, output written once; forward + backward: that,
//! then the output gradient and the input read and the input gradient read and written.

use criterion::{criterion_group, Criterion, Throughput};
use dfdx::prelude::*;
use rayon::prelude::*;
use std::time::Instant;
use strata::backend::ops::depthwise::{depthwise_conv2d, DepthwiseConfig, DepthwiseParams};
use strata::backend::ops::depthwise_kernels::{
    self as kernels, DepthwiseGeometry, FusedActivation,
};
use strata::backend::ops::geometry::{Axis1, Padding, Window2};
use strata::backend::ops::lanes::{force, Kind};

/// mimalloc with purging off, as the `strata` binary runs: the op's output and dfdx's gradient
/// buffers are freed and allocated again every step, which the system allocator would
/// page-fault afresh each time.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay`.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// One layer: name, input `(n, h, w, c)`, stride.
struct Layer {
    name: &'static str,
    input: (usize, usize, usize, usize),
    stride: usize,
}

const LAYERS: [Layer; 3] = [
    Layer {
        name: "mbv2_56x56x144_s1",
        input: (32, 56, 56, 144),
        stride: 1,
    },
    Layer {
        name: "mbv2_28x28x192_s2",
        input: (32, 28, 28, 192),
        stride: 2,
    },
    // `mobilenetv2_small`'s last stage: two interior columns, tiles of two pixels.
    Layer {
        name: "mbv2_4x4x384_s1",
        input: (32, 4, 4, 384),
        stride: 1,
    },
];

const KERNEL: usize = 3;

/// Deterministic values in [-1, 1).
fn values(len: usize, seed: u32) -> Vec<f32> {
    (0..len as u32)
        .map(|i| {
            let h = (i ^ seed).wrapping_mul(2_654_435_761).rotate_left(13);
            (h % 2000) as f32 / 1000.0 - 1.0
        })
        .collect()
}

/// A layer's tensors, buffers and configuration.
struct Setup {
    g: DepthwiseGeometry,
    x: Tensor<(usize, usize, usize, usize), f32, Cpu>,
    params: DepthwiseParams,
    cfg: DepthwiseConfig,
    input: Vec<f32>,
    weight: Vec<f32>,
    grad_out: Vec<f32>,
    out: Vec<f32>,
    grad_input: Vec<f32>,
    grad_weight: Vec<f32>,
}

impl Setup {
    fn new(dev: &Cpu, layer: &Layer) -> Self {
        let (n, h, w, c) = layer.input;
        let s = layer.stride;
        let window =
            Window2::new((h, w), (KERNEL, KERNEL), (s, s), Padding::Same).expect("kernel fits");
        let g = DepthwiseGeometry {
            batch: n,
            channels: c,
            multiplier: 1,
            window,
        };
        let input = values(n * h * w * c, 1);
        let weight = values(KERNEL * KERNEL * c, 2);
        let cfg = DepthwiseConfig {
            kernel: (KERNEL, KERNEL),
            stride: (s, s),
            padding: Padding::Same,
            multiplier: 1,
            activation: FusedActivation::Linear,
            input_grad: true,
        };
        Setup {
            g,
            x: dev.tensor_from_vec(input.clone(), layer.input),
            params: DepthwiseParams {
                weight: dev.tensor_from_vec(weight.clone(), (KERNEL * KERNEL, c)),
                bias: None,
            },
            cfg,
            grad_out: values(n * g.out_image(), 3),
            out: vec![0.0; n * g.out_image()],
            grad_input: vec![0.0; input.len()],
            grad_weight: vec![0.0; weight.len()],
            input,
            weight,
        }
    }
    /// Bytes the forward pass must move: input read, output written.
    fn forward_bytes(&self) -> u64 {
        4 * (self.input.len() + self.out.len()) as u64
    }
    /// Bytes forward and backward must move: the forward's, then output gradient and input
    /// read, input gradient read and written.
    fn train_bytes(&self) -> u64 {
        self.forward_bytes() + 4 * (self.out.len() + 3 * self.input.len()) as u64
    }
}

/// The plain scalar forward pass (multiplier 1, no bias): the direct loops, one image per
/// task.
fn scalar_forward(g: &DepthwiseGeometry, input: &[f32], weight: &[f32], out: &mut [f32]) {
    let (rows, cols): (Axis1, Axis1) = (g.window.rows, g.window.cols);
    let (c, w, wo) = (g.channels, cols.input, cols.output);
    out.par_chunks_mut(g.out_image())
        .zip(input.par_chunks(g.in_image()))
        .for_each(|(out, image)| {
            for y in 0..rows.output {
                for x in 0..wo {
                    for ch in 0..c {
                        let mut acc = 0.0f32;
                        for i in 0..rows.kernel {
                            for j in 0..cols.kernel {
                                if let (Some(iy), Some(ix)) = (rows.source(y, i), cols.source(x, j))
                                {
                                    acc += image[(iy * w + ix) * c + ch]
                                        * weight[(i * cols.kernel + j) * c + ch];
                                }
                            }
                        }
                        out[(y * wo + x) * c + ch] = acc;
                    }
                }
            }
        });
}

/// The plain scalar backward pass: adds the input gradient, and per-image weight gradients
/// summed in image order.
fn scalar_backward(
    g: &DepthwiseGeometry,
    input: &[f32],
    weight: &[f32],
    grad_out: &[f32],
    grad_input: &mut [f32],
    grad_weight: &mut [f32],
) {
    let (rows, cols): (Axis1, Axis1) = (g.window.rows, g.window.cols);
    let (c, w, wo) = (g.channels, cols.input, cols.output);
    let partials: Vec<Vec<f32>> = grad_input
        .par_chunks_mut(g.in_image())
        .zip(input.par_chunks(g.in_image()))
        .zip(grad_out.par_chunks(g.out_image()))
        .map(|((gi, image), go)| {
            let mut gw = vec![0.0f32; weight.len()];
            for y in 0..rows.output {
                for x in 0..wo {
                    for ch in 0..c {
                        let d = go[(y * wo + x) * c + ch];
                        for i in 0..rows.kernel {
                            for j in 0..cols.kernel {
                                if let (Some(iy), Some(ix)) = (rows.source(y, i), cols.source(x, j))
                                {
                                    let at = (iy * w + ix) * c + ch;
                                    let tap = (i * cols.kernel + j) * c + ch;
                                    gw[tap] += image[at] * d;
                                    gi[at] += weight[tap] * d;
                                }
                            }
                        }
                    }
                }
            }
            gw
        })
        .collect();
    for p in partials {
        grad_weight.iter_mut().zip(p).for_each(|(a, b)| *a += b);
    }
}

/// How a layer is computed.
#[derive(Clone, Copy)]
enum Variant {
    /// The kernels with vectors of at most this kind.
    Kernel(Kind),
    /// The plain scalar loops.
    Plain,
    /// The taped dfdx op, widest vectors.
    Op,
}

const VARIANTS: [(&str, Variant); 5] = [
    ("avx512", Variant::Kernel(Kind::Avx512)),
    ("avx2", Variant::Kernel(Kind::Avx2)),
    ("scalar_lanes", Variant::Kernel(Kind::Scalar)),
    ("plain_scalar", Variant::Plain),
    ("dfdx_op", Variant::Op),
];

fn run_variant(s: &mut Setup, variant: Variant, train: bool) {
    let g = s.g;
    let act = FusedActivation::Linear;
    match variant {
        Variant::Kernel(kind) => {
            force(Some(kind));
            kernels::forward(&g, s.input[..].into(), &s.weight, None, act, &mut s.out);
            if train {
                kernels::backward(
                    &g,
                    &s.input,
                    &s.weight,
                    None,
                    act,
                    &s.grad_out,
                    Some(&mut s.grad_input),
                    &mut s.grad_weight,
                    None,
                );
            }
            force(None);
        }
        Variant::Plain => {
            scalar_forward(&g, &s.input, &s.weight, &mut s.out);
            if train {
                scalar_backward(
                    &g,
                    &s.input,
                    &s.weight,
                    &s.grad_out,
                    &mut s.grad_input,
                    &mut s.grad_weight,
                );
            }
        }
        Variant::Op => {
            if train {
                let out = depthwise_conv2d(s.x.leaky_trace(), &s.params, &s.cfg);
                std::hint::black_box(out.sum::<Rank0, _>().backward());
            } else {
                std::hint::black_box(depthwise_conv2d(s.x.clone(), &s.params, &s.cfg));
            }
        }
    }
    std::hint::black_box(&s.out);
}

fn setup() -> Cpu {
    // SAFETY: setting a mimalloc option is a plain store; no allocation is in flight.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    strata::backend::ops::denormals::flush_everywhere();
    Cpu::default()
}

fn bench_layers(c: &mut Criterion) {
    let dev = setup();
    let mut group = c.benchmark_group("depthwise");
    group.sample_size(10);
    for layer in &LAYERS {
        let mut s = Setup::new(&dev, layer);
        for (name, variant) in VARIANTS {
            for train in [false, true] {
                let bytes = if train {
                    s.train_bytes()
                } else {
                    s.forward_bytes()
                };
                group.throughput(Throughput::Bytes(bytes));
                let pass = if train { "train_step" } else { "forward" };
                group.bench_function(format!("{}/{pass}/{name}", layer.name), |b| {
                    b.iter(|| run_variant(&mut s, variant, train))
                });
            }
        }
    }
    group.finish();
}

/// The median seconds of `runs` calls of `f`, after one warm-up call.
fn median_seconds(runs: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[runs / 2]
}

/// Prints time, images/s, GB/s and the speed-up over the plain scalar loops of every variant.
fn summary() {
    let dev = setup();
    println!(
        "\n{:<18} {:<8} {:<13} {:>9} {:>9} {:>7} {:>8}",
        "layer", "pass", "variant", "ms", "images/s", "GB/s", "speed-up"
    );
    for layer in &LAYERS {
        let mut s = Setup::new(&dev, layer);
        let n = layer.input.0 as f64;
        for train in [false, true] {
            let bytes = if train {
                s.train_bytes()
            } else {
                s.forward_bytes()
            };
            let pass = if train { "fwd+bwd" } else { "forward" };
            let times: Vec<f64> = VARIANTS
                .iter()
                .map(|&(_, variant)| median_seconds(9, || run_variant(&mut s, variant, train)))
                .collect();
            let plain = times[3];
            for ((name, _), t) in VARIANTS.iter().zip(&times) {
                println!(
                    "{:<18} {:<8} {:<13} {:>9.2} {:>9.0} {:>7.1} {:>7.1}x",
                    layer.name,
                    pass,
                    name,
                    t * 1e3,
                    n / t,
                    bytes as f64 / t / 1e9,
                    plain / t
                );
            }
        }
    }
}

criterion_group!(benches, bench_layers);

fn main() {
    if !std::env::args().any(|a| a == "--summary") {
        benches();
        Criterion::default().configure_from_args().final_summary();
    }
    summary();
}
