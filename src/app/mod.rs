//! The desktop app: an eframe `App` that sends [`Command`]s to the trainer thread and draws
//! the newest [`Snapshot`] it received.
//!
//! The UI is thin: each frame it drains the snapshot channel with `try_recv` (never waits),
//! appends the new metrics to its [`History`], and lays out the panels: controls on the
//! left (`controls`), plots on the right (`plots`), the particle view in the middle (`view`),
//! a status line at the bottom. Every change the user makes becomes one `Command`; the
//! trainer applies it before its next step.

mod arrows;
mod browser;
mod compare;
mod controls;
mod history;
mod lesson;
mod opened;
mod pictures;
mod plots;
mod shown;
mod timeline;
mod view;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eframe::{egui, egui_wgpu};

use crate::backend::Backend;
use crate::method::Dynamics;
use crate::trainer::{Command, RunInfo, RunsDir, Snapshot, Trainer};

pub use crate::config::{DataChoice, ModelChoice, WorkloadSettings};
pub use browser::Browser;
pub use compare::{Compare, MAX_COMPARED};
pub use history::{History, POINTS_PER_SERIES, Series};
pub use lesson::LessonPlayer;
pub use opened::Opened;
pub use timeline::{SPEEDS, Timeline};
pub use view::{ViewMode, ViewSettings, class_color, frame_geometry};

/// What the app starts with.
#[derive(Clone)]
pub struct AppOptions {
    pub backend: Backend,
    pub settings: WorkloadSettings,
    /// Train from the first frame.
    pub running: bool,
    /// Measure frame times (`--frame-stats`).
    pub frame_stats: Option<FrameStats>,
    /// Where runs are kept (`None`: in memory only).
    pub runs: Option<RunsDir>,
    /// A run folder to open and watch instead of training (`--open DIR`).
    pub open: Option<std::path::PathBuf>,
    /// Run folders to compare side by side from the start (`--compare DIR DIR ...`).
    pub compare: Vec<std::path::PathBuf>,
    /// A lesson to play (`--lesson`): its set-up replaces `settings`, and the run starts
    /// paused until a stage runs it.
    pub lesson: Option<crate::config::lesson::Lesson>,
}

/// `--frame-stats`: repaint continuously and report frame times on stderr.
#[derive(Clone, Copy, Debug)]
pub struct FrameStats {
    /// After this long, print the frame interval and UI time percentiles and close the window.
    pub after: Duration,
    /// Also print, this often, a line for watching a long session: minutes, training step,
    /// resident memory, points in the history, and UI time per frame over the period.
    pub report_every: Option<Duration>,
}

/// Recent frame times, for the status line (p50 and p99 of the last few hundred frames).
#[derive(Default)]
struct FrameTimes {
    secs: VecDeque<f64>,
}

impl FrameTimes {
    const KEEP: usize = 300;

    fn push(&mut self, secs: f64) {
        if self.secs.len() == Self::KEEP {
            self.secs.pop_front();
        }
        self.secs.push_back(secs);
    }

    /// The `q` quantile (0..=1) in milliseconds.
    fn quantile_ms(&self, q: f64) -> f64 {
        quantile_ms(self.secs.iter().copied().collect(), q)
    }
}

/// The `q` quantile (0..=1) of `secs`, in milliseconds; 0 when there are none.
fn quantile_ms(mut secs: Vec<f64>, q: f64) -> f64 {
    if secs.is_empty() {
        return 0.0;
    }
    secs.sort_by(f64::total_cmp);
    let index = ((secs.len() - 1) as f64 * q).round() as usize;
    secs[index] * 1000.0
}

/// The app's state. Construct with [`MsbregApp::new`]; draw with [`MsbregApp::ui`].
pub struct MsbregApp {
    trainer: Option<Trainer>,
    backend: Backend,
    /// The workload settings as shown in the left panel.
    pub settings: WorkloadSettings,
    /// Settings being dragged on a slider, applied when it is let go.
    pending_settings: Option<WorkloadSettings>,
    /// The forces and learning rate as shown (sent to the trainer on every change, unless
    /// held: see [`MsbregApp::change_forces`]).
    pub dynamics: Dynamics,
    pub learning_rate: f64,
    /// Forces changed while an earlier step (or an opened folder) was on screen, not sent:
    /// they are for Branch, and go to the live run when the view returns to it.
    held: bool,
    pub view: ViewSettings,
    latest: Option<Snapshot>,
    info: Option<Arc<RunInfo>>,
    history: History,
    /// The last error the trainer reported, shown in place until dismissed or a run starts.
    error: Option<String>,
    /// Every command sent, in order (the UI tests read it).
    pub sent: Vec<Command>,
    frame_times: FrameTimes,
    /// Time between successive frames (only recorded with `frame_stats`).
    frame_intervals: Vec<f64>,
    last_frame: Option<Instant>,
    started: Instant,
    frame_stats: Option<FrameStats>,
    /// UI times per frame (seconds) since the last `report_every` line, and when it was.
    period_ui_secs: Vec<f64>,
    last_report: Instant,
    /// Whether the wgpu particle renderer is installed (otherwise egui's painter draws).
    gpu_view: bool,
    thumbnails: view::Thumbnails,
    /// Camera and hover state of the particle view.
    camera: crate::render::Camera,
    /// The scrub bar over the recording of the run on screen.
    pub timeline: Timeline,
    /// A run folder opened to watch (shown instead of the trainer's run).
    opened: Option<Opened>,
    /// Messages that are not errors (old runs removed by the size cap), newest last.
    notes: Vec<String>,
    /// Screenshots asked for (Save PNG).
    pub(crate) pictures: pictures::Pictures,
    /// The lesson being played (`--lesson`).
    pub lesson: Option<lesson::LessonPlayer>,
    /// The runs directory (for the run browser).
    pub runs_dir: Option<std::path::PathBuf>,
    pub browser: Browser,
    /// Runs compared side by side (shown instead of the single view while set).
    pub compare: Option<Compare>,
}

impl MsbregApp {
    /// Starts the trainer on `options.backend`. `render_state` is eframe's wgpu state: when
    /// given, the particle renderer is installed on its device.
    pub fn new(
        ctx: &egui::Context,
        render_state: Option<&egui_wgpu::RenderState>,
        options: AppOptions,
    ) -> Self {
        if let Some(render_state) = render_state {
            crate::render::install(render_state);
        }
        let settings =
            options
                .lesson
                .as_ref()
                .map_or(options.settings, |lesson| WorkloadSettings {
                    // How many points to show is the machine's choice, not the lesson's.
                    display_points: options.settings.display_points,
                    ..lesson.settings
                });
        let running = options.running && options.lesson.is_none();
        let workload = settings.workload();
        let dynamics = workload.settings().dynamics();
        let learning_rate = workload.settings().learning_rate();
        let repaint_ctx = ctx.clone();
        let (trainer, error) = match Trainer::spawn_keeping(
            &options.backend,
            workload,
            running && options.open.is_none() && options.compare.is_empty(),
            Box::new(move || repaint_ctx.request_repaint()),
            options.runs.clone(),
        ) {
            Ok(trainer) => (Some(trainer), None),
            Err(err) => (
                None,
                Some(format!("could not start the trainer thread: {err}")),
            ),
        };
        let mut app = Self {
            trainer,
            backend: options.backend,
            settings,
            pending_settings: None,
            dynamics,
            learning_rate,
            view: ViewSettings::default(),
            latest: None,
            info: None,
            history: History::default(),
            error,
            sent: Vec::new(),
            frame_times: FrameTimes::default(),
            frame_intervals: Vec::new(),
            last_frame: None,
            started: Instant::now(),
            frame_stats: options.frame_stats,
            period_ui_secs: Vec::new(),
            last_report: Instant::now(),
            gpu_view: render_state.is_some(),
            thumbnails: view::Thumbnails::default(),
            camera: crate::render::Camera::default(),
            timeline: Timeline::default(),
            opened: None,
            held: false,
            notes: Vec::new(),
            pictures: pictures::Pictures::default(),
            lesson: None,
            runs_dir: options.runs.as_ref().map(|r| r.dir.clone()),
            browser: Browser::default(),
            compare: None,
        };
        if let Some(lesson) = options.lesson {
            app.start_lesson(lesson);
        }
        if let Some(dir) = &options.open {
            app.open_folder(dir);
        }
        if !options.compare.is_empty() {
            app.compare_runs(&options.compare);
        }
        app
    }

    /// Adds a message to the status line.
    pub(crate) fn note(&mut self, text: String) {
        self.notes.push(text);
    }

    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Sends `command` to the trainer and records it.
    pub fn send(&mut self, command: Command) {
        let delivered = self
            .trainer
            .as_mut()
            .is_some_and(|t| t.send(command.clone()));
        if !delivered {
            self.error = Some(
                "the trainer did not take the command (it has stopped, or 256 clicks are \
                 waiting)"
                    .to_owned(),
            );
        }
        self.sent.push(command);
    }

    /// The newest snapshot received.
    pub fn latest(&self) -> Option<&Snapshot> {
        self.latest.as_ref()
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// Takes every snapshot waiting (without waiting for one).
    pub fn poll(&mut self) {
        let Some(trainer) = &self.trainer else {
            return;
        };
        if let Some(failure) = trainer.failure() {
            // No run could start, or the thread stopped: say why; the window stays.
            self.error = Some(failure);
        }
        let settings_sent = trainer.settings_sent();
        while let Some(snapshot) = trainer.try_snapshot() {
            let fresh_run = self
                .info
                .as_ref()
                .is_none_or(|info| info.run_id != snapshot.info.run_id);
            if fresh_run {
                self.history = History::default();
                self.thumbnails = view::Thumbnails::default();
                self.info = Some(Arc::clone(&snapshot.info));
                self.camera.reset();
            }
            self.history
                .extend(&snapshot.metrics, snapshot.info.embed_dim);
            if let Some(error) = &snapshot.error {
                self.error = Some(error.clone());
            } else if fresh_run {
                self.error = None;
            }
            self.notes.extend(snapshot.notes.iter().cloned());
            if snapshot.settings_seq == settings_sent && !self.held {
                // The trainer has answered the user's last change: show what it uses (a
                // rejected value springs back; a new run's own learning rate appears).
                self.dynamics = snapshot.dynamics;
                self.learning_rate = snapshot.learning_rate;
            }
            self.latest = Some(snapshot);
        }
        if let Some(opened) = &mut self.opened {
            opened.poll();
        } else {
            let folder = self.latest.as_ref().and_then(|s| s.folder.clone());
            self.timeline.follow(folder.as_deref());
        }
        let saved = self.pictures.answers();
        self.notes.extend(saved);
        self.lesson_tick();
        if self.held && self.timeline.is_live() && self.opened.is_none() {
            // Back at the live run: what was set for a branch now applies to it.
            self.held = false;
            self.send(Command::SetDynamics(self.dynamics));
            self.send(Command::SetLearningRate(self.learning_rate));
        }
    }

    /// The forces and learning rate chosen in the controls. Sent to the live run, or, while
    /// the timeline shows an earlier step or an opened folder is on screen, held for Branch
    /// (the live run goes on as it was) and sent when the view returns to the live run.
    pub fn change_forces(&mut self, dynamics: Dynamics, learning_rate: f64) {
        let (forces, rate) = (
            dynamics != self.dynamics,
            learning_rate != self.learning_rate,
        );
        self.dynamics = dynamics;
        self.learning_rate = learning_rate;
        if !self.timeline.is_live() || self.opened.is_some() {
            self.held |= forces || rate;
            return;
        }
        if forces {
            self.send(Command::SetDynamics(dynamics));
        }
        if rate {
            self.send(Command::SetLearningRate(learning_rate));
        }
    }

    /// Whether forces changed for a branch wait to be applied (see [`MsbregApp::change_forces`]).
    pub fn forces_held(&self) -> bool {
        self.held
    }

    /// A branch took the held forces with it.
    pub(crate) fn forces_taken(&mut self) {
        self.held = false;
    }

    /// Waits (tests only) until a snapshot satisfying `done` arrives, polling the channel.
    pub fn poll_until(&mut self, timeout: Duration, done: impl Fn(&Snapshot) -> bool) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            self.poll();
            if self.latest.as_ref().is_some_and(&done) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    fn keyboard(&mut self, ctx: &egui::Context) {
        if ctx.egui_wants_keyboard_input() {
            return;
        }
        let (space, s, r, left, right) = ctx.input(|input| {
            (
                input.key_pressed(egui::Key::Space),
                input.key_pressed(egui::Key::S),
                input.key_pressed(egui::Key::R),
                input.key_pressed(egui::Key::ArrowLeft),
                input.key_pressed(egui::Key::ArrowRight),
            )
        });
        if left || right {
            let live_step = if self.opened.is_some() {
                None
            } else {
                self.latest.as_ref().map(|s| s.step)
            };
            self.timeline.step_frame(right, live_step);
        }
        if space {
            let running = self.latest.as_ref().is_some_and(|s| s.running);
            self.send(if running {
                Command::Pause
            } else {
                Command::Run
            });
        }
        if s {
            self.send(Command::Step);
        }
        if r {
            self.send(Command::Reset);
        }
    }

    /// The whole window.
    pub fn ui(&mut self, ui: &mut egui::Ui) {
        let frame_start = Instant::now();
        self.poll();
        self.keyboard(ui.ctx());

        egui::Panel::bottom("status").show(ui, |ui| self.status_ui(ui));
        egui::Panel::left("controls")
            .resizable(false)
            .exact_size(320.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| controls::controls_ui(self, ui));
            });
        egui::Panel::right("plots")
            .resizable(true)
            .default_size(380.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| {
                    if let Some(compare) = &self.compare {
                        compare::compare_plots_ui(compare, ui);
                        return;
                    }
                    let cursor = self.timeline.cursor();
                    let latest = if self.opened.is_some() {
                        None
                    } else {
                        self.latest.as_ref()
                    };
                    let mut mark = self.lesson.as_mut().and_then(|l| l.plot.take());
                    plots::plots_ui(self.shown_history(), latest, cursor, &mut mark, ui);
                    if let Some(lesson) = &mut self.lesson {
                        lesson.plot = mark;
                    }
                });
            });
        egui::CentralPanel::default().show(ui, |ui| {
            if self.compare.is_some() {
                view::toolbar_ui(self, ui);
                compare::compare_view_ui(self, ui);
            } else {
                view::view_ui(self, ui);
            }
        });
        browser::browser_ui(self, ui.ctx());

        let ui_secs = frame_start.elapsed().as_secs_f64();
        self.frame_times.push(ui_secs);
        if let Some(stats) = self.frame_stats {
            self.measure_frames(ui.ctx(), frame_start, ui_secs, stats);
        }
        self.last_frame = Some(frame_start);
    }

    /// `--frame-stats`: repaint continuously; every `report_every`, print a line; after
    /// `after`, print the percentiles and close.
    fn measure_frames(
        &mut self,
        ctx: &egui::Context,
        frame_start: Instant,
        ui_secs: f64,
        stats: FrameStats,
    ) {
        ctx.request_repaint();
        let stats_after = stats.after;
        if let Some(every) = stats.report_every {
            self.period_ui_secs.push(ui_secs);
            if self.last_report.elapsed() >= every {
                self.report_period();
            }
        }
        // The first seconds build the data and compile shaders: not a steady state.
        let warm = self.started.elapsed() > Duration::from_secs(3).min(stats_after / 2);
        if let (true, Some(last)) = (warm, self.last_frame) {
            self.frame_intervals
                .push(frame_start.duration_since(last).as_secs_f64());
        }
        if self.started.elapsed() >= stats_after {
            let intervals = std::mem::take(&mut self.frame_intervals);
            let step = self.latest.as_ref().map_or(0, |s| s.step);
            eprintln!(
                "frame stats: {} frames, interval p50 {:.1} ms, p99 {:.1} ms; UI time p50 {:.1} \
                 ms, p99 {:.1} ms; {} training steps",
                intervals.len(),
                quantile_ms(intervals.clone(), 0.5),
                quantile_ms(intervals, 0.99),
                self.frame_times.quantile_ms(0.5),
                self.frame_times.quantile_ms(0.99),
                step
            );
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            self.frame_stats = None;
        }
    }

    /// One `report_every` line: is the session's memory and UI time per frame flat?
    fn report_period(&mut self) {
        let ui_secs = std::mem::take(&mut self.period_ui_secs);
        let frames = ui_secs.len();
        let memory = read_resident_bytes().map_or_else(
            || "n/a".to_owned(),
            |bytes| format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20)),
        );
        eprintln!(
            "session: {:.1} min, step {}, resident memory {memory}, history {} points, UI time \
             p50 {:.2} ms, p99 {:.2} ms over {} frames",
            self.started.elapsed().as_secs_f64() / 60.0,
            self.latest.as_ref().map_or(0, |s| s.step),
            self.history.stored_points(),
            quantile_ms(ui_secs.clone(), 0.5),
            quantile_ms(ui_secs, 0.99),
            frames,
        );
        self.last_report = Instant::now();
    }

    fn status_ui(&mut self, ui: &mut egui::Ui) {
        ui.horizontal_wrapped(|ui| {
            ui.label(format!(
                "{} ({})",
                self.backend.kind.name(),
                self.backend.adapter
            ));
            ui.separator();
            match &self.latest {
                Some(s) => {
                    ui.label(format!("step {}", s.step));
                    ui.separator();
                    ui.label(format!("{:.0} images/s", s.images_per_sec));
                    ui.separator();
                    ui.label(if s.running { "running" } else { "paused" });
                    ui.separator();
                    let shown = s
                        .frame
                        .as_ref()
                        .map_or(0, |f| f.points.len() + f.more.len());
                    ui.label(format!(
                        "{shown} of {} points shown, display {:.0} % of the trainer's time",
                        s.info.labels.len(),
                        100.0 * s.display_share
                    ))
                    .on_hover_text(format!(
                        "The first {} points are embedded with their views at every refresh, \
                         the others a chunk at a time; the display takes at most {:.0} % of \
                         the trainer's time while it trains",
                        s.frame.as_ref().map_or(0, |f| f.points.len()),
                        100.0 * crate::trainer::DISPLAY_SHARE
                    ));
                }
                None => {
                    ui.label("starting the run...");
                }
            }
            if let Some(folder) = self.latest.as_ref().and_then(|s| s.folder.as_ref()) {
                ui.separator();
                ui.label(format!("saved in {}", folder.display()));
            }
            if let Some(note) = self.notes.last() {
                ui.separator();
                ui.label(note);
            }
            ui.separator();
            ui.label(format!(
                "UI time per frame p50 {:.1} ms, p99 {:.1} ms",
                self.frame_times.quantile_ms(0.5),
                self.frame_times.quantile_ms(0.99)
            ));
        });
    }
}

impl eframe::App for MsbregApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        MsbregApp::ui(self, ui);
    }
}

/// The process's resident memory in bytes, from `/proc/self/status` (Linux; `None` elsewhere).
fn read_resident_bytes() -> Option<u64> {
    resident_bytes(&std::fs::read_to_string("/proc/self/status").ok()?)
}

/// The `VmRSS` line of a `/proc/<pid>/status` text, in bytes.
fn resident_bytes(status: &str) -> Option<u64> {
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?;
    let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kib * 1024)
}

/// Opens the window and runs until it is closed. With the wgpu backend, eframe renders on the
/// device burn trains on (`WgpuSetup::Existing`).
pub fn run_app(options: AppOptions) -> anyhow::Result<()> {
    let mut wgpu_options = egui_wgpu::WgpuConfiguration::default();
    if let Some(setup) = &options.backend.wgpu_setup {
        wgpu_options.wgpu_setup = egui_wgpu::WgpuSetup::Existing(egui_wgpu::WgpuSetupExisting {
            instance: setup.instance.clone(),
            adapter: setup.adapter.clone(),
            device: setup.device.clone(),
            queue: setup.queue.clone(),
        });
    }
    let native_options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("msbreg")
            .with_inner_size([1400.0, 860.0]),
        renderer: eframe::Renderer::Wgpu,
        wgpu_options,
        ..Default::default()
    };
    eframe::run_native(
        "msbreg",
        native_options,
        Box::new(move |cc| {
            Ok(Box::new(MsbregApp::new(
                &cc.egui_ctx,
                cc.wgpu_render_state.as_ref(),
                options,
            )))
        }),
    )
    .map_err(|err| anyhow::anyhow!("the window could not open: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_bytes_reads_the_vm_rss_line() {
        let status = "Name:\tmsbreg\nVmPeak:\t  900 kB\nVmRSS:\t  123456 kB\nThreads:\t9\n";
        assert_eq!(resident_bytes(status), Some(123_456 * 1024));
        assert_eq!(resident_bytes("Name:\tmsbreg\n"), None);
        assert_eq!(resident_bytes("VmRSS:\t12 MB\n"), None);
    }
}
