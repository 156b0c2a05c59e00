//! [`Collective`] over MPI's world communicator (cargo feature `mpi`): the implementation
//! `mpirun` starts (Open MPI, MPICH, …) does the process start, the hosts and the all-reduce.
//! Only the thread that called [`start`] calls MPI (`MPI_THREAD_FUNNELED`); rayon's threads
//! never do.

use super::{Collective, Traffic};
use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use mpi::Threading;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

/// Elements per MPI call: MPI counts are C `int`s, so longer buffers go in pieces.
const PIECE: usize = 1 << 28;

/// MPI for the life of this value: dropping it finalises MPI (`MPI_Finalize`), which every
/// rank must reach for `mpirun` to report success.
pub struct MpiSession {
    _universe: Universe,
    world: &'static MpiWorld,
}

impl std::fmt::Debug for MpiSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MpiSession")
            .field("world", &self.world)
            .finish()
    }
}

impl MpiSession {
    /// The ranks of this run.
    pub fn world(&self) -> &'static MpiWorld {
        self.world
    }
}

/// The world communicator of a started [`MpiSession`].
#[derive(Debug)]
pub struct MpiWorld {
    rank: usize,
    size: usize,
    host: String,
    traffic: Mutex<Traffic>,
}

/// Starts MPI. `Err` when it was started before in this process.
pub fn start() -> Result<MpiSession, String> {
    static WORLD: OnceLock<MpiWorld> = OnceLock::new();
    let (universe, _provided) = mpi::initialize_with_threading(Threading::Funneled)
        .ok_or_else(|| "MPI was started twice".to_string())?;
    let world = universe.world();
    let world = WORLD.get_or_init(|| MpiWorld {
        rank: usize::try_from(world.rank()).unwrap_or(0),
        size: usize::try_from(world.size()).unwrap_or(1).max(1),
        host: mpi::environment::processor_name().unwrap_or_default(),
        traffic: Mutex::new(Traffic::default()),
    });
    Ok(MpiSession {
        _universe: universe,
        world,
    })
}

impl MpiWorld {
    fn count(&self, bytes: usize, started: Instant) {
        if let Ok(mut traffic) = self.traffic.lock() {
            traffic.calls += 1;
            traffic.bytes += bytes as u64;
            traffic.time += started.elapsed();
        }
    }
}

impl Collective for MpiWorld {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn host(&self) -> String {
        self.host.clone()
    }

    fn sum_f32(&self, values: &mut [f32]) {
        let started = Instant::now();
        let world = SimpleCommunicator::world();
        for piece in values.chunks_mut(PIECE) {
            let send = piece.to_vec();
            world.all_reduce_into(&send[..], piece, SystemOperation::sum());
        }
        self.count(std::mem::size_of_val(values), started);
    }

    fn sum_f64(&self, values: &mut [f64]) {
        let started = Instant::now();
        let world = SimpleCommunicator::world();
        for piece in values.chunks_mut(PIECE) {
            let send = piece.to_vec();
            world.all_reduce_into(&send[..], piece, SystemOperation::sum());
        }
        self.count(std::mem::size_of_val(values), started);
    }

    fn gather_u64(&self, values: &[u64]) -> Vec<u64> {
        let mut all = vec![0_u64; values.len() * self.size];
        if !values.is_empty() {
            SimpleCommunicator::world().all_gather_into(values, &mut all[..]);
        }
        all
    }

    fn broadcast_f32(&self, values: &mut [f32]) {
        let world = SimpleCommunicator::world();
        let root = world.process_at_rank(0);
        for piece in values.chunks_mut(PIECE) {
            root.broadcast_into(piece);
        }
    }

    fn broadcast_bytes(&self, bytes: Option<Vec<u8>>) -> Option<Vec<u8>> {
        let world = SimpleCommunicator::world();
        let root = world.process_at_rank(0);
        let mut len = match (&bytes, self.rank) {
            (Some(bytes), 0) => bytes.len() as u64,
            _ => u64::MAX,
        };
        root.broadcast_into(&mut len);
        if len == u64::MAX {
            return None;
        }
        let mut buffer = match bytes {
            Some(bytes) if self.rank == 0 => bytes,
            _ => vec![0_u8; usize::try_from(len).unwrap_or(0)],
        };
        for piece in buffer.chunks_mut(PIECE) {
            root.broadcast_into(piece);
        }
        Some(buffer)
    }

    fn abort(&self, code: i32) -> ! {
        SimpleCommunicator::world().abort(code)
    }

    fn traffic(&self) -> Traffic {
        self.traffic.lock().map(|t| *t).unwrap_or_default()
    }
}
