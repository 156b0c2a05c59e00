//! A pool of reusable `f32` buffers, so that steady-state training does not page-fault fresh
//! allocations, and the one way to read a dfdx tensor's data.
//!
//! Two levels: each thread's own pool first, then one shared by all threads. A buffer goes
//! back to the pool of the thread that lets go of it, and a request looks there first, so a
//! rank of a step split over the cores (`backend::split`, each rank on a thread of its own)
//! reuses its own buffers, still in its own core's cache. With one shared pool, a rank took
//! buffers the other rank had just written (whose cache lines, as we read it, it then had to
//! take from the other core): its memory-bound kernels (depthwise, batch norm, copies) ran 20%
//! to 80% slower than in a one-thread process, and a rank of `mobilenetv2_small`'s split step
//! computed its 16 images in 39 to 40 ms against that process's 35.5. A thread's pool that
//! is full for a length passes the buffer on to the shared one, where other threads find it
//! (a pass whose ops run on several threads gives back buffers on other threads than it took
//! them). The price is memory: each rank keeps its own step's buffers (peaks 10% to 30%
//! higher than with the shared pool alone).

use dfdx::shapes::{HasShape, Shape};
use dfdx::tensor::{Cpu, Tensor};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Buffers kept for reuse by any thread, the second level (see [`Pool`]).
static POOL: Mutex<Pool> = Mutex::new(Pool::new());

thread_local! {
    /// This thread's buffers, the first level: where a buffer it lets go of goes, and where
    /// its requests look first.
    static LOCAL: RefCell<Pool> = const { RefCell::new(Pool::new()) };
}
/// The most buffers one pool (a thread's, or the shared one) keeps.
const MAX_POOLED: usize = 1024;
/// The most buffers of one length one pool keeps.
const MAX_POOLED_PER_LEN: usize = 64;
/// The shortest buffer the pool keeps: smaller ones are cheap to allocate.
const MIN_POOLED_LEN: usize = 1024;

/// Buffers kept for reuse, by length: the part of each known to be initialised (`truncate`
/// keeps the memory but not that knowledge). Bounded in count, overall and per length, so that
/// a burst of large tensors, or a size given back more often than it is asked for, does not
/// pin memory forever.
///
/// A request for `len` elements takes a buffer of `len` to `len + len / 4`, the shortest
/// first, truncated; none is grown. Growing a buffer back costs a `memset`, and a small
/// request served by a large buffer leaves the large request of the next step to allocate.
/// With the earlier rule (the smallest capacity that fits, grown as needed), nearly every
/// forward buffer of a `fashion_resnet` step was zeroed again, 56 MB a step: `memset` was 5%
/// of the time in the first epochs and 13% from the fifth, as buffers drifted shorter, and
/// epochs took 15% longer. Training asks for the same sizes every step, so in the steady state
/// a request finds a buffer of its own size, given back by the step before.
struct Pool {
    by_len: BTreeMap<usize, Vec<Vec<f32>>>,
    count: usize,
}

impl Pool {
    const fn new() -> Pool {
        Pool {
            by_len: BTreeMap::new(),
            count: 0,
        }
    }

    /// A pooled buffer of `len` elements, if one fits.
    fn take(&mut self, len: usize) -> Option<Vec<f32>> {
        let mut buffer = self
            .by_len
            .range_mut(len..=len + len / 4)
            .find_map(|(_, buffers)| buffers.pop())?;
        self.count -= 1;
        buffer.truncate(len);
        Some(buffer)
    }

    /// Keeps `buffer` for a later [`Pool::take`], within the bounds; gives it back when the
    /// pool is full for it, and drops one too short to keep.
    fn give(&mut self, buffer: Vec<f32>) -> Option<Vec<f32>> {
        let len = buffer.len();
        if len < MIN_POOLED_LEN {
            return None;
        }
        if self.count >= MAX_POOLED {
            return Some(buffer);
        }
        let same_len = self.by_len.entry(len).or_default();
        if same_len.len() >= MAX_POOLED_PER_LEN {
            return Some(buffer);
        }
        same_len.push(buffer);
        self.count += 1;
        None
    }
}

/// A buffer of `len` elements whose contents are unspecified: a pooled one (left over from an
/// earlier use, see [`Pool`]) or a new zeroed one.
pub fn take(len: usize) -> Vec<f32> {
    // No thread pool while the thread's locals are torn down (a buffer dropped by another
    // thread-local's destructor): the shared pool serves.
    let local = LOCAL
        .try_with(|pool| pool.try_borrow_mut().ok()?.take(len))
        .ok()
        .flatten();
    local
        .or_else(|| shared().take(len))
        .unwrap_or_else(|| vec![0.0; len])
}

/// The pool every thread shares.
fn shared() -> std::sync::MutexGuard<'static, Pool> {
    POOL.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// A buffer of `len` zeros.
pub fn take_zeroed(len: usize) -> Vec<f32> {
    let mut buffer = take(len);
    crate::backend::ops::buffers::fill(&mut buffer, 0.0);
    buffer
}

/// Gives a buffer back for a later [`take`]: to this thread's pool, or the shared one when
/// this thread's is full for its length.
pub fn give(buffer: Vec<f32>) {
    let spilled = LOCAL.try_with(|pool| match pool.try_borrow_mut() {
        Ok(mut pool) => pool.give(buffer),
        Err(_) => Some(buffer),
    });
    // While the thread's locals are torn down the closure never ran and dropped the buffer.
    if let Ok(Some(buffer)) = spilled {
        let _dropped_if_full = shared().give(buffer);
    }
}

/// Gives a shared buffer back to the pool when no one else holds it.
pub fn give_shared(buffer: std::sync::Arc<Vec<f32>>) {
    if let Ok(buffer) = std::sync::Arc::try_unwrap(buffer) {
        give(buffer);
    }
}

/// Copies `src` over `dst` on all cores.
///
/// # Panics
/// When the two differ in length.
pub fn copy(dst: &mut [f32], src: &[f32]) {
    use rayon::prelude::*;
    assert_eq!(dst.len(), src.len(), "a copy of the same length");
    dst.par_chunks_mut(1 << 16)
        .zip(src.par_chunks(1 << 16))
        .for_each(|(dst, src)| dst.copy_from_slice(src));
}

/// Fills `buffer` with `value` on all cores.
pub fn fill(buffer: &mut [f32], value: f32) {
    use rayon::prelude::*;
    buffer
        .par_chunks_mut(1 << 16)
        .for_each(|chunk| chunk.fill(value));
}

/// A tensor's data as a new `Vec`, in one copy. dfdx's `as_vec` builds its `Vec` an element
/// at a time through the tensor's strided iterator; for a model's weights, read on every pass,
/// that took 6% of `mobilenetv2_small`'s inference. Not pooled: weights and statistics are
/// small, and taking pooled buffers for them would leave large ones out of the pool.
pub fn to_vec<S: Shape, T>(tensor: &Tensor<S, f32, Cpu, T>) -> Vec<f32> {
    let mut data = vec![0.0; tensor.shape().num_elements()];
    tensor.copy_into(&mut data);
    data
}

/// Copies a tensor's data into a pooled buffer (dfdx gives no borrowed view of CPU data).
pub fn read<S: Shape, T>(tensor: &Tensor<S, f32, Cpu, T>) -> Vec<f32> {
    let mut buffer = take(tensor.shape().num_elements());
    tensor.copy_into(&mut buffer);
    buffer
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A buffer of `len` values, and where its memory is.
    fn buffer(len: usize) -> (Vec<f32>, *const f32) {
        let buffer = vec![1.0; len];
        let at = buffer.as_ptr();
        (buffer, at)
    }

    #[test]
    fn a_request_takes_a_buffer_of_its_own_length_before_a_longer_one() {
        let mut pool = Pool::new();
        let (longer, _) = buffer(5000);
        let (same, same_at) = buffer(4096);
        pool.give(longer);
        pool.give(same);
        let taken = pool.take(4096).expect("a pooled buffer");
        assert_eq!((taken.as_ptr(), taken.len()), (same_at, 4096));
        assert_eq!(pool.count, 1);
    }

    #[test]
    fn a_buffer_up_to_a_quarter_longer_is_truncated_and_a_much_longer_one_is_kept() {
        let mut pool = Pool::new();
        let (slightly_longer, slightly_longer_at) = buffer(5120);
        pool.give(slightly_longer);
        let taken = pool.take(4096).expect("a quarter longer fits");
        assert_eq!((taken.as_ptr(), taken.len()), (slightly_longer_at, 4096));
        let (twice, _) = buffer(8192);
        pool.give(twice);
        assert!(
            pool.take(4096).is_none(),
            "twice as long is left for its own size"
        );
        assert!(pool.take(8192).is_some());
    }

    #[test]
    fn no_buffer_is_grown() {
        let mut pool = Pool::new();
        let (shorter, _) = buffer(4000);
        pool.give(shorter);
        assert!(pool.take(4096).is_none());
        assert_eq!(pool.count, 1);
    }

    #[test]
    fn the_pool_keeps_no_small_buffers_and_bounded_counts() {
        let mut pool = Pool::new();
        assert!(pool.give(buffer(MIN_POOLED_LEN - 1).0).is_none(), "dropped");
        assert_eq!(pool.count, 0);
        for idx in 0..MAX_POOLED_PER_LEN + 3 {
            let (given, at) = buffer(2048);
            let back = pool.give(given).map(|b| b.as_ptr());
            assert_eq!(back, (idx >= MAX_POOLED_PER_LEN).then_some(at), "{idx}");
        }
        assert_eq!(pool.count, MAX_POOLED_PER_LEN);
        for len in 0..MAX_POOLED {
            let back = pool.give(buffer(4096 + len).0);
            assert_eq!(
                back.is_some(),
                len >= MAX_POOLED - MAX_POOLED_PER_LEN,
                "{len}"
            );
        }
        assert_eq!(pool.count, MAX_POOLED);
    }

    fn address(buffer: &[f32]) -> usize {
        buffer.as_ptr() as usize
    }

    /// A thread takes back the buffer it gave before any other thread can; one its own pool
    /// has no room for goes to the shared pool, where another thread takes it. (Lengths no
    /// other test asks for, as tests run on threads of one process.)
    #[test]
    fn a_thread_reuses_its_own_buffers_and_passes_on_what_it_cannot_keep() {
        const OWN: usize = 700_001;
        const SPILLED: usize = 1_033;
        let (own, own_at) = buffer(OWN);
        let own_at = own_at as usize;
        let (kept_at, spilled_at) = std::thread::scope(|scope| {
            let giver = scope.spawn(move || {
                give(own);
                let other = std::thread::scope(|inner| {
                    inner.spawn(|| address(&take(OWN))).join().expect("thread")
                });
                assert_ne!(other, own_at, "another thread took this thread's buffer");
                let kept_at = address(&take(OWN));
                let mut spilled_at = None;
                for _ in 0..=MAX_POOLED_PER_LEN {
                    let (given, at) = buffer(SPILLED);
                    give(given);
                    spilled_at = Some(at as usize);
                }
                (kept_at, spilled_at)
            });
            giver.join().expect("thread")
        });
        assert_eq!(kept_at, own_at);
        let taken_at = std::thread::spawn(|| address(&take(SPILLED)))
            .join()
            .expect("thread");
        assert_eq!(
            Some(taken_at),
            spilled_at,
            "the buffer passed on to the shared pool"
        );
    }
}
