//! A run in memory, whatever it trains on: the [`Run`] trait that the sandbox
//! ([`SandboxRun`]) and image pretraining ([`ImageRun`]) both implement, and the run folder it
//! is kept in (`folder`: `config.toml`, `metrics.jsonl`, `checkpoints/`), with one writer for
//! each file, and the lock that lets one process at a time write a folder (`lock`).
//!
//! Everything that drives a run goes through [`Run`]: the headless loop (`crate::headless`)
//! and the app's trainer thread (`crate::trainer`) alike, so a feature written against it
//! serves both workloads and both drivers.
//!
//! Why a trait object rather than an enum of the two runs: the two hold different data
//! (points and an MLP; image sets, a loader thread and a CNN) and differ in every method's
//! body, so an enum would repeat one two-arm match per method, as the app's old `Session` did.
//! Behind `Box<dyn Run>` each run's code stays in its own file, and the only match on the
//! workload is [`open`]. A step's cost (milliseconds) dwarfs a virtual call.

pub mod catalog;
mod checkpoint;
mod events;
mod folder;
mod image;
mod lock;
pub mod memory;
mod metrics;
pub mod recording;
mod sandbox;
mod splits;

use std::path::{Path, PathBuf};

use burn::tensor::Device;

pub use checkpoint::{CheckpointState, list_checkpoints};
pub use events::{EVENTS_FILE, Event, EventsWriter, read_events};
pub use folder::{MetricsWriter, RunFolder, RunWriter, write_atomic};
pub use image::ImageRun;
pub use lock::{LOCK_FILE, LockHolder, RunLock, StaleLock, current_writer};
pub use metrics::{MetricsRecord, nan_diagnostics, read_metrics};
pub use recording::{
    BUDGET_BURST_SECS, RECORDING_FILE, RecordedFrame, Recorder, Recording, RecordingError,
    RecordingHeader, RecordingWriter,
};
pub use sandbox::SandboxRun;

use crate::config::{ConfigError, RunSettings, Workload};
use crate::data::images::{DataError, ImageSet};
use crate::diagnostics::{Diagnostics, KnnConfig};
use crate::method::{StepError, StepReport};

/// What goes wrong in a run or its folder.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Step(#[from] StepError),
    #[error("{what}: {reason}")]
    Setup { what: String, reason: String },
    /// An image run has used up its epochs.
    #[error("the run has done all its {total} steps")]
    Finished { total: u64 },
    #[error("cannot write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error(transparent)]
    Recording(#[from] RecordingError),
    /// Another writer holds the run folder's lock.
    #[error(
        "run folder {} is being written by {holder}; wait for it to end or choose another folder",
        dir.display()
    )]
    Busy { dir: PathBuf, holder: String },
}

pub(crate) fn write_err(path: &Path, reason: impl std::fmt::Display) -> SessionError {
    SessionError::Write {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

pub(crate) fn read_err(path: &Path, reason: impl std::fmt::Display) -> SessionError {
    SessionError::Read {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// What a checkpoint restores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parts {
    /// Everything a run needs to continue: weights, target, optimiser state, step, streams.
    All,
    /// What evaluation needs: the weights and the step (a damaged `optimizer.bpk` does not
    /// matter).
    Weights,
}

/// What a hovered particle shows.
#[derive(Clone, Debug)]
pub enum Preview {
    /// The displayed images, HWC u8, in display order.
    Images(ImageSet),
    /// The sandbox input points (content coordinates first), `dim` per point.
    Points { points: Vec<f32>, dim: usize },
}

/// The held-out points a run displays (the app draws one particle each).
///
/// The first `core` points are the display set proper: embedded with two fixed views each
/// at every display refresh, for the diagnostics, the projection's basis, the arrows and the
/// recording. The points after them (`display_points` in the config) are shown too, embedded
/// in rolling chunks ([`Run::display_rows`]) and projected with the core's basis.
#[derive(Clone, Debug)]
pub struct DisplaySet {
    pub class_names: Vec<String>,
    /// The label of every displayed point, the core first.
    pub labels: Vec<u32>,
    /// How many of the points are the core.
    pub core: usize,
    /// Every displayed point's preview, the core first.
    pub preview: Preview,
}

impl DisplaySet {
    /// The labels of the core (what a recording of the run keeps).
    pub fn core_labels(&self) -> &[u32] {
        &self.labels[..self.core.min(self.labels.len())]
    }
}

/// Where a step stands in the run's schedules.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    /// The epoch (image runs; the sandbox draws batches without epochs).
    pub epoch: Option<u64>,
    pub learning_rate: f64,
    pub tau: f64,
}

/// How often a headless run logs, evaluates and checkpoints (0 = at the end only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cadence {
    /// Record a frame every this many steps (0 = no recording), the embeddings with every
    /// `embeddings_every`-th frame.
    pub record_every: u64,
    pub embeddings_every: u64,
    pub log_every: u64,
    pub eval_every: u64,
    pub checkpoint_every: u64,
    /// Checkpoints kept (the newest).
    pub keep: usize,
}

/// Features of labelled data by the run's encoder, for kNN, the linear probe and export.
#[derive(Clone, Debug)]
pub struct LabelledFeatures {
    /// `[bank_len, dim]` row-major, with labels.
    pub bank: Vec<f32>,
    pub bank_labels: Vec<u32>,
    /// `[queries_len, dim]` row-major, with labels.
    pub queries: Vec<f32>,
    pub query_labels: Vec<u32>,
    pub dim: usize,
    pub class_names: Vec<String>,
}

/// One run in memory: its config, weights, optimiser, random streams and step counter.
///
/// Dynamics and learning rate may change between any two steps (through
/// [`Run::settings_mut`]); everything else is fixed when the run is opened.
pub trait Run: Send {
    /// The config in force (with the forces and learning rate as they are now).
    fn workload(&self) -> Workload;
    fn settings(&self) -> &dyn RunSettings;
    /// Change the forces or the learning rate; they act on the next step.
    fn settings_mut(&mut self) -> &mut dyn RunSettings;
    /// Steps done.
    fn steps_done(&self) -> u64;
    /// Where a headless run stops (the app's runs go on while the user wants).
    fn total_steps(&self) -> u64;
    /// Images (points) seen per step, views included.
    fn images_per_step(&self) -> usize;
    /// One training step.
    ///
    /// # Errors
    /// A non-finite loss ([`StepError::NonFinite`]: the weights and the optimiser are back to
    /// the last state that gave finite losses and the step is not counted);
    /// [`SessionError::Finished`] when an image run has no batches left.
    fn step(&mut self) -> Result<StepReport, SessionError>;
    /// The schedules at step `step`.
    fn schedule(&self, step: u64) -> Schedule;
    fn cadence(&self) -> Cadence;
    /// What the user should be told once about this run (e.g. a test split held out of the
    /// training split); the drivers print or show them.
    fn notes(&self) -> &[String] {
        &[]
    }
    /// Rows (points, images, views) embedded outside training so far: what evaluation and the
    /// display cost, counted so that their cost can be checked and profiled.
    fn rows_embedded(&self) -> u64;
    /// How kNN accuracy is measured (k, temperature).
    fn knn(&self) -> KnnConfig;
    /// Seconds the steps waited for input (the loader thread) so far.
    fn input_wait_secs(&self) -> f64 {
        0.0
    }
    /// The held-out points the app displays.
    fn display(&self) -> &DisplaySet;
    /// Unit embeddings of the display set's core and of two fixed views of each point,
    /// row-major `[core, D]` each.
    fn display_embeddings(&self) -> Result<[Vec<f32>; 3], SessionError>;
    /// Unit embeddings of the displayed points `range` (indices into [`DisplaySet::labels`];
    /// no views), row-major `[range.len(), D]`: what refreshes the points beyond the core a
    /// chunk at a time. The core's rows equal [`Run::display_embeddings`]' first.
    fn display_rows(&self, range: std::ops::Range<usize>) -> Result<Vec<f32>, SessionError>;
    /// Every diagnostic on the held-out set, kNN included; `None` when the data has no
    /// labelled held-out split.
    fn evaluate(&self) -> Result<Option<Diagnostics>, SessionError>;
    /// kNN accuracy alone (the bank and the queries embedded once each).
    fn knn_acc(&self) -> Result<Option<f64>, SessionError>;
    /// Features of at most `max_bank` labelled training items and of the labelled held-out
    /// items, for `eval` and `export`.
    fn labelled_features(&self, max_bank: usize) -> Result<LabelledFeatures, SessionError>;
    /// Writes the run's state into the (empty) folder `dir`.
    fn save_checkpoint(&self, dir: &Path) -> Result<(), SessionError>;
    /// Restores `parts` of the state written by [`Run::save_checkpoint`] into `dir`; on an
    /// error the run is unchanged.
    fn load_checkpoint(&mut self, dir: &Path, parts: Parts) -> Result<(), SessionError>;
    /// The files a finished (or stopped) headless run leaves besides config, metrics and
    /// checkpoints; returns their names.
    fn write_outputs(&self, _out: &Path) -> Result<Vec<String>, SessionError> {
        Ok(Vec::new())
    }
}

/// The run of the folder `parent` as it was at step `step`: its newest checkpoint at or
/// before `step`, stepped on to `step` with the forces and learning rate its `events.jsonl`
/// records for each step (the config's where it records none). Deterministic: the same
/// weights, optimiser state and random streams the parent had at `step`. Returns the run and
/// the steps replayed.
///
/// # Errors
/// No checkpoint at or before `step`, or one that does not load; a replayed step failing.
pub fn replay_to(
    parent: &Path,
    step: u64,
    device: &Device,
) -> Result<(Box<dyn Run>, u64), SessionError> {
    let folder = RunFolder::open(parent)?;
    let workload = folder.read_workload()?;
    let (from, dir) = list_checkpoints(parent)?
        .into_iter()
        .rev()
        .find(|(at, _)| *at <= step)
        .ok_or_else(|| {
            read_err(
                parent,
                format!(
                    "no checkpoint at or before step {step} to branch from; branch at a later \
                     step"
                ),
            )
        })?;
    let mut run = open(&workload, device)?;
    run.load_checkpoint(&dir, Parts::All)?;
    let events = read_events(parent)?;
    while run.steps_done() < step {
        let done = run.steps_done();
        if let Some(event) = events
            .iter()
            .rev()
            .find(|e| e.step <= done && e.dynamics.is_some())
        {
            if let Some(dynamics) = event.dynamics {
                run.settings_mut().set_dynamics(dynamics);
            }
            if let Some(learning_rate) = event.learning_rate {
                run.settings_mut().set_learning_rate(learning_rate);
            }
        }
        run.step()?;
    }
    Ok((run, step - from))
}

/// A fresh run of `workload` on `device` (without autodiff).
///
/// # Errors
/// An invalid config, data that does not load.
pub fn open(workload: &Workload, device: &Device) -> Result<Box<dyn Run>, SessionError> {
    workload.settings().validate()?;
    Ok(match workload {
        Workload::Sandbox(config) => Box::new(SandboxRun::try_new(config.clone(), device)?),
        Workload::Images(config) => Box::new(ImageRun::new(config.clone(), device)?),
    })
}
