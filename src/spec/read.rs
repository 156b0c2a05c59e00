//! Reading a spec file from disk, bounded: never more than [`MAX_SPEC_BYTES`] + 1 bytes, so a
//! 10 GB file, `/dev/zero` or an endless pipe is refused with `strata::spec::too_large` as
//! fast as a 2 MB file, and never held in memory. A regular file whose size is over the limit
//! is refused from its metadata after reading only its first line. Every command that reads a
//! spec reads it here.

use super::guard::{too_large_file, MAX_SPEC_BYTES};
use crate::diagnostics::{Diagnostic, SourceFile};
use crate::text::escape_control;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Reads the spec file at `path` as UTF-8 text (a leading byte-order mark is kept; the loader
/// accepts it). Reads at most [`MAX_SPEC_BYTES`] + 1 bytes from anything: a regular file, a
/// device, a FIFO or a pipe (which, as for `cat`, waits for a writer).
pub fn read_spec_file(path: &Path) -> Result<String, SpecReadError> {
    let io = |error| SpecReadError::Io {
        path: path.to_path_buf(),
        error,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    let limit = MAX_SPEC_BYTES as u64;
    let size = meta.is_file().then_some(meta.len());
    let over = size.filter(|&len| len > limit);
    // A file known to be over the limit is read only as far as its label needs.
    let cap = if over.is_some() {
        HEAD_BYTES
    } else {
        limit + 1
    };
    let mut bytes = Vec::with_capacity(size.map_or(1 << 13, |len| len.min(cap)) as usize);
    file.take(cap).read_to_end(&mut bytes).map_err(io)?;
    if over.is_some() || bytes.len() as u64 > limit {
        return Err(too_large(path, &bytes, over));
    }
    String::from_utf8(bytes).map_err(|err| {
        let bytes = err.as_bytes();
        let at = err.utf8_error().valid_up_to();
        let line_start = bytes[..at]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |idx| idx + 1);
        SpecReadError::NotUtf8 {
            path: path.to_path_buf(),
            line: bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1,
            column: at - line_start + 1,
            byte: bytes.get(at).copied().unwrap_or(0),
            utf16: bytes.starts_with(&[0xff, 0xfe]) || bytes.starts_with(&[0xfe, 0xff]),
        }
    })
}

/// Bytes read from the start of a file known to be too large: enough for its first line as the
/// diagnostic shows it.
const HEAD_BYTES: u64 = 4096;

/// The most bytes of the first line the diagnostic shows (its label covers the first 80).
const SHOWN_BYTES: usize = 120;

/// Why a spec file was not read.
#[derive(Debug)]
pub enum SpecReadError {
    /// It cannot be opened or read: missing, a folder, no permission.
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        error: std::io::Error,
    },
    /// It has more than [`MAX_SPEC_BYTES`] bytes.
    TooLarge {
        /// The `strata::spec::too_large` diagnostic, labelled in `source`.
        diagnostic: Diagnostic,
        /// The file's first line (control characters escaped), named after the file, to render
        /// the diagnostic against.
        source: SourceFile,
    },
    /// It is not UTF-8 text.
    NotUtf8 {
        /// The file.
        path: PathBuf,
        /// The line of the first invalid byte, from 1.
        line: usize,
        /// Its column in bytes, from 1.
        column: usize,
        /// The byte.
        byte: u8,
        /// The file starts with a UTF-16 byte-order mark.
        utf16: bool,
    },
}

impl fmt::Display for SpecReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecReadError::Io { path, error } => {
                write!(f, "cannot read `{}`: {error}", shown(path))
            }
            SpecReadError::TooLarge { diagnostic, source } => {
                write!(f, "`{}`: {}", source.name, diagnostic.message)
            }
            SpecReadError::NotUtf8 {
                path,
                line,
                column,
                byte,
                utf16,
            } => {
                write!(
                    f,
                    "`{}` is not UTF-8 text: byte 0x{byte:02x} at line {line}, column {column}",
                    shown(path)
                )?;
                if *utf16 {
                    f.write_str(" (it is UTF-16; save it as UTF-8)")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for SpecReadError {}

/// The `too_large` error of a file that starts with `bytes`; `size` when its metadata knows it.
fn too_large(path: &Path, bytes: &[u8], size: Option<u64>) -> SpecReadError {
    let first_line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let first_line = &first_line[..first_line.len().min(SHOWN_BYTES)];
    let head = escape_control(&String::from_utf8_lossy(first_line)).into_owned();
    SpecReadError::TooLarge {
        diagnostic: too_large_file(&head, size),
        source: SourceFile::new(shown(path), head),
    }
}

/// A path as messages show it, control characters escaped.
fn shown(path: &Path) -> String {
    escape_control(&path.display().to_string()).into_owned()
}
