//! The `strata` binary: see `strata --help`.

/// mimalloc: training frees and re-allocates the same large buffers every step; a fresh,
/// page-faulted allocation each time costs more than the math (measured: page faults took more
/// system time than the convolutions took user time under glibc's default allocator).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (not exported by libmimalloc-sys 0.1).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> std::process::ExitCode {
    restore_default_sigpipe();
    // Keep freed memory for reuse instead of returning it to the OS after 10 ms.
    // SAFETY: setting a mimalloc option is a plain store; no allocation is in flight.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    strata::cli::main()
}

/// Lets `strata … | head` end quietly when the reader goes away, as other command-line tools
/// do, instead of failing on a broken pipe.
fn restore_default_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called once at start-up before any other thread exists; resetting a signal's
    // disposition to the default has no other effect on the process.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
