//! The backend against the compiler and an independent reference: real shapes equal the
//! compiler's for every spec, a fixed model's outputs equal values computed in plain Python
//! (scripts/reference_forward.py), initialisation is Keras's and seeded, and training learns.

use crate::common;

use strata::backend::checkpoint::{Checkpoint, NamedTensor};
use strata::backend::network::Network;
use strata::backend::optimizer::Optimizer;
use strata::backend::params::{to_tensors, LayerParams};

fn compile(text: &str) -> strata::ir::Model {
    let compiled = strata::compile(text, "backend");
    compiled
        .model
        .unwrap_or_else(|| panic!("{:?}", compiled.diagnostics))
}

#[test]
fn real_shapes_equal_the_compilers_for_every_spec() {
    let mut files = common::yaml_files(&common::root().join("specs"));
    files.extend(common::yaml_files(&common::root().join("examples")));
    assert!(files.len() >= 8);
    for path in files {
        let text = std::fs::read_to_string(&path).expect("spec");
        let model = compile(&text);
        let mut network = Network::new(&model, 1);
        let images = (0..2 * model.input.len())
            .map(|v| (v % 255) as f32 / 255.0)
            .collect();
        let real = network.layer_shapes(images, 2);
        let inferred: Vec<Vec<usize>> = model.layers.iter().map(|l| l.output.dims()).collect();
        assert_eq!(real, inferred, "{}", path.display());
    }
}

/// Gives every batch norm of `network` scales, shifts and moving statistics away from their
/// initial values, so that folding it into a convolution changes the weights.
fn perturb_batch_norms(network: &mut Network) {
    use dfdx::tensor::{Tensor, TensorFromVec};
    let device = dfdx::tensor::Cpu::default();
    for (layer, params) in network.params.iter_mut().enumerate() {
        if let LayerParams::BatchNorm(bn) = params {
            let features = bn.gamma.as_vec().len();
            let values = |offset: f32, spread: f32| -> Tensor<(usize,), f32, dfdx::tensor::Cpu> {
                let v = (0..features)
                    .map(|f| offset + spread * (((f * 7 + layer * 3) % 11) as f32 / 10.0))
                    .collect();
                device.tensor_from_vec(v, (features,))
            };
            bn.gamma = values(0.5, 1.0);
            bn.beta = values(-0.3, 0.6);
            bn.moving_mean = values(-0.2, 0.4);
            bn.moving_variance = values(0.5, 2.0);
        }
    }
}

/// A training pass of `model` on two images, its layers fused (`fuse`) or each its own op:
/// the output, every parameter's gradient of a weighted sum of it, and the moving statistics
/// after the pass, as bits.
fn training_pass(model: &strata::ir::Model, fuse: bool) -> Vec<Vec<u32>> {
    use dfdx::prelude::*;
    use strata::backend::forward::{run, PassConfig};
    let mut network = Network::new(model, 5);
    perturb_batch_norms(&mut network);
    let dims = model.input.dims();
    let (h, w, c) = (dims[0], dims[1], dims[2]);
    let images: Vec<f32> = (0..2 * h * w * c)
        .map(|v| ((v * 37) % 255) as f32 / 255.0 - 0.4)
        .collect();
    let device = Cpu::default();
    let cfg = PassConfig {
        training: true,
        fuse,
        activation_to_loss: true,
        bn_sync: None,
        dropout: Default::default(),
        row_stable: false,
    };
    let x = device.tensor_from_vec(images, (2, h, w, c)).leaky_trace();
    let out = run(&model.layers, &mut network.params, x, cfg, &mut |_, _| {});
    let values = out.as_vec();
    let weights: Vec<f32> = (0..values.len()).map(|v| (v % 7) as f32 - 3.0).collect();
    let weights = device.tensor_from_vec(weights, *out.shape());
    let grads = (out * weights).sum().backward();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
    let mut results = vec![bits(&values)];
    let gradients = strata::backend::params::gradient_tensors(model, &network.params, &grads);
    results.extend(gradients.iter().map(|t| bits(&t.data)));
    results.extend(
        to_tensors(model, &network.params)
            .iter()
            .map(|t| bits(&t.data)),
    );
    results
}

/// In training, the fused ops of MobileNetV2- and ResNet-style models (each convolution and its
/// batch norm as one op, outputs handed on as mirrors, a batch norm's output deferred to the
/// depthwise or Winograd convolution that alone reads it, residual adds inside the last batch
/// norm of a block) give the bits of every layer run as its own op.
#[test]
fn a_fused_training_pass_equals_the_separate_ops_bit_for_bit() {
    for name in ["mobilenetv2_small", "resnet_small"] {
        let path = common::root().join(format!("specs/examples/{name}.yaml"));
        let model = compile(&std::fs::read_to_string(path).expect("spec"));
        let fused = training_pass(&model, true);
        let separate = training_pass(&model, false);
        assert_eq!(fused.len(), separate.len());
        assert!(separate[1..]
            .iter()
            .any(|g| g.iter().any(|&b| f32::from_bits(b) != 0.0)));
        for (k, (a, b)) in fused.iter().zip(&separate).enumerate() {
            assert!(a == b, "{name}: result {k} differs");
        }
    }
}

#[test]
fn inference_folds_each_batch_norm_into_the_conv_before_it_and_the_add_after_it() {
    use dfdx::prelude::*;
    use std::borrow::Cow;
    use strata::backend::forward::{run, run_values, PassConfig};
    let mut files = common::yaml_files(&common::root().join("specs/examples"));
    files.extend(common::yaml_files(&common::root().join("specs/seed")));
    let mut specs: Vec<(String, String)> = files
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).expect("spec");
            (path.display().to_string(), text)
        })
        .collect();
    // Odd feature counts (not whole vectors), and a layer too wide for the streaming product
    // (its weights are folded instead).
    for units in [3, 12] {
        let text = format!(
            "input: 5x7x3\nmodel: conv1(5) relu -> bn -> flatten -> dense{units} -> dense2 softmax\n"
        );
        specs.push((format!("inline dense{units}"), text));
        // The same on the model's input (read in place by a pass on borrowed values).
        let text =
            format!("input: 5x7x3\nmodel: bn -> flatten -> dense{units} -> dense2 softmax\n");
        specs.push((format!("inline input dense{units}"), text));
    }
    // A batch norm with its activation on the model's input, read in place on borrowed values.
    let text = "input: 5x7x3\nmodel: bn relu -> conv2(4) relu -> gap -> dense2 softmax\n";
    specs.push(("inline input bn relu".to_string(), text.to_string()));
    let mut folded_somewhere = 0;
    let mut residual_adds = 0;
    let mut into_dense = 0;
    for (path, text) in specs {
        let model = compile(&text);
        let mut network = Network::new(&model, 5);
        perturb_batch_norms(&mut network);
        let dims = model.input.dims();
        let (h, w, c) = (dims[0], dims[1], dims[2]);
        let images: Vec<f32> = (0..2 * h * w * c)
            .map(|v| ((v * 37) % 255) as f32 / 255.0)
            .collect();
        let device = Cpu::default();
        let cfg = PassConfig {
            training: false,
            fuse: true,
            activation_to_loss: true,
            bn_sync: None,
            dropout: Default::default(),
            row_stable: false,
        };
        // Without a tape the pass folds the batch norms into the convolutions; with fusion off
        // every layer runs as its own op (with a tape and fusion on, a conv and its batch norm
        // run as one training op, which `fused_activations` holds to the separate ops' bits).
        let mut ran = Vec::new();
        let x = device.tensor_from_vec(images.clone(), (2, h, w, c));
        let folded = run(&model.layers, &mut network.params, x, cfg, &mut |idx, _| {
            ran.push(idx)
        })
        .as_vec();
        // The same pass on borrowed values: a first layer that reads them in place gives the
        // tensor pass's bits.
        let borrowed = run_values(
            &model.layers,
            &mut network.params,
            (Cow::Borrowed(&images), (2, h, w, c)),
            &device,
            cfg,
            &mut |_, _| {},
        )
        .as_vec();
        assert_eq!(borrowed, folded, "{path}: the pass on borrowed values");
        let mut ran_unfolded = Vec::new();
        let x = device.tensor_from_vec(images, (2, h, w, c)).leaky_trace();
        let separate = PassConfig { fuse: false, ..cfg };
        let unfolded = run(
            &model.layers,
            &mut network.params,
            x,
            separate,
            &mut |idx, _| ran_unfolded.push(idx),
        )
        .as_vec();
        let scale = unfolded.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        for (a, b) in folded.iter().zip(&unfolded) {
            assert!((a - b).abs() <= 1e-4 * scale, "{path}: {a} vs {b}",);
        }
        // Every conv -> bn pair ran as one layer: the conv ran (was observed) only unfused.
        let conv_bn: Vec<usize> = model
            .layers
            .windows(2)
            .enumerate()
            .filter(|(idx, pair)| {
                matches!(
                    pair[0].op,
                    strata::ir::Op::Conv { groups: 1, .. } | strata::ir::Op::DepthwiseConv { .. }
                ) && pair[0].activation.is_none()
                    && matches!(pair[1].op, strata::ir::Op::BatchNorm { .. })
                    && pair[1].inputs.len() == 1
                    && pair[1].inputs[0].source == strata::ir::Source::Layer(*idx)
                    && model
                        .layers
                        .iter()
                        .filter(|l| {
                            l.inputs
                                .iter()
                                .any(|e| e.source == strata::ir::Source::Layer(*idx))
                        })
                        .count()
                        == 1
            })
            .map(|(idx, _)| idx)
            .collect();
        for idx in &conv_bn {
            assert!(
                ran_unfolded.contains(idx) && !ran.contains(idx),
                "{path}: layer {idx}",
            );
        }
        // A block's residual add after a folded conv -> bn ran inside the conv: the batch
        // norm's output was never observed.
        residual_adds += conv_bn
            .iter()
            .filter(|&&idx| {
                model.layers.get(idx + 2).is_some_and(|add| {
                    add.op == strata::ir::Op::Merge(strata::ir::MergeKind::Add)
                        && !ran.contains(&(idx + 1))
                })
            })
            .count();
        let conv_bn = conv_bn.len();
        folded_somewhere += conv_bn;
        // A batch norm read by a flatten that a dense layer alone reads ran inside the dense
        // product: neither it nor the flatten was observed. (With a tape, one on the model's
        // input feeding a narrow dense layer runs fused too, as `batch_norm_dense`.)
        for (idx, triple) in model.layers.windows(3).enumerate() {
            let bn_flatten_dense = matches!(triple[0].op, strata::ir::Op::BatchNorm { .. })
                && triple[0].activation.is_none()
                && triple[1].op == strata::ir::Op::Flatten
                && matches!(triple[2].op, strata::ir::Op::Dense { .. })
                && strata::backend::params::flattened_image(&model.layers, idx + 2).is_some();
            if bn_flatten_dense {
                let on_input = triple[0].inputs[0].source == strata::ir::Source::Input;
                assert!(
                    (on_input || ran_unfolded.contains(&idx))
                        && !ran.contains(&idx)
                        && !ran.contains(&(idx + 1)),
                    "{path}: layer {idx}",
                );
                into_dense += 1;
            }
        }
    }
    assert!(folded_somewhere > 20, "{folded_somewhere}");
    assert!(residual_adds > 10, "{residual_adds}");
    assert!(into_dense >= 3, "{into_dense}");
}

#[test]
fn fixed_model_matches_the_independent_reference() {
    let text = std::fs::read_to_string(common::root().join("tests/data/reference_forward.json"))
        .expect("reference");
    let reference: serde_json::Value = serde_json::from_str(&text).expect("json");
    let model = compile(reference["spec"].as_str().expect("spec"));
    let floats = |value: &serde_json::Value| -> Vec<f32> {
        value
            .as_array()
            .expect("array")
            .iter()
            .map(|v| v.as_f64().expect("number") as f32)
            .collect()
    };
    let tensors = reference["tensors"]
        .as_object()
        .expect("tensors")
        .iter()
        .map(|(name, entry)| NamedTensor {
            name: name.clone(),
            shape: entry[0]
                .as_array()
                .expect("shape")
                .iter()
                .map(|d| d.as_u64().expect("dim") as usize)
                .collect(),
            data: floats(&entry[1]),
        })
        .collect();
    let checkpoint = Checkpoint {
        tensors,
        spec: String::new(),
        classes: vec!["a".into(), "b".into()],
        extra: Default::default(),
    };
    let mut network = Network::from_checkpoint(&model, &checkpoint).expect("fits");
    let images: Vec<f32> = reference["images"]
        .as_array()
        .expect("images")
        .iter()
        .flat_map(floats)
        .collect();
    let expected = reference["probabilities"]
        .as_array()
        .expect("probabilities");
    let got = network.predict(images, expected.len());
    for (row, want) in got.iter().zip(expected) {
        for (g, w) in row.iter().zip(floats(want)) {
            assert!((g - w).abs() < 1e-5, "got {row:?}, want {want}");
        }
    }
    // The checkpoint layouts round-trip through the network's own layouts.
    let back = to_tensors(&model, &network.params);
    for tensor in &back {
        let original = checkpoint
            .tensors
            .iter()
            .find(|t| t.name == tensor.name)
            .expect("same names");
        assert_eq!(tensor.shape, original.shape);
        assert_eq!(tensor.data, original.data, "{}", tensor.name);
    }
}

#[test]
fn initialisation_is_keras_and_seeded() {
    let model = compile("input: 8x8x3\nmodel: bn -> conv2x2(16) relu -> dense10 softmax\n");
    let first = to_tensors(&model, &Network::new(&model, 7).params);
    let again = to_tensors(&model, &Network::new(&model, 7).params);
    let other = to_tensors(&model, &Network::new(&model, 8).params);
    assert_eq!(first, again);
    assert_ne!(first, other);
    let get = |name: &str| {
        first
            .iter()
            .find(|t| t.name == name)
            .expect(name)
            .data
            .clone()
    };
    assert!(get("layers.0.gamma").iter().all(|v| *v == 1.0));
    assert!(get("layers.0.beta").iter().all(|v| *v == 0.0));
    assert!(get("layers.0.moving_variance").iter().all(|v| *v == 1.0));
    assert!(get("layers.1.bias").iter().all(|v| *v == 0.0));
    // Glorot uniform: limit sqrt(6 / (fan_in + fan_out)), fan = k_h * k_w * channels.
    let limit = (6.0f32 / (2.0 * 2.0 * 3.0 + 2.0 * 2.0 * 16.0)).sqrt();
    let weights = get("layers.1.weight");
    assert!(weights.iter().all(|v| v.abs() <= limit));
    assert!(
        weights.iter().any(|v| v.abs() > limit * 0.8),
        "spread over the whole range"
    );
    let dense = model
        .layers
        .iter()
        .find(|l| matches!(l.op, strata::ir::Op::Dense { .. }))
        .expect("dense");
    let dense_limit = (6.0f32 / (dense.input().len() + 10) as f32).sqrt();
    assert!(get(&format!("layers.{}.weight", dense.index))
        .iter()
        .all(|v| v.abs() <= dense_limit));
}

/// Images of two classes: bright squares in the top-left or the bottom-right corner.
fn corner_batch(n: usize, offset: usize) -> (Vec<f32>, Vec<usize>) {
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for idx in 0..n {
        let label = (idx + offset) % 2;
        for y in 0..8 {
            for x in 0..8 {
                let inside = if label == 0 {
                    y < 4 && x < 4
                } else {
                    y >= 4 && x >= 4
                };
                images.push(
                    if inside { 0.9 } else { 0.1 } + ((idx * 7 + y * 3 + x) % 5) as f32 * 0.01,
                );
            }
        }
        labels.push(label);
    }
    (images, labels)
}

#[test]
fn every_optimiser_learns_a_simple_task() {
    for optimizer in ["adam", "sgd\n  momentum: 0.9\n  nesterov: true", "rmsprop"] {
        let spec = format!("input: 8x8x1\nmodel: bn -> conv3(4, pad=same) relu -> pool2 -> dropout(0.1) -> dense2 softmax\ntrain:\n  lr: 0.01\n  optimizer: {optimizer}\n");
        let model = compile(&spec);
        let mut network = Network::new(&model, 3);
        let mut opt = Optimizer::new(&model.train);
        let mut first_loss = None;
        for step in 0..60 {
            let (images, labels) = corner_batch(16, step);
            let stats = network.train_step(images, &labels, &mut opt).expect("step");
            first_loss.get_or_insert(stats.loss);
        }
        let (images, labels) = corner_batch(32, 1);
        let stats = network.evaluate(images, &labels);
        assert!(
            stats.correct >= 30,
            "{optimizer}: {} of 32 right",
            stats.correct
        );
        assert!(
            stats.loss < first_loss.expect("loss") * 0.5,
            "{optimizer}: loss {} from {first_loss:?}",
            stats.loss
        );
        assert!(network
            .params
            .iter()
            .any(|p| matches!(p, LayerParams::Conv(_))));
    }
}
