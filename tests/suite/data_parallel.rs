//! Data-parallel training without MPI: the ranks are threads of this process, joined by the
//! in-process [`Collective`] `ThreadRank` (each operation a barrier; sums added in a fixed
//! tree over the ranks, so every rank gets the same bits, as MPI's all-reduce gives them). The same trainer code runs as
//! under `mpirun` (`tests/mpi.rs` runs the binary there):
//!
//! - with `train.sync_bn`, the gradient of two ranks' shares, combined as the trainer combines
//!   them, is the one-process gradient of the whole batch (equal and unequal shares); without
//!   it, it is not;
//! - a two-rank run with `sync_bn` has the one-process history within 1e-4 in loss per epoch,
//!   and one without `sync_bn` does not;
//! - each rank takes its share of every batch, and a last batch with fewer images than ranks
//!   is left out;
//! - weights that differ between ranks are an error on every rank, naming the rank.

use crate::common;

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use strata::backend::data_parallel::share_part;
use strata::backend::network::Network;
use strata::backend::split::{inference_ranks, ranks_for, worth_splitting};
use strata::compile::compile;
use strata::distributed::threads::ThreadRank;
use strata::distributed::{Collective, SINGLE};
use strata::ir::Model;
use strata::train::progress::ProgressMode;
use strata::train::ranks::{local_order, same_weights};
use strata::train::TrainError;
use strata::train::{prepare_on, Outcome, TrainRequest, Trainer};

/// Convolutions and dense layers with batch norms on images and on flat features: the first
/// reads the data (no input gradient), the others pass gradients on through the synchronised
/// sums.
const SPEC: &str = "input: 16x16x1\nclasses: 3\nmodel: bn -> conv3(8, pad=same) -> bn relu -> pool2 -> dense16 -> bn relu -> dense3 softmax\ntrain:\n  lr: 0.01\n  epochs: 3\n  batch_size: 8\n  sync_bn: SYNC\ndata:\n  train: data/train\n  validation: data/validation\n";

fn spec(sync_bn: bool) -> String {
    SPEC.replace("SYNC", if sync_bn { "true" } else { "false" })
}

/// A batch of `n` 16x16 images with values spread over [0, 1), and their labels.
fn batch(n: usize) -> (Vec<f32>, Vec<usize>) {
    let images = (0..n * 256)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
        .collect();
    let labels = (0..n).map(|i| i % 3).collect();
    (images, labels)
}

/// The gradient of the whole batch's mean loss from `shares` (images per rank) computed on
/// threads as ranks and combined as the trainer combines them (weighted by share).
fn gradient_over_ranks(shares: &[usize], sync_bn: bool) -> Vec<f32> {
    let model = compile(&spec(sync_bn), "spec").model.expect("model");
    let (images, labels) = batch(shares.iter().sum());
    ranks_gradient(&model, (&images, &labels), shares, sync_bn)
}

/// The gradient of a batch split into `shares` over ranks as threads (each rank's share
/// contiguous, in rank order), each rank's weighted by its part and added as the all-reduce
/// adds them (rank 0's plus rank 1's…).
fn ranks_gradient(
    model: &Model,
    (images, labels): (&[f32], &[usize]),
    shares: &[usize],
    sync_bn: bool,
) -> Vec<f32> {
    let len = model.input.len();
    let whole = labels.len();
    let world = ThreadRank::world(shares.len());
    let gradients: Vec<Vec<f32>> = std::thread::scope(|scope| {
        let mut start = 0;
        let handles: Vec<_> = world
            .iter()
            .zip(shares)
            .map(|(rank, &share)| {
                let first = start;
                let images = images[first * len..(first + share) * len].to_vec();
                let labels = labels[first..first + share].to_vec();
                start += share;
                let rank: &'static ThreadRank = rank;
                scope.spawn(move || {
                    let mut network = Network::new(model, 7);
                    if sync_bn {
                        network.set_batch_norm_sync(Some(rank));
                    }
                    network.set_first_image(first);
                    let (_, flat) = network.flat_gradients(images, &labels).expect("step");
                    let part = share_part(share, whole);
                    flat.iter().map(|g| g * part).collect::<Vec<f32>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("rank"))
            .collect()
    });
    let mut sum = gradients[0].clone();
    for gradient in &gradients[1..] {
        sum.iter_mut().zip(gradient).for_each(|(s, g)| *s += g);
    }
    sum
}

/// The largest difference between two gradients, relative to the largest value.
fn relative_difference(a: &[f32], b: &[f32]) -> f32 {
    let scale = a.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let diff = a
        .iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    diff / scale
}

#[test]
fn synchronised_batch_norm_gives_the_whole_batch_gradient() {
    let one = gradient_over_ranks(&[8], true);
    let even = gradient_over_ranks(&[4, 4], true);
    let uneven = gradient_over_ranks(&[5, 3], true);
    let three = gradient_over_ranks(&[3, 3, 2], true);
    let local = gradient_over_ranks(&[4, 4], false);
    let (even, uneven, three, local) = (
        relative_difference(&one, &even),
        relative_difference(&one, &uneven),
        relative_difference(&one, &three),
        relative_difference(&one, &local),
    );
    println!("relative gradient difference from one process: sync_bn 2 ranks {even:.2e}, 5+3 {uneven:.2e}, 3 ranks {three:.2e}; without sync_bn {local:.2e}");
    assert!(even < 1e-5, "{even}");
    assert!(uneven < 1e-5, "{uneven}");
    assert!(three < 1e-5, "{three}");
    assert!(
        local > 1e-3,
        "without sync_bn the shares normalise alone: {local}"
    );
}

/// A spec and its data in a temp dir: 72 training and 18 validation images.
fn project(spec: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    common::shapes(&dir.path().join("data/train"), [24; 3]);
    common::shapes(&dir.path().join("data/validation"), [6; 3]);
    std::fs::write(dir.path().join("spec.yaml"), spec).expect("spec");
    dir
}

/// Trains `spec.yaml` of `dir` into `dir/out` on `ranks` thread ranks (1: one process).
fn train(dir: &Path, out: &str, ranks: usize) {
    let request = TrainRequest {
        spec: Some(dir.join("spec.yaml")),
        out: Some(dir.join(out)),
        ..Default::default()
    };
    let run = |world: &'static dyn Collective| {
        let prep = prepare_on(&request, world).map_err(|e| format!("{e:?}"))?;
        let flag = Arc::new(AtomicBool::new(false));
        let mut trainer = Trainer::new_on(prep, ProgressMode::Quiet, flag, world)
            .map_err(|e| format!("{e:?}"))?;
        match trainer.run().map_err(|e| format!("{e:?}"))? {
            Outcome::Finished => Ok(()),
            Outcome::Interrupted => Err("interrupted".to_string()),
        }
    };
    if ranks == 1 {
        run(&SINGLE).expect("one process trains");
        return;
    }
    let world = ThreadRank::world(ranks);
    std::thread::scope(|scope| {
        let handles: Vec<_> = world
            .iter()
            .map(|rank| {
                let rank: &'static dyn Collective = *rank;
                scope.spawn(move || run(rank))
            })
            .collect();
        for handle in handles {
            handle.join().expect("rank").expect("rank trains");
        }
    });
}

/// The training and validation loss of every epoch in `history.json`.
fn losses(run: &Path) -> Vec<(f64, f64)> {
    let json = std::fs::read_to_string(run.join("history.json")).expect("history.json");
    let records: Vec<serde_json::Value> = serde_json::from_str(&json).expect("records");
    records
        .iter()
        .map(|r| {
            (
                r["loss"].as_f64().expect("loss"),
                r["val_loss"].as_f64().expect("val_loss"),
            )
        })
        .collect()
}

/// The largest difference in training loss per epoch between two runs.
fn max_loss_difference(a: &[(f64, f64)], b: &[(f64, f64)]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x.0 - y.0).abs())
        .fold(0.0, f64::max)
}

#[test]
fn two_ranks_with_sync_bn_repeat_the_one_process_history() {
    let synced = project(&spec(true));
    train(synced.path(), "one", 1);
    train(synced.path(), "two", 2);
    let (one, two) = (
        losses(&synced.path().join("one")),
        losses(&synced.path().join("two")),
    );
    let with_sync = max_loss_difference(&one, &two);
    let local = project(&spec(false));
    train(local.path(), "one", 1);
    train(local.path(), "two", 2);
    let without_sync = max_loss_difference(
        &losses(&local.path().join("one")),
        &losses(&local.path().join("two")),
    );
    println!("one process: {one:?}\ntwo ranks:   {two:?}");
    println!("max |Δloss| per epoch, 2 ranks vs 1 process: sync_bn {with_sync:.2e}, without {without_sync:.2e}");
    assert!(with_sync < 1e-4, "{with_sync}");
    assert!(without_sync > with_sync, "{without_sync} vs {with_sync}");
    // More than close: the weights are the same bits (equal shares of a batch add up to
    // exactly the one-process gradient), and the loss differs only in how it is reported.
    assert!(with_sync < 1e-6, "{with_sync}");
    let weights =
        |run: &str| common::run::tensors(&synced.path().join(run).join("last.safetensors"));
    assert_eq!(weights("one"), weights("two"));
    for file in ["last.safetensors", "best.safetensors", "history.csv"] {
        assert!(synced.path().join("two").join(file).is_file(), "{file}");
    }
}

#[test]
fn each_rank_takes_its_share_of_every_batch() {
    let world = ThreadRank::world(2);
    let order: Vec<usize> = (0..11).collect();
    // Batches of 4: [0..4) [4..8) [8..11); 11 % 4 = 3 >= 2 ranks, so the last one is split too.
    assert_eq!(local_order(&order, 4, world[0]), [0, 1, 4, 5, 8, 9]);
    assert_eq!(local_order(&order, 4, world[1]), [2, 3, 6, 7, 10]);
    // A last batch of one image cannot be split over two ranks: left out.
    let order: Vec<usize> = (0..9).collect();
    assert_eq!(local_order(&order, 4, world[0]), [0, 1, 4, 5]);
    assert_eq!(local_order(&order, 4, world[1]), [2, 3, 6, 7]);
}

#[test]
fn ranks_whose_weights_differ_stop_with_an_error_naming_them() {
    let model = compile(&spec(false), "spec").model.expect("model");
    let world = ThreadRank::world(3);
    let outcomes: Vec<Result<u64, TrainError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = world
            .iter()
            .map(|rank| {
                let model = model.clone();
                let rank: &'static ThreadRank = rank;
                // Rank 2 starts from another seed: other weights.
                let seed = if rank.rank() == 2 { 8 } else { 7 };
                scope
                    .spawn(move || same_weights(rank, &Network::new(&model, seed), "after epoch 1"))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("rank"))
            .collect()
    });
    for outcome in outcomes {
        let Err(TrainError::Ranks(message)) = outcome else {
            panic!("expected the ranks to disagree: {outcome:?}");
        };
        assert!(message.starts_with("the weights of rank 2 ("), "{message}");
        assert!(message.contains("differ from rank 0's"), "{message}");
        assert!(message.contains("after epoch 1"), "{message}");
    }
    // The same weights everywhere: the checksum they share.
    let same: Vec<u64> = std::thread::scope(|scope| {
        let handles: Vec<_> = ThreadRank::world(2)
            .into_iter()
            .map(|rank| {
                let model = model.clone();
                scope.spawn(move || {
                    same_weights(rank, &Network::new(&model, 7), "after epoch 1").expect("same")
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("rank"))
            .collect()
    });
    assert_eq!(same[0], same[1]);
}

/// Models that cover every kind of reduction over a batch: batch norms on images and on flat
/// features (with and without `sync_bn`'s sums), plain, fused (conv + pool), Winograd,
/// depthwise, separable and grouped convolutions, the fused first batch norm + dense layer,
/// hidden dense layers, merges and global pooling.
const EXACT_MODELS: &[&str] = &[
    "bn -> conv3(16, pad=same) -> bn relu -> pool2 -> conv3(32, pad=same) -> bn relu -> pool2 -> dense64 relu -> dense10 softmax",
    "bn -> flatten -> dense4 softmax",
    "conv2x2(8) relu -> pool2 -> conv3(16) relu -> pool2 -> dense10 softmax",
    "conv3(16, pad=same) -> bn relu -> dwconv3(multiplier=2, pad=same) -> bn relu6 -> conv1(16) -> gap -> dense10 softmax",
    "conv3(8) -> sepconv3(16, pad=same) -> bn hardswish -> conv3(16, groups=4, stride=2) -> bn silu -> gmp -> dense10 softmax",
    "conv3(16, pad=same) -> bn relu -> add(identity, conv3(16, pad=same) -> bn) relu -> concat(conv1(8), pool2(stride=1, pad=same)) -> gap -> dense1 sigmoid",
    "conv3(16, pad=same) -> relu -> mul(identity, gap -> dense4 relu -> dense16 hardsigmoid) -> flatten -> dense16 -> bn elu -> dense10 softmax",
];

/// `n` images of `len` values spread over [0, 1), and labels of `classes` classes.
fn images(n: usize, len: usize, classes: usize) -> (Vec<f32>, Vec<usize>) {
    let images = (0..n * len)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
        .collect();
    let labels = (0..n).map(|i| i % classes.max(2)).collect();
    (images, labels)
}

/// The whole-batch gradient of one process (no collective at all, as a plain `strata train`
/// runs) and the one of `ranks` equal shares with `sync_bn`, combined as the trainer combines
/// them (each weighted by its share, summed in rank order, divided by the batch).
fn one_and_ranks(spec: &str, batch: usize, ranks: usize) -> (Vec<f32>, Vec<f32>) {
    let model = compile(spec, "spec").model.expect("model");
    let len = model.input.len();
    let (images, labels) = images(batch, len, model.classes);
    let mut network = Network::new(&model, 7);
    let (_, one) = network
        .flat_gradients(images.clone(), &labels)
        .expect("step");
    let shares = vec![batch / ranks; ranks];
    (
        one,
        ranks_gradient(&model, (&images, &labels), &shares, true),
    )
}

/// How many values of two gradients differ in any bit.
fn differing_bits(a: &[f32], b: &[f32]) -> usize {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .filter(|(x, y)| x.to_bits() != y.to_bits())
        .count()
}

#[test]
fn two_ranks_with_sync_bn_give_the_one_process_gradient_bit_for_bit() {
    for model in EXACT_MODELS {
        let spec = format!("input: 16x16x3\nmodel: {model}\ntrain:\n  sync_bn: true\n");
        // Shares of 4 and of 6 (a part of 1/2 either way).
        for batch in [8, 12] {
            let (one, two) = one_and_ranks(&spec, batch, 2);
            assert_eq!(differing_bits(&one, &two), 0, "{model}, batch {batch}");
        }
        let (one, _) = one_and_ranks(&spec, 8, 2);
        // The check can fail: shares that normalise alone give another gradient.
        if model.contains("bn") {
            let local = spec.replace("sync_bn: true", "sync_bn: false");
            let model_local = compile(&local, "spec").model.expect("model");
            let len = model_local.input.len();
            let (images, labels) = images(4, len, model_local.classes);
            let mut network = Network::new(&model_local, 7);
            let (_, half) = network.flat_gradients(images, &labels).expect("step");
            assert!(differing_bits(&one, &half) > 0, "{model}");
        }
    }
}

#[test]
fn the_bundled_specs_split_over_two_ranks_bit_for_bit() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("specs");
    let mut checked = 0;
    for folder in ["examples", "seed"] {
        let mut paths: Vec<_> = std::fs::read_dir(root.join(folder))
            .expect("specs")
            .map(|entry| entry.expect("entry").path())
            .collect();
        paths.sort();
        for path in paths {
            let text = std::fs::read_to_string(&path).expect("spec");
            // Shares of 4: more than half of a run of images (`reduce::RUN`), so each rank
            // sums its own runs.
            let (one, two) = one_and_ranks(&text, 8, 2);
            assert_eq!(differing_bits(&one, &two), 0, "{}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 10, "{checked} specs");
}

/// `f` inside a rayon pool of `threads` threads.
fn on_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("pool")
        .install(f)
}

/// `steps` training steps of a new network (seed 7) on one batch of `batch` images, inside a
/// rayon pool of `threads` threads: a step splits the batch over the largest power of two
/// ranks (at most `threads`) that divides it. The weights (with the moving statistics) and
/// each step's loss, accuracy and count.
fn steps_on_threads(
    model: &Model,
    batch: usize,
    steps: usize,
    threads: usize,
) -> (
    Vec<strata::backend::checkpoint::NamedTensor>,
    Vec<(u64, usize, usize)>,
) {
    use strata::backend::optimizer::Optimizer;
    on_threads(threads, || {
        let (images, labels) = images(batch, model.input.len(), model.classes);
        let mut network = Network::new(model, 7);
        network.set_class_weights(
            (0..model.classes.max(2))
                .map(|c| 1.0 + c as f32 * 0.5)
                .collect(),
        );
        let mut optimizer = Optimizer::new(&model.train);
        let stats: Vec<_> = (0..steps)
            .map(|_| {
                let stats = network
                    .train_step(images.clone(), &labels, &mut optimizer)
                    .expect("step");
                (stats.loss.to_bits(), stats.correct, stats.count)
            })
            .collect();
        (
            strata::backend::params::to_tensors(model, &network.params),
            stats,
        )
    })
}

#[test]
fn a_step_split_over_the_cores_is_the_whole_batch_step_bit_for_bit() {
    let dropout = "conv3(8, pad=same) -> bn relu -> dropout(0.5) -> conv3(8) -> bn relu -> gap -> dropout(0.3) -> dense10 softmax";
    for text in EXACT_MODELS.iter().copied().chain([dropout]) {
        let spec = format!(
            "input: 32x32x3\nmodel: {text}\ntrain:\n  optimizer: adamw\n  weight_decay: 0.01\n"
        );
        let model = compile(&spec, "spec").model.expect("model");
        // One thread: no split. Then 2 ranks of 16 images, 4 ranks of 8 and 8 ranks of 4.
        let whole = steps_on_threads(&model, 32, 3, 1);
        for threads in [2, 4, 8] {
            // Every model's step on 32 images of 32x32 is large enough to split.
            assert_eq!(
                on_threads(threads, || ranks_for(&model, 32)),
                threads,
                "{text}"
            );
            let split = steps_on_threads(&model, 32, 3, threads);
            assert_eq!(whole.1, split.1, "{text}: losses on {threads} threads");
            assert_eq!(whole.0, split.0, "{text}: weights on {threads} threads");
        }
        // A share is never half a run of images or less (see `ranks_for`): 8 images on 8
        // threads go to 2 ranks of 4 (if large enough), not 8 of 1.
        let pair = if worth_splitting(&model, 8) { 2 } else { 1 };
        assert_eq!(on_threads(8, || ranks_for(&model, 8)), pair, "{text}");
        // A batch of 6 on 4 threads is split over 2 ranks (if large enough); one of 3 is not.
        assert_eq!(on_threads(4, || ranks_for(&model, 3)), 1, "{text}");
        for batch in [6, 3] {
            let whole = steps_on_threads(&model, batch, 2, 1);
            let split = steps_on_threads(&model, batch, 2, 4);
            assert_eq!(whole, split, "{text}: batch {batch}");
        }
    }
}

/// Probabilities and the evaluation loss of a batch of `batch` images after two training
/// steps, inside a rayon pool of `threads` threads: inference splits the batch over up to
/// `threads` ranks, in near-equal shares.
fn inference_on_threads(model: &Model, batch: usize, threads: usize) -> (Vec<u32>, u64, usize) {
    let (images, labels) = images(batch, model.input.len(), model.classes);
    let mut network = Network::new(model, 7);
    let mut optimizer = strata::backend::optimizer::Optimizer::new(&model.train);
    // Trained on one thread, so that every pool starts from the same weights.
    for _ in 0..2 {
        on_threads(1, || {
            network.train_step(images.clone(), &labels, &mut optimizer)
        })
        .expect("step");
    }
    on_threads(threads, || {
        let probabilities = network
            .predict_values(&images, batch)
            .concat()
            .iter()
            .map(|p| p.to_bits())
            .collect();
        let stats = network.evaluate(images, &labels);
        (probabilities, stats.loss.to_bits(), stats.correct)
    })
}

#[test]
fn inference_split_over_the_cores_gives_the_whole_batch_bits() {
    // A hidden dense layer after a convolution: its product once rounded by the batch size.
    let hidden = "conv3(16, pad=same) -> bn relu -> pool2 -> conv3(32, pad=same) -> bn relu -> pool2 -> dense64 relu -> dense10 softmax";
    for text in EXACT_MODELS.iter().copied().chain([hidden]) {
        let spec = format!("input: 64x64x3\nmodel: {text}\n");
        let model = compile(&spec, "spec").model.expect("model");
        // 7 images: shares of 4 + 3, 3 + 2 + 2, and 2 + 2 + 2 + 1.
        let whole = inference_on_threads(&model, 7, 1);
        for threads in [2, 3, 4] {
            let ranks = on_threads(threads, || inference_ranks(&model, 7));
            assert_eq!(ranks, threads, "{text}");
            let split = inference_on_threads(&model, 7, threads);
            assert_eq!(whole, split, "{text}: {threads} threads");
        }
    }
}
