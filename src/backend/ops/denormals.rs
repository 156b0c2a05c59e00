//! Flush-to-zero for the threads that train.
//!
//! As a model trains, some gradients, Adam moments and activations fall below `f32`'s smallest
//! normal value (about 1e-38). x86 handles such subnormal numbers in microcode, one to two
//! orders of magnitude slower than normal ones, so a Fashion-MNIST epoch took a fifth longer
//! after the first than the first did. TensorFlow runs its CPU kernels with denormals flushed
//! to zero for the same reason; strata does the same on the calling thread and every thread
//! of the rayon pool. Values that small carry no weight in a step, so results change only in
//! bits far below the loss's printed digits.

/// The MXCSR bits: FTZ (results flush to zero) and DAZ (inputs read as zero).
#[cfg(target_arch = "x86_64")]
const FTZ_DAZ: u32 = (1 << 15) | (1 << 6);

/// Sets flush-to-zero and denormals-are-zero on this thread.
pub fn flush_on_this_thread() {
    #[cfg(target_arch = "x86_64")]
    set_ftz_daz(true);
}

/// Clears flush-to-zero and denormals-are-zero on this thread, as on a thread that never set
/// them: for tests of code that must set them itself.
#[cfg(all(test, target_arch = "x86_64"))]
pub(crate) fn keep_on_this_thread() {
    set_ftz_daz(false);
}

/// Sets (`on`) or clears the FTZ and DAZ bits of this thread's MXCSR.
#[cfg(target_arch = "x86_64")]
fn set_ftz_daz(on: bool) {
    let mut csr: u32 = 0;
    // SAFETY: `stmxcsr` stores the 32-bit MXCSR register to the given address and `ldmxcsr`
    // loads it back; SSE is part of x86-64, and FTZ/DAZ only change how this thread rounds
    // subnormal floats.
    unsafe {
        std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack));
        if on {
            csr |= FTZ_DAZ;
        } else {
            csr &= !FTZ_DAZ;
        }
        std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack, readonly));
    }
}

/// Sets flush-to-zero on this thread and on every thread of rayon's current pool (idempotent
/// and cheap: called whenever a network is made).
pub fn flush_everywhere() {
    flush_on_this_thread();
    rayon::broadcast(|_| flush_on_this_thread());
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    /// Whether flush-to-zero is on for this thread.
    fn flushing() -> bool {
        let mut csr: u32 = 0;
        // SAFETY: `stmxcsr` only stores MXCSR to the given address.
        unsafe { std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack)) };
        csr & FTZ_DAZ == FTZ_DAZ
    }

    #[test]
    fn subnormals_flush_to_zero_on_every_pool_thread() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .expect("pool");
        pool.install(flush_everywhere);
        let flushed = pool.broadcast(|_| {
            let tiny = std::hint::black_box(f32::MIN_POSITIVE);
            flushing() && std::hint::black_box(tiny / 4.0) == 0.0
        });
        assert!(flushed.iter().all(|&ok| ok), "{flushed:?}");
    }
}
