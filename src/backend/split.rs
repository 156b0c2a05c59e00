//! A training step split over the cores: each core takes an equal, contiguous share of the
//! batch and runs the whole forward and backward pass on it alone, as a rank of an in-process
//! data-parallel run ([`ThreadRank`]), instead of every op of one pass splitting its own work
//! over the cores.
//!
//! Why: one pass over the whole batch is hundreds of parallel ops a step, each one a fork and
//! a join, with a core idle whenever one op's halves are uneven or an op is serial. A share of
//! the batch per core joins the cores only where the batch is summed: at each batch norm
//! (its statistics and its gradient's means, summed over the ranks as `train.sync_bn` sums
//! them under MPI) and once for the gradient.
//!
//! The same bits as one pass: the ranks' shares are equal and their number is a power of two,
//! so each share is a subtree of the fixed tree every sum over a batch follows
//! (`ops::reduce`); the batch norms' sums and the gradient (each rank's weighted by its part of
//! the batch, a power of two) add the subtrees as one pass adds them. The loss is computed
//! from the ranks' logits put back together, as one pass computes it. The tests hold a split
//! step to a whole-batch step bit for bit.
//!
//! The lead network (rank 0) keeps the weights, the optimiser and the moving statistics; the
//! other ranks' networks borrow its weights for the step (clones that share their storage)
//! and let go of them before the lead's update, so that nothing is copied.

use super::data_parallel::{share_part, Pass};
use super::network::{BatchStats, Network};
use super::ops::reduce::RUN;
use super::ops::Flat;
use super::optimizer::Optimizer;
use crate::distributed::share;
use crate::distributed::threads::ThreadRank;
use crate::ir::Model;
use dfdx::prelude::*;
use std::sync::OnceLock;

/// The most ranks a batch is split over.
const MAX_RANKS: usize = 8;

/// The environment variable that turns splitting off (`0`): every step is one pass over the
/// whole batch, its ops spread over the cores. For measuring one against the other; the
/// results are the same bits either way.
pub const SPLIT_ENV: &str = "STRATA_SPLIT_BATCH";

/// The ranks of a split step and their networks, kept from step to step.
#[derive(Debug)]
pub(super) struct Split {
    world: Vec<&'static ThreadRank>,
    /// One single-thread pool per rank: a rank's parallel ops run on its own thread, and no
    /// rank can take up another's work (which would wait at a batch norm for itself).
    pools: Vec<rayon::ThreadPool>,
    /// Ranks 1 and up.
    followers: Vec<Network>,
}

/// The fewest layer output values a pass must compute (its batch times the values of every
/// layer's output for one image) to be split: below it, a pass is a few hundred microseconds
/// and the threads' start and meeting cost more than the cores save. 2^17 values: a batch of
/// 32 `mnist_mlp` images (394 values an image) is not split, one of 2 `fashion_resnet` images
/// (about 300,000) is large enough (a training step also needs shares of 3 images or more: see
/// [`ranks_for`]).
pub const MIN_SPLIT_VALUES: usize = 1 << 17;

/// Whether a pass of `model` over `batch` images is large enough to split over the cores
/// (whatever the number of cores: it also decides how an inference pass rounds, see
/// `PassConfig::row_stable`).
pub fn worth_splitting(model: &Model, batch: usize) -> bool {
    let per_image: usize = model.layers.iter().map(|layer| layer.output.len()).sum();
    batch >= 2 && batch.saturating_mul(per_image) >= MIN_SPLIT_VALUES
}

/// Over how many ranks a training step of `model` on `batch` images is split: the largest
/// power of two that is at most the number of rayon threads (and [`MAX_RANKS`]) and divides
/// the batch into shares of more than half a [`RUN`] of images each; 1 (no split) when
/// splitting is turned off or the step is small. A share of at most half a run would be part
/// of a run that one pass sums as one (`reduce::add_gradients_in_runs`), so its rank's
/// gradient could not add up to one pass's bits.
pub fn ranks_for(model: &Model, batch: usize) -> usize {
    if !enabled() || !worth_splitting(model, batch) {
        return 1;
    }
    let threads = rayon::current_num_threads().clamp(1, MAX_RANKS);
    let mut ranks = 1;
    while ranks * 2 <= threads {
        ranks *= 2;
    }
    while ranks > 1 && (!batch.is_multiple_of(ranks) || 2 * (batch / ranks) <= RUN) {
        ranks /= 2;
    }
    ranks
}

/// Whether steps and passes are split ([`SPLIT_ENV`] is not `0`).
fn enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var(SPLIT_ENV).map_or(true, |value| value.trim() != "0"))
}

impl Split {
    fn new(lead: &Network, ranks: usize) -> Result<Split, CpuError> {
        Ok(Split {
            world: ThreadRank::world(ranks),
            pools: rank_pools(ranks)?,
            followers: (1..ranks).map(|_| lead.follower()).collect(),
        })
    }
}

/// One single-thread pool per rank.
fn rank_pools(ranks: usize) -> Result<Vec<rayon::ThreadPool>, CpuError> {
    (0..ranks)
        .map(|rank| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .thread_name(move |_| format!("strata-rank-{rank}"))
                // Subnormals flushed, as on rayon's threads (see `denormals`): a thread starts
                // from its creator's settings, and a step called from a thread that keeps
                // subnormals (one started before the network was made) would otherwise run
                // them in microcode and round them unlike the unsplit step.
                .start_handler(|_| crate::backend::ops::denormals::flush_on_this_thread())
                .build()
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| CpuError::OutOfMemory)
}

/// One training step of `lead` on the batch `values` (labels `labels`) split over `ranks` ranks
/// (a power of two that divides the batch): the same update, loss and accuracy as
/// [`Network::train_step_on`] computes in one pass.
pub(super) fn train_step(
    lead: &mut Network,
    values: &[f32],
    labels: &[usize],
    optimizer: &mut Optimizer,
    ranks: usize,
) -> Result<BatchStats, CpuError> {
    let whole = labels.len();
    let share = whole / ranks;
    let per_image = values.len() / whole.max(1);
    let first = lead.first_image;
    let part = share_part(share, whole);
    let passes = on_ranks(lead, ranks, |network, rank, world| {
        let images = rank * share..(rank + 1) * share;
        let input = &values[images.start * per_image..images.end * per_image];
        let mut pass = rank_pass(network, world, first + images.start, input, &labels[images])?;
        // Each rank weights its gradient by its part of the batch on its own core.
        pass.flat.iter_mut().for_each(|g| *g *= part);
        Ok::<Pass, CpuError>(pass)
    })?;
    lead.set_first_image(first);
    let passes = passes
        .into_iter()
        .collect::<Result<Vec<Pass>, CpuError>>()?;
    let mut logits = Vec::with_capacity(passes.first().map_or(0, |p| p.logits.len()) * ranks);
    let mut gradients = Vec::with_capacity(ranks);
    for pass in passes {
        logits.extend_from_slice(&pass.logits);
        gradients.push(pass.flat);
    }
    let gradient = add_in_tree(gradients);
    let classes = logits.len() / whole.max(1);
    let logits = lead.logits_tensor(logits, (whole, classes));
    let (loss, correct) = lead.loss(logits, labels, true);
    lead.apply_flat_gradients(&gradient, optimizer)?;
    Ok(BatchStats {
        loss: f64::from(loss.array()),
        correct,
        count: whole,
    })
}

/// Values of a gradient added at a time by one task of [`add_in_tree`].
const ADD_CHUNK: usize = 1 << 14;

/// The ranks' gradients added in the batch's sum tree (the first `⌈n/2⌉`, then the rest, each
/// summed the same way), as one pass adds its halves: into the first's buffer, spread over the
/// pool's threads, which are idle between the ranks' passes.
fn add_in_tree(mut gradients: Vec<Vec<f32>>) -> Vec<f32> {
    use rayon::prelude::*;
    if gradients.len() <= 1 {
        return gradients.pop().unwrap_or_default();
    }
    let right = gradients.split_off(gradients.len().div_ceil(2));
    let mut sum = add_in_tree(gradients);
    let other = add_in_tree(right);
    sum.par_chunks_mut(ADD_CHUNK)
        .zip(other.par_chunks(ADD_CHUNK))
        .for_each(|(sum, other)| sum.iter_mut().zip(other).for_each(|(a, b)| *a += b));
    sum
}

/// Over how many ranks an inference pass of `model` on `batch` images is split: at most the
/// number of rayon threads (and [`MAX_RANKS`]) and one image each; 1 when splitting is turned
/// off or the pass is small. Inference sums nothing over the batch, so any near-equal shares
/// give the same bits (with `PassConfig::row_stable`).
pub fn inference_ranks(model: &Model, batch: usize) -> usize {
    if !enabled() || !worth_splitting(model, batch) {
        return 1;
    }
    rayon::current_num_threads()
        .clamp(1, MAX_RANKS)
        .min(batch.max(1))
}

/// The logits of an inference pass over `count` images split over `ranks` ranks: rank `r`
/// runs `pass` on the images `share(count, r, ranks)` with `lead`'s weights, and the logits
/// come back as one `count × classes` tensor, in image order.
pub(super) fn infer(
    lead: &mut Network,
    count: usize,
    ranks: usize,
    pass: impl Fn(&mut Network, std::ops::Range<usize>) -> Vec<f32> + Sync,
) -> Result<Flat<NoneTape>, CpuError> {
    let logits = on_ranks(lead, ranks, |network, rank, _| {
        pass(network, share(count, rank, ranks))
    })?
    .concat();
    let classes = logits.len() / count.max(1);
    Ok(lead.logits_tensor(logits, (count, classes)))
}

/// `work(network, rank, world)` on every rank of a split over `ranks` at once, each on its own
/// pool, rank 0 with `lead` and the others with networks lent `lead`'s weights for the call;
/// the results by rank. Fails only when the ranks' threads cannot be started.
fn on_ranks<R: Send>(
    lead: &mut Network,
    ranks: usize,
    work: impl Fn(&mut Network, usize, &'static ThreadRank) -> R + Sync,
) -> Result<Vec<R>, CpuError> {
    let mut split = match lead.split.take() {
        Some(split) if split.world.len() == ranks => split,
        _ => Box::new(Split::new(lead, ranks)?),
    };
    for follower in &mut split.followers {
        lead.mirror_into(follower);
    }
    let work = &work;
    let results = std::thread::scope(|scope| {
        let Split {
            world,
            pools,
            followers,
        } = &mut *split;
        let handles: Vec<_> = followers
            .iter_mut()
            .zip(&pools[1..])
            .zip(&world[1..])
            .enumerate()
            .map(|(idx, ((network, pool), &rank))| {
                scope.spawn(move || pool.install(|| work(network, idx + 1, rank)))
            })
            .collect();
        let mine = pools[0].install(|| work(lead, 0, world[0]));
        std::iter::once(mine)
            .chain(handles.into_iter().map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            }))
            .collect()
    });
    // The followers let go of the lead's weights, before an update writes them in place.
    split.followers.iter_mut().for_each(Network::release);
    lead.split = Some(split);
    Ok(results)
}

/// One rank's forward and backward pass on its share (`images` of the images starting at
/// `first` in the whole batch), its batch norms summed over `rank`'s world.
fn rank_pass(
    network: &mut Network,
    rank: &'static ThreadRank,
    first: usize,
    images: &[f32],
    labels: &[usize],
) -> Result<Pass, CpuError> {
    /// Releases the other ranks from the batch norms' barriers if this rank panics.
    struct Leave(&'static ThreadRank);
    impl Drop for Leave {
        fn drop(&mut self) {
            self.0.leave_if_panicking();
        }
    }
    let _leave = Leave(rank);
    network.set_batch_norm_sync(Some(rank));
    network.set_first_image(first);
    let x = network.input_tensor(images.to_vec(), labels.len());
    let pass = network.pass_gradients(x, labels);
    network.set_batch_norm_sync(None);
    pass
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use crate::backend::ops::denormals;

    /// The ranks' gradients add up in place to the bits of the sum tree every sum over a batch
    /// follows, whatever their number, over lengths that span several tasks.
    #[test]
    fn gradients_add_in_the_batch_tree() {
        use crate::backend::ops::reduce::tree_sum;
        let len = 3 * ADD_CHUNK + 17;
        for ranks in 1..=8 {
            let gradients: Vec<Vec<f32>> = (0..ranks)
                .map(|rank| {
                    (0..len)
                        .map(|i| {
                            let x = ((i * 7919 + rank * 104_729) % 1_000_003) as f32;
                            (x - 500_000.0) * 10f32.powi((i % 13) as i32 - 6)
                        })
                        .collect()
                })
                .collect();
            let expected = tree_sum(&gradients, Vec::new(), &|mut sum: Vec<f32>, other| {
                sum.iter_mut().zip(&other).for_each(|(a, b)| *a += b);
                sum
            });
            let added = add_in_tree(gradients);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&added), bits(&expected), "{ranks} ranks");
        }
        assert!(add_in_tree(Vec::new()).is_empty());
    }

    /// Every rank computes with subnormals flushed to zero, as one pass does on rayon's
    /// threads, even when its pool is made from a thread that keeps them (a library user's
    /// thread started before the network was made): a rank that kept them would round a
    /// step's smallest values unlike the unsplit step.
    #[test]
    fn every_rank_flushes_subnormals() {
        std::thread::spawn(|| {
            denormals::keep_on_this_thread();
            let tiny = || std::hint::black_box(f32::MIN_POSITIVE) / 4.0;
            assert!(tiny() != 0.0, "this thread keeps subnormals");
            let pools = rank_pools(4).expect("pools");
            let flushed: Vec<bool> = pools.iter().map(|p| p.install(|| tiny() == 0.0)).collect();
            assert_eq!(flushed, vec![true; 4]);
        })
        .join()
        .expect("the test thread");
    }
}
