//! The recording: its format (bit-for-bit frames, chunks, a torn end, a newer version),
//! headless runs recording their display set, a run killed mid-way, the app's trainer
//! recording what it showed, and `msbreg runs`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{msbreg, run_ok};
use msbreg::backend::Backend;
use msbreg::config::{Workload, WorkloadSettings};
use msbreg::data::sandbox::SandboxKind;
use msbreg::headless::{DriveOptions, drive};
use msbreg::method::Dynamics;
use msbreg::projection::Frame;
use msbreg::session::recording::{CHUNK_FRAMES, FORMAT_VERSION};
use msbreg::session::{
    Parts, RECORDING_FILE, Recording, RecordingError, RecordingHeader, RecordingWriter, RunWriter,
    SandboxRun, read_events,
};
use msbreg::trainer::{Command, RunsDir, Trainer};

fn cpu() -> Backend {
    Backend::flex("tests")
}

fn bits(frame: &Frame) -> Vec<u32> {
    frame
        .points
        .iter()
        .chain(&frame.sphere)
        .flatten()
        .chain(
            frame
                .views
                .iter()
                .chain(&frame.views_sphere)
                .flatten()
                .flatten(),
        )
        .map(|x| x.to_bits())
        .collect()
}

/// A frame of `n` points that moves with `t`.
fn synthetic(step: u64, n: usize) -> Frame {
    let t = step as f32 * 0.01;
    let p = |i: usize, k: f32| {
        let a = i as f32 * 0.37 + t * k;
        [0.8 * a.sin(), 0.6 * a.cos(), 0.3 * (a * 0.5).sin()]
    };
    let points: Vec<[f32; 3]> = (0..n).map(|i| p(i, 1.0)).collect();
    let a: Vec<[f32; 3]> = (0..n).map(|i| p(i, 1.1)).collect();
    let b: Vec<[f32; 3]> = (0..n).map(|i| p(i, 0.9)).collect();
    Frame::new(step, &points, &a, &b)
}

fn header(n: usize) -> RecordingHeader {
    RecordingHeader {
        points: n as u32,
        embed_dim: 4,
        labels: (0..n as u32).map(|i| i % 3).collect(),
        class_names: vec!["a".into(), "b".into(), "c".into()],
        describe: "a test".into(),
        started_unix_ms: 0,
    }
}

/// 150 frames: two full chunks and a third written by `flush`.
fn write_synthetic(path: &Path) -> Vec<Frame> {
    let n = 50;
    let mut writer = RecordingWriter::create(path, header(n)).expect("creates");
    let frames: Vec<Frame> = (0..150).map(|s| synthetic(s * 3, n)).collect();
    for (i, frame) in frames.iter().enumerate() {
        writer
            .push(frame, i as u64 * 150, Dynamics::default(), 1e-3)
            .expect("pushes");
        if i == 10 {
            let rows = vec![0.5f32; n * 4];
            writer.push_embeddings(frame.step, 4, &rows);
        }
    }
    writer.flush().expect("flushes");
    frames
}

#[test]
fn frames_come_back_bit_for_bit_and_seek_by_step() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(RECORDING_FILE);
    let frames = write_synthetic(&path);
    let mut recording = Recording::open(dir.path()).expect("opens");
    assert_eq!(recording.chunks().len(), 3, "64 + 64 + 22 frames");
    assert_eq!(recording.frame_count(), 150);
    assert_eq!(recording.step_range(), Some((0, 149 * 3)));
    assert!(recording.tail().is_none());
    let back = recording.all_frames().expect("decodes");
    assert_eq!(back.len(), frames.len());
    for (written, read) in frames.iter().zip(&back) {
        assert_eq!(read.frame.step, written.step);
        assert_eq!(bits(&read.frame), bits(written), "step {}", written.step);
        assert_eq!(read.dynamics, Dynamics::default());
    }
    assert_eq!(back[7].millis, 7 * 150);
    // Seeking: the newest frame at or before a step, across chunk boundaries.
    let at = recording.frame_at(200).expect("reads").expect("a frame");
    assert_eq!(at.frame.step, 198);
    assert_eq!(
        recording.neighbour_step(189, true).expect("reads"),
        Some(192)
    );
    assert_eq!(
        recording.neighbour_step(192, false).expect("reads"),
        Some(189)
    );
    assert_eq!(recording.neighbour_step(447, true).expect("reads"), None);
    let embeddings = recording.all_embeddings().expect("decodes");
    assert_eq!(embeddings.len(), 1);
    assert_eq!(embeddings[0].step, 30);
    assert_eq!(embeddings[0].rows, vec![0.5f32; 200]);
}

#[test]
fn a_torn_end_is_read_up_to_the_last_complete_chunk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(RECORDING_FILE);
    write_synthetic(&path);
    let whole = std::fs::read(&path).expect("reads");
    let third = Recording::open(dir.path()).expect("opens").chunks()[2];
    for cut in [third.offset + 10, third.offset + 40, whole.len() as u64 - 1] {
        std::fs::write(&path, &whole[..cut as usize]).expect("writes");
        let mut recording = Recording::open(dir.path()).expect("a torn end still opens");
        assert_eq!(
            recording.frame_count(),
            2 * CHUNK_FRAMES as u64,
            "cut at {cut}"
        );
        assert!(recording.tail().is_some_and(|t| t.contains("unfinished")));
        assert_eq!(recording.all_frames().expect("decodes").len(), 128);
        // The writer resumes it: the torn bytes are cut off and new chunks are reachable.
        let mut writer = RecordingWriter::resume(&path, u64::MAX).expect("resumes");
        writer
            .push(&synthetic(1000, 50), 0, Dynamics::default(), 1e-3)
            .expect("pushes");
        writer.flush().expect("flushes");
        let mut again = Recording::open(dir.path()).expect("opens");
        assert_eq!(again.frame_count(), 129);
        assert!(again.tail().is_none());
        assert_eq!(again.all_frames().expect("decodes")[128].frame.step, 1000);
    }
}

#[test]
fn a_damaged_chunk_a_newer_version_and_a_stranger_file_each_say_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(RECORDING_FILE);
    write_synthetic(&path);
    let whole = std::fs::read(&path).expect("reads");

    // A flipped byte inside the second chunk's body: the others still decode.
    let second = Recording::open(dir.path()).expect("opens").chunks()[1];
    let mut damaged = whole.clone();
    damaged[second.offset as usize + 36 + 5] ^= 0xff;
    std::fs::write(&path, &damaged).expect("writes");
    let mut recording = Recording::open(dir.path()).expect("opens");
    assert!(recording.chunk(0).is_ok());
    let err = recording.chunk(1).expect_err("damaged");
    assert!(matches!(err, RecordingError::BadChunk { .. }), "{err}");
    assert!(err.to_string().contains("checksum"), "{err}");

    // A newer format version.
    let mut newer = whole.clone();
    newer[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    std::fs::write(&path, &newer).expect("writes");
    let err = Recording::open(dir.path()).expect_err("newer");
    assert!(
        matches!(err, RecordingError::NewerVersion { found, .. } if found == FORMAT_VERSION + 1)
    );
    assert!(err.to_string().contains("update msbreg"), "{err}");

    // Cut inside the header.
    std::fs::write(&path, &whole[..20]).expect("writes");
    let err = Recording::open(dir.path()).expect_err("cut");
    assert!(matches!(err, RecordingError::BadHeader { .. }), "{err}");

    // Not a recording at all, and none at all.
    std::fs::write(&path, b"{\"step\": 1}\n").expect("writes");
    let err = Recording::open(dir.path()).expect_err("stranger");
    assert!(matches!(err, RecordingError::NotARecording { .. }), "{err}");
    std::fs::remove_file(&path).expect("removes");
    let err = Recording::open(dir.path()).expect_err("missing");
    assert!(err.to_string().contains("has no recording"), "{err}");
}

/// The step of every recorded frame, in order.
fn recorded_steps(recording: &mut Recording) -> Vec<u64> {
    recording
        .all_frames()
        .expect("decodes")
        .iter()
        .map(|f| f.frame.step)
        .collect()
}

fn sandbox_config(dir: &Path, every: usize) -> PathBuf {
    let path = dir.join(format!("record-{every}.toml"));
    std::fs::write(&path, format!("[record]\nevery_steps = {every}\n")).expect("writes");
    path
}

#[test]
fn simulate_records_its_display_set_and_runs_lists_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runs = dir.path().join("runs");
    std::fs::create_dir(&runs).expect("mkdir");
    let out = runs.join("sim");
    let config = sandbox_config(dir.path(), 10);
    let stdout = run_ok(
        msbreg()
            .args(["simulate", "--steps", "60", "--config"])
            .arg(&config)
            .arg("--out")
            .arg(&out),
    );
    assert!(stdout.contains("recorded 7 frames"), "{stdout}");
    assert!(stdout.contains("msbreg app --open"), "{stdout}");
    let mut recording = Recording::open(&out).expect("opens");
    let steps = recorded_steps(&mut recording);
    assert_eq!(steps, vec![0, 10, 20, 30, 40, 50, 60]);
    let embeddings = recording.all_embeddings().expect("decodes");
    assert_eq!(embeddings.len(), 1, "with the first of every 20 frames");
    let n = recording.header().points as usize;
    assert_eq!(embeddings[0].rows.len(), n * embeddings[0].dim);

    let json = run_ok(msbreg().arg("runs").arg(&runs).arg("--json"));
    let lines: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON object per line"))
        .collect();
    assert_eq!(lines.len(), 1, "{json}");
    let run = &lines[0];
    for key in [
        "path",
        "preset",
        "dataset",
        "steps",
        "frames",
        "first_step",
        "last_step",
        "knn_acc",
        "bytes",
        "parent",
    ] {
        assert!(run.get(key).is_some(), "no {key} in {run}");
    }
    assert_eq!(run["path"], serde_json::json!(out));
    assert_eq!(run["preset"], "msbreg");
    assert_eq!(run["steps"], 60);
    assert_eq!(run["frames"], 7);
    assert_eq!(run["first_step"], 0);
    assert_eq!(run["last_step"], 60);
    assert!(
        run["knn_acc"]
            .as_f64()
            .is_some_and(|k| (0.0..=1.0).contains(&k))
    );
    assert!(run["bytes"].as_u64().is_some_and(|b| b > 1000));
    assert!(run["parent"].is_null());
    let table = run_ok(msbreg().arg("runs").arg(&runs));
    assert!(table.contains("sim") && table.contains("msbreg"), "{table}");
    let err = msbreg()
        .arg("runs")
        .arg(dir.path().join("nope"))
        .output()
        .expect("runs");
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("no such folder"));
}

#[test]
fn recording_does_not_change_the_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut lines = Vec::new();
    for every in [0, 1] {
        let out = dir.path().join(format!("run-{every}"));
        run_ok(
            msbreg()
                .args(["simulate", "--steps", "30", "--config"])
                .arg(sandbox_config(dir.path(), every))
                .arg("--out")
                .arg(&out),
        );
        assert_eq!(out.join(RECORDING_FILE).exists(), every > 0);
        let records = msbreg::session::read_metrics(&out.join("metrics.jsonl")).expect("reads");
        lines.push(
            records
                .iter()
                .map(|r| (r.step, r.loss.map(f32::to_bits), r.knn_acc.to_bits()))
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(lines[0], lines[1]);
}

#[test]
fn a_resumed_run_records_on_without_repeating_steps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("run");
    let mut config = msbreg::config::Preset::Msbreg.config();
    config.steps = 60;
    let device = cpu().device;
    {
        let folder = RunWriter::create(&out, false).expect("creates");
        let mut run = SandboxRun::try_new(config, &device).expect("opens");
        drive(
            &mut run,
            &folder,
            DriveOptions {
                stop_after: Some(30),
            },
            |_| {},
        )
        .expect("drives");
    }
    let folder = RunWriter::open_for_writing(&out).expect("opens");
    let (mut run, _) = folder.reopen(&device, Parts::All).expect("reopens");
    folder
        .keep_metrics_through(run.steps_done())
        .expect("keeps");
    drive(&mut *run, &folder, DriveOptions::default(), |_| {}).expect("drives");
    let mut recording = Recording::open(&out).expect("opens");
    let steps = recorded_steps(&mut recording);
    assert_eq!(steps, vec![0, 10, 20, 30, 40, 50, 60]);
}

#[test]
fn a_run_killed_with_sigkill_keeps_its_complete_chunks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("killed");
    let mut child = msbreg()
        .args(["simulate", "--steps", "1000000", "--config"])
        .arg(sandbox_config(dir.path(), 1))
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starts");
    let start = Instant::now();
    let mut frames = 0;
    while start.elapsed() < Duration::from_mins(2) {
        if let Ok(recording) = Recording::open(&out) {
            frames = recording.frame_count();
            if recording.chunks().len() >= 2 {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("ends");
    assert!(frames > 0, "nothing was recorded in two minutes");
    let mut recording = Recording::open(&out).expect("a killed run's recording opens");
    let replayed = recording
        .all_frames()
        .expect("every complete chunk decodes");
    assert!(replayed.len() as u64 >= frames);
    let steps: Vec<u64> = replayed.iter().map(|f| f.frame.step).collect();
    assert!(steps.windows(2).all(|w| w[1] == w[0] + 1), "{steps:?}");
    // The app opens it and its timeline ends at the last complete chunk.
    let options = msbreg::app::AppOptions {
        backend: cpu(),
        settings: WorkloadSettings::sandbox(SandboxKind::Gaussians),
        running: false,
        frame_stats: None,
        runs: None,
        open: Some(out.clone()),
        compare: Vec::new(),
        lesson: None,
    };
    let app = msbreg::app::MsbregApp::new(&eframe::egui::Context::default(), None, options);
    assert!(app.opened().is_some(), "{:?}", app.error());
    assert_eq!(
        app.timeline.range(),
        Some((0, *steps.last().expect("frames")))
    );
    drop(app);
    // `msbreg runs` lists it, with the recorded range.
    let json = run_ok(msbreg().arg("runs").arg(&out).arg("--json"));
    let run: serde_json::Value = serde_json::from_str(json.trim()).expect("JSON");
    assert_eq!(run["frames"], replayed.len() as u64);
    assert_eq!(run["last_step"], *steps.last().expect("frames"));
}

/// The app's trainer keeps its run in a run folder: every frame it sent is in the recording,
/// bit for bit, with the events of the session.
#[test]
fn the_trainer_records_the_frames_it_showed_bit_for_bit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runs = RunsDir {
        dir: dir.path().join("runs"),
        cap_bytes: 1 << 40,
    };
    let workload = WorkloadSettings::sandbox(SandboxKind::Gaussians).workload();
    assert!(matches!(workload, Workload::Sandbox(_)));
    let mut trainer =
        Trainer::spawn_keeping(&cpu(), workload, true, Box::new(|| {}), Some(runs.clone()))
            .expect("spawns");
    let mut shown: BTreeMap<u64, Arc<Frame>> = BTreeMap::new();
    let mut folder = None;
    let start = Instant::now();
    let mut paused = false;
    while start.elapsed() < Duration::from_mins(2) {
        let Some(snapshot) = trainer.wait_snapshot(Duration::from_millis(200)) else {
            continue;
        };
        if let Some(frame) = &snapshot.frame {
            shown.insert(frame.step, Arc::clone(frame));
        }
        folder = folder.or(snapshot.folder.clone());
        if !paused && shown.len() >= 12 {
            let mut dynamics = snapshot.dynamics;
            dynamics.brownian.on = false;
            trainer.send(Command::SetDynamics(dynamics));
            trainer.send(Command::Pause);
            paused = true;
        }
        if paused && !snapshot.running {
            break;
        }
    }
    assert!(paused, "the run did not show 12 frames in two minutes");
    let folder = folder.expect("the run has a folder");
    assert!(folder.starts_with(&runs.dir));
    trainer.shutdown(Duration::from_secs(30)).expect("stops");
    let mut recording = Recording::open(&folder).expect("opens");
    let recorded: BTreeMap<u64, Arc<Frame>> = recording
        .all_frames()
        .expect("decodes")
        .into_iter()
        .map(|f| (f.frame.step, f.frame))
        .collect();
    for (step, frame) in &shown {
        let again = recorded
            .get(step)
            .unwrap_or_else(|| panic!("the frame of step {step} was not recorded"));
        assert_eq!(bits(again), bits(frame), "step {step}");
    }
    let events = read_events(&folder).expect("reads");
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert!(
        kinds.contains(&"start") && kinds.contains(&"pause"),
        "{kinds:?}"
    );
    let forces = events
        .iter()
        .find(|e| e.kind == "forces")
        .expect("a forces event");
    assert!(forces.text.contains("Brownian off"), "{}", forces.text);
    assert!(
        folder
            .join("metrics.jsonl")
            .metadata()
            .is_ok_and(|m| m.len() > 0)
    );
    assert!(folder.join("config.toml").is_file());
}

/// A full disk while recording (the file-size limit stands in for it: writes past it fail with
/// EFBIG as they would with ENOSPC): the run stops with a message naming the recording, and
/// what was recorded stays readable, ending on a complete chunk.
#[test]
fn a_full_disk_stops_the_recording_and_keeps_what_was_recorded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("full");
    let config = sandbox_config(dir.path(), 1);
    let binary = env!("CARGO_BIN_EXE_msbreg");
    // SIGXFSZ ignored (it is inherited through exec), so the write fails instead of killing.
    let script = format!(
        "trap '' XFSZ; ulimit -f 400; exec '{binary}' --backend cpu simulate --steps 100000 \
         --config '{}' --out '{}'",
        config.display(),
        out.display()
    );
    let output = std::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "it cannot have finished: {stderr}"
    );
    assert!(
        stderr.contains("recording") && stderr.contains("stays readable"),
        "{stderr}"
    );
    let mut recording = Recording::open(&out).expect("what was recorded opens");
    assert!(recording.tail().is_none(), "{:?}", recording.tail());
    let frames = recording.all_frames().expect("decodes");
    assert!(!frames.is_empty());
    assert!(
        std::fs::metadata(out.join(RECORDING_FILE))
            .expect("exists")
            .len()
            <= 400 * 1024
    );
}

/// `msbreg render` draws a recorded span into a GIF that decodes again, one frame per
/// recorded frame in the span; a span with nothing in it says what the recording holds.
#[test]
fn render_writes_a_recorded_span_as_a_gif() {
    use image::AnimationDecoder as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("sim");
    let config = sandbox_config(dir.path(), 10);
    run_ok(
        msbreg()
            .args(["simulate", "--steps", "60", "--config"])
            .arg(&config)
            .arg("--out")
            .arg(&out),
    );
    let gif = dir.path().join("clip.gif");
    let output = msbreg()
        .args([
            "render", "--from", "10", "--to", "40", "--size", "96", "--run",
        ])
        .arg(&out)
        .arg("--out")
        .arg(&gif)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("4 frames") && stderr.contains("steps 10 to 40"),
        "{stderr}"
    );
    let decoder = image::codecs::gif::GifDecoder::new(std::io::BufReader::new(
        std::fs::File::open(&gif).expect("the GIF"),
    ))
    .expect("a GIF");
    let frames = decoder.into_frames().collect_frames().expect("decodes");
    assert_eq!(frames.len(), 4);
    let first = frames[0].buffer();
    assert_eq!(first.dimensions(), (96, 96));
    assert!(
        first.pixels().any(|p| p.0[..3].iter().any(|&c| c > 60)),
        "the particles are drawn"
    );
    // Thinned to at most --max-frames.
    let output = msbreg()
        .args(["render", "--max-frames", "3", "--size", "64", "--run"])
        .arg(&out)
        .arg("--out")
        .arg(&gif)
        .output()
        .expect("runs");
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("3 frames") && stderr.contains("of 7 recorded"),
        "{stderr}"
    );
    // Nothing in the span: the error says what there is.
    let output = msbreg()
        .args(["render", "--from", "500", "--run"])
        .arg(&out)
        .arg("--out")
        .arg(&gif)
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("steps 0 to 60"), "{stderr}");
}
