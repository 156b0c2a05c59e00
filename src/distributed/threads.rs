//! Ranks that are threads of one process: a [`Collective`] whose operations meet at a
//! barrier in memory. The training step uses it to split a batch over the cores
//! (`backend::split`), each thread a rank with its own share; the tests use it to run the
//! data-parallel trainer without MPI.
//!
//! Sums add the ranks' values in the fixed tree of `backend::ops::reduce` (the first `⌈n/2⌉`
//! ranks, then the rest, each summed the same way), so equal shares of a batch over 2, 4, 8…
//! ranks add up to the bits one pass over the whole batch computes.

use super::{Collective, Traffic};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// What the ranks of one in-process world share.
#[derive(Debug)]
struct Meeting {
    size: usize,
    /// Ranks arrived at the barrier in this round.
    arrived: AtomicUsize,
    /// Rounds completed; a waiting rank watches it change.
    round: AtomicUsize,
    /// A rank panicked: the others would wait for it forever.
    abandoned: AtomicBool,
    /// Each rank's contribution to an operation, as bits: two sets, used by alternate
    /// operations (see [`ThreadRank::exchange`]).
    slots: [Vec<Mutex<Vec<u64>>>; 2],
}

impl Meeting {
    /// Waits until every rank has called `wait` in this round. The ranks run on cores of
    /// their own, so a wait spins first (a step's waits are microseconds), then yields, then
    /// sleeps, so that a rank descheduled by a busy machine is not starved by its partners.
    fn wait(&self) {
        let round = self.round.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.size {
            self.arrived.store(0, Ordering::Relaxed);
            self.round.fetch_add(1, Ordering::Release);
            return;
        }
        let mut tries = 0u32;
        while self.round.load(Ordering::Acquire) == round {
            if self.abandoned.load(Ordering::Relaxed) {
                panic!("another thread rank panicked");
            }
            tries = tries.saturating_add(1);
            if tries < 4_000 {
                std::hint::spin_loop();
            } else if tries < 20_000 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(std::time::Duration::from_micros(50));
            }
        }
    }

    fn slot(&self, set: usize, rank: usize) -> MutexGuard<'_, Vec<u64>> {
        self.slots[set][rank]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// One rank of an in-process world.
#[derive(Debug)]
pub struct ThreadRank {
    rank: usize,
    meeting: Arc<Meeting>,
    /// This rank's operations so far: which slot set the next one uses.
    operations: AtomicUsize,
}

impl ThreadRank {
    /// `size` ranks (at least 1) meeting in this process, leaked so that they are `'static`,
    /// as the trainer and the batch norms hold a collective. Each call makes a new world.
    pub fn world(size: usize) -> Vec<&'static ThreadRank> {
        let size = size.max(1);
        let meeting = Arc::new(Meeting {
            size,
            arrived: AtomicUsize::new(0),
            round: AtomicUsize::new(0),
            abandoned: AtomicBool::new(false),
            slots: [0, 1].map(|_| (0..size).map(|_| Mutex::new(Vec::new())).collect()),
        });
        (0..size)
            .map(|rank| {
                &*Box::leak(Box::new(ThreadRank {
                    rank,
                    meeting: Arc::clone(&meeting),
                    operations: AtomicUsize::new(0),
                }))
            })
            .collect()
    }

    /// Marks the world abandoned if this thread is panicking (call from a guard's drop), so
    /// that ranks waiting for it panic too instead of waiting forever.
    pub fn leave_if_panicking(&self) {
        if std::thread::panicking() {
            self.meeting.abandoned.store(true, Ordering::Relaxed);
        }
    }

    /// Every rank's `mine`, by rank: each rank writes its slot, and reads them all once all
    /// have written, at one barrier. Consecutive operations use the two slot sets in turn: a
    /// rank that has read goes on to write the other set, and can come back to this one only
    /// after the next operation's barrier, which every rank reaches after reading this one.
    /// (With one set, a second barrier had to keep the slots until all had read them: a
    /// training step split over two threads meets about 200 times, and the second waits
    /// cost about 1% of its time.)
    fn exchange<R>(
        &self,
        mine: Vec<u64>,
        read: impl FnOnce(&[MutexGuard<'_, Vec<u64>>]) -> R,
    ) -> R {
        let set = self.operations.fetch_add(1, Ordering::Relaxed) % 2;
        *self.meeting.slot(set, self.rank) = mine;
        self.meeting.wait();
        let slots: Vec<_> = (0..self.meeting.size)
            .map(|rank| self.meeting.slot(set, rank))
            .collect();
        read(&slots)
    }

    /// Sums the ranks' values, each given as bits and read back with `from`, in the ranks'
    /// tree; writes the sums with `to`.
    fn sum_bits<T: Copy + std::ops::Add<Output = T>>(
        &self,
        mine: Vec<u64>,
        len: usize,
        from: impl Fn(u64) -> T,
        mut to: impl FnMut(usize, T),
    ) {
        self.exchange(mine, |slots| {
            let mut values = Vec::with_capacity(slots.len());
            for idx in 0..len {
                values.clear();
                values.extend(slots.iter().map(|slot| from(slot[idx])));
                to(idx, tree(&values));
            }
        });
    }
}

/// The sum of `values` (at least one) in the fixed tree: the first `⌈n/2⌉`, then the rest.
fn tree<T: Copy + std::ops::Add<Output = T>>(values: &[T]) -> T {
    if values.len() == 1 {
        return values[0];
    }
    let (left, right) = values.split_at(values.len().div_ceil(2));
    tree(left) + tree(right)
}

impl Collective for ThreadRank {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.meeting.size
    }

    fn host(&self) -> String {
        "thread".to_string()
    }

    fn sum_f32(&self, values: &mut [f32]) {
        let mine = values.iter().map(|v| u64::from(v.to_bits())).collect();
        self.sum_bits(
            mine,
            values.len(),
            |bits| f32::from_bits(bits as u32),
            |idx, sum| values[idx] = sum,
        );
    }

    fn sum_f64(&self, values: &mut [f64]) {
        let mine = values.iter().map(|v| v.to_bits()).collect();
        self.sum_bits(mine, values.len(), f64::from_bits, |idx, sum| {
            values[idx] = sum;
        });
    }

    fn gather_u64(&self, values: &[u64]) -> Vec<u64> {
        self.exchange(values.to_vec(), |slots| {
            slots.iter().flat_map(|slot| slot.iter().copied()).collect()
        })
    }

    fn broadcast_f32(&self, values: &mut [f32]) {
        let mine = values.iter().map(|v| u64::from(v.to_bits())).collect();
        self.exchange(mine, |slots| {
            for (value, bits) in values.iter_mut().zip(slots[0].iter()) {
                *value = f32::from_bits(*bits as u32);
            }
        });
    }

    fn broadcast_bytes(&self, bytes: Option<Vec<u8>>) -> Option<Vec<u8>> {
        let mine: Vec<u64> = match (self.rank, bytes) {
            (0, Some(bytes)) => std::iter::once(1)
                .chain(bytes.into_iter().map(u64::from))
                .collect(),
            _ => vec![0],
        };
        self.exchange(mine, |slots| {
            let root = &slots[0];
            (root.first() == Some(&1)).then(|| root[1..].iter().map(|b| *b as u8).collect())
        })
    }

    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }

    fn traffic(&self) -> Traffic {
        Traffic::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on every rank of a new world of `size`, each on its own thread.
    fn on_ranks<R: Send>(size: usize, f: impl Fn(&ThreadRank) -> R + Sync) -> Vec<R> {
        let world = ThreadRank::world(size);
        std::thread::scope(|scope| {
            let handles: Vec<_> = world
                .iter()
                .map(|rank| {
                    let f = &f;
                    scope.spawn(move || f(rank))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("rank"))
                .collect()
        })
    }

    #[test]
    fn sums_add_in_the_tree_and_every_rank_gets_the_same_bits() {
        // Rank r gives [1e8, 1, -1e8, 1][r]: the tree gives (1e8 + 1) + (-1e8 + 1) = 0 in
        // single precision, adding in rank order would give 1.
        let sums = on_ranks(4, |rank| {
            let mut values = [[1e8f32, 1.0, -1e8, 1.0][rank.rank()], rank.rank() as f32];
            rank.sum_f32(&mut values);
            let mut wide = [rank.rank() as f64 + 0.5];
            rank.sum_f64(&mut wide);
            (values, wide)
        });
        let in_order = [1e8f32, 1.0, -1e8, 1.0].iter().fold(0.0f32, |a, b| a + b);
        assert_eq!(in_order, 1.0);
        for (values, wide) in &sums {
            assert_eq!(values[0].to_bits(), 0.0f32.to_bits());
            assert_eq!(values[1], 6.0);
            assert_eq!(wide[0], (0.5 + 1.5) + (2.5 + 3.5));
        }
        // Three ranks: the first two, then the third.
        let sums = on_ranks(3, |rank| {
            let mut values = [[1e8f32, 4.0, 4.0][rank.rank()]];
            rank.sum_f32(&mut values);
            values[0]
        });
        assert!(sums.iter().all(|s| *s == (1e8f32 + 4.0) + 4.0));
    }

    /// Consecutive operations alternate between two slot sets with one barrier each: a rank
    /// that races ahead must never overwrite slots another rank has yet to read. Ranks run
    /// uneven amounts of work between operations, so each is sometimes first and sometimes
    /// last, and every result must be exact.
    #[test]
    fn back_to_back_operations_never_read_a_later_operation_s_values() {
        let rounds = 2_000u64;
        let results = on_ranks(3, |rank| {
            let r = rank.rank() as u64;
            let mut wrong = 0;
            for round in 0..rounds {
                // Uneven work: a different rank lags in different rounds.
                if (round + r).is_multiple_of(3) {
                    for _ in 0..((round * 7 + r * 13) % 200) {
                        std::hint::spin_loop();
                    }
                    if round % 97 == r {
                        std::thread::yield_now();
                    }
                }
                let mut values = [(round * 10 + r) as f32];
                rank.sum_f32(&mut values);
                let gathered = rank.gather_u64(&[round, r]);
                let expected_sum = (0..3).map(|q| (round * 10 + q) as f32).sum::<f32>();
                let expected_gather: Vec<u64> = (0..3).flat_map(|q| [round, q]).collect();
                if values[0] != expected_sum || gathered != expected_gather {
                    wrong += 1;
                }
            }
            wrong
        });
        assert_eq!(results, vec![0, 0, 0]);
    }

    #[test]
    fn gathers_and_broadcasts_come_from_every_rank_in_order() {
        let results = on_ranks(3, |rank| {
            let gathered = rank.gather_u64(&[rank.rank() as u64, 10]);
            let mut values = [rank.rank() as f32; 2];
            rank.broadcast_f32(&mut values);
            let bytes = rank.broadcast_bytes((rank.rank() == 0).then(|| b"abc".to_vec()));
            let none = rank.broadcast_bytes(None);
            (gathered, values, bytes, none)
        });
        for (gathered, values, bytes, none) in results {
            assert_eq!(gathered, [0, 10, 1, 10, 2, 10]);
            assert_eq!(values, [0.0, 0.0]);
            assert_eq!(bytes.as_deref(), Some(&b"abc"[..]));
            assert_eq!(none, None);
        }
    }

    #[test]
    fn a_rank_that_panics_releases_the_others() {
        let world = ThreadRank::world(2);
        let outcome = std::thread::scope(|scope| {
            let waiting = scope.spawn(|| {
                let mut values = [1.0f32];
                world[1].sum_f32(&mut values);
            });
            let failing = scope.spawn(|| {
                struct Guard(&'static ThreadRank);
                impl Drop for Guard {
                    fn drop(&mut self) {
                        self.0.leave_if_panicking();
                    }
                }
                let _guard = Guard(world[0]);
                panic!("rank 0 fails before the sum");
            });
            (failing.join().is_err(), waiting.join().is_err())
        });
        assert_eq!(outcome, (true, true));
    }
}
