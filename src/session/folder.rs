//! The run folder: `config.toml`, `metrics.jsonl`, `checkpoints/`, and one writer for each.
//!
//! Two types, one per role. [`RunFolder`] reads: [`RunFolder::open`] and [`RunFolder::reopen`]
//! (what `eval` and `export` use) change nothing and take no lock. [`RunWriter`] writes, and
//! is the only way to: it can only be made by taking the folder's lock
//! ([`RunWriter::create`] for a fresh run, [`RunWriter::open_for_writing`] to resume), holds
//! it for its lifetime, and reads through [`RunFolder`] (it dereferences to one). Why two
//! types rather than a lock checked at every write: a reader cannot write by mistake (the
//! compiler refuses), and no write can find the lock missing at run time.
//!
//! Writers write beside and rename ([`write_atomic`]), so a crash leaves the old file or the
//! new one, never half of one; `metrics.jsonl` is appended line by line and flushed, so a run
//! stopped at any point keeps every line it logged.

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};

use burn::tensor::Device;

use super::checkpoint::{list_checkpoints, write_checkpoint};
use super::lock::{RunLock, StaleLock};
use super::metrics::MetricsRecord;
use super::{Parts, Run, SessionError, open, read_err, write_err};
use crate::config::{ConfigError, RunSettings, SimConfig, TrainConfig, Workload};

/// Writes `bytes` to `path` through a temporary file beside it and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SessionError> {
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let result = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        write_err(path, e)
    })
}

/// `--overwrite`: removes the files and checkpoints a run wrote into `out`, and nothing else
/// (a user's own file, even inside `checkpoints/`, stays; so does the folder then).
fn remove_what_msbreg_wrote(out: &Path) -> Result<(), SessionError> {
    for name in [
        "metrics.jsonl",
        "embeddings.tsv",
        "labels.tsv",
        "vectors.tsv",
        "metadata.tsv",
        super::RECORDING_FILE,
        super::EVENTS_FILE,
        super::catalog::ORIGIN_FILE,
    ] {
        let path = out.join(name);
        if path.is_file() {
            std::fs::remove_file(&path).map_err(|e| write_err(&path, e))?;
        }
    }
    let root = out.join("checkpoints");
    if !root.is_dir() {
        return Ok(());
    }
    for entry in std::fs::read_dir(&root).map_err(|e| read_err(&root, e))? {
        let path = entry.map_err(|e| read_err(&root, e))?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let ours = name.is_some_and(|n| n.starts_with("step-") || n.starts_with(".tmp-step-"));
        if ours && path.is_dir() {
            std::fs::remove_dir_all(&path).map_err(|e| write_err(&path, e))?;
        }
    }
    // Only when nothing of the user's is left in it.
    let _ = std::fs::remove_dir(&root);
    Ok(())
}

/// A run folder on disk, to read.
#[derive(Clone, Debug)]
pub struct RunFolder {
    path: PathBuf,
}

impl RunFolder {
    /// An existing run folder (one with a `config.toml`); nothing is written, no lock taken.
    pub fn open(dir: &Path) -> Result<Self, SessionError> {
        let config = dir.join("config.toml");
        if !config.is_file() {
            return Err(read_err(
                dir,
                "not a run folder (no config.toml); pass the folder `train` or `simulate` wrote",
            ));
        }
        Ok(Self {
            path: dir.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn metrics_path(&self) -> PathBuf {
        self.path.join("metrics.jsonl")
    }

    /// Whether `metrics.jsonl` holds at least one line.
    pub fn has_metrics(&self) -> bool {
        std::fs::metadata(self.metrics_path()).is_ok_and(|m| m.len() > 0)
    }

    /// The run's config, as `config.toml` holds it (an image run's has `epochs`, a sandbox's
    /// not; both have `steps`).
    pub fn read_workload(&self) -> Result<Workload, SessionError> {
        let path = self.path.join("config.toml");
        let text = std::fs::read_to_string(&path).map_err(|e| read_err(&path, e))?;
        let parse_err = |err: toml::de::Error| ConfigError::Parse {
            path: path.clone(),
            message: err.to_string(),
        };
        let table: toml::Table = toml::from_str(&text).map_err(parse_err)?;
        let workload = if table.contains_key("epochs") {
            Workload::Images(toml::from_str::<TrainConfig>(&text).map_err(parse_err)?)
        } else {
            Workload::Sandbox(toml::from_str::<SimConfig>(&text).map_err(parse_err)?)
        };
        workload.settings().validate()?;
        Ok(workload)
    }

    /// The newest checkpoint: (step, folder).
    pub fn newest_checkpoint(&self) -> Result<(u64, PathBuf), SessionError> {
        list_checkpoints(&self.path)?.pop().ok_or_else(|| {
            read_err(
                &self.path,
                "no checkpoint (checkpoints/step-*); train it first, or `--stop-after 0` for \
                 the initial weights",
            )
        })
    }

    /// The run at its newest checkpoint that loads, in memory, with `parts` restored. Reads
    /// only: the folder is not changed. When newer checkpoints are damaged, an older intact
    /// one is taken and the returned notes say which and why.
    pub fn reopen(
        &self,
        device: &Device,
        parts: Parts,
    ) -> Result<(Box<dyn Run>, Vec<String>), SessionError> {
        let workload = self.read_workload()?;
        let newest = self.newest_checkpoint()?;
        let mut run = open(&workload, device)?;
        let mut notes = Vec::new();
        let mut first_error = None;
        for (step, dir) in list_checkpoints(&self.path)?.into_iter().rev() {
            match run.load_checkpoint(&dir, parts) {
                Ok(()) => {
                    if step != newest.0 {
                        notes.push(format!(
                            "the newer checkpoints could not be read, so the one at step {step} \
                             is used ({})",
                            first_error
                                .as_ref()
                                .map_or_else(String::new, ToString::to_string)
                        ));
                    }
                    return Ok((run, notes));
                }
                Err(err) => {
                    first_error.get_or_insert(err);
                }
            }
        }
        // None loads: the newest one's reason (the older ones fail the same way, most often).
        Err(first_error.unwrap_or_else(|| read_err(&newest.1, "no checkpoint loads")))
    }
}

/// A run folder held for writing: the folder's lock ([`RunLock`]) is held until this is
/// dropped, so no other writer (`train`, `train --resume`, `simulate`, in this process or
/// another) can write it meanwhile. Reads go through the [`RunFolder`] it dereferences to.
#[derive(Debug)]
pub struct RunWriter {
    folder: RunFolder,
    lock: RunLock,
    taken_over: Option<StaleLock>,
}

impl std::ops::Deref for RunWriter {
    type Target = RunFolder;

    fn deref(&self) -> &RunFolder {
        &self.folder
    }
}

impl RunWriter {
    /// Makes `out` ready for a new run, creating it, and takes its lock.
    ///
    /// # Errors
    /// If it is a file, its parent folder is missing, another writer holds it
    /// ([`SessionError::Busy`]), or it already holds a run and `overwrite` is false (with
    /// `overwrite`, the old metrics and checkpoints are removed). The lock file (`.lock`) is
    /// no run, and is not removed.
    pub fn create(out: &Path, overwrite: bool) -> Result<Self, SessionError> {
        let err = |reason: String| SessionError::Setup {
            what: format!("output folder {}", out.display()),
            reason,
        };
        if out.is_file() {
            return Err(err("is a file; choose a folder".to_owned()));
        }
        if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty())
            && !parent.is_dir()
        {
            return Err(err(format!(
                "its parent folder {} does not exist; create it first or choose another --out",
                parent.display()
            )));
        }
        std::fs::create_dir_all(out).map_err(|e| write_err(out, e))?;
        // The lock first: what the folder holds is only known once nobody else writes it.
        let (lock, taken_over) = RunLock::acquire(out)?;
        if out.join("metrics.jsonl").exists() && !overwrite {
            return Err(err(
                "already holds a run (metrics.jsonl); choose another --out or pass --overwrite"
                    .to_owned(),
            ));
        }
        if overwrite {
            remove_what_msbreg_wrote(out)?;
        }
        Ok(Self {
            folder: RunFolder {
                path: out.to_owned(),
            },
            lock,
            taken_over,
        })
    }

    /// An existing run folder (one with a `config.toml`), to continue: takes its lock.
    ///
    /// # Errors
    /// If it is no run folder, or another writer holds it ([`SessionError::Busy`]).
    pub fn open_for_writing(dir: &Path) -> Result<Self, SessionError> {
        let folder = RunFolder::open(dir)?;
        let (lock, taken_over) = RunLock::acquire(dir)?;
        Ok(Self {
            folder,
            lock,
            taken_over,
        })
    }

    /// The stale lock this writer took over (a writer that ended without releasing the
    /// folder, e.g. killed), for the caller to report.
    pub fn taken_over(&self) -> Option<&StaleLock> {
        self.taken_over.as_ref()
    }

    /// The lock file this writer holds.
    pub fn lock_path(&self) -> &Path {
        self.lock.path()
    }

    /// Writes `config.toml` (every key), atomically.
    pub fn write_config(&self, settings: &dyn RunSettings) -> Result<(), SessionError> {
        let text = settings.to_toml()?;
        write_atomic(&self.folder.path.join("config.toml"), text.as_bytes())
    }

    /// The writer that appends to `metrics.jsonl`.
    pub fn metrics_writer(&self) -> Result<MetricsWriter, SessionError> {
        MetricsWriter::append(&self.metrics_path())
    }

    /// Keeps the metrics lines up to `step` (dropping those a resumed run will log again),
    /// rewriting `metrics.jsonl` atomically; returns the lines kept.
    pub fn keep_metrics_through(&self, step: u64) -> Result<usize, SessionError> {
        let path = self.metrics_path();
        if !path.is_file() {
            return Ok(0);
        }
        let text = std::fs::read_to_string(&path).map_err(|e| read_err(&path, e))?;
        let kept: Vec<&str> = text
            .lines()
            .filter(|line| {
                serde_json::from_str::<serde_json::Value>(line)
                    .ok()
                    .and_then(|v| v["step"].as_u64())
                    .is_some_and(|s| s <= step)
            })
            .collect();
        let mut out = kept.join("\n");
        if !out.is_empty() {
            out.push('\n');
        }
        write_atomic(&path, out.as_bytes())?;
        Ok(kept.len())
    }

    /// Writes a checkpoint of `run` at its current step, keeping the newest `keep`.
    pub fn write_checkpoint(&self, run: &dyn Run, keep: usize) -> Result<PathBuf, SessionError> {
        write_checkpoint(&self.folder.path, run.steps_done(), keep, |dir| {
            run.save_checkpoint(dir)
        })
    }
}

/// Appends records to `metrics.jsonl`, flushing after each.
pub struct MetricsWriter {
    path: PathBuf,
    out: BufWriter<File>,
    lines: usize,
}

impl MetricsWriter {
    fn append(path: &Path) -> Result<Self, SessionError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| write_err(path, e))?;
        Ok(Self {
            path: path.to_owned(),
            out: BufWriter::new(file),
            lines: 0,
        })
    }

    pub fn write(&mut self, record: &MetricsRecord) -> Result<(), SessionError> {
        let line = serde_json::to_string(record).map_err(|e| write_err(&self.path, e))?;
        writeln!(self.out, "{line}")
            .and_then(|()| self.out.flush())
            .map_err(|e| write_err(&self.path, e))?;
        self.lines += 1;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Lines written by this writer.
    pub fn lines(&self) -> usize {
        self.lines
    }
}
