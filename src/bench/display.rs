//! `msbreg bench display`: what showing many points costs the app's trainer.
//!
//! For each workload, measurements in the same process, one after the other: the bare step
//! (steps/s of the run stepped alone, half the time before and half after the trainer: the
//! reference), and the app's trainer thread itself (in memory, no window) training with
//! `--points` points displayed. Printed: the trainer's steps/s and its ratio to the bare step (the display and kNN
//! every 3 s both take from it), the display's own share of the trainer's time as the trainer
//! measures it (embedding the core and a chunk beyond it, diagnostics, projection, arrows;
//! at most `DISPLAY_SHARE`), and how soon every point was on screen. One JSON line per
//! workload with `points`, `bare_steps_per_sec`, `trainer_steps_per_sec`, `ratio`,
//! `display_share`, `round_secs` (how long a round of chunks over every point beyond the core
//! took: the age of the oldest embedding on screen).

use std::time::{Duration, Instant};

use serde_json::json;

use crate::backend::Backend;
use crate::config::{DataChoice, WorkloadSettings};
use crate::session;
use crate::trainer::{DISPLAY_SHARE, Trainer};

/// What one workload measured.
struct Measured {
    bare_steps_per_sec: f64,
    trainer_steps_per_sec: f64,
    display_share: f64,
    shown: usize,
    total: usize,
    round_secs: Option<f64>,
}

fn bare_steps_per_sec(
    settings: &WorkloadSettings,
    backend: &Backend,
    secs: f64,
) -> anyhow::Result<f64> {
    let mut run = session::open(&settings.workload(), &backend.device)?;
    run.step()?; // warm-up: the loader, the first allocations
    let start = Instant::now();
    let mut steps = 0u32;
    while start.elapsed().as_secs_f64() < secs {
        run.step()?;
        steps += 1;
    }
    Ok(f64::from(steps) / start.elapsed().as_secs_f64())
}

fn measure(settings: &WorkloadSettings, backend: &Backend, secs: f64) -> anyhow::Result<Measured> {
    let bare_before = bare_steps_per_sec(settings, backend, secs / 2.0)?;
    let trainer = Trainer::spawn(backend, settings.workload(), true, Box::new(|| {}))?;
    let opened = Instant::now();
    let mut first: Option<(Instant, u64)> = None;
    let mut last = None;
    while first.is_none_or(|(at, _)| at.elapsed().as_secs_f64() < secs) {
        if opened.elapsed().as_secs_f64() > secs + 120.0 {
            anyhow::bail!("the trainer made no progress in {:.0} s", secs + 120.0);
        }
        if let Some(failure) = trainer.failure() {
            anyhow::bail!("{failure}");
        }
        let Some(snapshot) = trainer.wait_snapshot(Duration::from_millis(200)) else {
            continue;
        };
        if let Some(error) = &snapshot.error {
            anyhow::bail!("{error}");
        }
        // Timed from the first step on (the start embeds every point at once).
        if first.is_none() && snapshot.step >= 1 {
            first = Some((Instant::now(), snapshot.step));
        }
        let shown = snapshot
            .frame
            .as_ref()
            .map_or(0, |f| f.points.len() + f.more.len());
        last = Some((Instant::now(), snapshot, shown));
    }
    trainer
        .shutdown(Duration::from_mins(1))
        .map_err(anyhow::Error::msg)?;
    // The reference measured on both sides of the trainer: a machine that speeds up or slows
    // down during the run moves both alike.
    let bare = 0.5 * (bare_before + bare_steps_per_sec(settings, backend, secs / 2.0)?);
    let ((t0, s0), Some((t1, snapshot, shown))) = (first.unwrap_or((opened, 0)), last) else {
        anyhow::bail!("the trainer posted nothing");
    };
    let elapsed = (t1 - t0).as_secs_f64().max(1e-9);
    Ok(Measured {
        bare_steps_per_sec: bare,
        trainer_steps_per_sec: (snapshot.step - s0) as f64 / elapsed,
        display_share: snapshot.display_share,
        shown,
        total: snapshot.info.labels.len(),
        round_secs: snapshot.display_round_secs,
    })
}

/// Runs the benchmark with `points` displayed on `workloads` (the app's default and the
/// shapes with the small CNN unless one is asked for), `secs` per measurement.
pub fn run_display_bench(
    backend: &Backend,
    workloads: &[WorkloadSettings],
    points: usize,
    secs: f64,
) -> anyhow::Result<()> {
    println!(
        "the display's cost to the trainer on {}, {points} points shown, {secs:.0} s per \
         measurement (the display may take at most {:.0} % of the trainer's time)",
        backend.describe(),
        100.0 * DISPLAY_SHARE
    );
    println!(
        "{:<34} {:>10} {:>12} {:>7} {:>14} {:>12} {:>16}",
        "workload",
        "bare st/s",
        "trainer st/s",
        "ratio",
        "display share",
        "shown",
        "round of chunks"
    );
    for settings in workloads {
        let settings = WorkloadSettings {
            display_points: points,
            ..*settings
        };
        let m = measure(&settings, backend, secs)?;
        let name = if settings.data.is_sandbox() {
            settings.data.label().to_owned()
        } else {
            format!("{}, {}", settings.data.label(), settings.model.label())
        };
        let ratio = m.trainer_steps_per_sec / m.bare_steps_per_sec.max(1e-9);
        println!(
            "{name:<34} {:>10.1} {:>12.1} {:>6.2}x {:>13.1}% {:>5}/{:<6} {:>16}",
            m.bare_steps_per_sec,
            m.trainer_steps_per_sec,
            ratio,
            100.0 * m.display_share,
            m.shown,
            m.total,
            m.round_secs
                .map_or_else(|| "none yet".to_owned(), |s| format!("{s:.1} s"))
        );
        println!(
            "{}",
            json!({
                "bench": "display",
                "workload": name,
                "backend": backend.describe(),
                "points": m.total,
                "bare_steps_per_sec": m.bare_steps_per_sec,
                "trainer_steps_per_sec": m.trainer_steps_per_sec,
                "ratio": ratio,
                "display_share": m.display_share,
                "round_secs": m.round_secs,
            })
        );
    }
    println!(
        "(the ratio also pays for kNN every 3 s; the display share is the trainer's own \
         measure of the display alone)"
    );
    Ok(())
}

/// The workloads measured by default: the app's default and the shapes with the small CNN.
pub fn default_workloads() -> Vec<WorkloadSettings> {
    vec![
        WorkloadSettings::app_default(),
        WorkloadSettings {
            data: DataChoice::Shapes,
            ..WorkloadSettings::default()
        },
    ]
}
