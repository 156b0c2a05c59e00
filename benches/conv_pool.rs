//! The fused conv -> relu -> max-pool op, forward (inference) and forward + backward, on the
//! layer shapes that dominate training: Fashion-MNIST's two convolutions (batch 64) and the
//! first two of the seed's deep model (224x224 input, batch 10).
//!
//! Run with `cargo bench --bench conv_pool`; compare revisions by running it on each.

use criterion::{criterion_group, criterion_main, Criterion};
use dfdx::prelude::*;
use strata::backend::ops::conv2d::{Conv2dConfig, Conv2dParams};
use strata::backend::ops::conv_pool::conv2d_max_pool;
use strata::backend::ops::geometry::Padding;
use strata::backend::ops::pool2d::Pool2dConfig;

/// One layer: input `(n, h, w, c)`, square kernel, filters.
struct Layer {
    name: &'static str,
    input: (usize, usize, usize, usize),
    kernel: usize,
    filters: usize,
}

const LAYERS: [Layer; 4] = [
    Layer {
        name: "fashion_conv1",
        input: (64, 28, 28, 1),
        kernel: 3,
        filters: 32,
    },
    Layer {
        name: "fashion_conv2",
        input: (64, 14, 14, 32),
        kernel: 3,
        filters: 64,
    },
    Layer {
        name: "deep_conv1",
        input: (10, 224, 224, 3),
        kernel: 2,
        filters: 20,
    },
    Layer {
        name: "deep_conv2",
        input: (10, 112, 112, 20),
        kernel: 2,
        filters: 20,
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
    let mut group = c.benchmark_group("conv_pool");
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
        let pool = Pool2dConfig {
            size: (2, 2),
            stride: (2, 2),
            padding: Padding::Valid,
        };
        group.bench_function(format!("{}/forward", layer.name), |b| {
            b.iter(|| conv2d_max_pool(x.clone(), &params, &conv, &pool))
        });
        group.bench_function(format!("{}/train_step", layer.name), |b| {
            b.iter(|| {
                let out = conv2d_max_pool(x.leaky_trace(), &params, &conv, &pool);
                out.sum::<Rank0, _>().backward()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_layers);
criterion_main!(benches);
