//! Gradient checks of max pooling (overlapping, same padding), average pooling (Keras same
//! padding averages only valid elements) and global average pooling, plus forward values.

use crate::common;

use common::gradcheck::{check, weighted_sum, Rng};
use dfdx::prelude::*;
use strata::backend::ops::geometry::Padding;
use strata::backend::ops::pool2d::{avg_pool2d, global_avg_pool, max_pool2d, Pool2dConfig};

type Shape4 = (usize, usize, usize, usize);

fn pool_case(name: &str, shape: Shape4, cfg: Pool2dConfig, max: bool) {
    let mut rng = Rng::new(11);
    let len = shape.0 * shape.1 * shape.2 * shape.3;
    let x = rng.distinct(len);
    let dev = Cpu::default();
    let probe = dev.tensor_from_vec(x.clone(), shape);
    let out_len = if max {
        max_pool2d(probe, &cfg)
    } else {
        avg_pool2d(probe, &cfg)
    }
    .as_vec()
    .len();
    let loss_weights = rng.vec(out_len, -1.0, 1.0);
    check(name, vec![x], 1e-3, (1e-3, 1e-2), |v| {
        let x = dev.tensor_from_vec(v[0].clone(), shape);
        let out = if max {
            max_pool2d(x.leaky_trace(), &cfg)
        } else {
            avg_pool2d(x.leaky_trace(), &cfg)
        };
        let (loss, grads) = weighted_sum(out, &loss_weights);
        (loss, vec![grads.get(&x).as_vec()])
    });
}

#[test]
fn max_pool_overlapping() {
    let cfg = Pool2dConfig {
        size: (3, 3),
        stride: (2, 2),
        padding: Padding::Valid,
    };
    pool_case("maxpool 3x3 stride 2 valid", (2, 7, 8, 3), cfg, true);
}

#[test]
fn max_pool_same_odd_input() {
    let cfg = Pool2dConfig {
        size: (2, 2),
        stride: (2, 2),
        padding: Padding::Same,
    };
    pool_case("maxpool 2 same on 5x7", (2, 5, 7, 4), cfg, true);
}

#[test]
fn max_pool_rectangular_overlapping_same() {
    let cfg = Pool2dConfig {
        size: (3, 2),
        stride: (1, 2),
        padding: Padding::Same,
    };
    pool_case("maxpool 3x2 stride 1x2 same", (1, 6, 5, 2), cfg, true);
}

#[test]
fn avg_pool_same_partial_windows() {
    let cfg = Pool2dConfig {
        size: (3, 3),
        stride: (2, 2),
        padding: Padding::Same,
    };
    pool_case("avgpool 3x3 stride 2 same", (2, 8, 7, 3), cfg, false);
}

#[test]
fn avg_pool_valid() {
    let cfg = Pool2dConfig {
        size: (2, 2),
        stride: (2, 2),
        padding: Padding::Valid,
    };
    pool_case("avgpool 2 valid", (2, 5, 6, 2), cfg, false);
}

#[test]
fn global_avg_pool_gradients() {
    let mut rng = Rng::new(5);
    let shape = (3, 4, 5, 6);
    let dev = Cpu::default();
    let loss_weights = rng.vec(3 * 6, -1.0, 1.0);
    check(
        "gap",
        vec![rng.vec(3 * 4 * 5 * 6, -1.0, 1.0)],
        1e-2,
        (1e-4, 1e-3),
        |v| {
            let x = dev.tensor_from_vec(v[0].clone(), shape);
            let (loss, grads) = weighted_sum(global_avg_pool(x.leaky_trace()), &loss_weights);
            (loss, vec![grads.get(&x).as_vec()])
        },
    );
}

#[test]
fn pool_forward_values() {
    let dev = Cpu::default();
    // One 3x3 single-channel image 1..9; Keras same 2x2 pool gives 2x2 outputs.
    let x = dev.tensor_from_vec((1..=9).map(|v| v as f32).collect(), (1, 3, 3, 1));
    let cfg = Pool2dConfig {
        size: (2, 2),
        stride: (2, 2),
        padding: Padding::Same,
    };
    assert_eq!(
        max_pool2d(x.clone(), &cfg).as_vec(),
        vec![5.0, 6.0, 8.0, 9.0]
    );
    // Averages over valid elements only: (1+2+4+5)/4, (3+6)/2, (7+8)/2, 9.
    assert_eq!(
        avg_pool2d(x.clone(), &cfg).as_vec(),
        vec![3.0, 4.5, 7.5, 9.0]
    );
    assert_eq!(global_avg_pool(x).as_vec(), vec![5.0]);
}
