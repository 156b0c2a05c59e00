//! Opening a file that user input names (an image, a checkpoint) as a regular file only.

use std::fs::{File, Metadata};
use std::path::Path;

/// Why [`open_regular`] gave no file.
#[derive(Debug)]
pub enum OpenError {
    /// The path could not be read or opened.
    Io(std::io::Error),
    /// The path is not a regular file but this (`"a FIFO"`, `"a folder"`…).
    NotAFile(&'static str),
}

/// Opens `path` for reading if it is a regular file (after following symlinks), with the
/// opened file's metadata; a FIFO, a device, a socket or a folder is refused without reading,
/// so it neither blocks nor reads forever.
pub fn open_regular(path: &Path) -> Result<(File, Metadata), OpenError> {
    let regular = |meta: &Metadata| {
        if meta.is_file() {
            Ok(())
        } else {
            Err(OpenError::NotAFile(file_kind(&meta.file_type())))
        }
    };
    regular(&std::fs::metadata(path).map_err(OpenError::Io)?)?;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        // The path could be swapped for a FIFO between the check and the open: opening
        // without blocking, then checking the opened file, closes that gap.
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(OpenError::Io)?;
    let meta = file.metadata().map_err(OpenError::Io)?;
    regular(&meta)?;
    Ok((file, meta))
}

/// What a path that is not a regular file is, for messages.
fn file_kind(kind: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "a FIFO";
        }
        if kind.is_char_device() || kind.is_block_device() {
            return "a device";
        }
        if kind.is_socket() {
            return "a socket";
        }
    }
    if kind.is_dir() {
        "a folder"
    } else {
        "a special file"
    }
}
