//! Benchmarks, printed as tables with ratios against a reference measured in the same run,
//! and a JSON line at the end for scripts. Never timed assertions in tests.
//!
//! - `sandbox`: steps/s of the MSBReg sandbox step (N = 4096 images, M = 2 views, D = 64) on
//!   each available backend; the reference is the flex CPU backend.
//! - `spectrum`: the eigenvalues of a D x D covariance by nalgebra (CPU, f64) against
//!   burn-linalg's SVD (host pipeline, f32), for D up to 2048.

use std::time::{Duration, Instant};

use burn::tensor::{Device, Tensor, TensorData};
use rand::RngExt;
use serde_json::json;

use crate::backend::{self, Backend, BackendChoice};
use crate::config::{Preset, SimConfig};
use crate::data::{Stream, rng};
use crate::diagnostics::covariance;
use crate::run::SandboxRun;

/// The sandbox workload of the benchmark: N = 4096, M = 2, D = 64.
pub fn sandbox_workload() -> SimConfig {
    let mut config = Preset::Msbreg.config();
    config.batch_size = 4096;
    config.views.count = 2;
    config.model.embed_dim = 64;
    config.data.train_size = 4096;
    config.data.eval_size = 64;
    config
}

pub struct SandboxBench {
    pub backend: String,
    pub steps: usize,
    pub steps_per_sec: f64,
    pub embeddings_per_sec: f64,
    pub first_step_secs: f64,
}

/// Times the sandbox step on `device`: one warm-up step (timed apart: it includes kernel
/// compilation and autotuning on wgpu), then steps until `budget` has passed (at least 3).
pub fn bench_sandbox(backend: &Backend, budget: Duration) -> anyhow::Result<SandboxBench> {
    let config = sandbox_workload();
    let mut run = SandboxRun::new(config.clone(), &backend.device);
    let start = Instant::now();
    run.step()?;
    let first_step_secs = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let mut steps = 0;
    while steps < 3 || start.elapsed() < budget {
        run.step()?;
        steps += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    let steps_per_sec = steps as f64 / secs;
    Ok(SandboxBench {
        backend: backend.describe(),
        steps,
        steps_per_sec,
        embeddings_per_sec: steps_per_sec * (config.batch_size * config.views.count) as f64,
        first_step_secs,
    })
}

/// Runs the sandbox benchmark on flex and, where an adapter exists (or `gpu` is asked), wgpu.
pub fn run_sandbox(choice: Option<BackendChoice>, budget: Duration) -> anyhow::Result<()> {
    let mut backends = Vec::new();
    if matches!(choice, None | Some(BackendChoice::Cpu)) {
        backends.push(Backend::flex("reference"));
    }
    if matches!(choice, None | Some(BackendChoice::Gpu | BackendChoice::Auto)) {
        match backend::select(BackendChoice::Gpu) {
            Ok(gpu) => backends.push(gpu),
            Err(err) => println!("wgpu: not measured ({err})"),
        }
    }
    println!("sandbox step, N = 4096 images, M = 2 views, D = 64 (msbreg preset)");
    let mut results = Vec::new();
    for backend in &backends {
        println!("measuring {} ...", backend.describe());
        results.push(bench_sandbox(backend, budget)?);
    }
    let reference = results.first().map_or(1.0, |r| r.steps_per_sec);
    println!(
        "{:<60} {:>9} {:>14} {:>13} {:>10}",
        "backend", "steps/s", "embeddings/s", "first step s", "vs first"
    );
    for r in &results {
        println!(
            "{:<60} {:>9.2} {:>14.0} {:>13.2} {:>9.2}x",
            truncate(&r.backend, 60),
            r.steps_per_sec,
            r.embeddings_per_sec,
            r.first_step_secs,
            r.steps_per_sec / reference
        );
    }
    let json = json!({
        "bench": "sandbox",
        "images": 4096, "views": 2, "dim": 64,
        "results": results.iter().map(|r| json!({
            "backend": r.backend,
            "steps": r.steps,
            "steps_per_sec": r.steps_per_sec,
            "embeddings_per_sec": r.embeddings_per_sec,
            "first_step_secs": r.first_step_secs,
            "ratio_to_first": r.steps_per_sec / reference,
        })).collect::<Vec<_>>(),
    });
    println!("{json}");
    Ok(())
}

fn truncate(text: &str, width: usize) -> String {
    text.chars().take(width).collect()
}

/// Median seconds of `runs` calls of `f`.
fn median_secs(runs: usize, mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Compares nalgebra's symmetric eigen-solver with burn-linalg's SVD on covariances of random
/// unit embeddings.
pub fn run_spectrum(dims: &[usize]) -> anyhow::Result<()> {
    let device = Device::flex();
    let mut rng = rng(0, Stream::Dataset);
    println!("eigenvalues of a D x D covariance (4 * D random samples)");
    println!(
        "{:>6} {:>14} {:>16} {:>12} {:>16}",
        "D", "nalgebra ms", "burn-linalg ms", "ratio", "max |diff| rel"
    );
    let mut rows = Vec::new();
    for &d in dims {
        let samples = 4 * d;
        let data: Vec<f32> = (0..samples * d)
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect();
        let cov = covariance(&data, d);
        let runs = if d >= 1024 { 1 } else { 3 };
        let mut ours = Vec::new();
        let nalgebra_secs = median_secs(runs, || {
            let mut values: Vec<f64> = cov.symmetric_eigenvalues().iter().copied().collect();
            values.sort_by(|a, b| b.total_cmp(a));
            ours = values;
        });
        let cov_f32: Vec<f32> = cov.transpose().iter().map(|&x| x as f32).collect();
        let mut theirs = Vec::new();
        let burn_secs = median_secs(runs, || {
            let tensor = Tensor::<2>::from_data(TensorData::new(cov_f32.clone(), [d, d]), &device);
            let (_, s, _) = burn::linalg::svd::<2, 1>(tensor, 100);
            theirs = s.into_data().try_to_vec::<f32>().unwrap_or_default();
        });
        let scale = ours.first().copied().unwrap_or(1.0).max(1e-12);
        let max_diff = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - f64::from(*b)).abs() / scale)
            .fold(0.0, f64::max);
        println!(
            "{d:>6} {:>14.2} {:>16.2} {:>11.2}x {:>16.2e}",
            nalgebra_secs * 1e3,
            burn_secs * 1e3,
            burn_secs / nalgebra_secs,
            max_diff
        );
        rows.push(json!({"dim": d, "nalgebra_ms": nalgebra_secs * 1e3, "burn_linalg_ms": burn_secs * 1e3,
            "burn_over_nalgebra": burn_secs / nalgebra_secs, "max_rel_diff": max_diff}));
    }
    println!("{}", json!({"bench": "spectrum", "results": rows}));
    Ok(())
}
