//! The `strata` binary: see `strata --help`.

fn main() -> std::process::ExitCode {
    restore_default_sigpipe();
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
