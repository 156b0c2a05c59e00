//! Runs hot loops compiled for AVX-512 or AVX2+FMA when the CPU has them, without compiling the
//! whole crate for them (so the binary still runs on any x86-64).
//!
//! `fast(|| body)` calls the closure from a function with those target features enabled. Only
//! code LLVM inlines there gets them: a small closure and the `#[inline(always)]` helpers it
//! calls are vectorised with 512- or 256-bit registers, but LLVM may keep a large closure as
//! a function of its own, compiled for plain x86-64 (SSE2) — the fused conv+pool row did, and
//! is multiversioned instead (`multiversion` crate, in `conv_pool_kernels.rs`). For a large
//! body, check the profile's instructions (`xmm` only means it was not inlined).

/// Whether the CPU has AVX2 and FMA (checked once).
#[cfg(target_arch = "x86_64")]
pub fn has_avx2() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    })
}

/// Whether the CPU has the AVX-512 subsets the loops use (F, VL, BW, DQ; checked once).
#[cfg(target_arch = "x86_64")]
pub fn has_avx512() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        has_avx2()
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512dq")
    })
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn with_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")]
fn with_avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// Runs `f`, compiled for AVX2 and FMA where available.
#[inline(always)]
pub fn fast<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        // SAFETY: the CPU supports these AVX-512 subsets, AVX2 and FMA (checked by
        // `has_avx512`).
        return unsafe { with_avx512(f) };
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU supports AVX2 and FMA (checked by `has_avx2`).
        return unsafe { with_avx2(f) };
    }
    f()
}
