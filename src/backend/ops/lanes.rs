//! Explicit SIMD vectors over channels for the memory-bound depthwise kernels: AVX-512 (16
//! lanes), AVX2+FMA (8 lanes) or plain scalar code, chosen once at run time.
//!
//! A kernel is written once, generic over [`Lanes`], as a [`LaneKernel`]; [`dispatch`] runs it
//! from a function compiled with the CPU's widest features, so the `#[inline(always)]` vector
//! operations below become single instructions. A channel count that is not a multiple of the
//! vector width is handled by a masked last vector ([`Lanes::mask`]): AVX-512 masked loads and
//! stores, AVX2 `vmaskmovps` (only for the partial vector), scalar code needs none.
//!
//! Every kernel sums in the same order on every CPU of the same kind, and a fused activation's
//! backward pass may recompute the pre-activation bit for bit with the same [`Lanes`].

use std::sync::atomic::{AtomicU8, Ordering};

/// One kind of vector of `f32` lanes.
pub trait Lanes: Copy {
    /// A vector.
    type V: Copy;
    /// Which lanes of a vector are real (a channel count's last, partial vector).
    type M: Copy;
    /// Lanes per vector.
    const N: usize;
    /// The mask of the first `len` lanes (`1 ..= N`).
    fn mask(self, len: usize) -> Self::M;
    /// Loads the masked lanes at `p`, zeros elsewhere.
    ///
    /// # Safety
    /// The lanes of `m` starting at `p` must lie within one allocation of initialised `f32`.
    unsafe fn load(self, p: *const f32, m: Self::M) -> Self::V;
    /// Stores the masked lanes of `v` at `p`.
    ///
    /// # Safety
    /// The lanes of `m` starting at `p` must lie within one allocation of `f32` that nothing
    /// else accesses meanwhile.
    unsafe fn store(self, p: *mut f32, v: Self::V, m: Self::M);
    /// Every lane `x`.
    fn splat(self, x: f32) -> Self::V;
    /// `a * b + c`, fused where the CPU has FMA.
    fn fma(self, a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// `a + b`.
    fn add(self, a: Self::V, b: Self::V) -> Self::V;
    /// `min(max(a, lo), hi)` lane by lane.
    fn clamp(self, a: Self::V, lo: Self::V, hi: Self::V) -> Self::V;
    /// `g` where `lo < a < hi`, else 0: the gradient through a clamp.
    fn pass_between(self, a: Self::V, lo: Self::V, hi: Self::V, g: Self::V) -> Self::V;
}

/// A computation generic over the vector kind, run by [`dispatch`].
pub trait LaneKernel {
    /// What it returns.
    type Output;
    /// Runs it with vectors of kind `L` (must be `#[inline(always)]`, so it is compiled with
    /// the features of the dispatching function).
    fn run<L: Lanes>(self, lanes: L) -> Self::Output;
}

/// A kind of vector, for [`force`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 16 lanes (AVX-512).
    Avx512 = 1,
    /// 8 lanes (AVX2 + FMA).
    Avx2 = 2,
    /// One lane.
    Scalar = 3,
}

/// The kind [`force`] chose, 0 for the widest available.
static FORCED: AtomicU8 = AtomicU8::new(0);

/// Makes [`dispatch`] use at most vectors of `kind` (`None`: the widest the CPU has), in the
/// whole process: for benchmarks and tests that compare the kinds. A kind the CPU lacks falls
/// back to the next narrower one.
pub fn force(kind: Option<Kind>) {
    FORCED.store(kind.map_or(0, |k| k as u8), Ordering::Relaxed);
}

/// Held by tests that [`force`] a kind and by tests whose bits need one kind throughout:
/// `force` is process-wide and tests run on parallel threads.
#[cfg(test)]
pub(crate) fn kind_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `kernel` with the widest vectors this CPU has (or those chosen by [`force`]).
#[inline(always)]
pub fn dispatch<K: LaneKernel>(kernel: K) -> K::Output {
    let forced = FORCED.load(Ordering::Relaxed);
    #[cfg(target_arch = "x86_64")]
    if forced <= Kind::Avx512 as u8 && crate::backend::ops::simd::has_avx512() {
        // SAFETY: the CPU has AVX-512 F/VL/BW/DQ, AVX2 and FMA (checked by `has_avx512`).
        return unsafe { x86::run_avx512(kernel) };
    }
    #[cfg(target_arch = "x86_64")]
    if forced <= Kind::Avx2 as u8 && crate::backend::ops::simd::has_avx2() {
        // SAFETY: the CPU has AVX2 and FMA (checked by `has_avx2`).
        return unsafe { x86::run_avx2(kernel) };
    }
    let _ = forced;
    kernel.run(Scalar)
}

/// Runs `kernel` with one lane per vector (the reference the wide kinds are compared with).
pub fn dispatch_scalar<K: LaneKernel>(kernel: K) -> K::Output {
    kernel.run(Scalar)
}

/// One lane per vector: portable code, the fallback of [`dispatch`].
#[derive(Clone, Copy, Debug)]
pub struct Scalar;

impl Lanes for Scalar {
    type V = f32;
    type M = ();
    const N: usize = 1;
    #[inline(always)]
    fn mask(self, _len: usize) {}
    #[inline(always)]
    unsafe fn load(self, p: *const f32, _m: ()) -> f32 {
        // SAFETY: the caller guarantees that `p` points at an initialised `f32`.
        unsafe { *p }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32, v: f32, _m: ()) {
        // SAFETY: the caller guarantees that `p` points at an `f32` it may write.
        unsafe { *p = v }
    }
    #[inline(always)]
    fn splat(self, x: f32) -> f32 {
        x
    }
    #[inline(always)]
    fn fma(self, a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
    #[inline(always)]
    fn add(self, a: f32, b: f32) -> f32 {
        a + b
    }
    #[inline(always)]
    fn clamp(self, a: f32, lo: f32, hi: f32) -> f32 {
        a.max(lo).min(hi)
    }
    #[inline(always)]
    fn pass_between(self, a: f32, lo: f32, hi: f32, g: f32) -> f32 {
        if a > lo && a < hi {
            g
        } else {
            0.0
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub use x86::{Avx2, Avx512};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{LaneKernel, Lanes};
    use std::arch::x86_64::*;

    /// 16 lanes in AVX-512 registers. Made only by `run_avx512`, after the CPU check.
    #[derive(Clone, Copy, Debug)]
    pub struct Avx512(());

    /// 8 lanes in AVX2 registers, with FMA. Made only by `run_avx2`, after the CPU check.
    #[derive(Clone, Copy, Debug)]
    pub struct Avx2(());

    /// # Safety
    /// The CPU must have AVX-512 F/VL/BW/DQ, AVX2 and FMA.
    #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")]
    pub(super) unsafe fn run_avx512<K: LaneKernel>(kernel: K) -> K::Output {
        kernel.run(Avx512(()))
    }

    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn run_avx2<K: LaneKernel>(kernel: K) -> K::Output {
        kernel.run(Avx2(()))
    }

    // The methods below call intrinsics of features that an `Avx512` or `Avx2` value proves
    // present: such a value exists only inside `run_avx512` / `run_avx2`, which the dispatcher
    // calls after checking the CPU, and the methods are inlined into code compiled with them.

    impl Lanes for Avx512 {
        type V = __m512;
        type M = __mmask16;
        const N: usize = 16;
        #[inline(always)]
        fn mask(self, len: usize) -> __mmask16 {
            if len >= 16 {
                0xFFFF
            } else {
                (1u16 << len) - 1
            }
        }
        #[inline(always)]
        unsafe fn load(self, p: *const f32, m: __mmask16) -> __m512 {
            // SAFETY: AVX-512F is present (see above); the caller guarantees the masked lanes
            // are readable, and masked-off lanes are never touched.
            unsafe { _mm512_maskz_loadu_ps(m, p) }
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32, v: __m512, m: __mmask16) {
            // SAFETY: as for `load`, for writes.
            unsafe { _mm512_mask_storeu_ps(p, m, v) }
        }
        #[inline(always)]
        fn splat(self, x: f32) -> __m512 {
            // SAFETY: AVX-512F is present (see above).
            unsafe { _mm512_set1_ps(x) }
        }
        #[inline(always)]
        fn fma(self, a: __m512, b: __m512, c: __m512) -> __m512 {
            // SAFETY: AVX-512F is present (see above).
            unsafe { _mm512_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        fn add(self, a: __m512, b: __m512) -> __m512 {
            // SAFETY: AVX-512F is present (see above).
            unsafe { _mm512_add_ps(a, b) }
        }
        #[inline(always)]
        fn clamp(self, a: __m512, lo: __m512, hi: __m512) -> __m512 {
            // SAFETY: AVX-512F is present (see above).
            unsafe { _mm512_min_ps(_mm512_max_ps(a, lo), hi) }
        }
        #[inline(always)]
        fn pass_between(self, a: __m512, lo: __m512, hi: __m512, g: __m512) -> __m512 {
            // SAFETY: AVX-512F is present (see above).
            unsafe {
                let above = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(a, lo);
                let inside = _mm512_mask_cmp_ps_mask::<_CMP_LT_OQ>(above, a, hi);
                _mm512_maskz_mov_ps(inside, g)
            }
        }
    }

    impl Lanes for Avx2 {
        type V = __m256;
        /// `None` for a full vector (plain loads and stores), else the `vmaskmovps` mask.
        type M = Option<__m256i>;
        const N: usize = 8;
        #[inline(always)]
        fn mask(self, len: usize) -> Option<__m256i> {
            if len >= 8 {
                return None;
            }
            let lanes: [i32; 8] = std::array::from_fn(|i| if i < len { -1 } else { 0 });
            // SAFETY: AVX is present (see above); `lanes` is 8 readable `i32`.
            Some(unsafe { _mm256_loadu_si256(lanes.as_ptr().cast()) })
        }
        #[inline(always)]
        unsafe fn load(self, p: *const f32, m: Option<__m256i>) -> __m256 {
            // SAFETY: AVX is present (see above); the caller guarantees the masked lanes (all
            // eight for `None`) are readable, and `vmaskmovps` never touches the others.
            unsafe {
                match m {
                    None => _mm256_loadu_ps(p),
                    Some(m) => _mm256_maskload_ps(p, m),
                }
            }
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32, v: __m256, m: Option<__m256i>) {
            // SAFETY: as for `load`, for writes.
            unsafe {
                match m {
                    None => _mm256_storeu_ps(p, v),
                    Some(m) => _mm256_maskstore_ps(p, m, v),
                }
            }
        }
        #[inline(always)]
        fn splat(self, x: f32) -> __m256 {
            // SAFETY: AVX is present (see above).
            unsafe { _mm256_set1_ps(x) }
        }
        #[inline(always)]
        fn fma(self, a: __m256, b: __m256, c: __m256) -> __m256 {
            // SAFETY: FMA is present (see above).
            unsafe { _mm256_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        fn add(self, a: __m256, b: __m256) -> __m256 {
            // SAFETY: AVX is present (see above).
            unsafe { _mm256_add_ps(a, b) }
        }
        #[inline(always)]
        fn clamp(self, a: __m256, lo: __m256, hi: __m256) -> __m256 {
            // SAFETY: AVX is present (see above).
            unsafe { _mm256_min_ps(_mm256_max_ps(a, lo), hi) }
        }
        #[inline(always)]
        fn pass_between(self, a: __m256, lo: __m256, hi: __m256, g: __m256) -> __m256 {
            // SAFETY: AVX is present (see above).
            unsafe {
                let above = _mm256_cmp_ps::<_CMP_GT_OQ>(a, lo);
                let below = _mm256_cmp_ps::<_CMP_LT_OQ>(a, hi);
                _mm256_and_ps(_mm256_and_ps(above, below), g)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `c = clamp(a * b + c)` over a slice with a partial last vector.
    struct Axpy<'a> {
        a: &'a [f32],
        b: &'a [f32],
        c: &'a mut [f32],
    }

    impl LaneKernel for Axpy<'_> {
        type Output = ();
        #[inline(always)]
        fn run<L: Lanes>(self, l: L) {
            let n = self.a.len();
            assert!(self.b.len() == n && self.c.len() == n);
            let (lo, hi) = (l.splat(-0.5), l.splat(0.5));
            for start in (0..n).step_by(L::N) {
                let m = l.mask(n - start);
                // SAFETY: the lanes of `m` lie within the three slices of length `n`.
                unsafe {
                    let a = l.load(self.a.as_ptr().add(start), m);
                    let b = l.load(self.b.as_ptr().add(start), m);
                    let c = l.load(self.c.as_ptr().add(start), m);
                    let sum = l.fma(a, b, c);
                    let out = l.add(l.clamp(sum, lo, hi), l.pass_between(sum, lo, hi, a));
                    l.store(self.c.as_mut_ptr().add(start), out, m);
                }
            }
        }
    }

    #[test]
    fn wide_lanes_match_scalar_with_partial_vectors() {
        for n in [1, 7, 8, 9, 16, 17, 33] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let c0: Vec<f32> = (0..n).map(|i| i as f32 * 0.01 - 0.1).collect();
            // Guard elements past the end must stay untouched.
            let mut wide = c0.clone();
            wide.push(9.0);
            let mut scalar = c0.clone();
            dispatch(Axpy {
                a: &a,
                b: &b,
                c: &mut wide[..n],
            });
            dispatch_scalar(Axpy {
                a: &a,
                b: &b,
                c: &mut scalar,
            });
            assert_eq!(wide[n], 9.0);
            for (w, s) in wide.iter().zip(&scalar) {
                assert!((w - s).abs() < 1e-6, "{n}: {w} vs {s}");
            }
        }
    }
}
