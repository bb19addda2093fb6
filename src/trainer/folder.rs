//! The app's runs kept on disk: each run the app trains is a run folder in the runs
//! directory (`runs/` beside where the app started, `--runs-dir` to change it), with the
//! layout `train` writes (`config.toml`, `metrics.jsonl`) plus `events.jsonl`, the recording
//! and `origin.json` (made by the app, and the parent of a branch).
//!
//! The folder is made when the run takes its first step, not when it is chosen, so that
//! flicking through datasets or pressing Reset leaves no empty runs behind. Its lock is held
//! while the run is on screen; two app instances on one runs directory each make their own
//! folders, and the size cap never removes one another instance holds.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::projection::Frame;
use crate::session::catalog::{DEFAULT_CAP_BYTES, DEFAULT_RUNS_DIR, Origin, enforce_cap};
use crate::session::{
    Event, EventsWriter, MetricsRecord, MetricsWriter, RECORDING_FILE, Recorder, RecordingError,
    Run, RunWriter, SessionError, write_err,
};

/// Where the app keeps its runs, and how much of the disk they may take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunsDir {
    pub dir: PathBuf,
    /// The oldest unpinned app runs are removed once the directory holds more than this.
    pub cap_bytes: u64,
}

impl Default for RunsDir {
    fn default() -> Self {
        Self {
            dir: PathBuf::from(DEFAULT_RUNS_DIR),
            cap_bytes: DEFAULT_CAP_BYTES,
        }
    }
}

/// Full display embeddings go with every this many recorded frames (every 30 s at the app's
/// display rate: they are most of a recording's bytes, see `msbreg bench record`).
pub const APP_EMBEDDINGS_EVERY: u64 = 200;

/// What an hour of an app run's recording may take on average, in bytes: the recorder makes
/// the frames coarser where that shows least while it runs over (see `session::Recorder`).
pub const APP_RECORD_BYTES_PER_HOUR: f64 = 50e6;

/// The folder of the run on screen, held for writing.
pub(crate) struct AppFolder {
    writer: RunWriter,
    recorder: Recorder,
    events: EventsWriter,
    metrics: MetricsWriter,
    started: Instant,
    /// The checkpoints on disk: their folder and when they were written.
    checkpoints: Vec<(PathBuf, Instant)>,
}

/// Checkpoints younger than this are all kept (one per `CHECKPOINT_INTERVAL` of training:
/// a branch in the last minutes replays at most a couple of seconds)...
const DENSE_FOR: std::time::Duration = std::time::Duration::from_mins(5);
/// ...older ones are thinned to one per this long (a branch further back replays at most
/// this much training time), so that an hour costs about 300 checkpoints, not 1,800.
const SPARSE_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

impl AppFolder {
    /// A new folder `app-NNN-<preset>` in `runs` for `run`; returns it and the messages of
    /// the size cap (runs it removed).
    pub fn create(
        runs: &RunsDir,
        run: &dyn Run,
        origin: &Origin,
    ) -> Result<(Self, Vec<String>), SessionError> {
        std::fs::create_dir_all(&runs.dir).map_err(|e| write_err(&runs.dir, e))?;
        let path = claim_dir(&runs.dir, run.settings().preset())?;
        let writer = RunWriter::create(&path, false)?;
        writer.write_config(run.settings())?;
        origin.write(&path)?;
        let recorder = Recorder::create(&path.join(RECORDING_FILE), run, APP_EMBEDDINGS_EVERY)?
            .with_budget(APP_RECORD_BYTES_PER_HOUR);
        let events = EventsWriter::append(&path)?;
        let metrics = writer.metrics_writer()?;
        let notes = enforce_cap(&runs.dir, runs.cap_bytes, &path);
        Ok((
            Self {
                writer,
                recorder,
                events,
                metrics,
                started: Instant::now(),
                checkpoints: Vec::new(),
            },
            notes,
        ))
    }

    pub fn path(&self) -> &Path {
        self.writer.path()
    }

    fn millis(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Appends an event at `step`, with the settings of `run` in force from then on.
    pub fn event(&mut self, run: &dyn Run, kind: &str, text: String) -> Result<(), SessionError> {
        let event = Event {
            step: run.steps_done(),
            millis: self.millis(),
            kind: kind.to_owned(),
            text,
            dynamics: Some(run.settings().dynamics()),
            learning_rate: Some(run.settings().learning_rate()),
        };
        self.events.write(&event)
    }

    /// Records a frame (and the embeddings when due).
    pub fn record(
        &mut self,
        frame: &Frame,
        rows: &[Vec<f32>; 3],
        run: &dyn Run,
    ) -> Result<(), RecordingError> {
        let settings = run.settings();
        self.recorder.push(
            frame,
            rows,
            settings.embed_dim(),
            settings.dynamics(),
            settings.learning_rate(),
        )
    }

    /// The precision level the recording asks the next frames for (`Framer::set_level`).
    pub fn precision_level(&self) -> u8 {
        self.recorder.precision_level()
    }

    /// A checkpoint of `run` at its step (branches replay from the nearest); older ones are
    /// thinned (see `DENSE_FOR`).
    pub fn checkpoint(&mut self, run: &dyn Run) -> Result<(), SessionError> {
        let dir = self.writer.write_checkpoint(run, usize::MAX)?;
        self.checkpoints.push((dir, Instant::now()));
        self.thin_checkpoints();
        Ok(())
    }

    /// Removes old checkpoints closer than `SPARSE_EVERY` to the one kept before them.
    fn thin_checkpoints(&mut self) {
        let mut kept: Vec<(PathBuf, Instant)> = Vec::with_capacity(self.checkpoints.len());
        for (dir, at) in std::mem::take(&mut self.checkpoints) {
            let old = at.elapsed() > DENSE_FOR;
            let crowded = kept
                .last()
                .is_some_and(|(_, previous)| at.duration_since(*previous) < SPARSE_EVERY);
            if old && crowded && std::fs::remove_dir_all(&dir).is_ok() {
                continue;
            }
            kept.push((dir, at));
        }
        self.checkpoints = kept;
    }

    pub fn log(&mut self, record: &MetricsRecord) -> Result<(), SessionError> {
        self.metrics.write(record)
    }

    /// Writes the pending frames (on pause, so that the timeline reaches the step on screen).
    pub fn flush(&mut self) -> Result<(), RecordingError> {
        self.recorder.flush()
    }
}

/// Makes the folder `app-NNN-<preset>` with the next free number (created, so that two
/// instances never pick the same one).
fn claim_dir(runs: &Path, preset: &str) -> Result<PathBuf, SessionError> {
    let highest = std::fs::read_dir(runs)
        .map_err(|e| write_err(runs, e))?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            name.strip_prefix("app-")?.get(..3)?.parse::<u32>().ok()
        })
        .max()
        .unwrap_or(0);
    let preset: String = preset
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    for n in highest + 1..highest + 1000 {
        let path = runs.join(format!("app-{n:03}-{preset}"));
        match std::fs::create_dir(&path) {
            Ok(()) => return Ok(path),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(write_err(&path, e)),
        }
    }
    Err(write_err(runs, "no free run folder name"))
}
