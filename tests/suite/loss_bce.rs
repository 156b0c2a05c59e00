//! The binary head's loss against Keras: `tests/data/reference_bce.json` holds the loss and
//! the gradient per logit that Keras 3 (TensorFlow backend) computes, written by
//! `/opt/venv-keras/bin/python scripts/reference_bce.py`: "fit" is `model.fit`'s loss on a
//! `Dense(1, activation="sigmoid")` output (from the logits, no clip), "clipped" is
//! `keras.losses.binary_crossentropy` on plain probabilities (clipped to [1e-7, 1 - 1e-7]).
//! Plus finite differences and hand-computed values.

use crate::common;

use common::gradcheck::{check, Rng};
use dfdx::prelude::*;
use serde_json::Value;
use strata::backend::ops::loss::{binary_cross_entropy, per_sample, BceMode, LossOptions};

fn numbers(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .expect("an array")
        .iter()
        .map(|v| v.as_f64().expect("a number"))
        .collect()
}

/// Loss, gradient per logit and stats of the op on `logits`.
fn run(logits: &[f32], labels: &[usize], mode: BceMode) -> (f32, Vec<f32>, Vec<f32>, usize) {
    let dev = Cpu::default();
    let z = dev.tensor_from_vec(logits.to_vec(), (logits.len(), 1));
    let (loss, stats) = binary_cross_entropy(z.leaky_trace(), labels, mode, LossOptions::default());
    assert_eq!(loss.array(), stats.loss);
    let grads = loss.backward();
    (
        stats.loss,
        grads.get(&z).as_vec(),
        stats.probabilities,
        stats.correct,
    )
}

fn close(got: f64, expected: f64, atol: f64, rtol: f64) -> bool {
    (got - expected).abs() <= atol + rtol * expected.abs()
}

/// `|got - expected|` over its tolerance.
fn ratio(got: f64, expected: f64, atol: f64, rtol: f64) -> f64 {
    (got - expected).abs() / (atol + rtol * expected.abs())
}

#[test]
fn matches_keras_reference() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/reference_bce.json");
    let text = std::fs::read_to_string(path).expect("run scripts/reference_bce.py");
    let reference: Value = serde_json::from_str(&text).expect("json");
    let cases = reference["cases"].as_array().expect("cases");
    assert!(cases.len() >= 3);
    let (mut worst_loss, mut worst_grad) = (0.0f64, 0.0f64);
    for (k, case) in cases.iter().enumerate() {
        let logits: Vec<f32> = numbers(&case["logits"]).iter().map(|&v| v as f32).collect();
        let labels: Vec<usize> = numbers(&case["labels"])
            .iter()
            .map(|&v| v as usize)
            .collect();
        let n = logits.len() as f64;
        for (key, mode) in [("fit", BceMode::Logits), ("clipped", BceMode::Clipped)] {
            let (loss, grad, probabilities, correct) = run(&logits, &labels, mode);
            let expected_loss = case[key]["loss"].as_f64().expect("loss");
            worst_loss = worst_loss.max(ratio(f64::from(loss), expected_loss, 1e-12, 2e-6));
            assert!(
                close(f64::from(loss), expected_loss, 1e-12, 2e-6),
                "case {k} {key}: loss {loss} vs Keras {expected_loss}"
            );
            // A gradient is a difference of probabilities over n: allow a couple of f32 ulps
            // of a probability near 1 (TensorFlow's sigmoid is Eigen's rational approximation).
            for (i, (g, e)) in grad.iter().zip(numbers(&case[key]["grad"])).enumerate() {
                worst_grad = worst_grad.max(ratio(f64::from(*g), e, 2.5e-7 / n, 1e-5));
                assert!(
                    close(f64::from(*g), e, 2.5e-7 / n, 1e-5),
                    "case {k} {key}: gradient {i} {g} vs Keras {e}"
                );
            }
            for (p, e) in probabilities.iter().zip(numbers(&case["probabilities"])) {
                assert!(
                    close(f64::from(*p), e, 1e-12, 1e-6),
                    "case {k}: p {p} vs {e}"
                );
            }
            assert_eq!(correct as f64, case["correct"].as_f64().expect("correct"));
        }
        let fit_loss = case["fit"]["loss_from_fit"].as_f64().expect("fit loss");
        let (loss, ..) = run(&logits, &labels, BceMode::Logits);
        assert!(close(f64::from(loss), fit_loss, 1e-12, 2e-6));
    }
    eprintln!("keras bce: worst error / bound: loss {worst_loss:.3}, gradient {worst_grad:.3}");
}

#[test]
fn hand_computed_values() {
    // z = 0: p = 1/2, loss ln 2 either way, gradient (1/2 - y) / n; p = 0.5 is class 0.
    for mode in [BceMode::Logits, BceMode::Clipped] {
        let (loss, grad, p, correct) = run(&[0.0, 0.0], &[1, 0], mode);
        assert!(
            (loss - std::f32::consts::LN_2).abs() < 1e-7,
            "{mode:?} {loss}"
        );
        assert_eq!(grad, vec![-0.25, 0.25]);
        assert_eq!(p, vec![0.5, 0.5]);
        assert_eq!(correct, 1);
    }
    // Saturated and wrong: from the logits the loss is |z| with gradient -+1/n; clipped it
    // is -log(1e-7) (about 16.118) or -log(1 - (1 - 1e-7 in f32)) (about 15.942), gradient 0.
    let (loss, grad, ..) = run(&[-30.0], &[1], BceMode::Logits);
    assert_eq!((loss, grad), (30.0, vec![-1.0]));
    let (loss, grad, ..) = run(&[-30.0], &[1], BceMode::Clipped);
    assert!((loss - 16.118_095).abs() < 1e-5, "{loss}");
    assert_eq!(grad, vec![0.0]);
    let (loss, grad, ..) = run(&[30.0], &[0], BceMode::Clipped);
    assert!((loss - 15.942_385).abs() < 1e-5, "{loss}");
    assert_eq!(grad, vec![0.0]);
    // Per sample, in the middle: sigmoid(1.5) = 0.817574, loss -ln p = 0.201413.
    for mode in [BceMode::Logits, BceMode::Clipped] {
        let (loss, grad) = per_sample(1.5, 1.0, mode);
        assert!((loss - 0.201_413).abs() < 1e-6, "{mode:?} {loss}");
        assert!((grad + 0.182_426).abs() < 1e-6, "{mode:?} {grad}");
    }
}

#[test]
fn finite_differences() {
    let mut rng = Rng::new(41);
    let n = 9;
    let logits = rng.vec(n, -6.0, 6.0);
    let labels: Vec<usize> = (0..n).map(|i| (i * 5 + 1) % 2).collect();
    for mode in [BceMode::Logits, BceMode::Clipped] {
        check(
            &format!("bce {mode:?}"),
            vec![logits.clone()],
            1e-2,
            (1e-4, 1e-2),
            |v| {
                let (loss, grad, ..) = run(&v[0], &labels, mode);
                (f64::from(loss), vec![grad])
            },
        );
    }
}

#[test]
fn works_without_a_tape() {
    let dev = Cpu::default();
    let z = dev.tensor_from_vec(vec![2.0, -1.0, 0.5], (3, 1));
    let (loss, stats) =
        binary_cross_entropy(z, &[1, 1, 0], BceMode::Logits, LossOptions::default());
    assert_eq!(loss.array(), stats.loss);
    // p > 0.5 is class 1: right, wrong, wrong.
    assert_eq!(stats.correct, 1);
    let expected: f64 = [(2.0f64, 1.0f64), (-1.0, 1.0), (0.5, 0.0)]
        .iter()
        .map(|&(z, y)| z.max(0.0) - z * y + (-z.abs()).exp().ln_1p())
        .sum::<f64>()
        / 3.0;
    assert!((f64::from(stats.loss) - expected).abs() < 1e-6);
}
