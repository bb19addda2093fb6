//! The trainer thread the app drives: a [`crate::session::Run`] stepped on a named background
//! thread, steered by [`Command`]s and watched through [`Snapshot`]s.
//!
//! ```text
//! UI --Run/Pause/Step/Reset (bounded queue)-------+
//!    --forces, learning rate, new run (latest-value slots + a wake-up bell)--+
//!                                                  v
//!    "msbreg-trainer": apply between steps, step the Run, embed the display set's core and
//!                      a chunk of the points beyond it (at most 15 % of its time),
//!                      diagnostics, kNN every few seconds, project (PCA, aligned)
//! UI <--Snapshot (one-slot mailbox, newest wins, metrics merged)-- then the repaint callback
//! ```
//!
//! The trainer never waits on the UI and the UI never waits on the trainer. The UI reads what
//! the trainer reports it is using (`Snapshot::dynamics`, `learning_rate`, `settings_seq`).
//! Errors (a NaN loss, a dataset that does not load) come back in a snapshot's `error`; the
//! run on screen stays. When no run could be started at all, or the thread panicked, the
//! reason is in [`Trainer::failure`].
//!
//! Dropping the [`Trainer`] does not wait for the thread: it raises a stop flag and
//! disconnects the queue, and the thread ends by itself after the step it is in, so closing
//! the window is immediate. [`Trainer::shutdown`] waits, for tests and headless callers.

mod folder;
pub mod messages;
mod slots;
mod thread;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError, bounded};

pub use folder::{APP_EMBEDDINGS_EVERY, APP_RECORD_BYTES_PER_HOUR, RunsDir};
pub use messages::{
    Arrows, BranchRequest, Command, DisplayDiagnostics, Frame, MetricsPoint, Preview, RunInfo,
    Snapshot,
};
pub use slots::{Bell, Slot};
pub use thread::DISPLAY_SHARE;
pub(crate) use thread::{DISPLAY_INTERVAL, DisplayClock, KNN_INTERVAL};

use crate::backend::Backend;
use crate::config::{Workload, WorkloadSettings};
use crate::method::Dynamics;

/// A change of forces and/or learning rate, merged with any not yet applied.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Steering {
    pub dynamics: Option<Dynamics>,
    pub learning_rate: Option<f64>,
    /// The number of the newest setting merged in.
    pub seq: u64,
}

/// The discrete commands, as they travel on the bounded queue (settings take the slots).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    Run,
    Pause,
    Step,
    Reset,
}

/// A fresh run asked for.
#[derive(Clone, Debug, PartialEq)]
pub enum RunRequest {
    Choose(WorkloadSettings),
    Workload(Box<Workload>),
    Branch(Box<BranchRequest>),
}

/// What the UI and the trainer thread share besides the channels.
#[derive(Default)]
pub(crate) struct Shared {
    pub steering: Slot<Steering>,
    pub new_run: Slot<(RunRequest, u64)>,
    pub bell: Bell,
    pub stop: AtomicBool,
    /// Why the trainer has no run to show (the first run failed to start) or stopped (a
    /// panic).
    pub failure: Slot<String>,
}

/// The newest-wins sending half: a one-slot channel and a receiver to take back the stale one.
pub(crate) struct Mailbox {
    sender: Sender<Snapshot>,
    stale: Receiver<Snapshot>,
}

impl Mailbox {
    /// Posts `snapshot`, replacing (and merging the metrics of) one the UI has not taken.
    /// Returns false when the UI is gone.
    pub(crate) fn post(&self, mut snapshot: Snapshot) -> bool {
        loop {
            match self.sender.try_send(snapshot) {
                Ok(()) => return true,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(back)) => {
                    snapshot = back;
                    if let Ok(old) = self.stale.try_recv()
                        && Arc::ptr_eq(&old.info, &snapshot.info)
                    {
                        let mut metrics = old.metrics;
                        metrics.append(&mut snapshot.metrics);
                        snapshot.metrics = metrics;
                        if snapshot.frame.is_none() {
                            snapshot.frame = old.frame;
                        }
                        let mut notes = old.notes;
                        notes.append(&mut snapshot.notes);
                        snapshot.notes = notes;
                    }
                }
            }
        }
    }
}

/// The UI's handle on the trainer thread. Dropping it stops the thread without waiting.
pub struct Trainer {
    commands: Option<Sender<Action>>,
    snapshots: Receiver<Snapshot>,
    shared: Arc<Shared>,
    handle: Option<JoinHandle<()>>,
    /// Settings sent so far (the number the snapshots' `settings_seq` answers).
    settings_sent: u64,
    /// Whether runs are kept on disk (dropping then waits a moment for the last frames).
    keeps_runs: bool,
}

/// Discrete commands (clicks, keys) the queue holds before the trainer drains them.
const COMMAND_CAPACITY: usize = 256;

impl Trainer {
    /// Starts the trainer thread on `backend` with `workload`, running or paused, keeping
    /// its runs in memory only. `repaint` is called after every snapshot (the app passes
    /// `ctx.request_repaint`).
    pub fn spawn(
        backend: &Backend,
        workload: Workload,
        running: bool,
        repaint: Box<dyn Fn() + Send>,
    ) -> std::io::Result<Self> {
        Self::spawn_keeping(backend, workload, running, repaint, None)
    }

    /// [`Trainer::spawn`], keeping every run that trains a step as a run folder in `runs`
    /// (config, metrics, events, recording; see `folder`).
    pub fn spawn_keeping(
        backend: &Backend,
        workload: Workload,
        running: bool,
        repaint: Box<dyn Fn() + Send>,
        runs: Option<RunsDir>,
    ) -> std::io::Result<Self> {
        let (command_sender, commands) = bounded(COMMAND_CAPACITY);
        let (snapshot_sender, snapshots) = bounded(1);
        let mailbox = Mailbox {
            sender: snapshot_sender,
            stale: snapshots.clone(),
        };
        let shared = Arc::new(Shared::default());
        let backend = backend.clone();
        let thread_shared = Arc::clone(&shared);
        let keeps_runs = runs.is_some();
        let handle = std::thread::Builder::new()
            .name("msbreg-trainer".to_owned())
            .spawn(move || {
                thread::serve_guarded(
                    backend,
                    mailbox,
                    &*repaint,
                    running,
                    workload,
                    runs,
                    &commands,
                    &thread_shared,
                );
            })?;
        Ok(Self {
            commands: Some(command_sender),
            snapshots,
            shared,
            handle: Some(handle),
            settings_sent: 0,
            keeps_runs,
        })
    }

    /// Delivers `command` without waiting: actions queue, settings replace the pending
    /// setting of their kind. Returns false only when the trainer has stopped (or, for an
    /// action, when 256 are already queued).
    pub fn send(&mut self, command: Command) -> bool {
        if self.handle.as_ref().is_none_or(JoinHandle::is_finished) {
            return false;
        }
        match command {
            Command::SetDynamics(dynamics) => {
                self.settings_sent += 1;
                let seq = self.settings_sent;
                self.shared.steering.update(|pending| {
                    let steering = pending.get_or_insert_with(Steering::default);
                    steering.dynamics = Some(dynamics);
                    steering.seq = seq;
                });
            }
            Command::SetLearningRate(learning_rate) => {
                self.settings_sent += 1;
                let seq = self.settings_sent;
                self.shared.steering.update(|pending| {
                    let steering = pending.get_or_insert_with(Steering::default);
                    steering.learning_rate = Some(learning_rate);
                    steering.seq = seq;
                });
            }
            Command::Choose(settings) => {
                self.settings_sent += 1;
                self.shared
                    .new_run
                    .put((RunRequest::Choose(settings), self.settings_sent));
            }
            Command::NewRun(workload) => {
                self.settings_sent += 1;
                self.shared
                    .new_run
                    .put((RunRequest::Workload(workload), self.settings_sent));
            }
            Command::Branch(request) => {
                self.settings_sent += 1;
                self.shared
                    .new_run
                    .put((RunRequest::Branch(request), self.settings_sent));
            }
            Command::Run => return self.queue(Action::Run),
            Command::Pause => return self.queue(Action::Pause),
            Command::Step => return self.queue(Action::Step),
            Command::Reset => return self.queue(Action::Reset),
        }
        self.shared.bell.ring();
        true
    }

    /// Queues a discrete action (the trainer waits on the queue too); false when the queue is
    /// full or gone.
    fn queue(&self, action: Action) -> bool {
        self.commands
            .as_ref()
            .is_some_and(|sender| sender.try_send(action).is_ok())
    }

    /// Settings sent so far; a snapshot whose `settings_seq` equals it has applied them all.
    pub fn settings_sent(&self) -> u64 {
        self.settings_sent
    }

    /// The newest snapshot, if one arrived since the last call.
    pub fn try_snapshot(&self) -> Option<Snapshot> {
        self.snapshots.try_recv().ok()
    }

    /// Waits up to `timeout` for a snapshot (tests and headless drivers; the UI never waits).
    pub fn wait_snapshot(&self, timeout: Duration) -> Option<Snapshot> {
        self.snapshots.recv_timeout(timeout).ok()
    }

    /// Why the trainer shows no run or has stopped: the first run failed to start, or the
    /// thread panicked (with the panic's message). Taken once.
    pub fn failure(&self) -> Option<String> {
        self.shared.failure.take()
    }

    /// Whether the thread has ended (a panic, or after a stop).
    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(JoinHandle::is_finished)
            || matches!(self.snapshots.try_recv(), Err(TryRecvError::Disconnected))
    }

    /// Stops the thread and waits up to `timeout` for it to end; `Err` with the panic's
    /// message if it panicked, or when it did not end in time.
    pub fn shutdown(mut self, timeout: Duration) -> Result<(), String> {
        self.stop_signal();
        let start = Instant::now();
        let Some(handle) = self.handle.take() else {
            return Ok(());
        };
        while !handle.is_finished() {
            if start.elapsed() > timeout {
                return Err(format!(
                    "the trainer thread did not stop within {timeout:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        match handle.join() {
            Ok(()) => self.shared.failure.take().map_or(Ok(()), Err),
            Err(panic) => Err(thread::panic_message(panic.as_ref())),
        }
    }

    fn stop_signal(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.commands = None;
        self.shared.bell.ring();
    }
}

impl Drop for Trainer {
    fn drop(&mut self) {
        // Stop without waiting for the step: the thread ends after it. When runs are kept on
        // disk, wait up to 1.5 s for it to write the run's last frames (a sandbox step ends in
        // milliseconds; a long image step is not waited for, and loses at most its last
        // chunk's frames).
        self.stop_signal();
        let start = Instant::now();
        while self.keeps_runs
            && self
                .handle
                .as_ref()
                .is_some_and(|handle| !handle.is_finished())
            && start.elapsed() < Duration::from_millis(1500)
        {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
