//! The runs directory: what `msbreg runs` lists and the app's run browser shows, where a run
//! came from (`origin.json`: made by the app, branched from a parent at a step), pins, and
//! the size cap that removes the oldest unpinned app runs.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::lock::RunLock;
use super::recording::Recording;
use super::{RunFolder, SessionError, read_err, read_metrics, write_atomic, write_err};

/// Where a run came from, in its folder.
pub const ORIGIN_FILE: &str = "origin.json";
/// An empty file that keeps a run from the size cap.
pub const PIN_FILE: &str = ".pinned";
/// The app's runs directory when none is given: `runs/` beside where the app was started.
pub const DEFAULT_RUNS_DIR: &str = "runs";
/// The size cap of the app's runs directory when none is given (2 GB).
pub const DEFAULT_CAP_BYTES: u64 = 2_000_000_000;

/// `origin.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// `app`, `train` or `simulate`.
    pub made_by: String,
    /// The run this one branched from, and the step it branched at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_step: Option<u64>,
}

impl Origin {
    pub fn read(dir: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(dir.join(ORIGIN_FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }

    pub fn write(&self, dir: &Path) -> Result<(), SessionError> {
        let path = dir.join(ORIGIN_FILE);
        let text = serde_json::to_string_pretty(self).map_err(|e| write_err(&path, e))?;
        write_atomic(&path, text.as_bytes())
    }
}

/// The runs beside `dir` (in the same runs directory) that branched from it: each folder
/// and the step it branched at, in step order.
pub fn branches_of(dir: &Path) -> Vec<(PathBuf, u64)> {
    let same = |a: &Path| {
        a == dir
            || std::fs::canonicalize(a)
                .ok()
                .zip(std::fs::canonicalize(dir).ok())
                .is_some_and(|(a, b)| a == b)
    };
    let Some(Ok(entries)) = dir.parent().map(std::fs::read_dir) else {
        return Vec::new();
    };
    let mut branches: Vec<(PathBuf, u64)> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_dir() && path != dir)
        .filter_map(|path| {
            let origin = Origin::read(&path)?;
            let parent = origin.parent?;
            same(&parent).then(|| (path, origin.parent_step.unwrap_or(0)))
        })
        .collect();
    branches.sort_by_key(|(path, step)| (*step, path.clone()));
    branches
}

/// One run of a runs directory: one line of `msbreg runs`, one object of `--json`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunSummary {
    pub path: PathBuf,
    pub preset: String,
    pub dataset: String,
    /// The last step logged in `metrics.jsonl`.
    pub steps: u64,
    /// Recorded frames, and the steps of the first and last (null without a recording).
    pub frames: u64,
    pub first_step: Option<u64>,
    pub last_step: Option<u64>,
    /// The last kNN accuracy measured (null when never).
    pub knn_acc: Option<f64>,
    /// Bytes of everything in the folder.
    pub bytes: u64,
    pub parent: Option<PathBuf>,
    pub parent_step: Option<u64>,
    pub made_by: Option<String>,
    pub pinned: bool,
    /// Why the recording could not be read, or why it ends early.
    pub recording_note: Option<String>,
}

impl RunSummary {
    /// The summary of the run folder `dir`.
    pub fn of(dir: &Path) -> Result<Self, SessionError> {
        let folder = RunFolder::open(dir)?;
        let workload = folder.read_workload()?;
        let settings = workload.settings();
        let metrics = if folder.has_metrics() {
            read_metrics(&folder.metrics_path()).unwrap_or_default()
        } else {
            Vec::new()
        };
        let (frames, first_step, last_step, recording_note) = match Recording::open(dir) {
            Ok(recording) => {
                let range = recording.step_range();
                (
                    recording.frame_count(),
                    range.map(|r| r.0),
                    range.map(|r| r.1),
                    recording.tail().map(|tail| format!("ends in {tail}")),
                )
            }
            Err(err) => (0, None, None, Some(err.to_string())),
        };
        let origin = Origin::read(dir);
        Ok(Self {
            path: dir.to_owned(),
            preset: settings.preset().to_owned(),
            dataset: settings.dataset(),
            steps: metrics.last().map_or(0, |m| m.step),
            frames,
            first_step,
            last_step,
            knn_acc: metrics
                .iter()
                .rev()
                .map(|m| m.knn_acc)
                .find(|k| k.is_finite()),
            bytes: folder_bytes(dir),
            parent: origin.as_ref().and_then(|o| o.parent.clone()),
            parent_step: origin.as_ref().and_then(|o| o.parent_step),
            made_by: origin.map(|o| o.made_by),
            pinned: dir.join(PIN_FILE).is_file(),
            recording_note,
        })
    }
}

/// Bytes of every file under `dir`.
pub fn folder_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.file_type() {
            Ok(t) if t.is_dir() => folder_bytes(&entry.path()),
            Ok(t) if t.is_file() => entry.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

/// The run folders of `dir`, oldest first (by when their config was written): `dir` alone
/// when it is a run folder itself, otherwise its sub-folders that are. Folders that are not
/// runs are skipped; a run folder that cannot be read is listed in the second list with why.
pub fn list_runs(dir: &Path) -> Result<(Vec<RunSummary>, Vec<String>), SessionError> {
    if !dir.is_dir() {
        return Err(read_err(
            dir,
            "no such folder; pass a runs directory (the app's is runs/) or a run folder",
        ));
    }
    let candidates: Vec<PathBuf> = if dir.join("config.toml").is_file() {
        vec![dir.to_owned()]
    } else {
        let mut found: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(dir)
            .map_err(|e| read_err(dir, e))?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.join("config.toml").is_file())
            .map(|path| {
                let made = std::fs::metadata(path.join("config.toml"))
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::UNIX_EPOCH);
                (made, path)
            })
            .collect();
        found.sort();
        found.into_iter().map(|(_, path)| path).collect()
    };
    let mut runs = Vec::new();
    let mut problems = Vec::new();
    for path in candidates {
        match RunSummary::of(&path) {
            Ok(summary) => runs.push(summary),
            Err(err) => problems.push(format!("{}: {err}", path.display())),
        }
    }
    Ok((runs, problems))
}

/// Pins (`true`) or unpins a run: a pinned run is never removed by the size cap.
pub fn set_pinned(dir: &Path, pinned: bool) -> Result<(), SessionError> {
    let path = dir.join(PIN_FILE);
    if pinned {
        std::fs::write(&path, b"").map_err(|e| write_err(&path, e))
    } else if path.exists() {
        std::fs::remove_file(&path).map_err(|e| write_err(&path, e))
    } else {
        Ok(())
    }
}

/// Deletes the run folder `dir`, unless another process is writing it. Only run folders
/// (with a `config.toml`) are deleted.
pub fn delete_run(dir: &Path) -> Result<(), SessionError> {
    RunFolder::open(dir)?;
    let (lock, _) = RunLock::acquire(dir)?;
    let removed = std::fs::remove_dir_all(dir).map_err(|e| write_err(dir, e));
    // The lock file went with the folder (the lock checks before it removes its file).
    drop(lock);
    removed
}

/// Keeps the app's runs in `dir` under `cap_bytes` in all by deleting the oldest unpinned
/// ones the app made (never `keep`, never one another process is writing, never a run
/// `train` or `simulate` made). Returns a message per run deleted.
pub fn enforce_cap(dir: &Path, cap_bytes: u64, keep: &Path) -> Vec<String> {
    let Ok((runs, _)) = list_runs(dir) else {
        return Vec::new();
    };
    let mut total: u64 = runs.iter().map(|r| r.bytes).sum();
    let mut messages = Vec::new();
    for run in &runs {
        if total <= cap_bytes {
            break;
        }
        let ours = run.made_by.as_deref() == Some("app");
        if !ours || run.pinned || run.path == keep {
            continue;
        }
        if delete_run(&run.path).is_ok() {
            total -= run.bytes;
            messages.push(format!(
                "removed the old run {} ({:.1} MB) to keep {} under its {:.1} GB cap; pin a \
                 run to keep it",
                run.path.display(),
                run.bytes as f64 / 1e6,
                dir.display(),
                cap_bytes as f64 / 1e9
            ));
        }
    }
    messages
}
