//! A run folder belongs to one run. `train` claims its folder before it writes anything: an
//! exclusive lock on `<run>/.lock` for the life of the process (the operating system drops it
//! when the process ends, however it ends), and, for a new run, a folder that is missing or
//! empty — or, with `--force`, an earlier strata run whose files are removed first. Temporary
//! files a killed process left behind (`.<name>.tmp<pid>`) are removed by the next process
//! that holds the lock, which is the only one that may write there.

use super::TrainError;
use crate::diagnostics::{codes, Diagnostic};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The lock file's name inside a run folder.
pub const LOCK_FILE: &str = ".lock";

/// The files a run writes, by name. `--force` removes these (and stale temporary files) and
/// nothing else.
pub const RUN_FILES: &[&str] = &[
    "spec.yaml",
    "summary.txt",
    "history.csv",
    "history.json",
    "curves.png",
    "last.safetensors",
    "best.safetensors",
    "interrupted.safetensors",
    "state.json",
];

/// Files whose presence marks a folder as a strata run.
const MARKERS: &[&str] = &[
    "spec.yaml",
    "state.json",
    "last.safetensors",
    "history.json",
];

/// A claimed run folder: held locked until dropped. A claim for a new run that is dropped
/// before [`RunClaim::commit`] (the run failed its checks) removes what claiming created —
/// the lock file, and the folder itself when claiming created it and it is still empty — so
/// a refused run leaves no trace.
#[derive(Debug)]
pub struct RunClaim {
    dir: PathBuf,
    lock: File,
    created_dir: bool,
    created_lock: bool,
    force: bool,
    committed: bool,
}

impl RunClaim {
    /// Claims `dir` for a new run: creates it if missing, locks it, and requires it to be
    /// empty (but for the lock file), or with `force` an earlier run's folder. Nothing of an
    /// earlier run is touched until [`RunClaim::commit`].
    pub fn new_run(dir: &Path, force: bool) -> Result<RunClaim, TrainError> {
        if dir.exists() && !dir.is_dir() {
            return Err(TrainError::Io(format!(
                "cannot use `{}` as the run folder: it is a file, not a folder",
                dir.display()
            )));
        }
        let created_dir = !dir.exists();
        std::fs::create_dir_all(dir).map_err(|err| io_error("create", dir, &err))?;
        let (lock, created_lock) = lock(dir)?;
        let mut claim = RunClaim {
            dir: dir.to_path_buf(),
            lock,
            created_dir,
            created_lock,
            force,
            committed: false,
        };
        let found = claim.entries()?;
        if found.is_empty() {
            return Ok(claim);
        }
        let is_run = MARKERS.iter().any(|name| dir.join(name).exists());
        if force && is_run {
            return Ok(claim);
        }
        claim.force = false;
        Err(TrainError::Refused(not_empty(dir, &found, is_run, force)))
    }

    /// Claims the folder of an existing run (`--resume`): a folder with a `last.safetensors`,
    /// locked. [`RunClaim::commit`], once the checkpoint has been read, removes temporary
    /// files a killed process left; until then, nothing in the folder is changed.
    pub fn existing_run(dir: &Path) -> Result<RunClaim, TrainError> {
        let refuse = |message: String, help: &str| {
            TrainError::Refused(
                Diagnostic::error(codes::RUN_NO_CHECKPOINT, message).with_help(help.to_string()),
            )
        };
        if !dir.is_dir() {
            return Err(refuse(
                format!("cannot resume `{}`: no such folder", dir.display()),
                "give the run folder `strata train` printed (`runs/<name>/<time>`)",
            ));
        }
        if !dir.join("last.safetensors").exists() {
            return Err(refuse(
                format!(
                    "cannot resume `{}`: it has no `last.safetensors`, so no epoch of a run \
                     finished there",
                    dir.display()
                ),
                "start the run again: `strata train SPEC --out RUN --force` replaces it",
            ));
        }
        let (lock, created_lock) = lock(dir)?;
        Ok(RunClaim {
            dir: dir.to_path_buf(),
            lock,
            created_dir: false,
            created_lock,
            force: false,
            committed: false,
        })
    }

    /// The run folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes the folder this run's: with `--force`, removes the earlier run's files; removes
    /// stale temporary files; writes who holds the lock into the lock file.
    pub fn commit(&mut self) -> Result<(), TrainError> {
        if self.force {
            for name in RUN_FILES {
                let path = self.dir.join(name);
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                    Err(err) => return Err(io_error("remove", &path, &err)),
                }
            }
        }
        remove_stale_temporaries(&self.dir)?;
        let holder = format!(
            "pid {}, started {}: {}\n",
            std::process::id(),
            chrono::Local::now().format("%Y-%m-%d %H:%M:%S"),
            command_line()
        );
        let path = self.dir.join(LOCK_FILE);
        let written = self
            .lock
            .set_len(0)
            .and_then(|()| self.lock.seek(SeekFrom::Start(0)).map(|_| ()))
            .and_then(|()| self.lock.write_all(holder.as_bytes()));
        written.map_err(|err| io_error("write", &path, &err))?;
        self.committed = true;
        Ok(())
    }

    /// The folder's entries but the lock file and stale temporary files.
    fn entries(&self) -> Result<Vec<String>, TrainError> {
        let listing =
            std::fs::read_dir(&self.dir).map_err(|err| io_error("list", &self.dir, &err))?;
        let mut names: Vec<String> = listing
            .filter_map(Result::ok)
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| name != LOCK_FILE && !is_temporary(name))
            .collect();
        names.sort();
        Ok(names)
    }
}

impl Drop for RunClaim {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        if self.created_lock {
            let _ = std::fs::remove_file(self.dir.join(LOCK_FILE));
        }
        if self.created_dir {
            // Only succeeds while the folder is empty.
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

/// Opens (creating if needed) and locks `<dir>/.lock`; whether it was created.
fn lock(dir: &Path) -> Result<(File, bool), TrainError> {
    let path = dir.join(LOCK_FILE);
    let created = !path.exists();
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|err| io_error("open", &path, &err))?;
    match file.try_lock() {
        Ok(()) => Ok((file, created)),
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = crate::text::escape_control(holder.trim());
            let holder = if holder.is_empty() {
                "another strata process".to_string()
            } else {
                format!("another strata process ({holder})")
            };
            Err(TrainError::Refused(
                Diagnostic::error(
                    codes::RUN_FOLDER_IN_USE,
                    format!("`{}` is in use by {holder}", dir.display()),
                )
                .with_help(
                    "a run folder belongs to one run: wait for that run to end, or give this \
                     one another `--out`",
                ),
            ))
        }
        Err(TryLockError::Error(err)) => Err(io_error("lock", &path, &err)),
    }
}

/// `.history.json.tmp1234`: a temporary file of [`crate::backend::checkpoint::write_atomic`].
fn is_temporary(name: &str) -> bool {
    name.starts_with('.')
        && name
            .rsplit_once(".tmp")
            .is_some_and(|(_, pid)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

/// Removes temporary files of killed writers. Only the lock holder writes in the folder, so
/// every temporary file found by the holder is stale.
fn remove_stale_temporaries(dir: &Path) -> Result<(), TrainError> {
    let listing = std::fs::read_dir(dir).map_err(|err| io_error("list", dir, &err))?;
    for entry in listing.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_temporary(&name) && entry.file_type().is_ok_and(|kind| kind.is_file()) {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(|err| io_error("remove", &path, &err))?;
        }
    }
    Ok(())
}

/// The `strata::run::folder_not_empty` refusal.
fn not_empty(dir: &Path, found: &[String], is_run: bool, force: bool) -> Diagnostic {
    let shown: Vec<String> = found
        .iter()
        .take(5)
        .map(|name| format!("`{}`", crate::text::escape_control(name)))
        .collect();
    let more = if found.len() > shown.len() {
        format!(" and {} more", found.len() - shown.len())
    } else {
        String::new()
    };
    let (what, help) = if is_run {
        (
            "another run's files",
            format!(
                "continue that run with `strata train --resume {0}`, give this one another \
                 `--out`, or add `--force` to replace that run",
                dir.display()
            ),
        )
    } else if force {
        (
            "files that are not a strata run's",
            "`--force` replaces only an earlier strata run, and never deletes files strata did \
             not write: give another `--out`"
                .to_string(),
        )
    } else {
        (
            "files that are not a strata run's",
            "give `--out` a new or empty folder".to_string(),
        )
    };
    Diagnostic::error(
        codes::RUN_FOLDER_NOT_EMPTY,
        format!(
            "`{}` already holds {what} ({}{more}); a run folder belongs to one run",
            dir.display(),
            shown.join(", ")
        ),
    )
    .with_help(help)
}

/// The command line, for the lock file.
fn command_line() -> String {
    let words: Vec<String> = std::env::args_os()
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect();
    words.join(" ")
}

/// `cannot <verb> `<path>`: <error>`.
pub(super) fn io_error(verb: &str, path: &Path, err: &std::io::Error) -> TrainError {
    TrainError::Io(format!("cannot {verb} `{}`: {err}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::is_temporary;

    #[test]
    fn temporary_names_are_recognised() {
        assert!(is_temporary(".last.safetensors.tmp1234"));
        assert!(is_temporary(".history.json.tmp7"));
        assert!(!is_temporary("last.safetensors"));
        assert!(!is_temporary(".lock"));
        assert!(!is_temporary(".notes.tmp"));
        assert!(!is_temporary("a.tmp12"));
        assert!(!is_temporary(".a.tmp12x"));
    }
}
