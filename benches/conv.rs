//! The plain convolution, forward (inference) and forward + backward, on resnet_small's 3x3
//! stride-1 `same` layers (batch 32): 16, 32 and 64 channels and filters on 32x32, 16x16 and
//! 8x8 images, which run in the Winograd domain, and its first layer (3 channels), which does
//! not.
//!
//! Also `mobilenetv2_small`'s pointwise layers, forward + backward, on one thread at batch 16
//! (one rank of a split step).
//!
//! Run with `cargo bench --bench conv`; compare revisions by running it on each.

use criterion::{criterion_group, criterion_main, Criterion};
use dfdx::prelude::*;
use strata::backend::ops::conv2d::{conv2d, Conv2dConfig, Conv2dParams};
use strata::backend::ops::geometry::Padding;

/// One layer: input `(n, h, w, c)`, square kernel, filters.
struct Layer {
    name: &'static str,
    input: (usize, usize, usize, usize),
    kernel: usize,
    filters: usize,
}

const LAYERS: [Layer; 4] = [
    Layer {
        name: "resnet_stem",
        input: (32, 32, 32, 3),
        kernel: 3,
        filters: 16,
    },
    Layer {
        name: "resnet_stage1",
        input: (32, 32, 32, 16),
        kernel: 3,
        filters: 16,
    },
    Layer {
        name: "resnet_stage2",
        input: (32, 16, 16, 32),
        kernel: 3,
        filters: 32,
    },
    Layer {
        name: "resnet_stage3",
        input: (32, 8, 8, 64),
        kernel: 3,
        filters: 64,
    },
];

/// Deterministic values in [-1, 1).
fn values(len: usize, seed: u32) -> Vec<f32> {
    (0..len as u32)
        .map(|i| {
            let h = (i ^ seed).wrapping_mul(2_654_435_761).rotate_left(13);
            (h % 2000) as f32 / 1000.0 - 1.0
        })
        .collect()
}

fn bench_layers(c: &mut Criterion) {
    strata::backend::ops::denormals::flush_everywhere();
    let dev = Cpu::default();
    let mut group = c.benchmark_group("conv");
    group.sample_size(20);
    for layer in &LAYERS {
        let (n, h, w, ch) = layer.input;
        let k = layer.kernel * layer.kernel * ch;
        let x = dev.tensor_from_vec(values(n * h * w * ch, 1), layer.input);
        let params = Conv2dParams {
            weight: dev.tensor_from_vec(values(k * layer.filters, 2), (k, layer.filters)),
            bias: Some(dev.tensor_from_vec(values(layer.filters, 3), (layer.filters,))),
        };
        let conv = Conv2dConfig {
            kernel: (layer.kernel, layer.kernel),
            stride: (1, 1),
            padding: Padding::Same,
            relu: true,
            input_grad: true,
        };
        group.bench_function(format!("{}/forward", layer.name), |b| {
            b.iter(|| conv2d(x.clone(), &params, &conv))
        });
        group.bench_function(format!("{}/train_step", layer.name), |b| {
            b.iter(|| {
                let out = conv2d(x.leaky_trace(), &params, &conv);
                out.sum::<Rank0, _>().backward()
            })
        });
    }
    group.finish();
}

/// `mobilenetv2_small`'s pointwise (1x1) layers as one rank of a split training step runs
/// them: half the batch (16 images) on one thread. Input `(n, h, w, c)` and filters: the
/// expansions and projections on 4x4, 8x8 and 32x32 images.
const POINTWISE: [((usize, usize, usize, usize), usize); 9] = [
    ((16, 4, 4, 96), 576),
    ((16, 4, 4, 576), 96),
    ((16, 4, 4, 64), 384),
    ((16, 4, 4, 384), 64),
    ((16, 4, 4, 96), 640),
    ((16, 8, 8, 32), 192),
    ((16, 8, 8, 192), 32),
    ((16, 32, 32, 16), 96),
    ((16, 32, 32, 32), 16),
];

fn bench_pointwise(c: &mut Criterion) {
    strata::backend::ops::denormals::flush_everywhere();
    let dev = Cpu::default();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a one-thread pool");
    let mut group = c.benchmark_group("pointwise");
    group.sample_size(20);
    for (input, filters) in POINTWISE {
        let (n, h, w, ch) = input;
        let x = dev.tensor_from_vec(values(n * h * w * ch, 1), input);
        let params = Conv2dParams {
            weight: dev.tensor_from_vec(values(ch * filters, 2), (ch, filters)),
            bias: None,
        };
        let conv = Conv2dConfig {
            kernel: (1, 1),
            stride: (1, 1),
            padding: Padding::Same,
            relu: false,
            input_grad: true,
        };
        let name = format!("{h}x{w}x{ch}_to_{filters}/train_step");
        group.bench_function(name, |b| {
            b.iter(|| {
                pool.install(|| {
                    let out = conv2d(x.leaky_trace(), &params, &conv);
                    out.sum::<Rank0, _>().backward()
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_layers, bench_pointwise);
criterion_main!(benches);
