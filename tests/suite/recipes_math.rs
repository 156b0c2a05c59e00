//! The training recipes' arithmetic against references computed here, independently of the
//! code under test: learning-rate schedules against Keras's closed-form formulas (and values
//! Keras 3 printed), optimiser steps with decoupled weight decay and a schedule against a
//! hand-written f64 optimiser, label-smoothed and class-weighted losses against their formulas
//! and their gradients against finite differences, and `balanced` class weights.

use dfdx::prelude::*;
use strata::backend::network::Network;
use strata::backend::ops::loss::{
    binary_cross_entropy, categorical_cross_entropy, BceMode, LossOptions,
};
use strata::backend::optimizer::Optimizer;
use strata::backend::params::to_tensors;
use strata::backend::schedule::LrSchedule;
use strata::settings::{ClassWeight, Schedule};
use strata::train::class_weight::class_weights;

const PI: f64 = std::f64::consts::PI;

/// Keras 3's `CosineDecay(initial_learning_rate=0, decay_steps, alpha, warmup_target=lr,
/// warmup_steps)` at `step`, transcribed from `keras/src/optimizers/schedules`.
fn keras_cosine(step: f64, lr: f64, warmup_steps: f64, decay_steps: f64, alpha: f64) -> f64 {
    let step = step.min(decay_steps + warmup_steps);
    if step < warmup_steps {
        let completed = step / warmup_steps;
        (lr - 0.0) * completed + 0.0
    } else {
        let completed = (step - warmup_steps) / decay_steps;
        let cosine = 0.5 * (1.0 + (PI * completed).cos());
        lr * ((1.0 - alpha) * cosine + alpha)
    }
}

/// Keras 3's `ExponentialDecay(lr, decay_steps, decay_rate, staircase)` at `step`.
fn keras_exponential(step: f64, lr: f64, decay_steps: f64, rate: f64, staircase: bool) -> f64 {
    let mut p = step / decay_steps;
    if staircase {
        p = p.floor();
    }
    lr * rate.powf(p)
}

fn schedule(schedule: Schedule, steps_per_epoch: u64, epochs: u64) -> LrSchedule {
    LrSchedule {
        schedule,
        base_lr: 0.1,
        steps_per_epoch,
        epochs,
    }
}

fn assert_close(got: f64, expected: f64, what: &str) {
    assert!(
        (got - expected).abs() <= 1e-12 + 1e-9 * expected.abs(),
        "{what}: got {got}, expected {expected}"
    );
}

#[test]
fn schedules_follow_keras_formulas_step_by_step() {
    // 7 batches per epoch (the last partial), 5 epochs: 35 steps.
    let cosine = schedule(
        Schedule::Cosine {
            warmup_epochs: 2.0,
            alpha: 0.05,
        },
        7,
        5,
    );
    let step = schedule(
        Schedule::Step {
            every: 2,
            factor: 0.5,
        },
        7,
        5,
    );
    let exponential = schedule(Schedule::Exponential { rate: 0.8 }, 7, 5);
    let constant = schedule(Schedule::Constant, 7, 5);
    for s in 0..40u64 {
        let at = s as f64;
        assert_close(
            cosine.lr_at(s),
            keras_cosine(at, 0.1, 14.0, 21.0, 0.05),
            &format!("cosine at {s}"),
        );
        assert_close(
            step.lr_at(s),
            keras_exponential(at, 0.1, 14.0, 0.5, true),
            &format!("step at {s}"),
        );
        assert_close(
            exponential.lr_at(s),
            keras_exponential(at, 0.1, 7.0, 0.8, false),
            &format!("exponential at {s}"),
        );
        assert_eq!(constant.lr_at(s), 0.1);
    }
    // The first step of a warm-up trains at 0, as Keras's does; the warm-up reaches `lr`
    // exactly at its last step + 1, and the decay reaches `alpha * lr` at the end of the run.
    assert_eq!(cosine.lr_at(0), 0.0);
    assert_close(cosine.lr_at(14), 0.1, "end of warm-up");
    assert_close(cosine.lr_at(35), 0.1 * 0.05, "end of decay");
    assert_close(step.lr_at(13), 0.1, "before the first drop");
    assert_close(step.lr_at(14), 0.05, "the first drop");
    assert_close(exponential.lr_at(7), 0.08, "one epoch");
}

#[test]
fn schedules_match_values_keras_printed() {
    // Printed by Keras 3.15.1 (TensorFlow backend, float32) for the same settings:
    // CosineDecay(0.0, decay_steps=21, alpha=0.05, warmup_target=0.1, warmup_steps=14) and
    // ExponentialDecay(0.1, decay_steps=7, decay_rate=0.8); Keras computes in float32.
    let cosine = schedule(
        Schedule::Cosine {
            warmup_epochs: 2.0,
            alpha: 0.05,
        },
        7,
        5,
    );
    let exponential = schedule(Schedule::Exponential { rate: 0.8 }, 7, 5);
    let keras_cosine = [
        (0, 0.0),
        (1, 0.007142857648432255),
        (13, 0.09285714477300644),
        (14, 0.10000000149011612),
        (20, 0.08211576193571091),
        (30, 0.017680032178759575),
        (34, 0.005530533846467733),
    ];
    let keras_exponential = [
        (0, 0.10000000149011612),
        (3, 0.09087976068258286),
        (10, 0.07270380109548569),
    ];
    for (name, plan, values) in [
        ("cosine", cosine, &keras_cosine[..]),
        ("exponential", exponential, &keras_exponential[..]),
    ] {
        for &(step, expected) in values {
            let got = plan.lr_at(step);
            assert!(
                (got - expected).abs() <= 1e-6 * expected.max(1e-3),
                "{name} at {step}: {got} vs Keras {expected}"
            );
        }
    }
}

/// A tiny network's images and labels, and its spec with `train` settings.
fn tiny(train: &str) -> (strata::ir::Model, Vec<f32>, Vec<usize>) {
    let spec = format!("input: 1x1x3\nclasses: 2\nmodel: dense2 softmax\ntrain:\n{train}");
    let compiled = strata::compile(&spec, "tiny");
    let model = compiled.model.unwrap_or_else(|| panic!("{spec}"));
    let images = vec![0.5, -1.0, 2.0, 1.5, 0.25, -0.75, -0.3, 0.8, 1.1];
    (model, images, vec![0, 1, 1])
}

/// The rule-specific part of one f64 reference step: the moments and the update of one value.
#[derive(Clone, Copy, Default)]
struct Moments {
    first: f64,
    second: f64,
}

/// One reference step on one value: Keras's decay `w - w * wd * lr`, then the rule as this
/// build computes it (dfdx's kernels: Adam with bias-corrected moments and `eps` outside the
/// root, plain SGD, RMSprop with `eps` inside the root).
fn reference_step(rule: &str, w: f64, g: f64, m: &mut Moments, lr: f64, wd: f64, t: i32) -> f64 {
    let w = w - w * wd * lr;
    match rule {
        "adam" => {
            m.first = 0.9 * m.first + 0.1 * g;
            m.second = 0.999 * m.second + 0.001 * g * g;
            let m_hat = m.first / (1.0 - 0.9f64.powi(t));
            let v_hat = m.second / (1.0 - 0.999f64.powi(t));
            w - lr * m_hat / (v_hat.sqrt() + 1e-7)
        }
        "sgd" => w - lr * g,
        "rmsprop" => {
            m.second = 0.9 * m.second + 0.1 * g * g;
            w - lr * g / (m.second + 1e-7).sqrt()
        }
        _ => unreachable!("{rule}"),
    }
}

#[test]
fn weight_decay_and_schedule_match_a_hand_written_optimiser() {
    let cases = [
        ("adamw", "adam", 0.004),
        ("adam\n  weight_decay: 0.05", "adam", 0.05),
        ("sgd\n  weight_decay: 0.1", "sgd", 0.1),
        ("rmsprop\n  weight_decay: 0.02", "rmsprop", 0.02),
        ("sgd", "sgd", 0.0),
    ];
    for (optimizer, rule, wd) in cases {
        let train = format!(
            "  optimizer: {optimizer}\n  lr: 0.1\n  epochs: 2\n  schedule: {{ kind: cosine, warmup_epochs: 1 }}\n"
        );
        let (model, images, labels) = tiny(&train);
        let mut network = Network::new(&model, 3);
        let plan = LrSchedule {
            schedule: model.train.schedule,
            base_lr: 0.1,
            steps_per_epoch: 3,
            epochs: 2,
        };
        let mut opt = Optimizer::new(&model.train).with_schedule(plan);
        assert_eq!(opt.weight_decay(), wd, "{optimizer}");
        let mut weights: Vec<(String, Vec<f64>)> = to_tensors(&model, &network.params)
            .into_iter()
            .map(|t| (t.name, t.data.iter().map(|&v| f64::from(v)).collect()))
            .collect();
        let mut moments: Vec<Vec<Moments>> = weights
            .iter()
            .map(|(_, w)| vec![Moments::default(); w.len()])
            .collect();
        for step in 0..6u64 {
            let lr = keras_cosine(step as f64, 0.1, 3.0, 3.0, 0.0);
            let (_, grads) = network.loss_and_gradients(images.clone(), &labels);
            for ((name, w), m) in weights.iter_mut().zip(&mut moments) {
                let g = &grads
                    .iter()
                    .find(|t| &t.name == name)
                    .expect("gradient")
                    .data;
                for ((w, g), m) in w.iter_mut().zip(g).zip(m.iter_mut()) {
                    *w = reference_step(rule, *w, f64::from(*g), m, lr, wd, step as i32 + 1);
                }
            }
            network
                .train_step(images.clone(), &labels, &mut opt)
                .expect("step");
            assert_close(opt.lr(), lr, &format!("{optimizer}: rate of step {step}"));
            for (got, (name, expected)) in to_tensors(&model, &network.params).iter().zip(&weights)
            {
                for (g, e) in got.data.iter().zip(expected) {
                    assert!(
                        (f64::from(*g) - e).abs() <= 2e-6 * (1.0 + e.abs()),
                        "{optimizer} step {step} {name}: {g} vs {e}"
                    );
                }
            }
        }
    }
}

#[test]
fn weight_decay_alone_shrinks_every_parameter_by_keras_factor() {
    // With a zero gradient (SGD, lr 0.5, wd 0.2), one step is exactly `w - w * 0.2 * 0.5` in
    // f32, on kernels and biases alike (Keras excludes nothing by default).
    let (model, _, _) = tiny("  optimizer: sgd\n  lr: 0.5\n  weight_decay: 0.2\n");
    let mut network = Network::new(&model, 5);
    let mut opt = Optimizer::new(&model.train);
    let before = to_tensors(&model, &network.params);
    opt.begin_step();
    for (_, param) in strata::backend::params::trainables(&model, &mut network.params) {
        let mut grads = Gradients::leaky();
        match param {
            strata::backend::params::ParamMut::Vector(t) => {
                opt.update(t, &mut grads).expect("update")
            }
            strata::backend::params::ParamMut::Matrix(t) => {
                opt.update(t, &mut grads).expect("update")
            }
        }
    }
    let after = to_tensors(&model, &network.params);
    for (b, a) in before.iter().zip(&after) {
        for (x, y) in b.data.iter().zip(&a.data) {
            assert_eq!(*y, *x - *x * 0.2f32 * 0.5f32, "{}", b.name);
        }
    }
}

/// Log-softmax of a row in f64.
fn log_softmax(row: &[f64]) -> Vec<f64> {
    let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = row.iter().map(|v| (v - max).exp()).sum();
    row.iter().map(|v| v - max - sum.ln()).collect()
}

/// Keras's smoothed, weighted categorical cross-entropy in f64 (`sum_over_batch_size`).
fn reference_categorical(z: &[f64], k: usize, labels: &[usize], s: f64, weights: &[f64]) -> f64 {
    let n = labels.len();
    let mut total = 0.0;
    for (row, &label) in z.chunks(k).zip(labels) {
        let logp = log_softmax(row);
        let loss: f64 = (0..k)
            .map(|c| {
                let y = if c == label { 1.0 } else { 0.0 };
                -(y * (1.0 - s) + s / k as f64) * logp[c]
            })
            .sum();
        total += loss * weights.get(label).copied().unwrap_or(1.0);
    }
    total / n as f64
}

/// Keras's smoothed, weighted binary cross-entropy from logits in f64.
fn reference_binary(z: &[f64], labels: &[usize], s: f64, weights: &[f64], clipped: bool) -> f64 {
    let mut total = 0.0;
    for (&z, &label) in z.iter().zip(labels) {
        let y = f64::from(u8::from(label == 1)) * (1.0 - s) + 0.5 * s;
        let loss = if clipped {
            let p = (1.0 / (1.0 + (-z).exp())).clamp(1e-7, 1.0 - 1e-7);
            -(y * p.ln() + (1.0 - y) * (1.0 - p).ln())
        } else {
            z.max(0.0) - z * y + (-z.abs()).exp().ln_1p()
        };
        total += loss * weights.get(label).copied().unwrap_or(1.0);
    }
    total / labels.len() as f64
}

/// Central finite differences of `f` at `x`.
fn finite_differences(x: &[f64], f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let h = 1e-5;
    (0..x.len())
        .map(|i| {
            let (mut up, mut down) = (x.to_vec(), x.to_vec());
            up[i] += h;
            down[i] -= h;
            (f(&up) - f(&down)) / (2.0 * h)
        })
        .collect()
}

#[test]
fn smoothed_weighted_categorical_loss_and_gradient() {
    let (k, labels) = (3, [0usize, 2, 1, 2]);
    let z: Vec<f32> = vec![
        1.0, -0.5, 0.3, 0.2, 0.1, -1.2, -0.7, 2.0, 0.4, 0.0, 0.9, -0.3,
    ];
    let z64: Vec<f64> = z.iter().map(|&v| f64::from(v)).collect();
    for (s, weights) in [
        (0.0, vec![]),
        (0.1, vec![]),
        (0.2, vec![0.5f32, 2.0, 1.5]),
        (0.0, vec![3.0f32, 1.0, 0.25]),
    ] {
        let options = LossOptions {
            label_smoothing: s,
            class_weights: &weights,
        };
        let dev = Cpu::default();
        let logits = dev.tensor_from_vec(z.clone(), (labels.len(), k));
        let loss = categorical_cross_entropy(logits.leaky_trace(), &labels, options);
        let value = f64::from(loss.array());
        let grad = loss.backward().get(&logits).as_vec();
        let w64: Vec<f64> = weights.iter().map(|&w| f64::from(w)).collect();
        let reference = |z: &[f64]| reference_categorical(z, k, &labels, f64::from(s), &w64);
        let expected = reference(&z64);
        assert!(
            (value - expected).abs() < 1e-6,
            "s {s}: {value} vs {expected}"
        );
        for (g, e) in grad.iter().zip(finite_differences(&z64, reference)) {
            assert!((f64::from(*g) - e).abs() < 1e-5, "s {s}: grad {g} vs {e}");
        }
    }
}

#[test]
fn smoothed_weighted_binary_loss_and_gradient() {
    let labels = [1usize, 0, 0, 1, 1];
    let z: Vec<f32> = vec![2.5, -0.4, 1.3, -3.0, 0.05];
    let z64: Vec<f64> = z.iter().map(|&v| f64::from(v)).collect();
    for mode in [BceMode::Logits, BceMode::Clipped] {
        for (s, weights) in [
            (0.1, vec![]),
            (0.3, vec![2.0f32, 0.5]),
            (0.0, vec![1.0, 4.0]),
        ] {
            let options = LossOptions {
                label_smoothing: s,
                class_weights: &weights,
            };
            let dev = Cpu::default();
            let logits = dev.tensor_from_vec(z.clone(), (labels.len(), 1));
            let (loss, stats) = binary_cross_entropy(logits.leaky_trace(), &labels, mode, options);
            // Accuracy counts against the labels, not the smoothed targets.
            assert_eq!(stats.correct, 3, "{mode:?}");
            let value = f64::from(loss.array());
            let grad = loss.backward().get(&logits).as_vec();
            let w64: Vec<f64> = weights.iter().map(|&w| f64::from(w)).collect();
            let clipped = mode == BceMode::Clipped;
            let reference = |z: &[f64]| reference_binary(z, &labels, f64::from(s), &w64, clipped);
            let expected = reference(&z64);
            assert!(
                (value - expected).abs() < 1e-6,
                "{mode:?} s {s}: {value} vs {expected}"
            );
            for (g, e) in grad.iter().zip(finite_differences(&z64, reference)) {
                assert!(
                    (f64::from(*g) - e).abs() < 1e-5,
                    "{mode:?} s {s}: grad {g} vs {e}"
                );
            }
        }
    }
}

#[test]
fn class_weights_weigh_training_losses_but_not_evaluation() {
    // The batch loss is the weighted sum of the single-image losses over the batch size.
    let (model, images, labels) = tiny("  lr: 0.1\n  label_smoothing: 0.1\n");
    let mut network = Network::new(&model, 9);
    let single: Vec<f64> = (0..3)
        .map(|i| {
            let image = images[i * 3..][..3].to_vec();
            network.loss_and_gradients(image, &labels[i..=i]).0.loss
        })
        .collect();
    network.set_class_weights(vec![3.0, 0.5]);
    let (weighted, _) = network.loss_and_gradients(images.clone(), &labels);
    let expected = (3.0 * single[0] + 0.5 * single[1] + 0.5 * single[2]) / 3.0;
    assert!(
        (weighted.loss - expected).abs() < 1e-6,
        "{} vs {expected}",
        weighted.loss
    );
    let evaluated = network.evaluate(images, &labels);
    let plain = single.iter().sum::<f64>() / 3.0;
    assert!(
        (evaluated.loss - plain).abs() < 1e-6,
        "{} vs {plain}",
        evaluated.loss
    );
}

#[test]
fn balanced_and_named_class_weights() {
    let classes: Vec<String> = ["cat", "dog", "fox"].map(String::from).to_vec();
    let counts = [10, 30, 20];
    let balanced =
        class_weights(Some(&ClassWeight::Balanced), &classes, &counts, None).expect("weights");
    let expected = [60.0 / 30.0, 60.0 / 90.0, 60.0 / 60.0];
    for (got, e) in balanced.iter().zip(expected) {
        assert!((f64::from(*got) - e).abs() < 1e-6, "{got} vs {e}");
    }
    let named = ClassWeight::ByName(vec![("fox".into(), 2.5)]);
    assert_eq!(
        class_weights(Some(&named), &classes, &counts, None).expect("weights"),
        vec![1.0, 1.0, 2.5]
    );
    assert!(class_weights(None, &classes, &counts, None)
        .expect("none")
        .is_empty());
    let unknown = ClassWeight::ByName(vec![("dgo".into(), 2.0), ("cow".into(), 1.0)]);
    let diagnostics = class_weights(Some(&unknown), &classes, &counts, None).expect_err("unknown");
    assert_eq!(diagnostics.len(), 2);
    assert!(diagnostics
        .iter()
        .all(|d| d.code == strata::diagnostics::codes::DATA_UNKNOWN_CLASS));
    assert!(
        diagnostics[0]
            .help
            .iter()
            .any(|help| help.contains("`dog`")),
        "{:?}",
        diagnostics[0]
    );
    assert_eq!(
        diagnostics[1].help.as_deref(),
        Some("the name must be one of `cat`, `dog` or `fox`")
    );
}

#[test]
fn the_training_page_example_compiles_with_every_recipe() {
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/training.md"))
        .expect("docs/training.md");
    let blocks: Vec<&str> = page
        .split("```yaml\n")
        .skip(1)
        .filter_map(|rest| rest.split_once("```").map(|(body, _)| body))
        .collect();
    assert_eq!(blocks.len(), 1);
    let compiled = strata::compile(blocks[0], "example");
    assert!(
        compiled.diagnostics.is_empty(),
        "{:?}",
        compiled.diagnostics
    );
    let train = compiled.model.expect("model").train;
    assert_eq!(train.optimizer, strata::settings::OptimizerKind::Adamw);
    assert_eq!(train.weight_decay(), 0.004);
    assert_eq!(train.label_smoothing, 0.1);
    assert_eq!(
        train.schedule,
        Schedule::Cosine {
            warmup_epochs: 2.0,
            alpha: 0.0
        }
    );
    assert_eq!(train.class_weight, Some(ClassWeight::Balanced));
}
