//! The left panel: what to train (dataset, model, views, batch, seed), run controls, the three
//! forces with switches and log-scale weights, predictor / EMA / tau / learning rate, presets.
//! Every change becomes one [`Command`] carrying what the user chose; the trainer turns it
//! into a config and reports what it uses, which the controls then show.

use eframe::egui;

use super::MsbregApp;
use crate::config::{DISPLAY_POINTS, DataChoice, ModelChoice, Preset};
use crate::method::forces::CentroidMode;
use crate::trainer::Command;

/// The left panel.
pub fn controls_ui(app: &mut MsbregApp, ui: &mut egui::Ui) {
    ui.heading("msbreg");
    run_controls_ui(app, ui);
    // A lesson shows the panels it names.
    let shows = |app: &MsbregApp, panel: &str| {
        app.lesson
            .as_ref()
            .is_none_or(|player| player.lesson.shows(panel))
    };
    if shows(app, "data") {
        ui.separator();
        workload_ui(app, ui);
    }
    if shows(app, "forces") {
        ui.separator();
        forces_ui(app, ui);
    }
    if shows(app, "presets") {
        ui.separator();
        presets_ui(app, ui);
    }
    ui.separator();
    save_lesson_ui(app, ui);
}

/// "Save as lesson": the set-up on screen (data, seed, forces, learning rate) as a lesson
/// file that opens the same picture elsewhere, in the run's folder (else the working folder).
fn save_lesson_ui(app: &mut MsbregApp, ui: &mut egui::Ui) {
    if !ui
        .button("Save as lesson")
        .on_hover_text("Write this set-up as a lesson file (msbreg app --lesson FILE opens it)")
        .clicked()
    {
        return;
    }
    let step = app.latest().map_or(0, |s| s.step);
    let dir = app
        .latest()
        .and_then(|s| s.folder.clone())
        .unwrap_or_else(|| std::path::PathBuf::from("."));
    let path = dir.join(format!("lesson-step-{step:06}.toml"));
    let written = crate::config::lesson::Lesson::save_text(
        &app.settings,
        &app.dynamics,
        app.learning_rate,
        step,
    )
    .and_then(|text| std::fs::write(&path, text).map_err(|e| e.to_string()));
    app.note(match written {
        Ok(()) => format!("saved the lesson {}", path.display()),
        Err(err) => format!("the lesson was not saved ({}): {err}", path.display()),
    });
}

fn run_controls_ui(app: &mut MsbregApp, ui: &mut egui::Ui) {
    let running = app.latest().is_some_and(|s| s.running);
    ui.horizontal(|ui| {
        let label = if running { "Pause" } else { "Start" };
        if ui
            .button(label)
            .on_hover_text("Space: start or pause training")
            .clicked()
        {
            app.send(if running {
                Command::Pause
            } else {
                Command::Run
            });
        }
        if ui
            .button("Step")
            .on_hover_text("S: one training step")
            .clicked()
        {
            app.send(Command::Step);
        }
        if ui
            .button("Reset")
            .on_hover_text("R: a fresh run from the seed, keeping the forces")
            .clicked()
        {
            app.send(Command::Reset);
        }
    });
}

fn workload_ui(app: &mut MsbregApp, ui: &mut egui::Ui) {
    ui.label(egui::RichText::new("Data and model").strong());
    let mut settings = app.settings;
    egui::ComboBox::from_label("Dataset")
        .selected_text(settings.data.label())
        .show_ui(ui, |ui| {
            for choice in DataChoice::ALL {
                ui.selectable_value(&mut settings.data, choice, choice.label());
            }
        });
    if settings.data != app.settings.data
        && settings.data.is_sandbox() != app.settings.data.is_sandbox()
    {
        // Sandbox and images have different sensible batch sizes.
        settings.batch_size = if settings.data.is_sandbox() { 256 } else { 64 };
    }
    ui.add_enabled_ui(!settings.data.is_sandbox(), |ui| {
        egui::ComboBox::from_label("Model")
            .selected_text(if settings.data.is_sandbox() {
                "MLP (sandbox)"
            } else {
                settings.model.label()
            })
            .show_ui(ui, |ui| {
                for choice in ModelChoice::ALL {
                    ui.selectable_value(&mut settings.model, choice, choice.label());
                }
            });
    });
    // Sliders that start a fresh run act when let go (or on a click or key), not on every
    // frame of a drag: each value would otherwise start a run of its own.
    let mut pending = app.pending_settings.unwrap_or(settings);
    let views = ui.add(egui::Slider::new(&mut pending.views, 2..=8).text("Views M"));
    let batch = ui.add(
        egui::Slider::new(&mut pending.batch_size, 8..=1024)
            .logarithmic(true)
            .text("Batch size N"),
    );
    let mut points = pending.display_points.max(DISPLAY_POINTS);
    let shown = ui
        .add(
            egui::Slider::new(&mut points, DISPLAY_POINTS..=10_000)
                .logarithmic(true)
                .text("Shown points"),
        )
        .on_hover_text(format!(
            "Held-out points drawn: the first {DISPLAY_POINTS} with their views and arrows, the \
             others refreshed a chunk at a time (a fresh run)"
        ));
    if shown.changed() {
        pending.display_points = points;
    }
    let dragging = views.dragged() || batch.dragged() || shown.dragged();
    if dragging {
        app.pending_settings = Some(pending);
    } else {
        app.pending_settings = None;
        settings.views = pending.views;
        settings.batch_size = pending.batch_size;
        settings.display_points = pending.display_points;
    }
    ui.horizontal(|ui| {
        let label = ui.label("Seed");
        ui.add(egui::DragValue::new(&mut settings.seed))
            .labelled_by(label.id);
    });
    if settings != app.settings {
        app.settings = settings;
        // The trainer makes the config; the new run keeps the forces in force and takes its
        // own learning rate, which the controls show once the trainer reports it.
        app.send(Command::Choose(settings));
    }
}

fn force_ui(ui: &mut egui::Ui, force: &mut crate::method::forces::Force, name: &str, help: &str) {
    ui.checkbox(&mut force.on, name).on_hover_text(help);
    ui.add_enabled(
        force.on,
        egui::Slider::new(&mut force.weight, 1e-3..=10.0)
            .logarithmic(true)
            .text(format!("{name} weight")),
    );
}

fn forces_ui(app: &mut MsbregApp, ui: &mut egui::Ui) {
    ui.label(egui::RichText::new("Forces").strong());
    let mut dynamics = app.dynamics;
    force_ui(
        ui,
        &mut dynamics.centroid,
        "Attraction",
        "Multiview centroid loss: pulls the views of one image together",
    );
    let mut leave_one_out = dynamics.centroid_mode == CentroidMode::LeaveOneOut;
    ui.checkbox(&mut leave_one_out, "Leave-one-out centroid")
        .on_hover_text("Each view is pulled to the centroid of the other views (BYOL-style)");
    dynamics.centroid_mode = if leave_one_out {
        CentroidMode::LeaveOneOut
    } else {
        CentroidMode::Mean
    };
    force_ui(
        ui,
        &mut dynamics.singular_value,
        "Global dispersion",
        "Singular value loss: spreads the cloud toward a uniform spectrum",
    );
    force_ui(
        ui,
        &mut dynamics.brownian,
        "Local dispersion",
        "Brownian loss: a random kick per image",
    );
    let vicreg_on: Vec<&str> = [
        (dynamics.variance.on, "variance"),
        (dynamics.covariance.on, "covariance"),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, name)| *name)
    .collect();
    let header = if vicreg_on.is_empty() {
        "VICReg terms".to_owned()
    } else {
        format!("VICReg terms ({} on)", vicreg_on.join(", "))
    };
    egui::CollapsingHeader::new(header)
        .id_salt("vicreg terms")
        .default_open(dynamics.variance.on || dynamics.covariance.on)
        .show(ui, |ui| {
            force_ui(
                ui,
                &mut dynamics.variance,
                "Variance",
                "VICReg: holds each dimension's spread over the batch up to a uniform cloud's \
                 (no arrows drawn)",
            );
            force_ui(
                ui,
                &mut dynamics.covariance,
                "Covariance",
                "VICReg: decorrelates the dimensions (no arrows drawn)",
            );
        });
    ui.checkbox(&mut dynamics.predictor, "Predictor")
        .on_hover_text("Pass the online projection through the predictor head");
    ui.checkbox(&mut dynamics.ema, "EMA target")
        .on_hover_text("Targets from an exponential moving average of the online network");
    ui.add_enabled(
        dynamics.ema,
        egui::Slider::new(&mut dynamics.tau, 0.0..=1.0)
            .text("EMA tau")
            .fixed_decimals(3),
    );
    let mut learning_rate = app.learning_rate;
    ui.add(
        egui::Slider::new(&mut learning_rate, 1e-5..=1e-1)
            .logarithmic(true)
            .text("Learning rate"),
    );
    app.change_forces(dynamics, learning_rate);
}

fn presets_ui(app: &mut MsbregApp, ui: &mut egui::Ui) {
    ui.label(egui::RichText::new("Presets").strong())
        .on_hover_text("Set the forces of a preset on the run as it is (no reset)");
    ui.horizontal_wrapped(|ui| {
        for preset in Preset::ALL {
            if ui
                .button(preset.name())
                .on_hover_text(preset.describe())
                .clicked()
            {
                app.change_forces(preset.dynamics(), app.learning_rate);
            }
        }
    });
}
