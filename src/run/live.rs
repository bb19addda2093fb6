//! The trainer thread the app drives: a sandbox or image run stepped on a named background
//! thread, steered by [`Command`]s and watched through [`Snapshot`]s.
//!
//! ```text
//! UI --Command (bounded, try_send)--> "msbreg-trainer": apply commands between steps,
//!                                        step, embed the display set, project (PCA, aligned)
//! UI <--Snapshot (bounded(1), newest wins)-- post(); then the repaint callback
//! ```
//!
//! Commands are applied between two steps, so a new force weight acts on the very next step.
//! Snapshots go through a one-slot channel: when the UI has not taken the previous one, the
//! trainer takes it back and merges its metrics into the new one, so the newest frame wins,
//! no metric is lost, and the trainer never blocks. The thread ends when the command channel
//! disconnects (the [`Trainer`] handle is dropped).
//!
//! Errors (a NaN loss, a dataset that does not load) come back in a snapshot's `error`; the
//! run that was on screen stays there.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError, bounded};

use super::sandbox::SandboxRun;
use super::train::{ImageRun, TrainConfig};
use crate::backend::Backend;
use crate::config::SimConfig;
use crate::data::images::{Dataset, ImageSet};
use crate::data::loader::Loader;
use crate::diagnostics;
use crate::method::{Dynamics, StepReport};
use crate::projection::{Projector, on_sphere};

/// What to train.
#[derive(Clone, Debug, PartialEq)]
pub enum Workload {
    /// The particle sandbox (points in a low-dimensional space, MLP encoder).
    Sandbox(SimConfig),
    /// Image pretraining (built-in or real datasets, CNN / ResNet / MLP encoders).
    Images(TrainConfig),
}

impl Workload {
    pub fn dynamics(&self) -> Dynamics {
        match self {
            Self::Sandbox(config) => config.dynamics,
            Self::Images(config) => config.dynamics,
        }
    }

    pub fn learning_rate(&self) -> f64 {
        match self {
            Self::Sandbox(config) => config.learning_rate,
            Self::Images(config) => config.learning_rate,
        }
    }

    /// One line for the status bar.
    pub fn describe(&self) -> String {
        match self {
            Self::Sandbox(config) => format!(
                "sandbox {:?}, MLP, N {}, M {}, D {}",
                config.data.kind, config.batch_size, config.views.count, config.model.embed_dim
            ),
            Self::Images(config) => format!(
                "{}, {:?}, N {}, M {}, D {}",
                config.data.describe(),
                config.model.encoder,
                config.batch_size,
                config.views,
                config.model.embed_dim
            ),
        }
    }

    /// Replaces the forces (and the predictor, EMA and `tau` switches).
    pub fn set_dynamics(&mut self, dynamics: Dynamics) {
        match self {
            Self::Sandbox(config) => config.dynamics = dynamics,
            Self::Images(config) => config.dynamics = dynamics,
        }
    }

    pub fn set_learning_rate(&mut self, learning_rate: f64) {
        match self {
            Self::Sandbox(config) => config.learning_rate = learning_rate,
            Self::Images(config) => config.learning_rate = learning_rate,
        }
    }
}

/// What the UI asks of the trainer. Every command is applied between two steps.
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
    /// step, no reset.
    SetDynamics(Dynamics),
    /// Replace the (peak) learning rate; acts on the next step, no reset.
    SetLearningRate(f64),
    /// Start a fresh run of another workload (dataset, model, views, batch size, seed).
    NewRun(Box<Workload>),
}

/// What a hovered particle shows.
#[derive(Clone, Debug)]
pub enum Preview {
    /// The displayed images, HWC u8, in display order.
    Images(ImageSet),
    /// The sandbox input points (content coordinates first), `dim` per point.
    Points { points: Vec<f32>, dim: usize },
}

/// Facts about the run on screen that do not change while it trains.
#[derive(Clone, Debug)]
pub struct RunInfo {
    /// Counts up with every fresh run (reset, new workload).
    pub run_id: u64,
    pub workload: Workload,
    /// Backend and adapter, e.g. "flex (CPU), CPU, 2 threads".
    pub backend: String,
    pub class_names: Vec<String>,
    /// The label of every displayed point.
    pub labels: Vec<u32>,
    pub preview: Preview,
    /// Embedding dimension D.
    pub embed_dim: usize,
}

/// The displayed points, projected to 3-D by the aligned PCA basis (see `projection`).
#[derive(Clone, Debug, Default)]
pub struct Frame {
    pub step: u64,
    /// One per displayed point: the projected unit embedding (inside the unit ball).
    pub points: Vec<[f32; 3]>,
    /// The same on the unit sphere (normalised top-3 PCA).
    pub sphere: Vec<[f32; 3]>,
    /// Two fixed augmented views of every displayed point, projected the same way.
    pub views: Vec<[[f32; 3]; 2]>,
    pub views_sphere: Vec<[[f32; 3]; 2]>,
}

/// The diagnostics of the displayed embeddings (cheap: no kNN bank).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DisplayDiagnostics {
    pub effective_rank: f64,
    pub collapse_level: f64,
    pub uniformity: f64,
    pub alignment: f64,
}

/// One step's numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MetricsPoint {
    pub step: u64,
    pub losses: StepReport,
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
    pub dynamics: Dynamics,
    pub learning_rate: f64,
    /// The latest projected frame (`None` before the first display of a run).
    pub frame: Option<Arc<Frame>>,
    /// Metrics of the steps since the last snapshot the UI received, oldest first.
    pub metrics: Vec<MetricsPoint>,
    /// Singular values of the displayed embeddings now, and at step 0, largest first.
    pub spectrum: Vec<f64>,
    pub spectrum_initial: Vec<f64>,
    pub images_per_sec: f64,
    /// The last error (NaN loss, a dataset that did not load); the run on screen is kept.
    pub error: Option<String>,
}

/// The newest-wins sending half: a one-slot channel and a receiver to take back the stale one.
struct Mailbox {
    sender: Sender<Snapshot>,
    stale: Receiver<Snapshot>,
}

impl Mailbox {
    /// Posts `snapshot`, replacing (and merging the metrics of) one the UI has not taken.
    /// Returns false when the UI is gone.
    fn post(&self, mut snapshot: Snapshot) -> bool {
        loop {
            match self.sender.try_send(snapshot) {
                Ok(()) => return true,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(back)) => {
                    snapshot = back;
                    if let Ok(old) = self.stale.try_recv() {
                        if Arc::ptr_eq(&old.info, &snapshot.info) {
                            let mut metrics = old.metrics;
                            metrics.append(&mut snapshot.metrics);
                            snapshot.metrics = metrics;
                        }
                        if snapshot.frame.is_none() && Arc::ptr_eq(&old.info, &snapshot.info) {
                            snapshot.frame = old.frame;
                        }
                    }
                }
            }
        }
    }
}

/// The UI's handle on the trainer thread. Dropping it stops the thread.
pub struct Trainer {
    commands: Option<Sender<Command>>,
    snapshots: Receiver<Snapshot>,
    handle: Option<JoinHandle<()>>,
}

/// Commands the UI may queue before the trainer drains them.
const COMMAND_CAPACITY: usize = 64;

impl Trainer {
    /// Starts the trainer thread on `backend` with `workload`, running or paused.
    /// `repaint` is called after every snapshot (the app passes `ctx.request_repaint`).
    pub fn spawn(
        backend: &Backend,
        workload: Workload,
        running: bool,
        repaint: Box<dyn Fn() + Send>,
    ) -> std::io::Result<Self> {
        let (command_sender, commands) = bounded(COMMAND_CAPACITY);
        let (snapshot_sender, snapshots) = bounded(1);
        let mailbox = Mailbox {
            sender: snapshot_sender,
            stale: snapshots.clone(),
        };
        let backend = backend.clone();
        let handle = std::thread::Builder::new()
            .name("msbreg-trainer".to_owned())
            .spawn(move || {
                let mut state = TrainerState::new(backend, mailbox, repaint, running);
                state.start(workload);
                state.serve(&commands);
            })?;
        Ok(Self {
            commands: Some(command_sender),
            snapshots,
            handle: Some(handle),
        })
    }

    /// Queues `command` without waiting. Returns false when the queue is full or the trainer
    /// has stopped.
    pub fn send(&self, command: Command) -> bool {
        self.commands
            .as_ref()
            .is_some_and(|sender| sender.try_send(command).is_ok())
    }

    /// The newest snapshot, if one arrived since the last call.
    pub fn try_snapshot(&self) -> Option<Snapshot> {
        self.snapshots.try_recv().ok()
    }

    /// Waits up to `timeout` for a snapshot (tests and headless drivers; the UI never waits).
    pub fn wait_snapshot(&self, timeout: Duration) -> Option<Snapshot> {
        self.snapshots.recv_timeout(timeout).ok()
    }
}

impl Drop for Trainer {
    fn drop(&mut self) {
        // Disconnecting the commands ends the loop after the current step.
        self.commands = None;
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// At most this many points are displayed.
pub const DISPLAY_POINTS: usize = 512;
/// The display is refreshed at most this often while running.
const DISPLAY_INTERVAL: Duration = Duration::from_millis(150);
/// kNN accuracy (which embeds a labelled bank) is measured at most this often.
const KNN_INTERVAL: Duration = Duration::from_secs(3);

enum Session {
    Sandbox(Box<SandboxRun>),
    Images {
        run: Box<ImageRun>,
        loader: Loader,
        display: ImageSet,
    },
}

impl Session {
    fn open(workload: &Workload, backend: &Backend) -> Result<(Self, RunInfo), String> {
        let backend_name = format!("{}, {}", backend.kind.name(), backend.adapter);
        match workload {
            Workload::Sandbox(config) => {
                config.validate().map_err(|err| err.to_string())?;
                let run = SandboxRun::new(config.clone(), &backend.device);
                let eval = run.eval_set();
                let info = RunInfo {
                    run_id: 0,
                    workload: workload.clone(),
                    backend: backend_name,
                    class_names: (0..config.data.classes)
                        .map(|c| format!("class {c}"))
                        .collect(),
                    labels: eval.labels.clone(),
                    preview: Preview::Points {
                        points: eval.points.clone(),
                        dim: eval.dim,
                    },
                    embed_dim: config.model.embed_dim,
                };
                Ok((Self::Sandbox(Box::new(run)), info))
            }
            Workload::Images(config) => {
                let run =
                    ImageRun::new(config.clone(), &backend.device).map_err(|e| e.to_string())?;
                let loader = Loader::spawn(
                    Arc::clone(run.plan()),
                    0,
                    run.total_steps(),
                    config.loader_queue,
                )
                .map_err(|err| format!("could not start the loader thread: {err}"))?;
                let display = run.display_set(DISPLAY_POINTS);
                let info = RunInfo {
                    run_id: 0,
                    workload: workload.clone(),
                    backend: backend_name,
                    class_names: display.class_names.clone(),
                    labels: display
                        .labels
                        .clone()
                        .unwrap_or_else(|| vec![0; display.len()]),
                    preview: Preview::Images(display.clone()),
                    embed_dim: config.model.embed_dim,
                };
                Ok((
                    Self::Images {
                        run: Box::new(run),
                        loader,
                        display,
                    },
                    info,
                ))
            }
        }
    }

    fn steps_done(&self) -> u64 {
        match self {
            Self::Sandbox(run) => run.steps_done() as u64,
            Self::Images { run, .. } => run.steps_done(),
        }
    }

    fn images_per_step(&self) -> usize {
        match self {
            Self::Sandbox(run) => run.config().batch_size * run.config().views.count,
            Self::Images { run, .. } => run.config().batch_size * run.config().views,
        }
    }

    fn set_dynamics(&mut self, dynamics: Dynamics, learning_rate: f64) {
        match self {
            Self::Sandbox(run) => {
                run.set_dynamics(dynamics);
                run.set_learning_rate(learning_rate);
            }
            Self::Images { run, .. } => {
                run.set_dynamics(dynamics);
                run.set_learning_rate(learning_rate);
            }
        }
    }

    /// One step. `Ok(None)` when an image run has used up its epochs.
    fn step(&mut self) -> Result<Option<StepReport>, String> {
        match self {
            Self::Sandbox(run) => run.step().map(Some).map_err(|err| err.to_string()),
            Self::Images { run, loader, .. } => {
                let Some(batch) = loader.next_batch() else {
                    return Ok(None);
                };
                run.step(&batch).map(Some).map_err(|err| err.to_string())
            }
        }
    }

    /// Unit embeddings of the displayed points and of their two views.
    fn display_embeddings(&self) -> Result<[Vec<f32>; 3], String> {
        match self {
            Self::Sandbox(run) => run.display_embeddings(),
            Self::Images { run, display, .. } => run.display_embeddings(display),
        }
        .map_err(|err| err.to_string())
    }

    fn knn_acc(&self) -> Result<Option<f64>, String> {
        match self {
            Self::Sandbox(run) => run.evaluate().map(|e| Some(e.diagnostics.knn_acc)),
            Self::Images { run, .. } => run.evaluate().map(|d| d.map(|d| d.knn_acc)),
        }
        .map_err(|err| err.to_string())
    }
}

struct TrainerState {
    backend: Backend,
    mailbox: Mailbox,
    repaint: Box<dyn Fn() + Send>,
    running: bool,
    /// The workload of the run on screen, with the dynamics and learning rate now in force.
    workload: Option<Workload>,
    session: Option<Session>,
    info: Option<Arc<RunInfo>>,
    next_run_id: u64,
    projector: Projector,
    frame: Option<Arc<Frame>>,
    pending: Vec<MetricsPoint>,
    spectrum: Vec<f64>,
    spectrum_initial: Vec<f64>,
    images_per_sec: f64,
    error: Option<String>,
    last_display: Option<Instant>,
    last_knn: Option<Instant>,
}

impl TrainerState {
    fn new(
        backend: Backend,
        mailbox: Mailbox,
        repaint: Box<dyn Fn() + Send>,
        running: bool,
    ) -> Self {
        Self {
            backend,
            mailbox,
            repaint,
            running,
            workload: None,
            session: None,
            info: None,
            next_run_id: 1,
            projector: Projector::default(),
            frame: None,
            pending: Vec::new(),
            spectrum: Vec::new(),
            spectrum_initial: Vec::new(),
            images_per_sec: 0.0,
            error: None,
            last_display: None,
            last_knn: None,
        }
    }

    /// Opens a fresh run of `workload`; on failure the run on screen stays and the error is
    /// reported.
    fn start(&mut self, workload: Workload) {
        match Session::open(&workload, &self.backend) {
            Ok((session, mut info)) => {
                info.run_id = self.next_run_id;
                self.next_run_id += 1;
                self.info = Some(Arc::new(info));
                self.session = Some(session);
                self.workload = Some(workload);
                self.projector.reset();
                self.frame = None;
                self.pending.clear();
                self.spectrum.clear();
                self.spectrum_initial.clear();
                self.images_per_sec = 0.0;
                self.error = None;
                self.last_knn = None;
                self.refresh_display(true);
            }
            Err(err) => {
                self.running = false;
                self.error = Some(format!("could not start {}: {err}", workload.describe()));
            }
        }
        self.post();
    }

    /// Applies commands; trains while running. Returns when the UI disconnects.
    fn serve(&mut self, commands: &Receiver<Command>) {
        loop {
            let command = if self.running && self.session.is_some() {
                match commands.try_recv() {
                    Ok(command) => Some(command),
                    Err(TryRecvError::Empty) => None,
                    Err(TryRecvError::Disconnected) => return,
                }
            } else {
                match commands.recv() {
                    Ok(command) => Some(command),
                    Err(_) => return,
                }
            };
            match command {
                Some(command) => {
                    // Everything queued is applied now; a fresh run that a later one in the
                    // queue replaces is skipped (it would only be built and thrown away).
                    let mut queued: Vec<Command> = std::iter::once(command)
                        .chain(commands.try_iter())
                        .collect();
                    if let Some(last) = queued.iter().rposition(|c| matches!(c, Command::NewRun(_)))
                    {
                        let mut index = 0;
                        queued.retain(|c| {
                            let keep =
                                index >= last || !matches!(c, Command::NewRun(_) | Command::Reset);
                            index += 1;
                            keep
                        });
                    }
                    for command in queued {
                        self.apply(command);
                    }
                }
                None => {
                    self.train_step(false);
                }
            }
        }
    }

    fn apply(&mut self, command: Command) {
        match command {
            Command::Run => {
                self.running = true;
                self.error = None;
                self.post();
            }
            Command::Pause => {
                self.running = false;
                self.refresh_display(true);
                self.post();
            }
            Command::Step => {
                self.running = false;
                self.train_step(true);
            }
            Command::Reset => {
                if let Some(workload) = self.workload.clone() {
                    self.start(workload);
                }
            }
            Command::SetDynamics(dynamics) => {
                let learning_rate = self.workload.as_ref().map_or(0.0, Workload::learning_rate);
                self.steer(dynamics, learning_rate);
            }
            Command::SetLearningRate(learning_rate) => {
                let dynamics = self
                    .workload
                    .as_ref()
                    .map(Workload::dynamics)
                    .unwrap_or_default();
                self.steer(dynamics, learning_rate);
            }
            Command::NewRun(workload) => self.start(*workload),
        }
    }

    fn steer(&mut self, dynamics: Dynamics, learning_rate: f64) {
        if let Err(err) = crate::config::validate_dynamics(&dynamics) {
            self.error = Some(err.to_string());
        } else if !(learning_rate.is_finite() && learning_rate > 0.0) {
            self.error = Some(format!(
                "learning rate {learning_rate} is not a positive number; keeping the old one"
            ));
        } else {
            if let Some(session) = &mut self.session {
                session.set_dynamics(dynamics, learning_rate);
            }
            if let Some(workload) = &mut self.workload {
                workload.set_dynamics(dynamics);
                workload.set_learning_rate(learning_rate);
            }
        }
        self.post();
    }

    fn train_step(&mut self, single: bool) {
        let Some(session) = &mut self.session else {
            self.running = false;
            return;
        };
        let start = Instant::now();
        match session.step() {
            Ok(Some(losses)) => {
                let secs = start.elapsed().as_secs_f64().max(1e-9);
                let rate = session.images_per_step() as f64 / secs;
                self.images_per_sec = if self.images_per_sec > 0.0 {
                    0.8 * self.images_per_sec + 0.2 * rate
                } else {
                    rate
                };
                self.pending.push(MetricsPoint {
                    step: session.steps_done(),
                    losses,
                    diagnostics: None,
                    knn_acc: None,
                });
            }
            Ok(None) => {
                self.running = false;
                self.error = Some(
                    "the run has used up its epochs; press Reset or pick another dataset"
                        .to_owned(),
                );
            }
            Err(err) => {
                self.running = false;
                self.error = Some(format!("step {}: {err}", session.steps_done() + 1));
            }
        }
        let due = self
            .last_display
            .is_none_or(|at| at.elapsed() >= DISPLAY_INTERVAL);
        if single || due || !self.running {
            self.refresh_display(single || !self.running);
            self.post();
        }
    }

    /// Embeds and projects the displayed points, computes the cheap diagnostics (and kNN when
    /// due or `force`d), attached to the newest metrics point.
    fn refresh_display(&mut self, force: bool) {
        let Some(session) = &self.session else {
            return;
        };
        let step = session.steps_done();
        let [points, view_a, view_b] = match session.display_embeddings() {
            Ok(rows) => rows,
            Err(err) => {
                self.error = Some(err);
                return;
            }
        };
        self.last_display = Some(Instant::now());
        let d = self.info.as_ref().map_or(0, |info| info.embed_dim);
        self.spectrum = diagnostics::singular_values(&points, d);
        let diagnostics = DisplayDiagnostics {
            effective_rank: diagnostics::effective_rank(&self.spectrum),
            collapse_level: diagnostics::collapse_level(&points, d),
            uniformity: diagnostics::uniformity(&points, d),
            alignment: diagnostics::alignment(&view_a, &view_b, d),
        };
        if step == 0 || self.spectrum_initial.is_empty() {
            self.spectrum_initial.clone_from(&self.spectrum);
        }
        let knn_due = force || self.last_knn.is_none_or(|at| at.elapsed() >= KNN_INTERVAL);
        let knn_acc = if knn_due {
            self.last_knn = Some(Instant::now());
            match session.knn_acc() {
                Ok(acc) => acc,
                Err(err) => {
                    self.error = Some(err);
                    None
                }
            }
        } else {
            None
        };
        let projected = self
            .projector
            .fit_project(&points, d, &[&points, &view_a, &view_b]);
        let [p, a, b] = [&projected[0], &projected[1], &projected[2]];
        let views: Vec<[[f32; 3]; 2]> = a.iter().zip(b).map(|(&a, &b)| [a, b]).collect();
        self.frame = Some(Arc::new(Frame {
            step,
            sphere: p.iter().copied().map(on_sphere).collect(),
            views_sphere: views
                .iter()
                .map(|[a, b]| [on_sphere(*a), on_sphere(*b)])
                .collect(),
            points: p.clone(),
            views,
        }));
        match self.pending.last_mut() {
            Some(point) if point.step == step => {
                point.diagnostics = Some(diagnostics);
                point.knn_acc = knn_acc;
            }
            _ => self.pending.push(MetricsPoint {
                step,
                losses: StepReport::default(),
                diagnostics: Some(diagnostics),
                knn_acc,
            }),
        }
    }

    fn post(&mut self) {
        let Some(info) = &self.info else {
            // No run has ever started: report the error alone.
            if let Some(error) = &self.error {
                let workload = Workload::Sandbox(SimConfig::default());
                let info = Arc::new(RunInfo {
                    run_id: 0,
                    workload,
                    backend: format!("{}, {}", self.backend.kind.name(), self.backend.adapter),
                    class_names: Vec::new(),
                    labels: Vec::new(),
                    preview: Preview::Points {
                        points: Vec::new(),
                        dim: 0,
                    },
                    embed_dim: 0,
                });
                let snapshot = Snapshot {
                    info,
                    step: 0,
                    running: false,
                    dynamics: Dynamics::default(),
                    learning_rate: 0.0,
                    frame: None,
                    metrics: Vec::new(),
                    spectrum: Vec::new(),
                    spectrum_initial: Vec::new(),
                    images_per_sec: 0.0,
                    error: Some(error.clone()),
                };
                self.mailbox.post(snapshot);
                (self.repaint)();
            }
            return;
        };
        let workload = self.workload.as_ref();
        let snapshot = Snapshot {
            info: Arc::clone(info),
            step: self.session.as_ref().map_or(0, Session::steps_done),
            running: self.running,
            dynamics: workload.map(Workload::dynamics).unwrap_or_default(),
            learning_rate: workload.map_or(0.0, Workload::learning_rate),
            frame: self.frame.clone(),
            metrics: std::mem::take(&mut self.pending),
            spectrum: self.spectrum.clone(),
            spectrum_initial: self.spectrum_initial.clone(),
            images_per_sec: self.images_per_sec,
            error: self.error.clone(),
        };
        self.mailbox.post(snapshot);
        (self.repaint)();
    }
}
