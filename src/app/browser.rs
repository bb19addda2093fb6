//! The run browser: the runs directory as `msbreg runs` lists it (preset, dataset, steps, last
//! kNN, size, parent), with Open, Pin, Delete per run and Compare for the ticked ones.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use eframe::egui;

use super::MsbregApp;
use super::compare::MAX_COMPARED;
use crate::session::catalog::{RunSummary, delete_run, list_runs, set_pinned};

const REFRESH: Duration = Duration::from_secs(2);

/// The browser's state.
#[derive(Default)]
pub struct Browser {
    pub open: bool,
    runs: Vec<RunSummary>,
    problems: Vec<String>,
    /// Ticked for Compare.
    pub selected: BTreeSet<PathBuf>,
    listed: Option<Instant>,
}

impl Browser {
    /// Lists `dir` again (at most every 2 s unless `force`d).
    pub fn refresh(&mut self, dir: &std::path::Path, force: bool) {
        if !force && self.listed.is_some_and(|at| at.elapsed() < REFRESH) {
            return;
        }
        self.listed = Some(Instant::now());
        match list_runs(dir) {
            Ok((runs, problems)) => {
                self.runs = runs;
                self.problems = problems;
            }
            Err(err) => {
                self.runs.clear();
                self.problems = vec![err.to_string()];
            }
        }
        let present: BTreeSet<PathBuf> = self.runs.iter().map(|r| r.path.clone()).collect();
        self.selected.retain(|p| present.contains(p));
    }

    pub fn runs(&self) -> &[RunSummary] {
        &self.runs
    }
}

enum Action {
    Open(PathBuf),
    Pin(PathBuf, bool),
    Delete(PathBuf),
    Compare,
}

/// The "Runs" window.
#[allow(clippy::too_many_lines)] // one table, its row of buttons, read top to bottom
pub fn browser_ui(app: &mut MsbregApp, ctx: &egui::Context) {
    if !app.browser.open {
        return;
    }
    let Some(dir) = app.runs_dir.clone() else {
        return;
    };
    app.browser.refresh(&dir, false);
    let current = app.latest().and_then(|s| s.folder.clone());
    let mut action = None;
    let mut open = app.browser.open;
    egui::Window::new("Runs")
        .open(&mut open)
        .default_size([760.0, 360.0])
        .show(ctx, |ui| {
            ui.label(format!("{}", dir.display()));
            egui::ScrollArea::vertical()
                .max_height(280.0)
                .show(ui, |ui| {
                    egui::Grid::new("runs").striped(true).show(ui, |ui| {
                        for head in [
                            "", "run", "preset", "dataset", "steps", "kNN", "size", "parent", "",
                        ] {
                            ui.label(egui::RichText::new(head).strong());
                        }
                        ui.end_row();
                        for run in &app.browser.runs {
                            let name = run.path.file_name().map_or_else(
                                || run.path.display().to_string(),
                                |n| n.to_string_lossy().into_owned(),
                            );
                            let mut ticked = app.browser.selected.contains(&run.path);
                            if ui
                                .checkbox(&mut ticked, "tick")
                                .on_hover_text(format!("Compare {name}"))
                                .changed()
                            {
                                if ticked {
                                    app.browser.selected.insert(run.path.clone());
                                } else {
                                    app.browser.selected.remove(&run.path);
                                }
                            }
                            let here = current.as_ref() == Some(&run.path);
                            ui.label(if here {
                                format!("{name} (on screen)")
                            } else {
                                name
                            });
                            ui.label(&run.preset);
                            ui.label(&run.dataset);
                            ui.label(run.steps.to_string());
                            ui.label(
                                run.knn_acc.map_or_else(
                                    || "-".to_owned(),
                                    |k| format!("{:.1}%", 100.0 * k),
                                ),
                            );
                            ui.label(format!("{:.1} MB", run.bytes as f64 / 1e6));
                            ui.label(match (&run.parent, run.parent_step) {
                                (Some(p), Some(s)) => format!(
                                    "{} @ {s}",
                                    p.file_name().map_or_else(
                                        || p.display().to_string(),
                                        |n| n.to_string_lossy().into_owned()
                                    )
                                ),
                                _ => "-".to_owned(),
                            });
                            ui.horizontal(|ui| {
                                if ui.button("Open").clicked() {
                                    action = Some(Action::Open(run.path.clone()));
                                }
                                let pin = if run.pinned { "Unpin" } else { "Pin" };
                                if ui.button(pin).clicked() {
                                    action = Some(Action::Pin(run.path.clone(), !run.pinned));
                                }
                                if ui.add_enabled(!here, egui::Button::new("Delete")).clicked() {
                                    action = Some(Action::Delete(run.path.clone()));
                                }
                            });
                            ui.end_row();
                        }
                    });
                });
            for problem in &app.browser.problems {
                ui.label(egui::RichText::new(problem).weak());
            }
            let chosen = app.browser.selected.len();
            let compare = ui.add_enabled(
                (2..=MAX_COMPARED).contains(&chosen),
                egui::Button::new(format!("Compare {chosen} ticked")),
            );
            if compare.clicked() {
                action = Some(Action::Compare);
            }
        });
    app.browser.open = open;
    match action {
        Some(Action::Open(path)) => {
            app.browser.open = false;
            app.compare = None;
            app.open_folder(&path);
        }
        Some(Action::Pin(path, pinned)) => {
            if let Err(err) = set_pinned(&path, pinned) {
                app.error = Some(err.to_string());
            }
            app.browser.refresh(&dir, true);
        }
        Some(Action::Delete(path)) => {
            if let Err(err) = delete_run(&path) {
                app.error = Some(err.to_string());
            }
            app.browser.refresh(&dir, true);
        }
        Some(Action::Compare) => {
            let dirs: Vec<PathBuf> = app.browser.selected.iter().cloned().collect();
            // Out of the way of the comparison it opens.
            app.browser.open = false;
            app.compare_runs(&dirs);
        }
        None => {}
    }
}

/// The toolbar's entry: opens the browser.
pub fn browser_button(app: &mut MsbregApp, ui: &mut egui::Ui) {
    if app.runs_dir.is_some()
        && ui
            .button("Runs")
            .on_hover_text("The runs directory: open, compare, pin, delete")
            .clicked()
    {
        app.browser.open = !app.browser.open;
    }
}
