//! Gradient check of a small whole network:
//! bn -> conv -> relu -> maxpool -> flatten -> dense -> log-softmax cross-entropy.

use crate::common;

use common::gradcheck::{check, Rng};
use dfdx::prelude::*;
use strata::backend::ops::activation::relu;
use strata::backend::ops::batch_norm::{batch_norm, BatchNormConfig, BatchNormParams};
use strata::backend::ops::conv2d::{conv2d, Conv2dConfig, Conv2dParams};
use strata::backend::ops::dense::{dense, DenseParams};
use strata::backend::ops::flatten::flatten;
use strata::backend::ops::geometry::Padding;
use strata::backend::ops::pool2d::{max_pool2d, Pool2dConfig};

#[test]
fn small_network_gradients() {
    let (n, h, w, c, filters, classes) = (3, 6, 6, 2, 4, 3);
    let k = 2 * 2 * c;
    let flat = filters * 3 * 3;
    let mut rng = Rng::new(21);
    let values = vec![
        rng.vec(n * h * w * c, -1.0, 1.0),
        rng.vec(c, 0.5, 1.5),
        rng.vec(c, -0.3, 0.3),
        rng.vec(k * filters, -0.6, 0.6),
        rng.vec(filters, -0.1, 0.1),
        rng.vec(classes * flat, -0.5, 0.5),
        rng.vec(classes, -0.1, 0.1),
    ];
    let mut targets = vec![0.0; n * classes];
    for (i, row) in targets.chunks_exact_mut(classes).enumerate() {
        row[i % classes] = 1.0;
    }
    let dev = Cpu::default();
    let conv_cfg = Conv2dConfig {
        kernel: (2, 2),
        stride: (1, 1),
        padding: Padding::Same,
        relu: false,
        input_grad: true,
    };
    let pool_cfg = Pool2dConfig {
        size: (2, 2),
        stride: (2, 2),
        padding: Padding::Valid,
    };
    check("network", values, 1e-2, (2e-3, 3e-2), |v| {
        let x = dev.tensor_from_vec(v[0].clone(), (n, h, w, c));
        let vector = |data: &[f32]| dev.tensor_from_vec(data.to_vec(), (data.len(),));
        let mut bn = BatchNormParams {
            gamma: vector(&v[1]),
            beta: vector(&v[2]),
            moving_mean: vector(&vec![0.0; c]),
            moving_variance: vector(&vec![1.0; c]),
        };
        let conv = Conv2dParams {
            weight: dev.tensor_from_vec(v[3].clone(), (k, filters)),
            bias: Some(vector(&v[4])),
        };
        let fc = DenseParams {
            weight: dev.tensor_from_vec(v[5].clone(), (classes, flat)),
            bias: Some(vector(&v[6])),
        };
        let hidden = batch_norm(x.leaky_trace(), &mut bn, &BatchNormConfig::default());
        let hidden = relu(conv2d(hidden, &conv, &conv_cfg));
        let hidden = flatten(max_pool2d(hidden, &pool_cfg));
        let logits = dense(hidden, &fc, false);
        let loss = cross_entropy_with_logits_loss(
            logits,
            dev.tensor_from_vec(targets.clone(), (n, classes)),
        );
        let loss_value = f64::from(loss.array());
        let grads = loss.backward();
        let conv_bias = conv.bias.as_ref().expect("bias");
        let fc_bias = fc.bias.as_ref().expect("bias");
        let all = vec![
            grads.get(&x).as_vec(),
            grads.get(&bn.gamma).as_vec(),
            grads.get(&bn.beta).as_vec(),
            grads.get(&conv.weight).as_vec(),
            grads.get(conv_bias).as_vec(),
            grads.get(&fc.weight).as_vec(),
            grads.get(fc_bias).as_vec(),
        ];
        (loss_value, all)
    });
}
