//! `msbreg bench record`: what recording costs at the app's default settings. The app's
//! trainer loop is replayed without a window: train continuously, refresh the display at most
//! every 150 ms (embed, project), and record each displayed frame (embeddings with every
//! 200th) through the same [`Recorder`] and byte budget the app uses, the frames' precision
//! following the recorder's level as in the app. Printed: MB per hour of recording, projected
//! from the run (the bytes of its first [`BUDGET_BURST_SECS`], which a run has once, plus the
//! rate after them for the rest of the hour), the share of frames made at each precision
//! level, and the time spent encoding and writing as a percentage of the training step time
//! measured in the same run (the reference).

use std::time::Instant;

use serde_json::json;

use crate::backend::Backend;
use crate::config::{Workload, WorkloadSettings};
use crate::projection::{Framer, MAX_PRECISION_LEVEL};
use crate::session::{self, BUDGET_BURST_SECS, RECORDING_FILE, Recorder};
use crate::trainer::{APP_EMBEDDINGS_EVERY, APP_RECORD_BYTES_PER_HOUR, DISPLAY_INTERVAL};

/// The budgets of the issue that asked for the recording.
const BUDGET_MB_PER_HOUR: f64 = 50.0;
const BUDGET_OVERHEAD_PERCENT: f64 = 2.0;

struct RecordBench {
    name: &'static str,
    steps: u64,
    frames: u64,
    wall_secs: f64,
    step_secs: f64,
    display_secs: f64,
    record_secs: f64,
    bytes: u64,
    /// The bytes on disk when the first [`BUDGET_BURST_SECS`] were over.
    burst_bytes: u64,
    /// Frames made at each precision level.
    levels: [u64; MAX_PRECISION_LEVEL as usize + 1],
}

impl RecordBench {
    /// An hour's bytes: the first seconds' as measured, the rest at the rate after them.
    fn mb_per_hour(&self) -> f64 {
        let burst = BUDGET_BURST_SECS.min(self.wall_secs);
        let after = (self.wall_secs - burst).max(1e-9);
        let rate = (self.bytes - self.burst_bytes) as f64 / after;
        (self.burst_bytes as f64 + rate * (3600.0 - burst)) / 1e6
    }

    fn level_shares(&self) -> String {
        let total = self.levels.iter().sum::<u64>().max(1) as f64;
        self.levels
            .iter()
            .map(|&n| format!("{:.0}", 100.0 * n as f64 / total))
            .collect::<Vec<_>>()
            .join("/")
    }

    fn overhead_percent(&self) -> f64 {
        100.0 * self.record_secs / self.step_secs.max(1e-9)
    }
}

fn bench_one(
    name: &'static str,
    workload: &Workload,
    backend: &Backend,
    seconds: f64,
) -> anyhow::Result<RecordBench> {
    let dir = tempfile_dir()?;
    let mut run = session::open(workload, &backend.device)?;
    let d = run.settings().embed_dim();
    let mut recorder = Recorder::create(
        &dir.path().join(RECORDING_FILE),
        &*run,
        APP_EMBEDDINGS_EVERY,
    )?
    .with_budget(APP_RECORD_BYTES_PER_HOUR);
    let mut framer = Framer::default();
    let mut step_secs = 0.0;
    let mut display_secs = 0.0;
    let mut last_display: Option<Instant> = None;
    let start = Instant::now();
    let mut steps = 0;
    let mut burst_bytes = None;
    let mut levels = [0; MAX_PRECISION_LEVEL as usize + 1];
    while start.elapsed().as_secs_f64() < seconds {
        if burst_bytes.is_none() && start.elapsed().as_secs_f64() >= BUDGET_BURST_SECS {
            burst_bytes = Some(recorder.writer().bytes());
        }
        let t = Instant::now();
        run.step()?;
        step_secs += t.elapsed().as_secs_f64();
        steps += 1;
        if last_display.is_none_or(|at| at.elapsed() >= DISPLAY_INTERVAL) {
            last_display = Some(Instant::now());
            let t = Instant::now();
            let rows = run.display_embeddings()?;
            let (frame, _) = framer.frame(run.steps_done(), &rows, d);
            levels[usize::from(framer.level())] += 1;
            display_secs += t.elapsed().as_secs_f64();
            let settings = run.settings();
            recorder.push(
                &frame,
                &rows,
                d,
                settings.dynamics(),
                settings.learning_rate(),
            )?;
            framer.set_level(recorder.precision_level());
        }
    }
    recorder.flush()?;
    let wall_secs = start.elapsed().as_secs_f64();
    let writer = recorder.writer();
    Ok(RecordBench {
        name,
        steps,
        frames: writer.frames_written(),
        wall_secs,
        step_secs,
        display_secs,
        record_secs: writer.busy_secs(),
        bytes: writer.bytes(),
        burst_bytes: burst_bytes.unwrap_or(writer.bytes()),
        levels,
    })
}

/// A scratch folder removed afterwards.
fn tempfile_dir() -> anyhow::Result<ScratchDir> {
    let path = std::env::temp_dir().join(format!(
        "msbreg-bench-record-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::create_dir_all(&path)?;
    Ok(ScratchDir(path))
}

struct ScratchDir(std::path::PathBuf);

impl ScratchDir {
    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the benchmark on the app's default workload (the sandbox) and on the shapes images,
/// `seconds` each.
pub fn run_record_bench(backend: &Backend, seconds: f64) -> anyhow::Result<()> {
    let mut sandbox = WorkloadSettings::app_default();
    sandbox.seed = 0;
    let cases = [
        ("app default (Gaussians, MLP)", sandbox.workload()),
        (
            "images (shapes, small CNN)",
            WorkloadSettings::default().workload(),
        ),
    ];
    println!(
        "recording at the app's display rate (a frame per 150 ms at most), {seconds:.0} s per \
         workload on {}; MB/hour: the first {BUDGET_BURST_SECS:.0} s as measured, the rest of \
         the hour at the rate after them; levels: % of frames at precision level 0/1/2/3/4",
        backend.describe()
    );
    if seconds < 2.0 * BUDGET_BURST_SECS {
        println!(
            "(runs under {:.0} s say little about an hour: the byte budget allows a burst over \
             its rate in the first {BUDGET_BURST_SECS:.0} s)",
            2.0 * BUDGET_BURST_SECS
        );
    }
    println!(
        "{:<28} {:>7} {:>7} {:>10} {:>9} {:>12} {:>9} {:>10} {:>9}",
        "workload",
        "steps",
        "frames",
        "bytes",
        "MB/hour",
        "levels",
        "step ms",
        "record ms",
        "overhead"
    );
    let mut results = Vec::new();
    for (name, workload) in cases {
        let bench = bench_one(name, &workload, backend, seconds)?;
        println!(
            "{:<28} {:>7} {:>7} {:>10} {:>9.1} {:>12} {:>9.2} {:>10.3} {:>8.2}%",
            bench.name,
            bench.steps,
            bench.frames,
            bench.bytes,
            bench.mb_per_hour(),
            bench.level_shares(),
            1000.0 * bench.step_secs / bench.steps.max(1) as f64,
            1000.0 * bench.record_secs / bench.frames.max(1) as f64,
            bench.overhead_percent(),
        );
        results.push(bench);
    }
    for bench in &results {
        let size_ok = bench.mb_per_hour() <= BUDGET_MB_PER_HOUR;
        let cost_ok = bench.overhead_percent() <= BUDGET_OVERHEAD_PERCENT;
        println!(
            "{}: {:.1} MB/hour ({} the {BUDGET_MB_PER_HOUR} MB budget), recording {:.2}% of the \
             step time ({} the {BUDGET_OVERHEAD_PERCENT}% budget); the display itself (embed + \
             project) took {:.1}% of it",
            bench.name,
            bench.mb_per_hour(),
            if size_ok { "within" } else { "OVER" },
            bench.overhead_percent(),
            if cost_ok { "within" } else { "OVER" },
            100.0 * bench.display_secs / bench.step_secs.max(1e-9),
        );
    }
    let json: Vec<serde_json::Value> = results
        .iter()
        .map(|b| {
            json!({
                "workload": b.name,
                "steps": b.steps,
                "frames": b.frames,
                "bytes": b.bytes,
                "burst_bytes": b.burst_bytes,
                "frames_per_level": b.levels,
                "wall_secs": b.wall_secs,
                "mb_per_hour": b.mb_per_hour(),
                "step_secs": b.step_secs,
                "record_secs": b.record_secs,
                "display_secs": b.display_secs,
                "overhead_percent": b.overhead_percent(),
            })
        })
        .collect();
    println!("{}", json!({"bench": "record", "results": json}));
    Ok(())
}
