//! The timeline under the particle view: a scrub bar over the recorded steps of the run on
//! screen, read from its recording on disk (the app's own run, or a folder opened with
//! `--open`, followed while another process still writes it).
//!
//! `cursor` is `None` at the head (Live: the newest frame, the trainer's own for the app's
//! run); a step otherwise, whose recorded frame the view draws. Arrow keys step frame by
//! frame; Play plays back at a chosen speed in recorded time; events are marks on the bar.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eframe::egui;

use crate::projection::Frame;
use crate::session::catalog::{Origin, branches_of};
use crate::session::{Event, RecordedFrame, Recording, read_events};

/// How often the recording and events files are looked at again.
const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// How often the runs beside it are looked at for branches of the run.
const BRANCH_POLL_INTERVAL: Duration = Duration::from_secs(3);

/// Playback speeds offered (recorded seconds per second).
pub const SPEEDS: [f64; 6] = [0.25, 0.5, 1.0, 2.0, 4.0, 16.0];

/// See the module docs.
pub struct Timeline {
    dir: Option<PathBuf>,
    recording: Option<Recording>,
    /// Why there is nothing to scrub (no recording, a newer format, a damaged header).
    problem: Option<String>,
    events: Vec<Event>,
    cursor: Option<u64>,
    shown: Option<RecordedFrame>,
    playing: bool,
    pub speed: f64,
    /// Wall time and recorded milliseconds where playback (re)started.
    play_from: Option<(Instant, u64)>,
    last_poll: Option<Instant>,
    /// Where the run forked from, when it is a branch ("branched from X at step k").
    fork: Option<String>,
    /// The runs that branched from this one, with their steps (marks on the bar).
    branches: Vec<(PathBuf, u64)>,
    last_branch_poll: Option<Instant>,
}

impl Default for Timeline {
    fn default() -> Self {
        Self {
            dir: None,
            recording: None,
            problem: None,
            events: Vec::new(),
            cursor: None,
            shown: None,
            playing: false,
            speed: 1.0,
            play_from: None,
            last_poll: None,
            fork: None,
            branches: Vec::new(),
            last_branch_poll: None,
        }
    }
}

impl Timeline {
    /// Follows the recording of the run folder `dir` (nothing when `None`); a new folder
    /// starts at Live.
    pub fn follow(&mut self, dir: Option<&Path>) {
        if self.dir.as_deref() == dir {
            return;
        }
        let speed = self.speed;
        *self = Self {
            dir: dir.map(Path::to_owned),
            speed,
            ..Self::default()
        };
        self.fork = dir.and_then(Origin::read).and_then(|origin| {
            let parent = origin.parent?;
            Some(format!(
                "branched from {} at step {}",
                parent.display(),
                origin.parent_step.unwrap_or(0)
            ))
        });
        self.poll(true);
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Looks at the recording and the events again (at most every half second unless
    /// `force`d): the writer may have appended.
    pub fn poll(&mut self, force: bool) {
        if !force
            && self
                .last_poll
                .is_some_and(|at| at.elapsed() < POLL_INTERVAL)
        {
            return;
        }
        self.last_poll = Some(Instant::now());
        let Some(dir) = &self.dir else {
            return;
        };
        match &mut self.recording {
            Some(recording) => {
                if let Err(err) = recording.refresh() {
                    self.problem = Some(err.to_string());
                }
            }
            None => match Recording::open(dir) {
                Ok(recording) => {
                    self.recording = Some(recording);
                    self.problem = None;
                }
                Err(err) => self.problem = Some(err.to_string()),
            },
        }
        self.events = read_events(dir).unwrap_or_default();
        if force
            || self
                .last_branch_poll
                .is_none_or(|at| at.elapsed() >= BRANCH_POLL_INTERVAL)
        {
            self.last_branch_poll = Some(Instant::now());
            self.branches = branches_of(dir);
        }
    }

    /// The runs that branched from this one and the steps they branched at.
    pub fn branches(&self) -> &[(PathBuf, u64)] {
        &self.branches
    }

    /// The first and last recorded steps.
    pub fn range(&self) -> Option<(u64, u64)> {
        self.recording.as_ref()?.step_range()
    }

    pub fn recording(&self) -> Option<&Recording> {
        self.recording.as_ref()
    }

    pub fn problem(&self) -> Option<&str> {
        self.problem.as_deref()
    }

    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// "branched from X at step k" for a branch.
    pub fn fork(&self) -> Option<&str> {
        self.fork.as_deref()
    }

    pub fn is_live(&self) -> bool {
        self.cursor.is_none()
    }

    pub fn is_playing(&self) -> bool {
        self.playing
    }

    /// The step under the cursor (`None` at Live).
    pub fn cursor(&self) -> Option<u64> {
        self.cursor
    }

    /// The recorded frame to draw instead of the live one (`None` at Live).
    pub fn shown(&self) -> Option<&RecordedFrame> {
        self.cursor.and(self.shown.as_ref())
    }

    /// The newest recorded frame (what an opened folder shows at Live).
    pub fn head_frame(&mut self) -> Option<Arc<Frame>> {
        let (_, last) = self.range()?;
        let recording = self.recording.as_mut()?;
        recording.frame_at(last).ok().flatten().map(|f| f.frame)
    }

    /// Moves the cursor to the newest frame at or before `step`.
    pub fn seek(&mut self, step: u64) {
        let Some(recording) = &mut self.recording else {
            return;
        };
        match recording.frame_at(step) {
            Ok(Some(frame)) => {
                self.cursor = Some(frame.frame.step);
                self.shown = Some(frame);
            }
            Ok(None) => {}
            Err(err) => self.problem = Some(err.to_string()),
        }
    }

    /// Back to the head.
    pub fn go_live(&mut self) {
        self.cursor = None;
        self.shown = None;
        self.playing = false;
        self.play_from = None;
    }

    /// One frame later (`forward`) or earlier. From Live (the newest step `live_step`, or the
    /// last recorded frame when `None`), back to the frame before the one on screen.
    pub fn step_frame(&mut self, forward: bool, live_step: Option<u64>) {
        self.playing = false;
        let Some((_, last)) = self.range() else {
            return;
        };
        let Some(at) = self.cursor else {
            if !forward {
                self.seek(last);
                if live_step.is_none_or(|live| live <= last) {
                    // The last recorded frame is the one on screen: one before it.
                    self.step_frame(false, None);
                }
            }
            return;
        };
        let Some(recording) = &mut self.recording else {
            return;
        };
        match recording.neighbour_step(at, forward) {
            Ok(Some(step)) => self.seek(step),
            Ok(None) => {}
            Err(err) => self.problem = Some(err.to_string()),
        }
    }

    /// Plays back from the cursor (from the start when at Live or at the end), or stops.
    pub fn toggle_play(&mut self) {
        if self.playing {
            self.playing = false;
            return;
        }
        let Some((first, last)) = self.range() else {
            return;
        };
        if self.cursor.is_none_or(|c| c >= last) {
            self.seek(first);
        }
        self.playing = true;
        self.play_from = self.shown.as_ref().map(|f| (Instant::now(), f.millis));
    }

    /// Advances playback to where the recorded clock is now; true while playing (the caller
    /// asks for a repaint).
    pub fn tick(&mut self) -> bool {
        if !self.playing {
            return false;
        }
        let Some((started, from_millis)) = self.play_from else {
            self.playing = false;
            return false;
        };
        let target = from_millis + (started.elapsed().as_secs_f64() * self.speed * 1000.0) as u64;
        // At most a chunk's worth of frames per repaint.
        for _ in 0..64 {
            let Some(at) = self.cursor else {
                break;
            };
            let Some(recording) = &mut self.recording else {
                break;
            };
            let Ok(Some(next)) = recording.neighbour_step(at, true) else {
                // The end of what is recorded: stop there.
                self.playing = false;
                break;
            };
            let Ok(Some(frame)) = recording.frame_at(next) else {
                break;
            };
            if frame.millis > target {
                break;
            }
            self.cursor = Some(frame.frame.step);
            self.shown = Some(frame);
        }
        self.playing
    }

    /// Restarts playback's clock at the frame shown (after a change of speed or a seek).
    pub fn restart_clock(&mut self) {
        if self.playing {
            self.play_from = self.shown.as_ref().map(|f| (Instant::now(), f.millis));
        }
    }
}

/// The bar: step buttons, Play, speed, the scrub slider with event marks, Live.
pub fn timeline_ui(timeline: &mut Timeline, live_step: Option<u64>, ui: &mut egui::Ui) {
    timeline.poll(false);
    if timeline.tick() {
        ui.ctx().request_repaint();
    }
    let Some((first, last)) = timeline.range() else {
        let text = timeline
            .problem()
            .map_or_else(|| "nothing recorded yet".to_owned(), str::to_owned);
        ui.label(egui::RichText::new(format!("Timeline: {text}")).weak());
        return;
    };
    ui.horizontal(|ui| {
        if ui
            .button("<")
            .on_hover_text("One frame back (Left arrow)")
            .clicked()
        {
            timeline.step_frame(false, live_step);
        }
        let play = if timeline.is_playing() {
            "Stop"
        } else {
            "Play"
        };
        if ui
            .button(play)
            .on_hover_text("Play the recording back")
            .clicked()
        {
            timeline.toggle_play();
        }
        if ui
            .button(">")
            .on_hover_text("One frame on (Right arrow)")
            .clicked()
        {
            timeline.step_frame(true, live_step);
        }
        let speed_before = timeline.speed;
        egui::ComboBox::from_label("speed")
            .width(60.0)
            .selected_text(format!("{}x", timeline.speed))
            .show_ui(ui, |ui| {
                for speed in SPEEDS {
                    ui.selectable_value(&mut timeline.speed, speed, format!("{speed}x"));
                }
            });
        if timeline.speed != speed_before {
            timeline.restart_clock();
        }
        let live_label = if timeline.is_live() {
            "Live (at head)"
        } else {
            "Live"
        };
        let live = ui
            .add_enabled(!timeline.is_live(), egui::Button::new(live_label))
            .on_hover_text("Back to the newest step");
        if live.clicked() {
            timeline.go_live();
        }
        match (timeline.cursor(), live_step) {
            (Some(at), _) => ui.label(format!(
                "replaying step {at} of {}",
                live_step.map_or(last, |s| s.max(last))
            )),
            (None, Some(live)) if live > last => {
                ui.label(format!("live at step {live} (recorded to step {last})"))
            }
            (None, _) => ui.label(format!("step {last}")),
        };
    });
    scrub_ui(timeline, first, last, ui);
}

/// The scrub slider over `first..=last`, and the event marks under it.
fn scrub_ui(timeline: &mut Timeline, first: u64, last: u64, ui: &mut egui::Ui) {
    let mut at = timeline.cursor().unwrap_or(last);
    let width = ui.available_width();
    // Room for the value box and the label beside the rail.
    ui.spacing_mut().slider_width = (width - 140.0).max(100.0);
    let response = ui.add(
        egui::Slider::new(&mut at, first..=last.max(first + 1))
            .text("step")
            .clamping(egui::SliderClamping::Always),
    );
    if response.changed() {
        timeline.seek(at);
        timeline.restart_clock();
    }
    // Event marks: a tick under the slider's rail per event, its text on hover.
    let rail = response.rect;
    let span = (last.max(first + 1) - first) as f32;
    let rail_width = ui.spacing().slider_width;
    let painter = ui.painter();
    let pointer = ui.input(|i| i.pointer.hover_pos());
    let mut hovered: Vec<String> = Vec::new();
    // A tick under the rail at `step` (`length` long, in `color`), its text when the pointer
    // is within `reach` of it.
    let mut mark =
        |step: u64, length: f32, reach: f32, color: egui::Color32, text: &dyn Fn() -> String| {
            if step < first || step > last {
                return;
            }
            let x = rail.left() + rail_width * (step - first) as f32 / span;
            let top = rail.bottom() - length / 2.0 + 1.0;
            painter.line_segment(
                [egui::pos2(x, top), egui::pos2(x, top + length)],
                egui::Stroke::new(2.0, color),
            );
            if pointer.is_some_and(|p| (p.x - x).abs() < 4.0 && (p.y - top).abs() < reach) {
                hovered.push(text());
            }
        };
    for event in timeline.events() {
        mark(
            event.step,
            6.0,
            12.0,
            egui::Color32::from_rgb(240, 180, 60),
            &|| format!("step {}: {}", event.step, event.text),
        );
    }
    // Branches of this run: a taller blue tick where each forked off.
    for (branch, step) in timeline.branches() {
        mark(
            *step,
            10.0,
            14.0,
            egui::Color32::from_rgb(90, 160, 255),
            &|| {
                let name = branch.file_name().unwrap_or_default().to_string_lossy();
                format!("step {step}: branch {name} forked here")
            },
        );
    }
    if !hovered.is_empty() {
        egui::Tooltip::always_open(
            ui.ctx().clone(),
            ui.layer_id(),
            ui.scope_id().with("event marks"),
            egui::PopupAnchor::Pointer,
        )
        .show(|ui| {
            for text in &hovered {
                ui.label(text);
            }
        });
    }
}
