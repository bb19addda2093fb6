//! `msbreg bench train`: images/s of the MSBReg training step on random inputs and fed by the
//! loader, against PyTorch eager's (`../shared/bench/torch_step.py`) measured in the same run,
//! on the same number of threads. `main.rs` runs one process per thread count of a sweep, so
//! each count gets its own rayon pool for the step, the loader and gemm alike.

use std::path::PathBuf;
use std::time::Instant;

use burn::tensor::{Device, Tensor, TensorData};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use crate::backend::Backend;
use crate::config::Preset;
use crate::method::{Dynamics, Learner};
use crate::model::{EncoderKind, ImageNet};
use crate::seed::{Stream, rng};

/// What `msbreg bench train` measures.
pub struct TrainBenchOptions {
    pub encoder: EncoderKind,
    pub batch_size: usize,
    pub views: usize,
    pub steps: usize,
    /// A Python with PyTorch and the path of `torch_step.py`, to measure the reference in the
    /// same run.
    pub torch: Option<(PathBuf, PathBuf)>,
    /// `cpu` or `cuda`, for the reference.
    pub torch_device: String,
    /// The threads both sides use (`None`: rayon's and PyTorch's defaults, all cores). The
    /// caller has built rayon's global pool with this many.
    pub threads: Option<usize>,
    /// Measurements of each side, alternated; the figures are their medians.
    pub runs: usize,
    /// Also print where one step's time goes (`profile.rs`).
    pub profile: bool,
}

/// The medians over the runs.
#[derive(Clone, Copy, Debug)]
pub struct TrainBenchResult {
    pub images_per_sec: f64,
    pub images_per_sec_with_loader: f64,
    pub torch_images_per_sec: Option<f64>,
}

/// The step of `torch_step.py`: the same network, losses and optimiser.
pub(super) fn reference_dynamics() -> Dynamics {
    Dynamics {
        centroid: crate::method::Force::on(1.0),
        centroid_mode: crate::method::CentroidMode::Mean,
        singular_value: crate::method::Force::on(1.0),
        brownian: crate::method::Force::on(0.1),
        predictor: true,
        ema: true,
        tau: 0.99,
        ..Dynamics::default()
    }
}

fn reference_optimizer() -> crate::method::OptimizerConfig {
    crate::method::OptimizerConfig {
        kind: crate::method::OptimizerKind::Sgd,
        momentum: 0.9,
        weight_decay: 1e-5,
        exclude_bias_and_norm: false,
        ..crate::method::OptimizerConfig::default()
    }
}

/// Median seconds per step of `step` over `steps` timed calls after two warm-up calls.
fn time_steps(steps: usize, mut step: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    step()?;
    step()?;
    let mut times = Vec::with_capacity(steps);
    for _ in 0..steps.max(1) {
        let start = Instant::now();
        step()?;
        times.push(start.elapsed().as_secs_f64());
    }
    Ok(median(&mut times))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The bench's step on random 3x32x32 inputs (no augmentation): the workload of
/// `torch_step.py`.
pub(super) struct SyntheticStep {
    learner: Learner<ImageNet>,
    views: Tensor<4>,
    kicks: ChaCha8Rng,
    dynamics: Dynamics,
    images: usize,
    views_per_image: usize,
    device: Device,
}

/// The projection's width in the bench's network (as in `torch_step.py`).
pub(super) const EMBED_DIM: usize = 128;
/// The heads' hidden width.
pub(super) const HEAD_HIDDEN: usize = 512;

impl SyntheticStep {
    pub fn new(backend: &Backend, options: &TrainBenchOptions) -> Self {
        use crate::model::{ImageNetConfig, seeded_init};
        let device = backend.device.clone().autodiff();
        let (n, m) = (options.batch_size, options.views);
        let config = ImageNetConfig {
            encoder: options.encoder,
            head_hidden: HEAD_HIDDEN,
            embed_dim: EMBED_DIM,
        };
        let online = seeded_init(config.init(3, 32, &device), &mut rng(0, Stream::Weights));
        let learner = Learner::new(online, &reference_optimizer());
        let mut data_rng = rng(0, Stream::Batches);
        let input: Vec<f32> = (0..n * m * 3 * 32 * 32)
            .map(|_| data_rng.random_range(-1.0f32..1.0))
            .collect();
        let views = Tensor::<4>::from_data(TensorData::new(input, [n * m, 3, 32, 32]), &device);
        Self {
            learner,
            views,
            kicks: rng(0, Stream::Brownian),
            dynamics: reference_dynamics(),
            images: n,
            views_per_image: m,
            device,
        }
    }

    pub fn step(&mut self) -> anyhow::Result<()> {
        use crate::method::forces::{brownian_directions, tensor_2d};
        let n = self.images;
        let directions = tensor_2d(
            brownian_directions(&mut self.kicks, n, EMBED_DIM),
            n,
            EMBED_DIM,
            &self.device,
        );
        self.learner.step(
            &self.views,
            n,
            self.views_per_image,
            directions,
            &self.dynamics,
            0.05,
        )?;
        Ok(())
    }
}

/// Images/s (views counted) of the synthetic step.
fn bench_synthetic_step(backend: &Backend, options: &TrainBenchOptions) -> anyhow::Result<f64> {
    let mut step = SyntheticStep::new(backend, options);
    let secs = time_steps(options.steps, || step.step())?;
    Ok((options.batch_size * options.views) as f64 / secs)
}

/// Images/s of the same step fed by the loader thread: the built-in shapes set (32x32 RGB)
/// with the default augmentation, prepared with rayon while the step runs.
fn bench_loader_step(backend: &Backend, options: &TrainBenchOptions) -> anyhow::Result<(f64, f64)> {
    use crate::config::TrainConfig;
    use crate::session::ImageRun;
    let mut config = TrainConfig::from_preset(Preset::Msbreg);
    config.batch_size = options.batch_size;
    config.views = options.views;
    config.model.encoder = options.encoder;
    config.dynamics = reference_dynamics();
    config.optimizer = reference_optimizer();
    config.data.shapes_train = options.batch_size * (options.steps + 3);
    config.data.shapes_test = 10;
    let mut run = ImageRun::new(config, &backend.device)?;
    let plan = std::sync::Arc::clone(run.plan());
    let total = options.steps as u64 + 2;
    let mut loader = crate::data::loader::Loader::spawn(plan, 0, total, 4)?;
    let mut wait_before = 0.0;
    let mut secs = Vec::new();
    for step in 0..total {
        let start = Instant::now();
        let Some(batch) = loader.next_batch() else {
            break;
        };
        run.step_batch(&batch)?;
        if step >= 2 {
            secs.push(start.elapsed().as_secs_f64());
        } else {
            wait_before = loader.wait_secs();
        }
    }
    let wait = loader.wait_secs() - wait_before;
    let total_secs: f64 = secs.iter().sum();
    Ok((
        (options.batch_size * options.views) as f64 / median(&mut secs),
        wait / total_secs.max(1e-9),
    ))
}

/// Runs `torch_step.py` and reads its images/s.
fn bench_torch(
    python: &std::path::Path,
    script: &std::path::Path,
    options: &TrainBenchOptions,
) -> anyhow::Result<(f64, String)> {
    let model = match options.encoder {
        EncoderKind::Resnet18 => "resnet18",
        _ => "tiny",
    };
    let mut command = std::process::Command::new(python);
    command
        .arg(script)
        .args(["--model", model, "--device", &options.torch_device])
        .args([
            "--batch",
            &options.batch_size.to_string(),
            "--views",
            &options.views.to_string(),
        ])
        .args(["--steps", &options.steps.to_string()]);
    if let Some(threads) = options.threads {
        command.args(["--threads", &threads.to_string()]);
    }
    let output = command.output().map_err(|err| {
        anyhow::anyhow!(
            "cannot run {} {}: {err}",
            python.display(),
            script.display()
        )
    })?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        anyhow::bail!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
    }
    let line = stdout.lines().last().unwrap_or("").to_owned();
    let images_per_sec = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("img/s="))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no img/s in the reference's output: {line}"))?;
    Ok((images_per_sec, line))
}

/// `msbreg bench train`: our step's images/s, synthetic and with the loader, against PyTorch
/// eager's on the same workload and threads, measured `runs` times in this run, alternating.
pub fn run_train_bench(
    backend: &Backend,
    options: &TrainBenchOptions,
) -> anyhow::Result<TrainBenchResult> {
    let threads = rayon::current_num_threads();
    println!(
        "MSBReg step, {} encoder, batch {} x {} views, 3x32x32, SGD momentum, EMA, on {}; {threads} thread{}{}",
        options.encoder.name(),
        options.batch_size,
        options.views,
        backend.describe(),
        if threads == 1 { "" } else { "s" },
        if options.threads.is_some() {
            " for both sides (--threads)"
        } else {
            " (all cores; PyTorch its default)"
        }
    );
    let runs = options.runs.max(1);
    let (mut ours, mut loaded, mut theirs) = (Vec::new(), Vec::new(), Vec::new());
    for run in 1..=runs {
        let synthetic = bench_synthetic_step(backend, options)?;
        let (with_loader, wait_fraction) = bench_loader_step(backend, options)?;
        let prefix = if runs > 1 {
            format!("run {run}/{runs}: ")
        } else {
            String::new()
        };
        println!("{prefix}msbreg, random inputs (no augmentation): {synthetic:>9.0} images/s");
        println!(
            "{prefix}msbreg, with the loader (shapes, augmented): {with_loader:>9.0} images/s (the step waited for batches {:.0}% of the time)",
            wait_fraction * 100.0
        );
        ours.push(synthetic);
        loaded.push(with_loader);
        if let Some((python, script)) = &options.torch {
            let (images_per_sec, line) = bench_torch(python, script, options)?;
            println!("{prefix}PyTorch eager reference: {images_per_sec:>9.0} images/s  ({line})");
            theirs.push(images_per_sec);
        }
    }
    let result = TrainBenchResult {
        images_per_sec: median(&mut ours),
        images_per_sec_with_loader: median(&mut loaded),
        torch_images_per_sec: (!theirs.is_empty()).then(|| median(&mut theirs)),
    };
    if runs > 1 {
        println!(
            "medians of {runs} runs: msbreg {:.0} images/s, with the loader {:.0}{}",
            result.images_per_sec,
            result.images_per_sec_with_loader,
            result
                .torch_images_per_sec
                .map(|t| format!(", PyTorch {t:.0}"))
                .unwrap_or_default()
        );
    }
    match result.torch_images_per_sec {
        Some(torch) => println!(
            "ratio msbreg / PyTorch: {:.2}x (random inputs), {:.2}x (with the loader)",
            result.images_per_sec / torch,
            result.images_per_sec_with_loader / torch
        ),
        None => println!(
            "PyTorch reference not measured (pass --torch PYTHON; see ../shared/bench/README.md)"
        ),
    }
    let profile = if options.profile {
        Some(super::profile::run_profile(backend, options)?)
    } else {
        None
    };
    println!(
        "{}",
        json!({
            "bench": "train", "encoder": options.encoder.name(), "batch": options.batch_size,
            "views": options.views, "backend": backend.describe(), "threads": threads,
            "runs": runs,
            "images_per_sec": result.images_per_sec,
            "images_per_sec_with_loader": result.images_per_sec_with_loader,
            "torch_images_per_sec": result.torch_images_per_sec,
            "ratio_to_torch": result.torch_images_per_sec.map(|t| result.images_per_sec / t),
            "ratio_to_torch_with_loader":
                result.torch_images_per_sec.map(|t| result.images_per_sec_with_loader / t),
            "profile": profile,
        })
    );
    Ok(result)
}
