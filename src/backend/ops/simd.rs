//! Runs hot loops compiled for AVX2 and FMA when the CPU has them, without compiling the whole
//! crate for them (so the binary still runs on any x86-64).
//!
//! `fast(|| body)` calls the closure from a function with those target features enabled; LLVM
//! inlines the single-use closure (and the `#[inline]` helpers it calls) there, so the loops
//! are vectorised with 256-bit registers.

/// Whether the CPU has AVX2 and FMA (checked once).
#[cfg(target_arch = "x86_64")]
pub fn has_avx2() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    })
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn with_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// Runs `f`, compiled for AVX2 and FMA where available.
#[inline(always)]
pub fn fast<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU supports AVX2 and FMA (checked by `has_avx2`).
        return unsafe { with_avx2(f) };
    }
    f()
}
