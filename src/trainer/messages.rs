//! What the UI and the trainer thread say to each other.
//!
//! In: [`Command`]s. Discrete actions (run, pause, step, reset) queue on a bounded channel;
//! settings (forces, learning rate, a new run) go into latest-value slots (`super::slots`), so
//! a burst of slider values collapses into the newest and the last one always arrives.
//! Out: [`Snapshot`]s through a one-slot mailbox, newest wins (metrics merged).

use std::sync::Arc;

use crate::config::{Workload, WorkloadSettings};
use crate::method::{Dynamics, StepReport};
pub use crate::projection::Frame;
pub use crate::session::Preview;

/// What the UI asks of the trainer. Everything is applied between two steps.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Train continuously.
    Run,
    /// Stop after the current step.
    Pause,
    /// Train exactly one step, then stay paused.
    Step,
    /// Start the current workload afresh from its seed, keeping the current forces and
    /// learning rate.
    Reset,
    /// Replace the forces, weights, predictor and EMA switches and `tau`; acts on the next
    /// step, no reset. A setting: only the newest one pending is applied.
    SetDynamics(Dynamics),
    /// Replace the (peak) learning rate; acts on the next step, no reset. A setting.
    SetLearningRate(f64),
    /// Start a fresh run of what the app's controls chose (dataset, model, views, batch,
    /// seed), keeping the forces in force; the trainer makes the config. A setting.
    Choose(WorkloadSettings),
    /// Start a fresh run of a full config. A setting.
    NewRun(Box<Workload>),
    /// Branch from a recorded step of a run folder: the run as it was at that step (from its
    /// nearest checkpoint, replayed), with these forces and learning rate, continuing as a new
    /// run folder that records its parent and step. A setting.
    Branch(Box<BranchRequest>),
}

/// What [`Command::Branch`] asks for.
#[derive(Clone, Debug, PartialEq)]
pub struct BranchRequest {
    pub parent: std::path::PathBuf,
    pub step: u64,
    pub dynamics: Dynamics,
    pub learning_rate: f64,
}

/// Facts about the run on screen that do not change while it trains.
#[derive(Clone, Debug)]
pub struct RunInfo {
    /// Counts up from 1 with every fresh run (reset, new workload).
    pub run_id: u64,
    pub workload: Workload,
    /// Backend and adapter, e.g. "flex (CPU) on AMD EPYC, 2 threads (...)".
    pub backend: String,
    pub class_names: Vec<String>,
    /// The label of every displayed point.
    pub labels: Vec<u32>,
    pub preview: Preview,
    /// Embedding dimension D.
    pub embed_dim: usize,
}

/// The diagnostics of the displayed embeddings (cheap: no kNN bank).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DisplayDiagnostics {
    pub effective_rank: f64,
    pub collapse_level: f64,
    pub uniformity: f64,
    pub alignment: f64,
    /// Each force's share of the three forces' norms on the display set (attraction,
    /// global dispersion, local dispersion; see `method::arrows`).
    pub force_shares: [f64; 3],
}

/// The forces on the displayed points, projected like the frame they go with: per force
/// (attraction, global dispersion, local dispersion) one 3-D vector per point (see
/// `method::arrows`; unscaled: the view scales them to a readable length).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Arrows {
    pub step: u64,
    pub vectors: [Vec<[f32; 3]>; 3],
}

/// One step's numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MetricsPoint {
    pub step: u64,
    /// The losses of the step that brought the run here (`None` for the display of a fresh
    /// run, before any step).
    pub losses: Option<StepReport>,
    pub diagnostics: Option<DisplayDiagnostics>,
    /// Weighted kNN accuracy on held-out labelled data, when it was measured at this step.
    pub knn_acc: Option<f64>,
}

/// What the trainer sends after steps and commands. Newest wins; see the module docs.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub info: Arc<RunInfo>,
    /// Steps done.
    pub step: u64,
    pub running: bool,
    /// The forces and learning rate the trainer is using now (what the controls show).
    pub dynamics: Dynamics,
    pub learning_rate: f64,
    /// The number of the newest setting the trainer has applied (or rejected), counted by
    /// [`super::Trainer`] as settings are sent: when it equals the count sent, the values
    /// above are the answer to the user's last change.
    pub settings_seq: u64,
    /// The latest projected frame (`None` before the first display of a run).
    pub frame: Option<Arc<Frame>>,
    /// The forces on its points, for the view's arrows.
    pub arrows: Option<Arc<Arrows>>,
    /// Metrics of the steps since the last snapshot the UI received, oldest first.
    pub metrics: Vec<MetricsPoint>,
    /// Singular values of the displayed embeddings now, and at step 0, largest first.
    pub spectrum: Vec<f64>,
    pub spectrum_initial: Vec<f64>,
    pub images_per_sec: f64,
    /// The display's share of the trainer's time (display and training) since the run
    /// started: embedding, diagnostics, projection and arrows (kNN not included).
    pub display_share: f64,
    /// How long the last round of chunks over the points beyond the core took (the age of
    /// the oldest shown embedding); `None` before one.
    pub display_round_secs: Option<f64>,
    /// The last error (NaN loss, a dataset that did not load); the run on screen is kept.
    pub error: Option<String>,
    /// The run folder the run is kept in (once it has trained a step; `None` in memory).
    pub folder: Option<std::path::PathBuf>,
    /// Messages that are not errors (old runs the size cap removed), each sent once.
    pub notes: Vec<String>,
}
