//! `msbreg bench teach`: how soon the app's default run teaches something, on the machine it
//! runs on. The app's trainer loop is replayed without a window, its display and kNN included
//! (they share the trainer's time in the app): train continuously, refresh the display every
//! 150 ms at most and within the app's display budget (embed the display set's core, as the
//! app does; `trainer::DISPLAY_SHARE` of the time), evaluate held-out kNN every 3 s.
//!
//! Two runs from step 0, seed 0: the default workload with the msbreg preset until its kNN is
//! 0.2 above its step-0 value (learning), and the same workload with the collapse preset's
//! forces until the collapse level of the display set is below 0.1 (collapse). Printed: the
//! steps and seconds each took (wall time, display and evaluations included), and a JSON line
//! with `learn_secs`, `collapse_secs`, `learn_steps`, `collapse_steps`, `knn_start`,
//! `knn_end` (`null` where the target was not reached within `--max-seconds`).

use std::time::Instant;

use serde_json::json;

use crate::backend::Backend;
use crate::config::{Preset, WorkloadSettings};
use crate::diagnostics;
use crate::session::{self, Run};
use crate::trainer::{DISPLAY_INTERVAL, DisplayClock, KNN_INTERVAL};

/// How far above its step-0 value held-out kNN must get: "learning".
pub const LEARN_MARGIN: f64 = 0.2;
/// The collapse level the collapse preset must get under: "collapsed".
pub const COLLAPSED_BELOW: f64 = 0.1;

/// When a target was reached.
#[derive(Clone, Copy, Debug)]
struct Reached {
    steps: u64,
    secs: f64,
}

struct Learning {
    knn_start: f64,
    knn_end: f64,
    reached: Option<Reached>,
    steps: u64,
    secs: f64,
}

/// The app's loop on `run` until `done` says the target is met (given the kNN when it was
/// evaluated, and the display embeddings), or `max_secs`.
fn app_loop(
    run: &mut dyn Run,
    max_secs: f64,
    mut done: impl FnMut(Option<f64>, &[Vec<f32>; 3]) -> bool,
) -> anyhow::Result<(Option<Reached>, u64, f64)> {
    let start = Instant::now();
    let mut last_display: Option<Instant> = None;
    let mut last_knn = Some(Instant::now());
    let mut clock = DisplayClock::default();
    while start.elapsed().as_secs_f64() < max_secs {
        let stepped = Instant::now();
        run.step()?;
        clock.trained(stepped.elapsed().as_secs_f64());
        if last_display.is_none_or(|at| at.elapsed() >= DISPLAY_INTERVAL) && clock.may_refresh() {
            let displayed = Instant::now();
            last_display = Some(displayed);
            let rows = run.display_embeddings()?;
            clock.displayed(displayed.elapsed().as_secs_f64());
            let knn = if last_knn.is_none_or(|at| at.elapsed() >= KNN_INTERVAL) {
                last_knn = Some(Instant::now());
                run.knn_acc()?
            } else {
                None
            };
            if done(knn, &rows) {
                let reached = Reached {
                    steps: run.steps_done(),
                    secs: start.elapsed().as_secs_f64(),
                };
                return Ok((Some(reached), reached.steps, reached.secs));
            }
        }
    }
    Ok((None, run.steps_done(), start.elapsed().as_secs_f64()))
}

fn learn(
    settings: &WorkloadSettings,
    backend: &Backend,
    max_secs: f64,
) -> anyhow::Result<Learning> {
    let mut run = session::open(&settings.workload(), &backend.device)?;
    let knn_start = run.knn_acc()?.ok_or_else(|| {
        anyhow::anyhow!("the workload has no labelled held-out split to evaluate kNN on")
    })?;
    let mut knn_end = knn_start;
    let (reached, steps, secs) = app_loop(&mut *run, max_secs, |knn, _| {
        if let Some(knn) = knn {
            knn_end = knn;
        }
        knn_end >= knn_start + LEARN_MARGIN
    })?;
    Ok(Learning {
        knn_start,
        knn_end,
        reached,
        steps,
        secs,
    })
}

fn collapse(
    settings: &WorkloadSettings,
    backend: &Backend,
    max_secs: f64,
) -> anyhow::Result<(Option<Reached>, f64, u64, f64)> {
    let mut run = session::open(&settings.workload(), &backend.device)?;
    run.settings_mut().set_dynamics(Preset::Collapse.dynamics());
    let d = run.settings().embed_dim();
    let mut level = 1.0;
    let (reached, steps, secs) = app_loop(&mut *run, max_secs, |_, rows| {
        level = diagnostics::collapse_level(&rows[0], d);
        level < COLLAPSED_BELOW
    })?;
    Ok((reached, level, steps, secs))
}

/// The workload in words.
fn describe(settings: &WorkloadSettings) -> String {
    if settings.data.is_sandbox() {
        format!(
            "{}, {} views, batch {}",
            settings.data.label(),
            settings.views,
            settings.batch_size
        )
    } else {
        format!(
            "{}, {}, {} views, batch {}",
            settings.data.label(),
            settings.model.label(),
            settings.views,
            settings.batch_size
        )
    }
}

/// Runs the benchmark on `settings` (the app's default unless asked otherwise).
pub fn run_teach_bench(
    backend: &Backend,
    settings: &WorkloadSettings,
    max_secs: f64,
) -> anyhow::Result<()> {
    println!(
        "what the app teaches, and how soon, on {}: {} (seed {}), the app's loop (display \
         every 150 ms within 15 % of the time, kNN every 3 s) timed whole, at most {max_secs:.0} s per run",
        backend.describe(),
        describe(settings),
        settings.seed
    );
    let learning = learn(settings, backend, max_secs)?;
    match learning.reached {
        Some(r) => println!(
            "learning (msbreg preset): kNN {:.3} at step 0, {:.3} (+{LEARN_MARGIN}) after {} \
             steps, {:.1} s",
            learning.knn_start, learning.knn_end, r.steps, r.secs
        ),
        None => println!(
            "learning (msbreg preset): kNN {:.3} at step 0, still {:.3} after {} steps, {:.1} \
             s: NOT {LEARN_MARGIN} above it",
            learning.knn_start, learning.knn_end, learning.steps, learning.secs
        ),
    }
    let (collapsed, level, steps, secs) = collapse(settings, backend, max_secs)?;
    match collapsed {
        Some(r) => println!(
            "collapse (collapse preset): collapse level {level:.3} (< {COLLAPSED_BELOW}) after \
             {} steps, {:.1} s",
            r.steps, r.secs
        ),
        None => println!(
            "collapse (collapse preset): collapse level still {level:.3} after {steps} steps, \
             {secs:.1} s: NOT below {COLLAPSED_BELOW}"
        ),
    }
    println!(
        "{}",
        json!({
            "bench": "teach",
            "workload": describe(settings),
            "backend": backend.describe(),
            "learn_secs": learning.reached.map(|r| r.secs),
            "learn_steps": learning.reached.map(|r| r.steps),
            "collapse_secs": collapsed.map(|r| r.secs),
            "collapse_steps": collapsed.map(|r| r.steps),
            "knn_start": learning.knn_start,
            "knn_end": learning.knn_end,
            "collapse_level_end": level,
        })
    );
    Ok(())
}
