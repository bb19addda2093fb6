//! The trainer thread's loop: apply settings and commands between steps, step the run while
//! running, refresh the display (embed, diagnostics, project) at most every 150 ms and kNN at
//! most every 3 s, post snapshots.

mod beyond;
mod forces;
mod kept;

use beyond::Beyond;
pub use beyond::DISPLAY_SHARE;
pub(crate) use beyond::DisplayClock;

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError, select};

use super::folder::{AppFolder, RunsDir};
use super::messages::{Arrows, DisplayDiagnostics, Frame, MetricsPoint, RunInfo, Snapshot};
use super::{Action, Mailbox, RunRequest, Shared, Steering};
use crate::backend::Backend;
use crate::config::{Workload, validate_dynamics};
use crate::diagnostics;
use crate::projection::Framer;
use crate::session::catalog::Origin;
use crate::session::{self, Run, SessionError};

/// The display is refreshed at most this often while running.
pub(crate) const DISPLAY_INTERVAL: Duration = Duration::from_millis(150);
/// kNN accuracy (which embeds a labelled bank) is measured at most this often.
pub(crate) const KNN_INTERVAL: Duration = Duration::from_secs(3);

/// The text of a panic's payload.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// Runs `body`, turning a panic into `Err` with its message.
pub(crate) fn guarded(body: impl FnOnce()) -> Result<(), String> {
    catch_unwind(AssertUnwindSafe(body)).map_err(|payload| panic_message(payload.as_ref()))
}

/// The thread's body: serves until the UI disconnects or stops it. A panic is caught and
/// reported through [`super::Trainer::failure`] rather than lost.
#[allow(clippy::too_many_arguments)] // what the spawned thread is handed, once
pub(crate) fn serve_guarded(
    backend: Backend,
    mailbox: Mailbox,
    repaint: &dyn Fn(),
    running: bool,
    workload: Workload,
    runs: Option<RunsDir>,
    commands: &Receiver<Action>,
    shared: &Shared,
) {
    let outcome = guarded(|| {
        let mut state = TrainerState::new(backend, mailbox, repaint, running, shared);
        state.runs = runs;
        state.start(workload);
        state.serve(commands);
        state.close_folder();
    });
    if let Err(message) = outcome {
        shared
            .failure
            .put(format!("the trainer thread stopped: {message}"));
        repaint();
    }
}

struct TrainerState<'a> {
    backend: Backend,
    mailbox: Mailbox,
    repaint: &'a dyn Fn(),
    shared: &'a Shared,
    running: bool,
    run: Option<Box<dyn Run>>,
    info: Option<Arc<RunInfo>>,
    next_run_id: u64,
    /// The number of the newest setting applied (or rejected).
    settings_seq: u64,
    /// Projection and precision of the frames (what is shown is what is recorded).
    framer: Framer,
    frame: Option<Arc<Frame>>,
    arrows: Option<Arc<Arrows>>,
    pending: Vec<MetricsPoint>,
    spectrum: Vec<f64>,
    spectrum_initial: Vec<f64>,
    images_per_sec: f64,
    error: Option<String>,
    last_display: Option<Instant>,
    last_knn: Option<Instant>,
    /// Where the app keeps its runs (`None`: in memory only, as in most tests).
    runs: Option<RunsDir>,
    /// The run folder of the run on screen, once it has trained a step.
    folder: Option<AppFolder>,
    /// The display embeddings of the frame on screen (recorded when the folder opens).
    last_rows: Option<[Vec<f32>; 3]>,
    /// Messages for the user that are not errors (runs removed by the size cap).
    notes: Vec<String>,
    /// The displayed points beyond the core, refreshed a chunk at a time.
    beyond: Beyond,
    /// The step at which every point beyond the core was last embedded at once.
    beyond_all_at: Option<u64>,
    /// The display's share of the trainer's time.
    clock: DisplayClock,
    run_started: Instant,
    /// Where the run on screen comes from (`origin.json` of its folder), and its first
    /// event's text when it is a branch.
    origin: Origin,
    origin_text: String,
    /// When the run's folder last took a checkpoint (branches replay from them).
    last_checkpoint: Option<Instant>,
}

/// How often (in training time) the app's run takes a checkpoint, so that a branch replays at
/// most this much.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(2);

fn app_origin() -> Origin {
    Origin {
        made_by: "app".to_owned(),
        ..Origin::default()
    }
}

impl<'a> TrainerState<'a> {
    fn new(
        backend: Backend,
        mailbox: Mailbox,
        repaint: &'a dyn Fn(),
        running: bool,
        shared: &'a Shared,
    ) -> Self {
        Self {
            backend,
            mailbox,
            repaint,
            shared,
            running,
            run: None,
            info: None,
            next_run_id: 1,
            settings_seq: 0,
            framer: Framer::default(),
            frame: None,
            arrows: None,
            pending: Vec::new(),
            spectrum: Vec::new(),
            spectrum_initial: Vec::new(),
            images_per_sec: 0.0,
            error: None,
            last_display: None,
            last_knn: None,
            runs: None,
            folder: None,
            last_rows: None,
            notes: Vec::new(),
            beyond: Beyond::default(),
            beyond_all_at: None,
            clock: DisplayClock::default(),
            run_started: Instant::now(),
            origin: app_origin(),
            origin_text: String::new(),
            last_checkpoint: None,
        }
    }

    fn stopped(&self) -> bool {
        self.shared.stop.load(Ordering::Acquire)
    }

    /// Opens a fresh run of `workload`; on failure the run on screen stays and the error is
    /// reported.
    fn start(&mut self, workload: Workload) {
        self.origin = app_origin();
        match session::open(&workload, &self.backend.device) {
            Ok(run) => self.install(run, workload),
            Err(err) => {
                self.running = false;
                let message = format!("could not start {}: {err}", workload.settings().describe());
                if self.run.is_none() {
                    self.shared.failure.put(message.clone());
                }
                self.error = Some(message);
            }
        }
        self.post();
    }

    /// Puts `run` on screen as a fresh run (new id, history, projection).
    fn install(&mut self, run: Box<dyn Run>, workload: Workload) {
        self.close_folder();
        self.last_rows = None;
        self.run_started = Instant::now();
        let display = run.display().clone();
        self.beyond = Beyond::new(
            display.core,
            display.labels.len(),
            run.settings().embed_dim(),
        );
        self.beyond_all_at = None;
        self.clock = DisplayClock::default();
        let info = RunInfo {
            run_id: self.next_run_id,
            workload,
            backend: format!("{}, {}", self.backend.kind.name(), self.backend.adapter),
            class_names: display.class_names,
            labels: display.labels,
            preview: display.preview,
            embed_dim: run.settings().embed_dim(),
        };
        self.next_run_id += 1;
        self.info = Some(Arc::new(info));
        self.run = Some(run);
        self.framer.reset();
        self.frame = None;
        self.arrows = None;
        self.pending.clear();
        self.spectrum.clear();
        self.spectrum_initial.clear();
        self.images_per_sec = 0.0;
        self.error = None;
        self.last_knn = None;
        self.origin_text = String::new();
        self.refresh_display(true);
    }

    /// Applies settings and commands; trains while running. Returns when the UI disconnects
    /// or stops the thread.
    fn serve(&mut self, commands: &Receiver<Action>) {
        let mut received: Option<Action> = None;
        loop {
            if self.stopped() {
                return;
            }
            // Settings first: a slider moved before a click on Step acts on that step.
            self.apply_settings();
            if let Some(action) = received.take() {
                self.apply(action);
            }
            loop {
                match commands.try_recv() {
                    Ok(command) => self.apply(command),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return,
                }
            }
            if self.stopped() {
                return;
            }
            if self.running && self.run.is_some() {
                self.train_step(false);
                continue;
            }
            select! {
                recv(commands) -> command => match command {
                    Ok(command) => received = Some(command),
                    Err(_) => return,
                },
                recv(self.shared.bell.receiver()) -> _ => {}
            }
        }
    }

    /// Takes the latest-value slots: a fresh run, then forces and learning rate.
    fn apply_settings(&mut self) {
        if let Some((request, seq)) = self.shared.new_run.take() {
            let workload = match request {
                RunRequest::Branch(request) => {
                    self.settings_seq = self.settings_seq.max(seq);
                    self.branch(&request);
                    return;
                }
                RunRequest::Workload(workload) => *workload,
                RunRequest::Choose(settings) => {
                    // A new run keeps the forces in force; its learning rate is its own (the
                    // sandbox and image runs want different ones).
                    let mut workload = settings.workload();
                    if let Some(run) = &self.run {
                        workload
                            .settings_mut()
                            .set_dynamics(run.settings().dynamics());
                    }
                    workload
                }
            };
            self.settings_seq = self.settings_seq.max(seq);
            self.start(workload);
        }
        if let Some(steering) = self.shared.steering.take() {
            self.steer(steering);
        }
    }

    fn apply(&mut self, action: Action) {
        match action {
            Action::Run => {
                self.running = true;
                self.error = None;
                self.event("run", "run".to_owned());
                self.post();
            }
            Action::Pause => {
                self.running = false;
                self.refresh_display(true);
                self.event("pause", "pause".to_owned());
                if let Some(folder) = &mut self.folder
                    && let Err(err) = folder.flush()
                {
                    self.error = Some(err.to_string());
                }
                self.post();
            }
            Action::Step => {
                self.running = false;
                self.train_step(true);
            }
            Action::Reset => {
                if let Some(run) = &self.run {
                    let workload = run.workload();
                    self.start(workload);
                }
            }
        }
    }

    /// Applies a change of forces and/or learning rate, after checking it; a rejected value
    /// leaves the one in force (which the snapshot reports, so the controls show it).
    fn steer(&mut self, steering: Steering) {
        self.settings_seq = self.settings_seq.max(steering.seq);
        let mut events = Vec::new();
        if let Some(run) = &mut self.run {
            if let Some(dynamics) = steering.dynamics {
                match validate_dynamics(&dynamics) {
                    Ok(()) => {
                        let change = dynamics.describe_change(&run.settings().dynamics());
                        run.settings_mut().set_dynamics(dynamics);
                        if !change.is_empty() {
                            events.push(("forces", change));
                        }
                    }
                    Err(err) => self.error = Some(format!("{err}; keeping the old forces")),
                }
            }
            if let Some(learning_rate) = steering.learning_rate {
                if learning_rate.is_finite() && learning_rate > 0.0 {
                    let old = run.settings().learning_rate();
                    run.settings_mut().set_learning_rate(learning_rate);
                    if old != learning_rate {
                        events.push((
                            "learning_rate",
                            format!("learning rate {old} -> {learning_rate}"),
                        ));
                    }
                } else {
                    self.error = Some(format!(
                        "learning rate {learning_rate} is not a positive number; keeping the \
                         old one"
                    ));
                }
            }
        }
        for (kind, text) in events {
            self.event(kind, text);
        }
        self.post();
    }

    fn train_step(&mut self, single: bool) {
        if self.run.is_none() {
            self.running = false;
            return;
        }
        if !self.open_folder() {
            self.post();
            return;
        }
        let Some(run) = &mut self.run else {
            return;
        };
        let start = Instant::now();
        match run.step() {
            Ok(losses) => {
                let secs = start.elapsed().as_secs_f64().max(1e-9);
                self.clock.trained(secs);
                if let Some(folder) = &mut self.folder
                    && self
                        .last_checkpoint
                        .is_none_or(|at| at.elapsed() >= CHECKPOINT_INTERVAL)
                {
                    self.last_checkpoint = Some(Instant::now());
                    if let Err(err) = folder.checkpoint(&**run) {
                        self.running = false;
                        self.error = Some(format!(
                            "{err}; the run is paused: free some space, then press Run"
                        ));
                    }
                }
                let rate = run.images_per_step() as f64 / secs;
                self.images_per_sec = if self.images_per_sec > 0.0 {
                    0.8 * self.images_per_sec + 0.2 * rate
                } else {
                    rate
                };
                self.pending.push(MetricsPoint {
                    step: run.steps_done(),
                    losses: Some(losses),
                    diagnostics: None,
                    knn_acc: None,
                });
            }
            Err(SessionError::Finished { total }) => {
                self.running = false;
                self.error = Some(format!(
                    "the run has done all its {total} steps; press Reset or pick another dataset"
                ));
            }
            Err(err) => {
                self.running = false;
                self.error = Some(format!("step {}: {err}", run.steps_done() + 1));
            }
        }
        let due = self
            .last_display
            .is_none_or(|at| at.elapsed() >= DISPLAY_INTERVAL)
            && self.clock.may_refresh();
        if single || due || !self.running {
            self.refresh_display(single || !self.running);
            self.post();
        }
    }

    /// Embeds and projects the displayed points, computes the cheap diagnostics (and kNN when
    /// due or `force`d), attached to the newest metrics point. The covariance of the displayed
    /// embeddings is decomposed once, for the spectrum and the projection basis alike.
    fn refresh_display(&mut self, force: bool) {
        let Some(run) = &self.run else {
            return;
        };
        let step = run.steps_done();
        if self.frame.as_ref().is_some_and(|frame| frame.step == step) {
            // This step is on screen (and recorded) already: the core has not moved.
            if force {
                self.complete_beyond(step);
                self.refresh_knn(step);
            }
            return;
        }
        let started = Instant::now();
        let [points, view_a, view_b] = match run.display_embeddings() {
            Ok(rows) => rows,
            Err(err) => {
                self.error = Some(err.to_string());
                return;
            }
        };
        self.last_display = Some(Instant::now());
        let d = self.info.as_ref().map_or(0, |info| info.embed_dim);
        let rows = [points, view_a, view_b];
        let (frame, spectrum) = self.framer.frame(step, &rows, d);
        self.spectrum = spectrum;
        let (arrows, force_shares) = forces::arrows_of(&self.framer, &**run, &rows, d, step);
        self.arrows = Some(Arc::new(arrows));
        if let Err(err) = self.refresh_beyond(step, force) {
            self.error = Some(err.to_string());
        }
        let frame = frame.with_more(&self.framer.project_directions(self.beyond.rows(), d));
        let [points, view_a, view_b] = &rows;
        let diagnostics = DisplayDiagnostics {
            force_shares,
            effective_rank: diagnostics::effective_rank(&self.spectrum),
            collapse_level: diagnostics::collapse_level(points, d),
            uniformity: diagnostics::uniformity(points, d),
            alignment: diagnostics::alignment(view_a, view_b, d),
        };
        if step == 0 || self.spectrum_initial.is_empty() {
            self.spectrum_initial.clone_from(&self.spectrum);
        }
        if !force {
            let secs = started.elapsed().as_secs_f64();
            let credit = self.clock.displayed(secs);
            self.beyond.adapt(credit, secs);
        }
        let Some(run) = &self.run else {
            return;
        };
        let knn_due = force || self.last_knn.is_none_or(|at| at.elapsed() >= KNN_INTERVAL);
        let knn_acc = if knn_due {
            self.last_knn = Some(Instant::now());
            match run.knn_acc() {
                Ok(acc) => acc,
                Err(err) => {
                    self.error = Some(err.to_string());
                    None
                }
            }
        } else {
            None
        };
        let frame = Arc::new(frame);
        self.frame = Some(Arc::clone(&frame));
        self.record(&frame, &rows, &diagnostics, knn_acc);
        self.last_rows = Some(rows);
        match self.pending.last_mut() {
            Some(point) if point.step == step => {
                point.diagnostics = Some(diagnostics);
                point.knn_acc = knn_acc;
            }
            _ => self.pending.push(MetricsPoint {
                step,
                losses: None,
                diagnostics: Some(diagnostics),
                knn_acc,
            }),
        }
    }

    /// Embeds every point beyond the core into the frame on screen (of `step`), unless done
    /// at this step already: a pause shows them all as they are.
    fn complete_beyond(&mut self, step: u64) {
        if self.beyond_all_at == Some(step) || self.beyond.is_empty() {
            return;
        }
        let Some(frame) = self.frame.as_deref().cloned() else {
            return;
        };
        if let Err(err) = self.refresh_beyond(step, true) {
            self.error = Some(err.to_string());
        }
        let d = self.info.as_ref().map_or(0, |info| info.embed_dim);
        let more = self.framer.project_directions(self.beyond.rows(), d);
        self.frame = Some(Arc::new(frame.with_more(&more)));
    }

    /// Embeds the next chunk of the points beyond the core (all of them when `all`).
    fn refresh_beyond(&mut self, step: u64, all: bool) -> Result<(), SessionError> {
        let Some(run) = &self.run else {
            return Ok(());
        };
        let range = self.beyond.next_range(all);
        if range.is_empty() {
            return Ok(());
        }
        let rows = run.display_rows(range.clone())?;
        self.beyond.store(range, &rows, all);
        if all {
            self.beyond_all_at = Some(step);
        }
        Ok(())
    }

    /// Measures kNN at `step` (already displayed) and attaches it to its metrics point.
    fn refresh_knn(&mut self, step: u64) {
        let Some(run) = &self.run else {
            return;
        };
        self.last_knn = Some(Instant::now());
        match run.knn_acc() {
            Ok(Some(acc)) => match self.pending.last_mut() {
                Some(point) if point.step == step => point.knn_acc = Some(acc),
                _ => self.pending.push(MetricsPoint {
                    step,
                    losses: None,
                    diagnostics: None,
                    knn_acc: Some(acc),
                }),
            },
            Ok(None) => {}
            Err(err) => self.error = Some(err.to_string()),
        }
    }

    fn post(&mut self) {
        let (Some(info), Some(run)) = (&self.info, &self.run) else {
            // No run has started: the failure slot says why.
            (self.repaint)();
            return;
        };
        let snapshot = Snapshot {
            info: Arc::clone(info),
            step: run.steps_done(),
            running: self.running,
            dynamics: run.settings().dynamics(),
            learning_rate: run.settings().learning_rate(),
            settings_seq: self.settings_seq,
            frame: self.frame.clone(),
            arrows: self.arrows.clone(),
            metrics: std::mem::take(&mut self.pending),
            spectrum: self.spectrum.clone(),
            spectrum_initial: self.spectrum_initial.clone(),
            images_per_sec: self.images_per_sec,
            display_share: self.clock.share(),
            display_round_secs: self.beyond.round_secs(),
            error: self.error.clone(),
            folder: self.folder.as_ref().map(|f| f.path().to_owned()),
            notes: std::mem::take(&mut self.notes),
        };
        self.mailbox.post(snapshot);
        (self.repaint)();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_is_caught_with_its_message() {
        assert_eq!(guarded(|| {}), Ok(()));
        let message = guarded(|| panic!("the loader fell over")).expect_err("caught");
        assert_eq!(message, "the loader fell over");
        let owned = guarded(|| std::panic::panic_any(String::from("owned"))).expect_err("caught");
        assert_eq!(owned, "owned");
    }
}
