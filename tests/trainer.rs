//! The trainer thread alone, through `Trainer::send` and its snapshots: settings act on the
//! next step and are never lost, no metric is lost, image runs display their held-out images,
//! the handle drops at once, and a failure to start is reported.

use std::time::{Duration, Instant};

use msbreg::backend::Backend;
use msbreg::config::{TrainConfig, Workload, WorkloadSettings};
use msbreg::data::sandbox::SandboxKind;
use msbreg::data::source::DataSource;
use msbreg::method::Dynamics;
use msbreg::trainer::{Command, Preview, Snapshot, Trainer};

const WAIT: Duration = Duration::from_mins(1);

fn cpu() -> Backend {
    Backend::flex("tests")
}

/// Snapshots until `done` holds (or the wait runs out); returns the last one.
fn wait_for(trainer: &Trainer, done: impl Fn(&Snapshot) -> bool) -> Option<Snapshot> {
    let deadline = Instant::now() + WAIT;
    let mut last = None;
    while Instant::now() < deadline {
        if let Some(snapshot) = trainer.wait_snapshot(Duration::from_millis(100)) {
            let finished = done(&snapshot);
            last = Some(snapshot);
            if finished {
                break;
            }
        }
    }
    last
}

#[test]
fn a_new_weight_acts_on_the_very_next_step() {
    let workload = WorkloadSettings::sandbox(SandboxKind::Gaussians).workload();
    let mut trainer = Trainer::spawn(&cpu(), workload, false, Box::new(|| {})).expect("spawns");
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
    let l = point.losses.expect("the losses of step 1");
    let expected = l.loss_centroid + 3.0 * l.loss_sv;
    assert!(
        (l.loss - expected).abs() < 1e-4 * expected.abs().max(1.0),
        "total {} vs centroid + 3 sv = {expected}",
        l.loss
    );
}

#[test]
fn no_metric_is_lost_when_the_ui_reads_rarely() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    let workload = WorkloadSettings::sandbox(SandboxKind::Gaussians).workload();
    // Every post calls the repaint callback: counting them shows progress without reading.
    let posts = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&posts);
    let mut trainer = Trainer::spawn(
        &cpu(),
        workload,
        true,
        Box::new(move || {
            counter.fetch_add(1, Ordering::Relaxed);
        }),
    )
    .expect("spawns");
    // Read nothing for a while: snapshots pile up in the one-slot mailbox and are merged. At
    // least 2 s, and until 6 posts (the first, then one per display refresh after a step), so a
    // loaded machine trains as many steps as an idle one before the pause.
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(2)
        || (posts.load(Ordering::Relaxed) < 6 && started.elapsed() < WAIT)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
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
    let mut trainer =
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
        Preview::Images(set) => assert_eq!(set.pixels.len(), 64 * 32 * 32 * 3),
        other @ Preview::Points { .. } => {
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

#[test]
fn a_burst_of_settings_is_never_lost_and_the_last_one_wins() {
    // A running image run: the trainer is busy in a step while the settings pour in, as a
    // slider sends a value on every frame of a drag.
    let mut trainer = Trainer::spawn(
        &cpu(),
        WorkloadSettings::sandbox(SandboxKind::Gaussians).workload(),
        true,
        Box::new(|| {}),
    )
    .expect("spawns");
    let mut last = Dynamics::default();
    for i in 0..500 {
        last.singular_value.weight = 0.01 + i as f32 * 0.01;
        assert!(
            trainer.send(Command::SetDynamics(last)),
            "setting {i} was refused"
        );
    }
    assert!(trainer.send(Command::SetLearningRate(0.002)));
    let sent = trainer.settings_sent();
    assert_eq!(sent, 501);
    let snapshot = wait_for(&trainer, |s| s.settings_seq == sent).expect("snapshots");
    assert_eq!(
        snapshot.settings_seq, sent,
        "the trainer answered the last setting"
    );
    assert_eq!(
        snapshot.dynamics, last,
        "the last value is the one in force"
    );
    assert!((snapshot.learning_rate - 0.002).abs() < 1e-12);
}

#[test]
fn a_rejected_setting_leaves_the_one_in_force_and_says_so() {
    let mut trainer = Trainer::spawn(
        &cpu(),
        WorkloadSettings::sandbox(SandboxKind::Gaussians).workload(),
        false,
        Box::new(|| {}),
    )
    .expect("spawns");
    let before = wait_for(&trainer, |_| true)
        .expect("a first snapshot")
        .dynamics;
    let mut bad = before;
    bad.brownian.weight = f32::NAN;
    assert!(trainer.send(Command::SetDynamics(bad)));
    let sent = trainer.settings_sent();
    let snapshot = wait_for(&trainer, |s| s.settings_seq == sent).expect("answered");
    assert_eq!(snapshot.dynamics, before, "the old forces stay");
    let error = snapshot.error.expect("the rejection is reported");
    assert!(error.contains("dynamics.brownian.weight"), "{error}");
}

#[test]
fn dropping_the_handle_does_not_wait_for_the_step() {
    // A step of ResNet-18 on 64 images x 2 views takes seconds on a CPU; dropping the handle
    // mid-step must return at once (the window closes), not after the step.
    let settings = WorkloadSettings {
        model: msbreg::config::ModelChoice::Resnet18,
        batch_size: 64,
        views: 2,
        ..WorkloadSettings::default()
    };
    let Workload::Images(mut config) = settings.workload() else {
        panic!("an image workload");
    };
    config.data.shapes_train = 256;
    config.data.shapes_test = 64;
    config.eval.bank_size = 64;
    let mut trainer =
        Trainer::spawn(&cpu(), Workload::Images(config), false, Box::new(|| {})).expect("spawns");
    wait_for(&trainer, |s| s.frame.is_some()).expect("the run is on screen");
    assert!(trainer.send(Command::Step));
    let step_started = Instant::now();
    std::thread::sleep(Duration::from_millis(100));
    let dropped = Instant::now();
    drop(trainer);
    let drop_secs = dropped.elapsed().as_secs_f64();
    eprintln!(
        "drop took {drop_secs:.4} s ({:.2} s after the step started)",
        step_started.elapsed().as_secs_f64()
    );
    assert!(
        drop_secs < 0.05,
        "dropping the trainer waited {drop_secs:.3} s for the thread"
    );
}

#[test]
fn a_first_run_that_cannot_start_is_reported_as_the_failure() {
    let config = TrainConfig {
        data: DataSource::parse("mnist:/nonexistent/mnist").expect("parses"),
        ..TrainConfig::default()
    };
    let trainer =
        Trainer::spawn(&cpu(), Workload::Images(config), true, Box::new(|| {})).expect("spawns");
    let deadline = Instant::now() + WAIT;
    let failure = loop {
        if let Some(failure) = trainer.failure() {
            break failure;
        }
        assert!(Instant::now() < deadline, "no failure reported");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(failure.contains("/nonexistent/mnist"), "{failure}");
    assert!(
        trainer.try_snapshot().is_none(),
        "no snapshot with a made-up run"
    );
    trainer
        .shutdown(WAIT)
        .expect("the thread ends cleanly when asked");
}
