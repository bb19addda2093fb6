//! The app's timeline and opened folders, driven through egui_kittest by label: the app's
//! own run kept in a runs directory and scrubbed, a folder opened and replayed, a run that
//! another writer still appends to followed live, and a killed run's torn recording.

mod kit;

use std::path::Path;

use eframe::egui;
use egui_kittest::kittest::{NodeT as _, Queryable as _};

use kit::{cpu, harness, run_until, sandbox_options};
use msbreg::headless::{DriveOptions, drive};
use msbreg::method::Dynamics;
use msbreg::session::{RECORDING_FILE, Recording, RecordingWriter, RunWriter, SandboxRun};
use msbreg::trainer::{Command, RunsDir};

/// A sandbox run of `steps` steps recording every step, into `out`.
fn recorded_run(out: &Path, steps: usize) {
    let mut config = msbreg::config::Preset::Msbreg.config();
    config.steps = steps;
    config.record.every_steps = 1;
    let folder = RunWriter::create(out, false).expect("creates");
    let mut run = SandboxRun::try_new(config, &cpu().device).expect("opens");
    drive(&mut run, &folder, DriveOptions::default(), |_| {}).expect("drives");
}

#[test]
fn the_apps_run_is_kept_and_its_timeline_scrubs_and_returns_live() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runs = RunsDir {
        dir: dir.path().join("runs"),
        cap_bytes: 1 << 40,
    };
    let mut harness = harness(sandbox_options(Some(runs.clone()), None, true));
    run_until(&mut harness, "20 steps", |app| {
        app.latest().is_some_and(|s| s.step >= 20)
    });
    harness.get_by_label("Pause").click();
    // Paused: the recording is written up to the step on screen and the timeline reads it.
    run_until(&mut harness, "the recording up to the paused step", |app| {
        let paused_at = app.latest().filter(|s| !s.running).map(|s| s.step);
        let head = app.timeline.range().map(|r| r.1);
        paused_at.is_some() && head == paused_at
    });
    // The bar has just appeared: let the layout settle before clicking in it.
    harness.run_steps(3);
    let folder = harness
        .state()
        .timeline
        .dir()
        .expect("following")
        .to_owned();
    assert!(folder.starts_with(&runs.dir), "{}", folder.display());
    assert!(harness.state().timeline.is_live());
    let (first, last) = harness.state().timeline.range().expect("a range");
    assert_eq!(first, 0);

    // One frame back: the view shows a recorded frame.
    harness.get_by_label("<").click();
    harness.run_steps(2);
    let back = harness.state().timeline.cursor().expect("off the head");
    assert!(back < last, "{back} < {last}");
    let shown = harness.state_mut().shown_frame().expect("a frame");
    assert_eq!(shown.step, back);

    // The scrub bar seeks, the arrow keys step frame by frame.
    let slider = harness
        .get_all_by_label("step")
        .find(|node| node.accesskit_node().role() == egui::accesskit::Role::Slider)
        .expect("the scrub bar");
    slider.set_value_accesskit(0.0);
    harness.run_steps(2);
    assert_eq!(harness.state().timeline.cursor(), Some(0));
    harness.key_press(egui::Key::ArrowRight);
    harness.run_steps(2);
    let next = harness.state().timeline.cursor().expect("a step");
    assert!(next > 0, "{next}");

    // A force switched while an earlier step is on screen is held for Branch: the live run
    // goes on as it was.
    let sent_before = harness.state().sent.len();
    let attraction = harness.state().dynamics.centroid.on;
    harness.get_by_label("Attraction").click();
    harness.run_steps(2);
    assert_eq!(harness.state().dynamics.centroid.on, !attraction);
    assert!(harness.state().forces_held());
    assert!(
        !harness.state().sent[sent_before..]
            .iter()
            .any(|c| matches!(c, Command::SetDynamics(_))),
        "nothing sent to the live run"
    );
    harness
        .get_by_label_contains("held for Branch")
        .accesskit_node();

    // Live goes back to the head, and the held forces go to the live run.
    harness.get_by_label("Live").click();
    harness.run_steps(2);
    assert!(harness.state().timeline.is_live());
    assert!(!harness.state().forces_held());
    assert!(
        harness.state().sent[sent_before..]
            .iter()
            .any(|c| matches!(c, Command::SetDynamics(d) if d.centroid.on != attraction)),
        "{:?}",
        &harness.state().sent[sent_before..]
    );
    let live = harness.state_mut().shown_frame().expect("a frame");
    assert_eq!(Some(live.step), harness.state().latest().map(|s| s.step));
    run_until(&mut harness, "the live run takes the held forces", |app| {
        app.latest()
            .is_some_and(|s| s.dynamics.centroid.on != attraction)
    });
}

#[test]
fn an_opened_folder_replays_and_follows_a_writer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("sim");
    recorded_run(&out, 30);
    let mut harness = harness(sandbox_options(None, Some(&out), true));
    harness.run_steps(3);
    let shown = harness.state();
    let opened = shown.opened().expect("the folder is open");
    assert_eq!(opened.dir, out);
    assert!(opened.writer.is_none(), "nobody writes it");
    assert_eq!(shown.timeline.range(), Some((0, 30)));
    assert!(
        !shown.latest().is_some_and(|s| s.running),
        "the trainer does not train while a folder is watched"
    );
    let head = harness.state_mut().shown_frame().expect("the last frame");
    assert_eq!(head.step, 30);
    // The plots read metrics.jsonl.
    assert!(harness.state().shown_history().stored_points() > 0);

    // Play from the start: the cursor moves on.
    harness.state_mut().timeline.seek(0);
    harness.state_mut().timeline.speed = 16.0;
    harness.get_by_label("Play").click();
    run_until(&mut harness, "playback to move", |app| {
        app.timeline.cursor().is_some_and(|c| c > 0)
    });
    if harness.state().timeline.is_playing() {
        harness.get_by_label("Stop").click();
    }

    // Another writer appends: the timeline follows.
    let path = out.join(RECORDING_FILE);
    let mut recording = Recording::open(&out).expect("opens");
    let last = recording.frame_at(30).expect("reads").expect("a frame");
    let mut writer = RecordingWriter::resume(&path, 30).expect("resumes");
    for step in 31..=40 {
        let mut frame = (*last.frame).clone();
        frame.step = step;
        writer
            .push(&frame, last.millis + step, Dynamics::default(), 1e-3)
            .expect("pushes");
    }
    writer.flush().expect("flushes");
    run_until(&mut harness, "the appended frames", |app| {
        app.timeline.range() == Some((0, 40))
    });

    // A torn end (a writer killed mid-chunk): the app replays up to the last whole chunk.
    let bytes = std::fs::read(&path).expect("reads");
    std::fs::write(&path, &bytes[..bytes.len() - 7]).expect("writes");
    drop(harness);
    let mut harness = kit::harness(sandbox_options(None, Some(&out), false));
    harness.run_steps(3);
    assert_eq!(harness.state().timeline.range(), Some((0, 30)));
    harness.get_by_label("Back to the app's run").click();
    harness.run_steps(2);
    assert!(harness.state().opened().is_none());
}

#[test]
fn a_folder_without_a_recording_opens_and_says_why_its_timeline_is_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("old");
    recorded_run(&out, 5);
    std::fs::remove_file(out.join(RECORDING_FILE)).expect("removes");
    let mut harness = harness(sandbox_options(None, Some(&out), false));
    harness.run_steps(3);
    assert!(harness.state().opened().is_some());
    assert!(
        harness
            .state()
            .timeline
            .problem()
            .is_some_and(|p| p.contains("has no recording")),
        "{:?}",
        harness.state().timeline.problem()
    );
    harness.get_by_label_contains("has no recording");
}
