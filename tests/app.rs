//! The app driven through its widgets by label (egui_kittest), with the real trainer thread on
//! the CPU backend and the particle sandbox (fast), and the trainer alone through its
//! `Command`/`Snapshot` channel.

use std::time::Duration;

use eframe::egui;
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};

use msbreg::app::{AppOptions, MsbregApp, WorkloadSettings};
use msbreg::backend::Backend;
use msbreg::config::Preset;
use msbreg::data::sandbox::SandboxKind;
use msbreg::data::source::DataSource;
use msbreg::method::Dynamics;
use msbreg::run::live::{Command, Trainer, Workload};
use msbreg::run::train::TrainConfig;

const WAIT: Duration = Duration::from_mins(1);

fn cpu() -> Backend {
    Backend::flex("tests")
}

fn sandbox_app(running: bool) -> Harness<'static, MsbregApp> {
    let options = AppOptions {
        backend: cpu(),
        settings: WorkloadSettings::sandbox(SandboxKind::Gaussians),
        running,
        frame_stats: None,
    };
    let ctx = egui::Context::default();
    let app = MsbregApp::new(&ctx, None, options);
    Harness::builder()
        .with_size(egui::vec2(1400.0, 900.0))
        .build_ui_state(|ui, app: &mut MsbregApp| app.ui(ui), app)
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

#[test]
fn a_new_weight_acts_on_the_very_next_step() {
    let workload = WorkloadSettings::sandbox(SandboxKind::Gaussians).workload();
    let trainer = Trainer::spawn(&cpu(), workload, false, Box::new(|| {})).expect("spawns");
    let mut dynamics = Dynamics::default();
    dynamics.singular_value.weight = 3.0;
    dynamics.brownian.on = false;
    assert!(trainer.send(Command::SetDynamics(dynamics)));
    assert!(trainer.send(Command::Step));
    let mut metrics = Vec::new();
    let deadline = std::time::Instant::now() + WAIT;
    while std::time::Instant::now() < deadline {
        if let Some(snapshot) = trainer.wait_snapshot(Duration::from_millis(200)) {
            metrics.extend(snapshot.metrics);
            if snapshot.step == 1 {
                assert_eq!(snapshot.dynamics, dynamics);
                break;
            }
        }
    }
    let point = metrics
        .iter()
        .find(|p| p.step == 1)
        .expect("the metrics of step 1");
    let l = point.losses;
    let expected = l.loss_centroid + 3.0 * l.loss_sv;
    assert!(
        (l.loss - expected).abs() < 1e-4 * expected.abs().max(1.0),
        "total {} vs centroid + 3 sv = {expected}",
        l.loss
    );
}

#[test]
fn no_metric_is_lost_when_the_ui_reads_rarely() {
    let workload = WorkloadSettings::sandbox(SandboxKind::Gaussians).workload();
    let trainer = Trainer::spawn(&cpu(), workload, true, Box::new(|| {})).expect("spawns");
    // Read nothing for a while: snapshots pile up in the one-slot mailbox and are merged.
    std::thread::sleep(Duration::from_secs(2));
    assert!(trainer.send(Command::Pause));
    let mut steps = Vec::new();
    let mut last = None;
    let deadline = std::time::Instant::now() + WAIT;
    while std::time::Instant::now() < deadline {
        if let Some(snapshot) = trainer.wait_snapshot(Duration::from_millis(300)) {
            steps.extend(
                snapshot
                    .metrics
                    .iter()
                    .filter(|p| p.step > 0)
                    .map(|p| p.step),
            );
            if !snapshot.running {
                last = Some(snapshot.step);
                break;
            }
        }
    }
    let last = last.expect("paused");
    steps.dedup();
    assert!(last > 3, "it trained while unread ({last} steps)");
    assert_eq!(
        steps,
        (1..=last).collect::<Vec<_>>(),
        "every step's metrics arrive once"
    );
}

#[test]
fn an_image_run_trains_and_shows_its_held_out_images() {
    let mut settings = WorkloadSettings {
        batch_size: 16,
        views: 2,
        ..WorkloadSettings::default()
    };
    settings.seed = 3;
    let Workload::Images(mut config) = settings.workload() else {
        panic!("the default workload is an image run");
    };
    config.data.shapes_train = 256;
    config.data.shapes_test = 64;
    config.eval.bank_size = 128;
    let trainer =
        Trainer::spawn(&cpu(), Workload::Images(config), false, Box::new(|| {})).expect("spawns");
    assert!(trainer.send(Command::Step));
    assert!(trainer.send(Command::Step));
    let deadline = std::time::Instant::now() + WAIT;
    let mut last = None;
    while std::time::Instant::now() < deadline {
        if let Some(snapshot) = trainer.wait_snapshot(Duration::from_millis(200)) {
            assert!(snapshot.error.is_none(), "{:?}", snapshot.error);
            let done = snapshot.step == 2;
            last = Some(snapshot);
            if done {
                break;
            }
        }
    }
    let snapshot = last.expect("snapshots");
    assert_eq!(snapshot.step, 2);
    let info = &snapshot.info;
    assert_eq!(info.labels.len(), 64, "every held-out image is displayed");
    match &info.preview {
        msbreg::run::live::Preview::Images(set) => assert_eq!(set.pixels.len(), 64 * 32 * 32 * 3),
        other @ msbreg::run::live::Preview::Points { .. } => {
            panic!("expected images, got {other:?}")
        }
    }
    let frame = snapshot.frame.as_ref().expect("a frame");
    assert_eq!(frame.points.len(), 64);
    assert_eq!(frame.views.len(), 64);
    for p in &frame.sphere {
        let norm = (p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "sphere points are unit: {norm}");
    }
    for p in &frame.points {
        let norm = (p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sqrt();
        assert!(
            norm <= 1.0 + 1e-4,
            "projected unit embeddings stay in the unit ball: {norm}"
        );
    }
    assert_eq!(snapshot.spectrum.len(), info.embed_dim);
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
    }
}
