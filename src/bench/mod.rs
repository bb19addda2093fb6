//! Benchmarks, printed as tables with ratios against a reference measured in the same run,
//! and a JSON line at the end for scripts. Never timed assertions in tests.
//!
//! - `sandbox`: steps/s of the MSBReg sandbox step (N = 4096 images, M = 2 views, D = 64) on
//!   each available backend; the reference is the flex CPU backend.
//! - `spectrum`: the eigenvalues of a D x D covariance by nalgebra (CPU, f64) against
//!   burn-linalg's SVD (host pipeline, f32), for D up to 2048.
//! - `record` (`record.rs`): the recording's size per hour and its cost against the step.
//! - `teach` (`teach.rs`): how soon the app's default run learns, and collapses with the
//!   collapse preset.
//! - `display` (`display.rs`): what showing many points costs the app's trainer.
//! - `train` (`train.rs`): the image training step against PyTorch eager, by thread count, and
//!   with `--profile` where its time goes (`profile.rs`).

mod display;
mod profile;
mod record;
mod teach;
mod train;

use std::time::{Duration, Instant};

use burn::tensor::{Device, Tensor, TensorData};
use rand::RngExt;
use serde_json::json;

use crate::backend::{self, Backend, BackendChoice};
use crate::config::{Preset, SimConfig};
use crate::diagnostics::covariance;
use crate::seed::{Stream, rng};
use crate::session::{Run as _, SandboxRun};

pub use display::{default_workloads as display_workloads, run_display_bench};
pub use record::run_record_bench;
pub use teach::run_teach_bench;
pub use train::{TrainBenchOptions, TrainBenchResult, run_train_bench};

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
    if matches!(
        choice,
        None | Some(BackendChoice::Gpu | BackendChoice::Auto)
    ) {
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
        rows.push(
            json!({"dim": d, "nalgebra_ms": nalgebra_secs * 1e3, "burn_linalg_ms": burn_secs * 1e3,
            "burn_over_nalgebra": burn_secs / nalgebra_secs, "max_rel_diff": max_diff}),
        );
    }
    println!("{}", json!({"bench": "spectrum", "results": rows}));
    Ok(())
}

/// A small conv net for the backend comparison: three stride-2 3x3 conv blocks (32, 64, 128
/// channels, batch norm, ReLU), global average pooling, a linear layer to 10 outputs.
#[derive(burn::module::Module, Debug)]
struct ConvNet {
    convs: Vec<burn::nn::conv::Conv2d>,
    norms: Vec<burn::nn::BatchNorm>,
    head: burn::nn::Linear,
}

impl ConvNet {
    fn new(device: &Device) -> Self {
        use burn::nn::conv::Conv2dConfig;
        use burn::nn::{BatchNormConfig, LinearConfig, PaddingConfig2d};
        let widths = [3, 32, 64, 128];
        Self {
            convs: widths
                .windows(2)
                .map(|w| {
                    Conv2dConfig::new([w[0], w[1]], [3, 3])
                        .with_stride([2, 2])
                        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                        .init(device)
                })
                .collect(),
            norms: widths[1..]
                .iter()
                .map(|&c| BatchNormConfig::new(c).init(device))
                .collect(),
            head: LinearConfig::new(128, 10).init(device),
        }
    }

    /// # Shapes
    /// - `x`: `[B, 3, 32, 32]`
    /// - output: `[B, 10]`
    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let mut x = x;
        for (conv, norm) in self.convs.iter().zip(&self.norms) {
            x = burn::tensor::activation::relu(norm.forward(conv.forward(x)));
        }
        // [B, 128, 4, 4] -> [B, 128]
        let pooled: Tensor<2> = x.mean_dim(3).mean_dim(2).flatten(1, 3);
        self.head.forward(pooled)
    }
}

/// Median seconds of a conv-net training step (batch 64 x 3 x 32 x 32, forward + backward +
/// Adam) on `backend`, after `warmup` untimed steps; also the first step's seconds.
fn conv_step_secs(backend: &Backend, warmup: usize, runs: usize) -> anyhow::Result<(f64, f64)> {
    use burn::optim::{AdamConfig, GradientsParams};
    let device = backend.device.clone().autodiff();
    let mut model = ConvNet::new(&device);
    let mut optimizer = AdamConfig::new().init();
    let mut rng = rng(0, Stream::Batches);
    let input: Vec<f32> = (0..64 * 3 * 32 * 32)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    let input = Tensor::<4>::from_data(TensorData::new(input, [64, 3, 32, 32]), &device);
    let mut step = || -> anyhow::Result<()> {
        let loss = model.forward(input.clone()).square().mean();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(1e-3, model.clone(), grads);
        // Wait for the device: read one number back.
        model
            .head
            .weight
            .val()
            .slice([0..1, 0..1])
            .into_scalar::<f32>();
        Ok(())
    };
    let start = Instant::now();
    step()?;
    let first = start.elapsed().as_secs_f64();
    for _ in 0..warmup {
        step()?;
    }
    let mut failed = None;
    let median = median_secs(runs, || {
        if let Err(err) = step() {
            failed = Some(err);
        }
    });
    match failed {
        Some(err) => Err(err),
        None => Ok((median, first)),
    }
}

/// The backend comparison behind `auto`'s choice: a conv-net training step on flex and on
/// wgpu (whatever adapter there is; lavapipe on a machine without a GPU).
pub fn run_backends(include_wgpu: bool) -> anyhow::Result<()> {
    let mut backends = vec![Backend::flex("reference")];
    if include_wgpu {
        match backend::select(BackendChoice::Gpu) {
            Ok(gpu) => backends.push(gpu),
            Err(err) => println!("wgpu: not measured ({err})"),
        }
    }
    println!("conv-net training step, batch 64 x 3 x 32 x 32, forward + backward + Adam");
    let mut rows = Vec::new();
    let mut reference = None;
    for backend in &backends {
        println!("measuring {} ...", backend.describe());
        let (median, first) = conv_step_secs(backend, 2, 5)?;
        let reference = *reference.get_or_insert(median);
        println!(
            "{:<60} median {:>8.3} s   first step {:>8.2} s   {:>6.2}x the first row's time",
            truncate(&backend.describe(), 60),
            median,
            first,
            median / reference
        );
        rows.push(
            json!({"backend": backend.describe(), "median_step_secs": median,
            "first_step_secs": first, "time_ratio_to_first": median / reference}),
        );
    }
    println!("{}", json!({"bench": "backends", "results": rows}));
    Ok(())
}
