//! `strata lsp`: the language server on stdin and stdout.

use super::{EXIT_ERROR, EXIT_OK, EXIT_USAGE};
use crate::lsp::{run as serve, Ending};
use std::io;

/// Serves one editor session. Exit status as the protocol asks: 0 after `shutdown` and `exit`,
/// 1 when `exit` comes without `shutdown` or the input ends; 2 on an I/O error.
pub fn run() -> u8 {
    let stdin = io::stdin();
    let mut input = stdin.lock();
    let mut output = io::stdout().lock();
    match serve(&mut input, &mut output) {
        Ok(Ending::Clean) => EXIT_OK,
        Ok(Ending::Abrupt) => EXIT_ERROR,
        Err(err) => {
            eprintln!("error: strata lsp: {err}");
            EXIT_USAGE
        }
    }
}
