//! Compare: 2 to 4 run folders side by side. Split particle views with one shared camera and
//! one step cursor (each view shows its run's newest recorded frame at or before it), metric
//! curves overlaid with a colour and a legend entry per run, and a table of the last values.
//! Every run is read from its folder (recording and `metrics.jsonl`) and followed while it is
//! written, so the app's live run can be compared with its branches as they train.
//!
//! The views are drawn with egui's painter: the wgpu particle renderer holds one frame's
//! geometry at a time, and four views of 512 points are cheap to paint.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use eframe::egui;
use egui_plot::{Legend, Line, Plot, PlotPoints, VLine};

use super::opened::Opened;
use super::view::{frame_geometry, paint_with_egui, steer_camera};
use super::{MsbregApp, Series};
use crate::projection::Frame;
use crate::render::RenderStyle;
use crate::session::Recording;

/// The most runs compared at once.
pub const MAX_COMPARED: usize = 4;

/// Picks one series of a run's history.
type Pick = fn(&super::History) -> &Series;

/// One colour per compared run.
const COLORS: [egui::Color32; MAX_COMPARED] = [
    egui::Color32::from_rgb(90, 170, 255),
    egui::Color32::from_rgb(255, 140, 60),
    egui::Color32::from_rgb(110, 210, 110),
    egui::Color32::from_rgb(230, 90, 200),
];

/// A compared run.
pub struct ComparedRun {
    pub opened: Opened,
    recording: Option<Recording>,
    pub name: String,
    pub color: egui::Color32,
    /// Why its recording cannot be shown (none, a newer format, a damaged chunk).
    pub problem: Option<String>,
}

impl ComparedRun {
    /// Its newest frame at or before `step` (its last frame when `step` is `None`).
    fn frame_at(&mut self, step: Option<u64>) -> Option<Arc<Frame>> {
        let recording = self.recording.as_mut()?;
        if let Err(err) = recording.refresh() {
            self.problem = Some(err.to_string());
        }
        let step = step.or_else(|| recording.step_range().map(|r| r.1))?;
        match recording.frame_at(step) {
            Ok(frame) => frame.map(|f| f.frame),
            Err(err) => {
                self.problem = Some(err.to_string());
                None
            }
        }
    }

    fn range(&self) -> Option<(u64, u64)> {
        self.recording.as_ref()?.step_range()
    }
}

/// See the module docs.
pub struct Compare {
    pub runs: Vec<ComparedRun>,
    /// The shared step (`None`: each run at its newest frame).
    pub cursor: Option<u64>,
}

impl Compare {
    /// Opens `dirs` (2 to 4 run folders).
    pub fn open(dirs: &[PathBuf]) -> Result<Self, String> {
        if !(2..=MAX_COMPARED).contains(&dirs.len()) {
            return Err(format!(
                "choose 2 to {MAX_COMPARED} runs to compare ({} chosen)",
                dirs.len()
            ));
        }
        let mut runs = Vec::new();
        for (i, dir) in dirs.iter().enumerate() {
            let opened = Opened::open(dir, u64::MAX / 2 + i as u64)
                .map_err(|e| format!("cannot open {}: {e}", dir.display()))?;
            let (recording, problem) = match Recording::open(dir) {
                Ok(recording) => (Some(recording), None),
                Err(err) => (None, Some(err.to_string())),
            };
            runs.push(ComparedRun {
                recording,
                problem,
                name: run_name(dir),
                color: COLORS[i],
                opened,
            });
        }
        Ok(Self { runs, cursor: None })
    }

    pub fn dirs(&self) -> Vec<PathBuf> {
        self.runs.iter().map(|r| r.opened.dir.clone()).collect()
    }

    /// The steps any of the runs recorded.
    pub fn range(&self) -> Option<(u64, u64)> {
        let ranges: Vec<(u64, u64)> = self.runs.iter().filter_map(ComparedRun::range).collect();
        Some((
            ranges.iter().map(|r| r.0).min()?,
            ranges.iter().map(|r| r.1).max()?,
        ))
    }
}

/// The folder's name, or its path when it has none.
fn run_name(dir: &Path) -> String {
    dir.file_name().map_or_else(
        || dir.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// The middle of the window while comparing: the shared cursor and the split views.
pub fn compare_view_ui(app: &mut MsbregApp, ui: &mut egui::Ui) {
    let Some(compare) = &mut app.compare else {
        return;
    };
    for run in &mut compare.runs {
        run.opened.poll();
    }
    let mut close = false;
    ui.horizontal_wrapped(|ui| {
        ui.label(egui::RichText::new(format!("Comparing {} runs", compare.runs.len())).strong());
        close = ui.button("Close comparison").clicked();
    });
    if let Some((first, last)) = compare.range() {
        ui.horizontal(|ui| {
            let mut at = compare.cursor.unwrap_or(last);
            // Room for the value box, the label and the button beside the rail.
            ui.spacing_mut().slider_width = (ui.available_width() - 260.0).max(100.0);
            let slider = ui
                .add(egui::Slider::new(&mut at, first..=last.max(first + 1)).text("compared step"));
            if slider.changed() {
                compare.cursor = Some(at);
            }
            if ui
                .add_enabled(compare.cursor.is_some(), egui::Button::new("Newest"))
                .clicked()
            {
                compare.cursor = None;
            }
        });
    }
    let available = ui.available_size();
    let n = compare.runs.len().max(1);
    let width = (available.x - 4.0 * (n - 1) as f32) / n as f32;
    let style = RenderStyle {
        point_size_px: app.view.point_size_px,
        opacity: app.view.opacity,
    };
    app.camera.mode = app.view.mode.camera_mode();
    ui.horizontal_top(|ui| {
        for run in &mut compare.runs {
            let (rect, response) = ui.allocate_exact_size(
                egui::vec2(width, available.y),
                egui::Sense::click_and_drag(),
            );
            // One camera for all: dragging any view turns them all.
            steer_camera(&mut app.camera, &response, ui);
            ui.painter()
                .rect_filled(rect, 0.0, egui::Color32::from_gray(18));
            let frame = run.frame_at(compare.cursor);
            if let Some(frame) = &frame {
                let (particles, _) = frame_geometry(frame, &run.opened.info.labels, &app.view);
                paint_with_egui(ui, rect, &app.camera, &particles, style);
            }
            let caption = match (&frame, &run.problem) {
                (Some(frame), _) => format!("{}  step {}", run.name, frame.step),
                (None, Some(problem)) => format!("{}: {problem}", run.name),
                (None, None) => format!("{}  (nothing recorded yet)", run.name),
            };
            let galley = ui.painter().layout(
                caption,
                egui::FontId::proportional(14.0),
                run.color,
                rect.width() - 16.0,
            );
            ui.painter()
                .galley(rect.left_top() + egui::vec2(8.0, 6.0), galley, run.color);
        }
    });
    if close {
        app.compare = None;
    }
}

/// The right panel while comparing: curves overlaid per run, and the last values.
pub fn compare_plots_ui(compare: &Compare, ui: &mut egui::Ui) {
    ui.label(egui::RichText::new("Last values").strong());
    egui::Grid::new("compare table")
        .striped(true)
        .show(ui, |ui| {
            for head in [
                "run",
                "step",
                "kNN",
                "rank / D",
                "collapse",
                "uniformity",
                "alignment",
            ] {
                ui.label(egui::RichText::new(head).strong());
            }
            ui.end_row();
            for run in &compare.runs {
                let h = &run.opened.history;
                ui.colored_label(run.color, &run.name);
                let step = h.loss.points().last().map_or(0.0, |p| p.x);
                ui.label(format!("{step:.0}"));
                for series in [
                    &h.knn_acc,
                    &h.effective_rank_per_dim,
                    &h.collapse_level,
                    &h.uniformity,
                    &h.alignment,
                ] {
                    ui.label(last(series));
                }
                ui.end_row();
            }
        });
    ui.label(
        egui::RichText::new(
            "Linear probe: `msbreg eval --run DIR` on a run with checkpoints (not measured here)",
        )
        .weak(),
    );
    let cursor = compare.cursor;
    let charts: [(&str, Pick); 6] = [
        ("loss", |h| &h.loss),
        ("effective rank / D", |h| &h.effective_rank_per_dim),
        ("collapse level", |h| &h.collapse_level),
        ("uniformity", |h| &h.uniformity),
        ("alignment", |h| &h.alignment),
        ("kNN accuracy", |h| &h.knn_acc),
    ];
    for (title, series) in charts {
        ui.label(egui::RichText::new(title).strong());
        Plot::new(format!("compare {title}"))
            .height(120.0)
            .legend(Legend::default())
            .allow_scroll(false)
            .show(ui, |plot_ui| {
                for run in &compare.runs {
                    plot_ui.line(
                        Line::new(
                            run.name.clone(),
                            PlotPoints::Borrowed(series(&run.opened.history).points()),
                        )
                        .color(run.color),
                    );
                }
                if let Some(step) = cursor {
                    plot_ui.vline(VLine::new("compared step", step as f64).width(1.5));
                }
            });
    }
}

fn last(series: &Series) -> String {
    series
        .points()
        .last()
        .map_or_else(|| "-".to_owned(), |p| format!("{:.3}", p.y))
}
