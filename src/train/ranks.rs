//! Data-parallel training (`mpirun -n N strata train …`, docs/distributed.md): what the loop
//! does differently when it is one of several ranks.
//!
//! Every rank draws the same seeded order of an epoch and takes its share of every batch
//! ([`local_order`]); each step sums the ranks' gradients, weighted by their shares, in one
//! all-reduce together with the step's loss, accuracy counts and stop flags ([`train_step`]),
//! so every rank applies the same optimiser step. After an epoch the moving statistics of the
//! batch norms are made rank 0's (without `train.sync_bn`, as PyTorch DDP broadcasts its
//! buffers) and the weights' checksums are compared ([`settle_epoch`]); validation is split
//! over the ranks and its sums reduced ([`evaluate`]). Where a stage can fail on some ranks
//! and not others (setup, saving an epoch), the ranks agree on the outcome ([`agree`]) before
//! going on, so a failure on one host ends every rank with a message and never leaves the
//! others waiting. Rank 0 alone prints and writes the run folder.

use super::history::EpochRecord;
use super::setup::Start;
use super::{Metrics, Totals, TrainError};
use crate::backend::data_parallel::share_part;
use crate::backend::network::{BatchStats, Network};
use crate::backend::optimizer::Optimizer;
use crate::backend::params::to_tensors;
use crate::data::loader::{Batch, Loader};
use crate::distributed::{describe, share, Collective, Fnv, Traffic};
use std::time::Duration;

/// Exit status of every rank when one ends the run with [`Collective::abort`].
pub const EXIT_ABORT: i32 = 1;

/// The indices this rank trains on in an epoch of `order`, batch after batch: its share of
/// each batch of `batch_size`. A last batch with fewer images than there are ranks is left
/// out, since every rank takes part in every step; its images fall elsewhere in the next
/// epoch's order.
pub fn local_order(order: &[usize], batch_size: usize, world: &dyn Collective) -> Vec<usize> {
    let size = world.size();
    order
        .chunks(batch_size.max(1))
        .filter(|batch| batch.len() >= size)
        .flat_map(|batch| {
            batch[share(batch.len(), world.rank(), size)]
                .iter()
                .copied()
        })
        .collect()
}

/// What a step of a data-parallel run did, the same on every rank.
#[derive(Debug, Clone, Copy)]
pub(super) struct Step {
    /// The whole batch's loss (NaN when it was not finite on some rank, and then no update
    /// was made), accuracy and size; `None` when no rank had an image.
    pub stats: Option<BatchStats>,
    /// Some rank was interrupted: every rank stops after this step.
    pub stop: bool,
}

/// One step on this rank's share of a batch of `whole` images: local gradients, one
/// all-reduce of the gradients (each rank's weighted by its part of the batch, a power of two
/// when the shares are equal over 2, 4, 8… ranks, so the sum has one process's bits) followed
/// by the loss sum, the right answers, the images and the flags, then the optimiser step with
/// the mean gradient. An error that leaves
/// the other ranks waiting (the backend failed; or, with `sync_bn`, every image of the share
/// failed to decode, so this rank cannot join the batch norms' sums) ends every rank.
pub(super) fn train_step(
    world: &dyn Collective,
    network: &mut Network,
    optimizer: &mut Optimizer,
    (batch, whole): (Batch, usize),
    interrupted: bool,
    sync_bn: bool,
) -> Step {
    let n_values = network.trainable_len();
    let count = batch.len();
    let (local, mut buffer) = if count > 0 {
        match network.flat_gradients(batch.images, &batch.labels) {
            Ok(result) => result,
            Err(err) => abort(world, &format!("the training step failed: {err:?}")),
        }
    } else if sync_bn {
        abort(
            world,
            "every image of this rank's share of a batch failed to decode, and with \
             `train.sync_bn` a rank cannot sit a batch out",
        )
    } else {
        (BatchStats::default(), vec![0.0; n_values])
    };
    let part = share_part(count, whole);
    buffer.iter_mut().for_each(|g| *g *= part);
    let finite = local.loss.is_finite();
    buffer.extend([
        if finite {
            (local.loss * count as f64) as f32
        } else {
            0.0
        },
        local.correct as f32,
        count as f32,
        f32::from(u8::from(!finite)),
        f32::from(u8::from(interrupted)),
    ]);
    world.sum_f32(&mut buffer);
    let tail = buffer.split_off(n_values);
    let [loss_sum, correct, images, not_finite, stops] = tail[..] else {
        abort(
            world,
            "the all-reduce returned a buffer of the wrong length",
        )
    };
    let stop = stops > 0.0;
    if images == 0.0 {
        return Step { stats: None, stop };
    }
    if not_finite > 0.0 {
        let stats = BatchStats {
            loss: f64::NAN,
            correct: correct as usize,
            count: images as usize,
        };
        return Step {
            stats: Some(stats),
            stop,
        };
    }
    if images != whole as f32 {
        // Some images failed to decode: the mean over those that came.
        let correction = whole as f32 / images;
        buffer.iter_mut().for_each(|g| *g *= correction);
    }
    if let Err(err) = network.apply_flat_gradients(&buffer, optimizer) {
        abort(world, &format!("the optimiser step failed: {err:?}"));
    }
    let stats = BatchStats {
        loss: f64::from(loss_sum) / f64::from(images),
        correct: correct as usize,
        count: images as usize,
    };
    Step {
        stats: Some(stats),
        stop,
    }
}

/// The line rank 0 prints under an epoch's: the checksum all ranks agreed on and what the
/// all-reduces of the epoch's `steps` cost this rank, taking `training` in all (the time
/// includes waiting for slower ranks):
/// `weights identical on 2 ranks (checksum …); all-reduce per step: 1 call, 412.3 KB,
/// 0.61 ms (3.2% of 1.9 s of training)`.
pub(super) fn epoch_ranks_line(
    world: &dyn Collective,
    checksum: u64,
    traffic: &Traffic,
    steps: usize,
    training: Duration,
) -> String {
    let steps = steps.max(1) as f64;
    let calls = traffic.calls as f64 / steps;
    let calls = if calls == 1.0 {
        "1 call".to_string()
    } else {
        format!("{calls:.1} calls")
    };
    let share = 100.0 * traffic.time.as_secs_f64() / training.as_secs_f64().max(1e-9);
    format!(
        "  weights identical on {} ranks (checksum {checksum:016x}); all-reduce per step: \
         {calls}, {:.1} KB, {:.3} ms ({share:.1}% of {:.1} s of training)",
        world.size(),
        traffic.bytes as f64 / steps / 1000.0,
        traffic.time.as_secs_f64() * 1000.0 / steps,
        training.as_secs_f64()
    )
}

/// Says why this rank stops, then ends every rank of the run.
fn abort(world: &dyn Collective, message: &str) -> ! {
    eprintln!("error: {}: {message}; ending every rank", describe(world));
    world.abort(EXIT_ABORT)
}

/// Loss and accuracy over all of `loader` in inference mode: each rank evaluates a contiguous
/// share of the images and the sums are reduced. One process evaluates everything.
pub(super) fn evaluate(
    world: &dyn Collective,
    network: &mut Network,
    loader: &Loader,
    batch_size: usize,
) -> Metrics {
    if world.size() == 1 {
        return super::evaluate(network, loader, batch_size);
    }
    let order = loader.order(0, 0, false);
    let mine = order[share(order.len(), world.rank(), world.size())].to_vec();
    let mut totals = Totals::default();
    for batch in loader.batches(mine, batch_size) {
        if !batch.is_empty() {
            totals.add(&network.evaluate(batch.images, &batch.labels));
        }
    }
    let mut sums = [totals.loss, totals.correct as f64, totals.count as f64];
    world.sum_f64(&mut sums);
    let count = sums[2].max(1.0);
    Metrics {
        loss: sums[0] / count,
        accuracy: sums[1] / count,
    }
}

/// Rank 0's metrics of an epoch on every rank. The ranks computed them from the same sums,
/// but what is decided from them (early stopping, a lower rate on a plateau, the best
/// checkpoint) must be decided alike on every rank even if a reduction ever rounded differently
/// on one: a rank that stopped alone would leave the others waiting.
pub(super) fn share_record(world: &dyn Collective, record: &mut EpochRecord) {
    let values = [
        record.loss,
        record.accuracy,
        record.val_loss.unwrap_or(f64::NAN),
        record.val_accuracy.unwrap_or(f64::NAN),
    ];
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let Some(shared) = world.broadcast_bytes(Some(bytes)) else {
        return;
    };
    let values: Vec<f64> = shared
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
        .collect();
    if let [loss, accuracy, val_loss, val_accuracy] = values[..] {
        record.loss = loss;
        record.accuracy = accuracy;
        record.val_loss = record.val_loss.map(|_| val_loss);
        record.val_accuracy = record.val_accuracy.map(|_| val_accuracy);
    }
}

/// The end of an epoch on every rank: without `sync_bn` the batch norms' moving statistics,
/// which each rank updated from its own shares, become rank 0's; then the weights must be the
/// same bits on every rank. Returns their checksum.
pub(super) fn settle_epoch(
    world: &dyn Collective,
    network: &mut Network,
    sync_bn: bool,
    epoch: u64,
) -> Result<u64, TrainError> {
    if !sync_bn {
        let mut moving = network.moving_statistics();
        world.broadcast_f32(&mut moving);
        network.set_moving_statistics(&moving);
    }
    same_weights(world, network, &format!("after epoch {epoch}"))
}

/// A checksum of every weight and moving statistic of `network` (the bits of the checkpoint's
/// tensors, in order).
pub fn weights_checksum(network: &Network) -> u64 {
    let mut hash = Fnv::default();
    for tensor in to_tensors(&network.model, &network.params) {
        hash.write(tensor.name.as_bytes());
        hash.write_f32s(&tensor.data);
    }
    hash.finish()
}

/// The checksum of the weights when every rank's has rank 0's; else an error on every rank
/// naming the ranks that differ. `when` ends the message (`after epoch 3`).
pub fn same_weights(
    world: &dyn Collective,
    network: &Network,
    when: &str,
) -> Result<u64, TrainError> {
    let sums = world.gather_u64(&[weights_checksum(network)]);
    differing_weights(&sums, when)?;
    Ok(sums[0])
}

/// The error for checksums (by rank) that are not all rank 0's.
fn differing_weights(sums: &[u64], when: &str) -> Result<(), TrainError> {
    let differ: Vec<String> = sums
        .iter()
        .enumerate()
        .filter(|(_, sum)| **sum != sums[0])
        .map(|(rank, sum)| format!("rank {rank} ({sum:016x})"))
        .collect();
    if differ.is_empty() {
        return Ok(());
    }
    Err(TrainError::Ranks(format!(
        "the weights of {} differ from rank 0's ({:016x}) {when}: the ranks no longer train \
         one model, so the run stops (the last checkpoint is from before the divergence); this \
         is a fault in strata or in the MPI library, please report it",
        differ.join(", "),
        sums[0]
    )))
}

/// The numbers each rank gives [`agree`] to compare, at most.
pub(super) const AGREED_VALUES: usize = 4;

/// Agreement on a stage every rank went through, which may have failed on some: each rank
/// gives its outcome and `values` (any numbers to compare, such as checksums), and gets every
/// rank's `values` back, rank 0's first, when all succeeded. A rank that failed gets its own
/// error back (reported by that rank), unless rank 0 failed too, whose message then speaks
/// for all; the others get [`TrainError::Ranks`] naming the ranks that failed, which rank 0
/// reports. `stage` says what failed (`could not start`).
pub(super) fn agree(
    world: &dyn Collective,
    outcome: Result<&[u64], TrainError>,
    stage: &str,
) -> Result<Vec<u64>, TrainError> {
    let width = AGREED_VALUES;
    let mut mine = vec![0_u64; width + 1];
    match &outcome {
        Ok(values) => {
            let values = &values[..values.len().min(width)];
            mine[1..=values.len()].copy_from_slice(values);
        }
        Err(_) => mine[0] = 1,
    }
    let all = world.gather_u64(&mine);
    let failed: Vec<usize> = all
        .chunks(width + 1)
        .enumerate()
        .filter(|(_, status)| status[0] != 0)
        .map(|(rank, _)| rank)
        .collect();
    match outcome {
        Err(err) if world.rank() == 0 || !failed.contains(&0) => Err(err),
        Err(_) => Err(TrainError::Ranks(String::new())),
        Ok(_) if failed.is_empty() => Ok(all
            .chunks(width + 1)
            .flat_map(|status| status[1..].iter().copied())
            .collect()),
        Ok(_) => Err(TrainError::Ranks(format!(
            "{} {stage}; the message above says why, and the run stops on every rank",
            rank_list(&failed, world.size())
        ))),
    }
}

/// The start of a run ([`super::setup::start`]) on every rank: each rank must have started,
/// with the same weights.
pub(super) fn agree_on_start(
    world: &dyn Collective,
    started: Result<Start, TrainError>,
) -> Result<Start, TrainError> {
    if world.size() == 1 {
        return started;
    }
    match started {
        Ok(start) => {
            let all = agree(
                world,
                Ok(&[weights_checksum(&start.network)]),
                "could not start",
            )?;
            let sums: Vec<u64> = all.chunks(AGREED_VALUES).map(|values| values[0]).collect();
            differing_weights(&sums, "at the start")?;
            Ok(start)
        }
        Err(err) => Err(agree_failed(world, err, "could not start")),
    }
}

/// [`agree`] for a rank that failed: the error it ends with.
pub(super) fn agree_failed(world: &dyn Collective, err: TrainError, stage: &str) -> TrainError {
    match agree(world, Err(err), stage) {
        Err(err) => err,
        Ok(_) => TrainError::Ranks(String::new()),
    }
}

/// `rank 1 of 4`, `ranks 1 and 3 of 4`.
fn rank_list(ranks: &[usize], size: usize) -> String {
    let names: Vec<String> = ranks.iter().map(ToString::to_string).collect();
    match names.as_slice() {
        [one] => format!("rank {one} of {size}"),
        [init @ .., last] => format!("ranks {} and {last} of {size}", init.join(", ")),
        [] => format!("no rank of {size}"),
    }
}

/// The files a loader reads and their classes, as a hash every rank computes alike when it
/// sees the same files: paths relative to `root` (hosts may mount the data in different
/// places), and the count.
pub(super) fn data_fingerprint(loader: &Loader, root: &std::path::Path) -> (u64, u64) {
    let mut hash = Fnv::default();
    for (path, label) in loader.samples() {
        let relative = path.strip_prefix(root).unwrap_or(path);
        hash.write(relative.to_string_lossy().as_bytes());
        hash.write(&(*label as u64).to_le_bytes());
    }
    (hash.finish(), loader.len() as u64)
}

/// `Ok` when every rank sees rank 0's training and validation images: `all` holds each rank's
/// `[train hash, train count, validation hash, validation count]`.
pub(super) fn same_data(all: &[u64], size: usize) -> Result<(), TrainError> {
    let ranks: Vec<&[u64]> = all.chunks(AGREED_VALUES).collect();
    let Some(first) = ranks.first() else {
        return Ok(());
    };
    let differ: Vec<String> = ranks
        .iter()
        .enumerate()
        .filter(|(_, seen)| seen != &first)
        .map(|(rank, seen)| {
            let other = if seen[1] == first[1] && seen[3] == first[3] {
                ", but other files"
            } else {
                ""
            };
            format!(
                "rank {rank} sees {} training and {} validation images{other}",
                seen[1], seen[3]
            )
        })
        .collect();
    if differ.is_empty() {
        return Ok(());
    }
    Err(TrainError::Ranks(format!(
        "the {size} ranks do not see the same data: rank 0 sees {} training and {} validation \
         images, {}; every host must see the same image folders (the same files, or copies of \
         them; see docs/distributed.md), or each rank's share of a batch would be other images",
        first[1],
        first[3],
        differ.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distributed::Single;

    #[test]
    fn differing_checksums_name_the_ranks() {
        assert!(differing_weights(&[7, 7, 7], "after epoch 1").is_ok());
        let Err(TrainError::Ranks(message)) = differing_weights(&[7, 7, 8], "after epoch 2") else {
            panic!("expected a ranks error");
        };
        assert!(message.contains("rank 2 (0000000000000008)"), "{message}");
        assert!(message.contains("after epoch 2"), "{message}");
    }

    #[test]
    fn one_process_takes_every_image_of_every_batch() {
        let order: Vec<usize> = (0..10).rev().collect();
        assert_eq!(local_order(&order, 4, &Single), order);
    }

    #[test]
    fn rank_lists_read_as_english() {
        assert_eq!(rank_list(&[1], 2), "rank 1 of 2");
        assert_eq!(rank_list(&[1, 2, 3], 4), "ranks 1, 2 and 3 of 4");
    }
}
