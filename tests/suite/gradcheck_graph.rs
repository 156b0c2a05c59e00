//! Gradient checks of whole graph networks through `Network` (the executor, not the ops
//! alone): a tensor read by several layers gets the sum of their gradients, merges pass them
//! on, and every layer kind the backend runs is on the path from the loss to the parameters.
//! The parameters are the checkpoint's tensors, perturbed one element at a time.

use crate::common;

use common::gradcheck::{check, Rng};
use strata::backend::checkpoint::{expected_tensors, Checkpoint, NamedTensor};
use strata::backend::network::Network;

fn model(text: &str) -> strata::ir::Model {
    let compiled = strata::compile(text, "graph");
    compiled
        .model
        .unwrap_or_else(|| panic!("{:?}", compiled.diagnostics))
}

/// Checks every parameter's gradient of the model in `spec` on a fixed batch.
fn check_spec(name: &str, spec: &str, labels: &[usize], seed: u64) {
    check_spec_eps(name, spec, labels, seed, 1e-2)
}

fn check_spec_eps(name: &str, spec: &str, labels: &[usize], seed: u64, eps: f32) {
    let model = model(spec);
    let shapes = expected_tensors(&model);
    let mut rng = Rng::new(seed);
    let values: Vec<Vec<f32>> = shapes
        .iter()
        .map(|(tensor, shape)| {
            let len = shape.iter().product();
            if tensor.ends_with("moving_variance") || tensor.ends_with("gamma") {
                rng.vec(len, 0.6, 1.4)
            } else {
                rng.vec(len, -0.6, 0.6)
            }
        })
        .collect();
    let images = rng.vec(labels.len() * model.input.len(), -1.0, 1.0);
    let classes: Vec<String> = (0..model.classes).map(|c| format!("c{c}")).collect();
    check(name, values, eps, (3e-3, 3e-2), |v| {
        let tensors = shapes
            .iter()
            .zip(v)
            .map(|((tensor, shape), data)| NamedTensor {
                name: tensor.clone(),
                shape: shape.clone(),
                data: data.clone(),
            })
            .collect();
        let checkpoint = Checkpoint {
            tensors,
            spec: spec.to_string(),
            classes: classes.clone(),
            extra: Default::default(),
        };
        let mut network = Network::from_checkpoint(&model, &checkpoint).expect("runs");
        let (stats, gradients) = network.loss_and_gradients(images.clone(), labels);
        let by_name: Vec<Vec<f32>> = shapes
            .iter()
            .map(|(tensor, _)| {
                gradients
                    .iter()
                    .find(|g| &g.name == tensor)
                    .map(|g| g.data.clone())
                    .expect("a gradient per tensor")
            })
            .collect();
        (stats.loss, by_name)
    });
}

#[test]
fn residual_concat_and_gating_graph() {
    // Fan-out at every merge; relu6, silu, hardswish, hardsigmoid, elu on the paths; global
    // max and average pooling; a conv with and without a fused relu.
    let spec = "input: 6x6x3\nclasses: 3\nmodel: |\n  conv3(4, pad=same) -> bn relu6\n  -> add(identity, conv3(4, pad=same) relu -> bn silu)\n  -> concat(identity, conv1(2) hardswish, pool2(stride=1, pad=same))\n  -> mul(identity, gap -> dense10 hardsigmoid)\n  -> add(gmp, gap) elu\n  -> dense3 softmax\n";
    // Many kinks (relu6, max pools, relu): a small step, so that few of them are crossed.
    for seed in [1, 5, 6] {
        check_spec_eps("graph", spec, &[0, 1, 2, 1], seed, 1e-3);
    }
}

#[test]
fn the_same_tensor_twice_in_a_merge() {
    // `add(identity, identity)` doubles its input's gradient; `mul(identity, identity)` squares.
    let spec = "input: 4x4x1\nclasses: 2\nmodel: conv3(3, pad=same) -> add(identity, identity) -> mul(identity, identity) -> gap -> dense2 softmax\n";
    check_spec("twice", spec, &[0, 1, 1], 9);
}

#[test]
fn binary_head_graph() {
    let spec = "input: 5x5x1\nclasses: 2\nmodel: conv3(3, pad=same) relu -> add(identity, conv1(3)) -> gap -> dense1 sigmoid\n";
    check_spec("binary", spec, &[0, 1, 1, 0], 13);
}

#[test]
fn residual_blocks_ending_in_batch_norm() {
    // The residual add runs inside the batch norm ending its branch, with the add's relu or
    // relu6 (and a linear one): the skip gets the masked gradient, the batch norm the rest.
    let spec = "input: 6x6x3\nclasses: 2\nmodel: |\n  conv3(3, pad=same) -> bn relu\n  -> add(identity, conv3(3, pad=same) -> bn relu -> conv3(3, pad=same) -> bn) relu\n  -> add(conv1(4, stride=2) -> bn, conv3(4, stride=2, pad=same) -> bn) relu6\n  -> add(identity, conv1(4) -> bn)\n  -> gap -> dense2 softmax\n";
    for seed in [2, 3] {
        check_spec_eps("residual bn", spec, &[0, 1, 1], seed, 1e-3);
    }
}

#[test]
fn an_identity_hands_a_mirrored_output_on_to_layers_that_read_tensors() {
    // The fused conv + batch norm hands its output on as a mirror and the identity passes it
    // on as it is; the two poolings each read a tensor, so two are made from the same values
    // and the batch norm's backward adds up the gradients that reach both.
    let spec = "input: 6x6x3\nclasses: 3\nmodel: |\n  conv3(4, pad=same) -> bn\n  -> add(identity -> gap, gmp)\n  -> dense3 softmax\n";
    for seed in [4, 7] {
        check_spec_eps("identity", spec, &[0, 1, 2, 1], seed, 1e-3);
    }
    // And through a block: the identity's mirror is the add's skip, and a pooling reads it.
    let spec = "input: 6x6x3\nclasses: 2\nmodel: |\n  conv3(4, pad=same) -> bn\n  -> add(identity, conv3(4, pad=same) -> bn) relu\n  -> add(identity -> gmp, gap)\n  -> dense2 softmax\n";
    check_spec_eps("identity block", spec, &[0, 1, 1], 8, 1e-3);
}
