//! The app driven through its widgets by label (egui_kittest), with the real trainer thread on
//! the CPU backend and the particle sandbox (fast). The trainer alone: `tests/trainer.rs`.

mod kit;

use std::time::Duration;

use eframe::egui;
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};

use msbreg::app::{AppOptions, MsbregApp};
use msbreg::backend::Backend;
use msbreg::config::{Preset, TrainConfig, Workload, WorkloadSettings};
use msbreg::data::sandbox::SandboxKind;
use msbreg::data::source::DataSource;
use msbreg::method::Dynamics;
use msbreg::trainer::Command;

const WAIT: Duration = Duration::from_mins(1);

fn cpu() -> Backend {
    Backend::flex("tests")
}

fn sandbox_app(running: bool) -> Harness<'static, MsbregApp> {
    kit::harness(kit::sandbox_options(None, None, running))
}

/// The slider labelled `label` (its value box carries the same label).
fn slider<'a>(harness: &'a Harness<'static, MsbregApp>, label: &'a str) -> egui_kittest::Node<'a> {
    harness
        .get_all_by_label(label)
        .find(|node| node.accesskit_node().role() == egui::accesskit::Role::Slider)
        .unwrap_or_else(|| panic!("no slider labelled {label}"))
}

fn last_dynamics(app: &MsbregApp) -> Dynamics {
    match app.sent.last() {
        Some(Command::SetDynamics(dynamics)) => *dynamics,
        other => panic!("expected SetDynamics, the last command was {other:?}"),
    }
}

#[test]
fn each_force_switch_and_slider_sends_its_command() {
    let mut harness = sandbox_app(false);
    harness.run_steps(3);
    assert!(
        harness.state_mut().poll_until(WAIT, |_| true),
        "no first snapshot"
    );

    harness.get_by_label("Attraction").click();
    harness.run_steps(2);
    let d = last_dynamics(harness.state());
    assert!(!d.centroid.on && d.singular_value.on && d.brownian.on);

    harness.get_by_label("Global dispersion").click();
    harness.run_steps(2);
    let d = last_dynamics(harness.state());
    assert!(!d.singular_value.on && d.brownian.on);

    harness.get_by_label("Local dispersion").click();
    harness.run_steps(2);
    assert!(!last_dynamics(harness.state()).brownian.on);

    harness.get_by_label("Predictor").click();
    harness.run_steps(2);
    assert!(!last_dynamics(harness.state()).predictor);

    harness.get_by_label("EMA target").click();
    harness.run_steps(2);
    assert!(!last_dynamics(harness.state()).ema);

    harness.get_by_label("Attraction").click();
    harness.run_steps(2);
    slider(&harness, "Attraction weight").set_value_accesskit(0.5);
    harness.run_steps(2);
    let d = last_dynamics(harness.state());
    assert!(
        d.centroid.on && (d.centroid.weight - 0.5).abs() < 1e-6,
        "{d:?}"
    );

    slider(&harness, "Learning rate").set_value_accesskit(0.003);
    harness.run_steps(2);
    match harness.state().sent.last() {
        Some(Command::SetLearningRate(lr)) => assert!((lr - 0.003).abs() < 1e-9, "{lr}"),
        other => panic!("expected SetLearningRate, got {other:?}"),
    }

    // A preset is one click: the collapse forces.
    harness.get_by_label("collapse").click();
    harness.run_steps(2);
    assert_eq!(last_dynamics(harness.state()), Preset::Collapse.dynamics());

    // And the trainer runs with what was sent.
    harness.get_by_label("Step").click();
    harness.run_steps(2);
    let stepped = harness.state_mut().poll_until(WAIT, |s| s.step == 1);
    assert!(stepped, "one step after Step");
    let snapshot = harness.state().latest().expect("a snapshot");
    assert_eq!(snapshot.dynamics, Preset::Collapse.dynamics());
}

#[test]
fn pause_stops_the_step_counter_and_reset_starts_a_fresh_run() {
    let mut harness = sandbox_app(true);
    harness.run_steps(2);
    let app = harness.state_mut();
    assert!(
        app.poll_until(WAIT, |s| s.running && s.step >= 5),
        "training starts"
    );
    let first_run = app.latest().expect("snapshot").info.run_id;
    harness.run_steps(2);
    harness.get_by_label("Pause").click();
    harness.run_steps(2);
    let app = harness.state_mut();
    assert!(app.poll_until(WAIT, |s| !s.running), "paused");
    let paused_at = app.latest().expect("snapshot").step;
    std::thread::sleep(Duration::from_millis(500));
    app.poll();
    assert_eq!(
        app.latest().expect("snapshot").step,
        paused_at,
        "no steps while paused"
    );

    // Space resumes, space pauses again.
    harness.key_press(egui::Key::Space);
    harness.run_steps(2);
    assert_eq!(harness.state().sent.last(), Some(&Command::Run));
    let app = harness.state_mut();
    assert!(
        app.poll_until(WAIT, |s| s.running && s.step > paused_at),
        "resumed"
    );

    harness.get_by_label("Reset").click();
    harness.run_steps(2);
    let app = harness.state_mut();
    assert!(
        app.poll_until(WAIT, |s| s.info.run_id != first_run),
        "a fresh run"
    );
    let snapshot = app.latest().expect("snapshot");
    assert!(
        snapshot.step < paused_at,
        "the fresh run starts from step 0"
    );
    assert!(snapshot.frame.is_some(), "the fresh run is on screen");
}

#[test]
fn a_failed_new_run_shows_its_error_and_keeps_the_run_on_screen() {
    let mut harness = sandbox_app(false);
    harness.run_steps(2);
    assert!(harness.state_mut().poll_until(WAIT, |s| s.frame.is_some()));
    let run_id = harness.state().latest().expect("snapshot").info.run_id;

    let mut config = TrainConfig::from_preset(Preset::Msbreg);
    config.data = DataSource::parse("mnist:/nonexistent/mnist").expect("parses");
    harness
        .state_mut()
        .send(Command::NewRun(Box::new(Workload::Images(config))));
    assert!(
        harness.state_mut().poll_until(WAIT, |s| s.error.is_some()),
        "an error comes back"
    );
    let app = harness.state();
    let error = app.error().expect("error kept").to_owned();
    assert!(error.contains("/nonexistent/mnist"), "{error}");
    let snapshot = app.latest().expect("snapshot");
    assert_eq!(snapshot.info.run_id, run_id, "the old run stays");
    assert!(snapshot.frame.is_some());
    harness.run_steps(2);
    let shown = harness.query_by_label_contains("/nonexistent/mnist");
    assert!(shown.is_some(), "the error is shown in place");
    harness.get_by_label("Dismiss").click();
    harness.run_steps(2);
    assert!(harness.state().error().is_none());
}

/// The whole app rendered by egui's wgpu renderer with the particle renderer installed
/// (lavapipe here), in each view mode, with tethers and the sphere wireframe: the class
/// colours appear in the view. The images are kept in `target/tmp/app-views/` to be looked at.
#[test]
fn every_view_mode_renders_the_particles_through_wgpu() {
    if std::env::var("MSBREG_SKIP_WGPU_TESTS").is_ok_and(|v| v == "1") {
        eprintln!("skipped (MSBREG_SKIP_WGPU_TESTS=1)");
        return;
    }
    let options = AppOptions {
        backend: cpu(),
        settings: WorkloadSettings::sandbox(SandboxKind::Gaussians),
        running: false,
        frame_stats: None,
        runs: None,
        open: None,
        compare: Vec::new(),
        lesson: None,
    };
    let render_state = egui_kittest::wgpu::create_render_state(
        egui_kittest::wgpu::default_wgpu_setup(),
        eframe::egui_wgpu::RendererOptions::PREDICTABLE,
    );
    let ctx = egui::Context::default();
    let app = MsbregApp::new(&ctx, Some(&render_state), options);
    let mut harness = Harness::builder()
        .with_size(egui::vec2(1400.0, 900.0))
        .renderer(egui_kittest::wgpu::WgpuTestRenderer::from_render_state(
            render_state,
        ))
        .build_ui_state(|ui, app: &mut MsbregApp| app.ui(ui), app);
    harness.run_steps(2);
    assert!(harness.state_mut().poll_until(WAIT, |s| s.frame.is_some()));
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("app-views");
    std::fs::create_dir_all(&dir).expect("image dir");
    let mut views = Vec::new();
    for (label, file) in [
        ("2D PCA", "pca2d"),
        ("3D PCA", "pca3d"),
        ("Sphere", "sphere"),
    ] {
        harness.get_by_label(label).click();
        harness.run_steps(2);
        if file == "sphere" {
            harness.get_by_label("Tethers").click();
            harness.run_steps(2);
        }
        let image = harness.render().expect("renders");
        image.save(dir.join(format!("{file}.png"))).expect("saves");
        // Class 0 and class 1 of the palette (blue, orange), in the middle of the window.
        let hits = |target: [u8; 3]| {
            image
                .enumerate_pixels()
                .filter(|(x, y, _)| (400..1000).contains(x) && (100..850).contains(y))
                .filter(|(_, _, p)| {
                    (0..3).all(|c| (i32::from(p.0[c]) - i32::from(target[c])).abs() < 12)
                })
                .count()
        };
        // Drawn at the default opacity 0.85 over the view's background (grey 18).
        let blended = |rgb: [u8; 3]| rgb.map(|c| (0.85 * f32::from(c) + 0.15 * 18.0).round() as u8);
        let blue = hits(blended(msbreg::app::class_color(0)));
        let orange = hits(blended(msbreg::app::class_color(1)));
        assert!(
            blue > 30 && orange > 30,
            "{file}: blue {blue}, orange {orange} pixels"
        );
        views.push((file, image));
    }
    // Each mode draws its own picture: the particle view (the middle of the window) differs
    // between every two modes in a good share of its pixels.
    for (i, (a_name, a)) in views.iter().enumerate() {
        for (b_name, b) in &views[i + 1..] {
            let differing = a
                .enumerate_pixels()
                .filter(|(x, y, _)| (400..1000).contains(x) && (100..850).contains(y))
                .filter(|(x, y, p)| {
                    let q = b.get_pixel(*x, *y);
                    (0..3).any(|c| (i32::from(p.0[c]) - i32::from(q.0[c])).abs() > 24)
                })
                .count();
            assert!(
                differing > 2_000,
                "{a_name} and {b_name} draw nearly the same picture ({differing} pixels differ)"
            );
        }
    }
}

#[test]
fn the_controls_show_what_the_trainer_uses() {
    let mut harness = sandbox_app(false);
    harness.run_steps(2);
    assert!(harness.state_mut().poll_until(WAIT, |s| s.frame.is_some()));
    let in_force = harness.state().latest().expect("snapshot").dynamics;

    // A value the trainer refuses (typed into a weight's box, say): the control springs back
    // to the weight in force once the trainer has answered.
    let mut refused = in_force;
    refused.centroid.weight = -1.0;
    let app = harness.state_mut();
    app.dynamics = refused;
    app.send(Command::SetDynamics(refused));
    assert!(
        app.poll_until(WAIT, |s| s.error.is_some()),
        "the refusal is reported"
    );
    assert_eq!(
        app.dynamics, in_force,
        "the control shows the weight in force"
    );

    // A new dataset: the run's own learning rate appears in the control.
    harness.state_mut().learning_rate = 0.05;
    let settings = WorkloadSettings {
        data: msbreg::config::DataChoice::SandboxRings,
        ..harness.state().settings
    };
    let app = harness.state_mut();
    app.send(Command::Choose(settings));
    let first = app.latest().expect("snapshot").info.run_id;
    assert!(
        app.poll_until(WAIT, |s| s.info.run_id != first),
        "a new run"
    );
    let expected = settings.workload();
    let Workload::Sandbox(expected) = expected else {
        panic!("a sandbox workload");
    };
    assert_eq!(app.learning_rate, expected.learning_rate);
    assert_eq!(
        app.dynamics, in_force,
        "the forces carry over to the new run"
    );
}

/// The force arrows: each toolbar switch turns its force's arrows on and off, the trainer
/// sends the forces with every frame, and a force switched off in the controls has none.
#[test]
fn arrows_toggle_per_force_and_follow_the_forces_switched_on() {
    let mut harness = sandbox_app(true);
    kit::run_until(&mut harness, "a frame with arrows", |app| {
        app.latest()
            .is_some_and(|s| s.arrows.is_some() && s.step >= 5)
    });
    harness.run_steps(3);
    assert_eq!(harness.state().view.arrows, [false; 3]);
    for (f, label) in ["attract", "global", "local"].into_iter().enumerate() {
        harness.get_by_label(label).click();
        harness.run_steps(2);
        assert!(harness.state().view.arrows[f], "{label} on");
    }
    harness.get_by_label("global").click();
    harness.run_steps(2);
    assert_eq!(harness.state().view.arrows, [true, false, true]);
    let points = harness
        .state()
        .latest()
        .map_or(0, |s| s.frame.as_ref().map_or(0, |f| f.points.len()));
    let arrows = harness
        .state()
        .latest()
        .and_then(|s| s.arrows.clone())
        .expect("arrows");
    for vectors in &arrows.vectors {
        assert_eq!(vectors.len(), points);
    }
    let moving = |v: &[[f32; 3]]| v.iter().any(|a| a.iter().any(|x| x.abs() > 0.0));
    assert!(moving(&arrows.vectors[2]), "the Brownian kicks are drawn");
    // The Brownian force off: its arrows vanish.
    harness.get_by_label("Local dispersion").click();
    kit::run_until(&mut harness, "no Brownian force", |app| {
        app.latest()
            .and_then(|s| s.arrows.clone())
            .is_some_and(|a| !a.vectors[2].iter().flatten().any(|x| *x != 0.0))
    });
    // The shares plot has the three curves.
    let shares = &harness.state().history().force_shares;
    assert!(shares.iter().all(|s| !s.points().is_empty()));
}

/// Save PNG writes the window, Save view PNG the particle view alone, into the run's folder;
/// both decode again, the view smaller than the window.
#[test]
fn save_png_writes_the_window_and_the_view() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runs = msbreg::trainer::RunsDir {
        dir: dir.path().join("runs"),
        cap_bytes: 1 << 40,
    };
    let mut harness = kit::harness(kit::sandbox_options(Some(runs), None, true));
    kit::run_until(&mut harness, "a kept run", |app| {
        app.latest()
            .is_some_and(|s| s.folder.is_some() && s.step >= 3)
    });
    harness.run_steps(3);
    let saved = |harness: &mut Harness<'static, MsbregApp>, before: usize| -> std::path::PathBuf {
        kit::run_until(harness, "the picture saved", |app| {
            app.notes()[before..]
                .iter()
                .any(|n| n.starts_with("saved "))
        });
        let note = harness.state().notes()[before..]
            .iter()
            .find(|n| n.starts_with("saved "))
            .expect("a note")
            .clone();
        std::path::PathBuf::from(note.trim_start_matches("saved "))
    };
    let before = harness.state().notes().len();
    harness.get_by_label("Save PNG").click();
    let window = saved(&mut harness, before);
    let folder = harness
        .state()
        .latest()
        .and_then(|s| s.folder.clone())
        .expect("kept");
    assert!(
        window.starts_with(folder.join("shots")),
        "{}",
        window.display()
    );
    let before = harness.state().notes().len();
    harness.get_by_label("Save view PNG").click();
    let view = saved(&mut harness, before);
    let (ww, wh) = image::image_dimensions(&window).expect("the window PNG decodes");
    let (vw, vh) = image::image_dimensions(&view).expect("the view PNG decodes");
    assert!(ww > 100 && wh > 100, "{ww}x{wh}");
    assert!(
        vw < ww && vh < wh && vw > 50 && vh > 50,
        "{vw}x{vh} within {ww}x{wh}"
    );
    let pixels = image::open(&view).expect("decodes").to_rgb8();
    assert!(
        pixels.pixels().any(|p| p.0.iter().any(|&c| c > 80)),
        "particles in the view"
    );
}

/// The lesson's callout in the view (class, text), if any.
fn pointer(harness: &Harness<'static, MsbregApp>) -> Option<(Option<u32>, String)> {
    harness
        .state()
        .lesson
        .as_ref()
        .and_then(|p| p.pointer.clone())
}

/// A built-in lesson: its set-up reaches the trainer before the first step, Next enters each
/// stage and its actions (at once, or at their step) reach the trainer as commands, the
/// panels it does not name are hidden; Save as lesson writes a file that reopens to the same
/// set-up.
#[test]
fn a_lesson_advances_through_its_stages_and_its_actions_reach_the_trainer() {
    use msbreg::config::lesson::Lesson;
    let dir = tempfile::tempdir().expect("tempdir");
    let lesson = Lesson::load("attraction-collapses").expect("built in");
    let mut options = kit::sandbox_options(
        Some(msbreg::trainer::RunsDir {
            dir: dir.path().join("runs"),
            cap_bytes: 1 << 40,
        }),
        None,
        true,
    );
    options.lesson = Some(lesson.clone());
    let mut harness = kit::harness(options);
    kit::run_until(&mut harness, "the lesson's forces in force", |app| {
        app.latest().is_some_and(|s| s.dynamics == lesson.dynamics)
    });
    harness.run_steps(3);
    let app = harness.state();
    assert!(
        !app.latest().is_some_and(|s| s.running),
        "a lesson opens paused"
    );
    assert_eq!(
        app.latest().map(|s| s.step),
        Some(0),
        "no step before its forces"
    );
    assert_eq!(
        app.view.arrows,
        [true, false, false],
        "stage 1 shows the attraction"
    );
    assert!(
        harness.query_by_label("Dataset").is_none(),
        "the data panel is hidden"
    );
    harness.get_by_label_contains("stage 1 of 3");

    // Stage 2 runs, and pauses at its step.
    harness.get_by_label("Next").click();
    harness.run_steps(2);
    assert!(
        harness
            .state()
            .sent
            .iter()
            .any(|c| matches!(c, Command::Run))
    );
    harness.get_by_label_contains("Effective rank and collapse level  <- look here");
    assert_eq!(pointer(&harness), None, "the callout waits for its step");
    kit::run_until(&mut harness, "the pause at step 150", |app| {
        app.latest().is_some_and(|s| !s.running && s.step >= 150)
    });
    assert!(
        harness
            .state()
            .sent
            .iter()
            .any(|c| matches!(c, Command::Pause))
    );
    assert!(
        pointer(&harness).is_some_and(|(class, text)| class.is_none() && text.contains("collapse")),
        "the callout at step 150"
    );

    // Stage 3 switches the global dispersion on, with its arrows, and runs on.
    harness.get_by_label("Next").click();
    kit::run_until(&mut harness, "the singular value force on", |app| {
        app.latest()
            .is_some_and(|s| s.dynamics.singular_value.on && s.running)
    });
    assert_eq!(harness.state().view.arrows, [true, true, false]);
    harness.run_steps(2);
    assert_eq!(harness.state().lesson.as_ref().map(|p| p.stage), Some(2));
    harness.get_by_label_contains("Forces' shares  <- look here");
    assert!(
        harness
            .query_by_label_contains("Effective rank and collapse level  <- look")
            .is_none(),
        "one plot pointed out at a time"
    );
    assert_eq!(pointer(&harness), None, "a stage's callout ends with it");
    harness.get_by_label_contains("stage 3 of 3");

    // Save as lesson, and reopen it.
    let before = harness.state().notes().len();
    harness.get_by_label("Save as lesson").click();
    harness.run_steps(2);
    let note = harness.state().notes()[before..]
        .iter()
        .find(|n| n.starts_with("saved the lesson "))
        .cloned()
        .expect("saved");
    let path = note.trim_start_matches("saved the lesson ");
    let saved = Lesson::load(path).expect("reopens");
    assert_eq!(saved.settings, harness.state().settings);
    assert_eq!(saved.dynamics, harness.state().dynamics);
}

/// Save GIF renders the recorded steps of the run on screen into its folder's shots/, on a
/// thread of its own; the GIF decodes again, a frame per recorded frame.
#[test]
fn save_gif_writes_the_recorded_steps() {
    use image::AnimationDecoder as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let runs = msbreg::trainer::RunsDir {
        dir: dir.path().join("runs"),
        cap_bytes: 1 << 40,
    };
    let mut harness = kit::harness(kit::sandbox_options(Some(runs), None, true));
    kit::run_until(&mut harness, "20 steps", |app| {
        app.latest().is_some_and(|s| s.step >= 20)
    });
    harness.get_by_label("Pause").click();
    kit::run_until(&mut harness, "the recording up to the paused step", |app| {
        let paused = app.latest().filter(|s| !s.running).map(|s| s.step);
        paused.is_some() && app.timeline.range().map(|r| r.1) == paused
    });
    harness.run_steps(3);
    let frames = harness
        .state()
        .timeline
        .recording()
        .map_or(0, msbreg::session::Recording::frame_count);
    let before = harness.state().notes().len();
    harness.get_by_label("Save GIF").click();
    kit::run_until(&mut harness, "the GIF saved", |app| {
        app.notes()[before..]
            .iter()
            .any(|n| n.contains(".gif") || n.contains("not saved"))
    });
    let note = harness.state().notes()[before..]
        .iter()
        .find(|n| n.contains(".gif") || n.contains("not saved"))
        .cloned()
        .expect("a note");
    let path = note
        .strip_prefix("saved ")
        .unwrap_or_else(|| panic!("{note}"));
    let decoder = image::codecs::gif::GifDecoder::new(std::io::BufReader::new(
        std::fs::File::open(path).expect("the GIF"),
    ))
    .expect("a GIF");
    let decoded = decoder.into_frames().collect_frames().expect("decodes");
    assert_eq!(decoded.len() as u64, frames.min(300));
}

/// More points than the display set's core: the app shows all of them while it trains, says
/// so with the display's share of the trainer's time, and offers the setting.
#[test]
fn the_app_shows_every_point_asked_for() {
    let mut options = kit::sandbox_options(None, None, true);
    options.settings.display_points = 1500;
    let mut harness = kit::harness(options);
    kit::run_until(&mut harness, "20 steps with every point shown", |app| {
        app.latest().is_some_and(|s| {
            s.step >= 20
                && s.frame
                    .as_ref()
                    .is_some_and(|f| f.points.len() + f.more.len() == 1500)
        })
    });
    harness.run_steps(2);
    harness.get_by_label_contains("1500 of 1500 points shown, display");
    assert!(
        harness.get_all_by_label("Shown points").count() >= 1,
        "the setting is offered"
    );
    assert_eq!(
        harness.state().latest().map(|s| s.info.labels.len()),
        Some(1500)
    );
}
