//! One writer per run folder: [`RunLock`], an exclusive advisory lock on `DIR/.lock`.
//!
//! How it works. A writer (`train`, `train --resume`, `simulate`) opens `DIR/.lock`, creating
//! it, and takes an exclusive OS lock on it with `File::try_lock` (`flock` on Linux), which
//! never waits: a second writer is refused at once, with the holder named from the file's
//! contents ([`LockHolder`]: pid, host, command line, start time, as TOML), which the holder
//! writes right after taking the lock. The kernel drops the lock when the holding process
//! ends, however it ends, so a lock never outlives its process; only the file can. A file
//! whose lock is free is therefore stale: the new writer takes it over and reports whose it
//! was ([`StaleLock`]; "no longer running" when `/proc` shows the pid gone on this host).
//!
//! A writer that ends normally removes the file while still holding the lock. Since a file
//! can be removed between another writer opening it and locking it, a writer that got the
//! lock checks that the path still names the file it locked, and starts again if not.
//!
//! Readers (`eval`, `export`) never take the lock: they read while a writer writes, and
//! work on folders they cannot write.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{SessionError, write_err};

/// The lock file's name inside a run folder.
pub const LOCK_FILE: &str = ".lock";

/// Who holds (or held) a run folder's lock, as its `.lock` file says.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LockHolder {
    pub pid: u32,
    pub host: String,
    /// The holder's command line (at most 200 characters).
    pub command: String,
    pub started_unix_secs: u64,
}

impl LockHolder {
    /// This process.
    pub fn this_process() -> Self {
        let mut command = std::env::args()
            .enumerate()
            .map(|(i, arg)| {
                if i == 0 {
                    Path::new(&arg)
                        .file_name()
                        .map_or(arg.clone(), |n| n.to_string_lossy().into_owned())
                } else {
                    arg
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
        if let Some((cut, _)) = command.char_indices().nth(200) {
            command.truncate(cut);
            command.push_str(" ...");
        }
        Self {
            pid: std::process::id(),
            host: host_name(),
            command,
            started_unix_secs: unix_secs_now(),
        }
    }

    /// Whether the holder's process still runs: `None` when this host cannot tell (another
    /// host, or no `/proc`).
    pub fn is_running(&self) -> Option<bool> {
        let proc = Path::new("/proc");
        if self.host != host_name() || !proc.join("self").exists() {
            return None;
        }
        Some(proc.join(self.pid.to_string()).exists())
    }

    /// "process 123 (msbreg train ..., host h, started 5 s ago)".
    pub fn describe(&self) -> String {
        let age = unix_secs_now().saturating_sub(self.started_unix_secs);
        format!(
            "process {} ({}, host {}, started {} ago)",
            self.pid,
            self.command,
            self.host,
            describe_age(age)
        )
    }

    fn read(path: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(path).ok()?;
        toml::from_str(&text).ok()
    }
}

/// Who is writing the run folder `dir` now, as far as its `.lock` file and `/proc` tell,
/// without touching the lock (a reader that took it, even shared and briefly, could make a
/// writer starting at that moment fail). `None` when nobody is, or when it cannot be told
/// (a holder on another host counts as writing).
pub fn current_writer(dir: &Path) -> Option<LockHolder> {
    let holder = LockHolder::read(&dir.join(LOCK_FILE))?;
    (holder.is_running() != Some(false)).then_some(holder)
}

/// A lock file that no process held, which a new writer took over.
#[derive(Clone, Debug)]
pub struct StaleLock {
    pub dir: PathBuf,
    /// Who wrote it, when the file says so.
    pub holder: Option<LockHolder>,
}

impl std::fmt::Display for StaleLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dir = self.dir.display();
        match &self.holder {
            Some(holder) => {
                let state = if holder.is_running() == Some(false) {
                    "which is no longer running"
                } else {
                    "which no longer holds it"
                };
                write!(
                    f,
                    "taking over the run folder {dir} from {}, {state}",
                    holder.describe()
                )
            }
            None => write!(
                f,
                "taking over the run folder {dir} from a lock file no process holds"
            ),
        }
    }
}

/// The exclusive right to write one run folder, held until dropped.
#[derive(Debug)]
pub struct RunLock {
    /// Open for the lock's lifetime: closing it releases the lock.
    file: File,
    path: PathBuf,
}

impl RunLock {
    /// Takes the lock of the run folder `dir` (which must exist) for this process; also
    /// returns the stale lock it took over, if there was one.
    ///
    /// # Errors
    /// [`SessionError::Busy`] naming the holder when another writer holds it; a write error
    /// when the lock file cannot be created or written.
    pub fn acquire(dir: &Path) -> Result<(Self, Option<StaleLock>), SessionError> {
        let path = dir.join(LOCK_FILE);
        // Another writer ending between our open and our lock removes the file we opened;
        // a few tries are plenty (each one means a writer came and went).
        for _ in 0..16 {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| write_err(&path, e))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    return Err(SessionError::Busy {
                        dir: dir.to_owned(),
                        holder: wait_for_holder(&path).map_or_else(
                            || "another process".to_owned(),
                            |holder| holder.describe(),
                        ),
                    });
                }
                Err(TryLockError::Error(e)) => return Err(write_err(&path, e)),
            }
            if !names_file(&path, &file) {
                continue;
            }
            let stale = std::fs::metadata(&path)
                .is_ok_and(|m| m.len() > 0)
                .then(|| StaleLock {
                    dir: dir.to_owned(),
                    holder: LockHolder::read(&path),
                });
            let lock = Self { file, path };
            lock.write_holder(&LockHolder::this_process())?;
            return Ok((lock, stale));
        }
        Err(write_err(
            &path,
            "other writers kept removing it while this one tried to lock it",
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_holder(&self, holder: &LockHolder) -> Result<(), SessionError> {
        let text = toml::to_string(holder).map_err(|e| write_err(&self.path, e))?;
        let mut file = &self.file;
        file.set_len(0)
            .and_then(|()| std::io::Seek::rewind(&mut file))
            .and_then(|()| file.write_all(text.as_bytes()))
            .and_then(|()| file.sync_data())
            .map_err(|e| write_err(&self.path, e))
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Removed while still locked; emptied if it cannot be removed, so that nobody
        // reports it as stale. The lock itself goes with the file handle.
        if names_file(&self.path, &self.file) && std::fs::remove_file(&self.path).is_err() {
            let _ = self.file.set_len(0);
        }
    }
}

/// The holder named in a busy lock file. It writes the file just after taking the lock, so
/// a writer refused at that instant waits a moment for a name that is not a stale one.
fn wait_for_holder(path: &Path) -> Option<LockHolder> {
    let mut last = None;
    for _ in 0..50 {
        if let Some(holder) = LockHolder::read(path) {
            if holder.is_running() != Some(false) {
                return Some(holder);
            }
            last = Some(holder);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    last
}

/// Whether `path` still names the file open as `file`.
#[cfg(unix)]
fn names_file(path: &Path, file: &File) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    match (std::fs::metadata(path), file.metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Elsewhere an open file cannot be removed, so the path names it.
#[cfg(not(unix))]
fn names_file(path: &Path, _file: &File) -> bool {
    path.exists()
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

fn unix_secs_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// "42 s", "5 min", "3 h", "2 days".
fn describe_age(secs: u64) -> String {
    match secs {
        0..90 => format!("{secs} s"),
        90..5400 => format!("{} min", secs / 60),
        5400..172_800 => format!("{} h", secs / 3600),
        _ => format!("{} days", secs / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::describe_age;

    #[test]
    fn ages_read_in_the_unit_that_fits() {
        assert_eq!(describe_age(0), "0 s");
        assert_eq!(describe_age(89), "89 s");
        assert_eq!(describe_age(90), "1 min");
        assert_eq!(describe_age(5400), "1 h");
        assert_eq!(describe_age(200_000), "2 days");
    }
}
