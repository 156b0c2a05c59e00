//! The collective operations of a data-parallel run, behind one trait: [`Collective`]. A plain
//! `strata train` is one process ([`SINGLE`], every operation a no-op); under
//! `mpirun -n N strata train …` a binary built with the cargo feature `mpi` talks to the other
//! ranks through MPI ([`mpi::MpiWorld`]); threads of one process are ranks too
//! ([`threads::ThreadRank`]): a training step splits its batch over the cores that way, and the
//! tests run the data-parallel trainer without MPI. The trainer and the batch-norm op call only
//! the trait, and nothing here knows about models, files or the terminal.

#[cfg(feature = "mpi")]
pub mod mpi;
pub mod threads;

use std::time::Duration;

/// What the ranks of a run do together. Every rank must call the same operations in the same
/// order (MPI matches collective calls by order, not by place in the code); an operation
/// returns once every rank has called it.
pub trait Collective: Send + Sync + std::fmt::Debug {
    /// This process's rank, `0..size`.
    fn rank(&self) -> usize;

    /// The number of ranks.
    fn size(&self) -> usize;

    /// The machine this rank runs on, for messages (`""` when unknown).
    fn host(&self) -> String;

    /// Sums `values` element-wise over the ranks, in place (`MPI_Allreduce`); every rank gets
    /// the same sums.
    fn sum_f32(&self, values: &mut [f32]);

    /// [`Collective::sum_f32`] in double precision.
    fn sum_f64(&self, values: &mut [f64]);

    /// Every rank's `values` (each rank gives as many), rank 0's first (`MPI_Allgather`).
    fn gather_u64(&self, values: &[u64]) -> Vec<u64>;

    /// Rank 0's `values` on every rank (`MPI_Bcast`); all ranks pass slices of one length.
    fn broadcast_f32(&self, values: &mut [f32]);

    /// Rank 0's bytes on every rank: rank 0 passes `Some(bytes)`, or `None` when it has none to
    /// give (it failed), which every rank then receives; the other ranks' arguments are ignored.
    fn broadcast_bytes(&self, bytes: Option<Vec<u8>>) -> Option<Vec<u8>>;

    /// Ends every rank of the run now, with exit status `code` (`MPI_Abort`): for an error
    /// on one rank while the others may be waiting for it inside an operation.
    fn abort(&self, code: i32) -> !;

    /// The sums done so far: calls, bytes sent by this rank and time spent in them.
    fn traffic(&self) -> Traffic;
}

/// Counters of [`Collective::sum_f32`] and [`Collective::sum_f64`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Traffic {
    /// Calls.
    pub calls: u64,
    /// Bytes of values summed (each rank's contribution).
    pub bytes: u64,
    /// Time inside the calls, waiting for slower ranks included.
    pub time: Duration,
}

impl Traffic {
    /// The traffic between `earlier` and `self`.
    pub fn since(&self, earlier: &Traffic) -> Traffic {
        Traffic {
            calls: self.calls.saturating_sub(earlier.calls),
            bytes: self.bytes.saturating_sub(earlier.bytes),
            time: self.time.saturating_sub(earlier.time),
        }
    }
}

/// One process: rank 0 of 1, every operation leaves its values as they are.
#[derive(Debug, Clone, Copy, Default)]
pub struct Single;

/// The one-process run, for code that takes `&'static dyn Collective`.
pub static SINGLE: Single = Single;

impl Collective for Single {
    fn rank(&self) -> usize {
        0
    }

    fn size(&self) -> usize {
        1
    }

    fn host(&self) -> String {
        String::new()
    }

    fn sum_f32(&self, _values: &mut [f32]) {}

    fn sum_f64(&self, _values: &mut [f64]) {}

    fn gather_u64(&self, values: &[u64]) -> Vec<u64> {
        values.to_vec()
    }

    fn broadcast_f32(&self, _values: &mut [f32]) {}

    fn broadcast_bytes(&self, bytes: Option<Vec<u8>>) -> Option<Vec<u8>> {
        bytes
    }

    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }

    fn traffic(&self) -> Traffic {
        Traffic::default()
    }
}

/// The rank's name in messages: `rank 1 of 4 (node2)`.
pub fn describe(world: &dyn Collective) -> String {
    let host = world.host();
    if host.is_empty() {
        format!("rank {} of {}", world.rank(), world.size())
    } else {
        format!("rank {} of {} ({host})", world.rank(), world.size())
    }
}

/// The contiguous part `start..end` of `len` items that `rank` of `size` takes: near-equal
/// parts in rank order, the first `len % size` ranks one item more.
pub fn share(len: usize, rank: usize, size: usize) -> std::ops::Range<usize> {
    let size = size.max(1);
    let (base, extra) = (len / size, len % size);
    let start = rank * base + rank.min(extra);
    let end = start + base + usize::from(rank < extra);
    start.min(len)..end.min(len)
}

/// FNV-1a, 64 bits: a hash that every rank and every build computes alike (for checksums of
/// weights and fingerprints of data, compared across machines).
#[derive(Debug, Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xCBF2_9CE4_8422_2325)
    }
}

impl Fnv {
    /// Adds `bytes`.
    pub fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 ^= u64::from(byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01B3);
        }
    }

    /// Adds the bits of `values`.
    pub fn write_f32s(&mut self, values: &[f32]) {
        for value in values {
            self.write(&value.to_bits().to_le_bytes());
        }
    }

    /// The hash so far.
    pub fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_everything_once_in_rank_order() {
        for len in 0..20 {
            for size in 1..6 {
                let parts: Vec<_> = (0..size).map(|rank| share(len, rank, size)).collect();
                assert_eq!(parts[0].start, 0);
                assert_eq!(parts[size - 1].end, len);
                for pair in parts.windows(2) {
                    assert_eq!(pair[0].end, pair[1].start);
                    assert!(pair[0].len() >= pair[1].len());
                    assert!(pair[0].len() - pair[1].len() <= 1);
                }
            }
        }
    }

    #[test]
    fn the_hash_is_fnv1a() {
        let mut hash = Fnv::default();
        hash.write(b"a");
        assert_eq!(hash.finish(), 0xAF63_DC4C_8601_EC8C);
    }
}
