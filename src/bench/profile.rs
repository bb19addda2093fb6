//! `msbreg bench train --profile`: where one training step's time goes, by phase of the step
//! and by kind of work inside flex, with what the machine is and could do, so that a gap seen
//! on a CPU nobody here has can be read from the output.

use std::time::Instant;

use serde_json::{Value, json};

use super::train::{EMBED_DIM, HEAD_HIDDEN, SyntheticStep, TrainBenchOptions};
use crate::backend::{Backend, BackendKind};
use crate::model::EncoderKind;

/// The CPU as the kernel describes it.
struct Cpu {
    model: String,
    /// The highest clock the kernel reports (cpufreq's maximum, else /proc/cpuinfo's current).
    ghz: Option<f64>,
    /// The vector kernels gemm and flex pick at run time.
    kernels: &'static str,
    /// f32 lanes one FMA unit completes per cycle: the lanes of a vector of those kernels,
    /// except where the vectors are wider than the units (AMD Zen 4 runs AVX-512 on 256-bit
    /// units), with the reason.
    unit_lanes: (usize, Option<&'static str>),
}

fn read_cpu() -> Cpu {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        info.lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split(':').nth(1))
            .map(|v| v.trim().to_owned())
    };
    let model = crate::backend::cpu_model().unwrap_or_else(|| "unknown CPU".into());
    let max_khz = std::fs::read_to_string("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok());
    let ghz = max_khz.map(|khz| khz / 1e6).or_else(|| {
        field("cpu MHz")
            .and_then(|v| v.parse::<f64>().ok())
            .map(|mhz| mhz / 1e3)
    });
    let (kernels, lanes) = vector_kernels();
    // Zen 4 (family 25 with AVX-512; Zen 3, the same family, has none) splits each 512-bit
    // operation over two 256-bit halves; Zen 5 (family 26) has full-width units.
    let zen4 = field("vendor_id").as_deref() == Some("AuthenticAMD")
        && field("cpu family").as_deref() == Some("25")
        && lanes == 16;
    let unit_lanes = if zen4 {
        (8, Some("AVX-512 on 256-bit units: AMD Zen 4"))
    } else {
        (lanes, None)
    };
    Cpu {
        model,
        ghz,
        kernels,
        unit_lanes,
    }
}

/// What gemm (built with `x86-v4`, Cargo.toml) and flex's macerator dispatch to on this CPU.
fn vector_kernels() -> (&'static str, usize) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return ("AVX-512 (x86-64-v4)", 16);
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return ("AVX2 + FMA (x86-64-v3)", 8);
        }
        ("SSE (no AVX2)", 4)
    }
    #[cfg(target_arch = "aarch64")]
    {
        ("NEON", 4)
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        ("scalar", 1)
    }
}

/// CPU seconds (user + system) of every thread of this process so far.
fn process_cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command's closing parenthesis; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // The kernel's USER_HZ is 100 on every Linux architecture we build for.
    Some((utime + stime) / 100.0)
}

/// Multiply-adds of one image through a 3x3 (or 1x1) convolution layer: (in, out, kernel,
/// output side).
type ConvLayer = (usize, usize, usize, usize);

/// The bench network's convolution layers on a 32x32 image, from the same shapes as
/// `model::image::Encoder::new`, and its encoder's feature width.
fn conv_layers(encoder: EncoderKind) -> Option<(Vec<ConvLayer>, usize)> {
    match encoder {
        EncoderKind::Cnn => Some((vec![(3, 32, 3, 16), (32, 64, 3, 8), (64, 128, 3, 4)], 128)),
        EncoderKind::Resnet18 => {
            let mut layers = vec![(3, 64, 3, 32)];
            let mut side = 32;
            let mut input = 64;
            for (stage, output) in [64, 128, 256, 512].into_iter().enumerate() {
                for index in 0..2 {
                    let stride = if stage > 0 && index == 0 { 2 } else { 1 };
                    side /= stride;
                    layers.push((input, output, 3, side));
                    layers.push((output, output, 3, side));
                    if stride != 1 || input != output {
                        layers.push((input, output, 1, side));
                    }
                    input = output;
                }
            }
            Some((layers, 512))
        }
        EncoderKind::Mlp => None,
    }
}

/// FLOPs of one step (2 per multiply-add): the online network forward (encoder, projector,
/// predictor), its backward (twice the forward: the input and the weight gradients), and the
/// target's forward (encoder and projector). Batch norm, activations and the losses are left
/// out: a few percent of the products.
fn step_flops(options: &TrainBenchOptions) -> Option<(f64, f64)> {
    let (layers, features) = conv_layers(options.encoder)?;
    let conv: usize = layers
        .iter()
        .map(|&(input, output, kernel, side)| input * output * kernel * kernel * side * side)
        .sum();
    let projector = features * HEAD_HIDDEN + HEAD_HIDDEN * EMBED_DIM;
    let predictor = EMBED_DIM * HEAD_HIDDEN + HEAD_HIDDEN * EMBED_DIM;
    let images = (options.batch_size * options.views) as f64;
    let online = 2.0 * images * (conv + projector + predictor) as f64;
    let target = 2.0 * images * (conv + projector) as f64;
    Some((3.0 * online + target, online))
}

/// Profiles `options.steps` synthetic steps (after two warm-up steps) and prints the report.
pub fn run_profile(backend: &Backend, options: &TrainBenchOptions) -> anyhow::Result<Value> {
    let threads = rayon::current_num_threads();
    let cpu = read_cpu();
    let mut step = SyntheticStep::new(backend, options);
    step.step()?;
    step.step()?;
    let steps = options.steps.max(1);
    crate::profile::take();
    crate::profile::take_fused();
    burn_flex::profile::take();
    crate::profile::enable(true);
    let cpu_before = process_cpu_secs();
    let start = Instant::now();
    for _ in 0..steps {
        step.step()?;
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu_after = process_cpu_secs();
    crate::profile::enable(false);
    let phases = crate::profile::take();
    let kinds = burn_flex::profile::take();
    let fused = crate::profile::take_fused();
    let per_step = wall / steps as f64;

    println!();
    println!(
        "profile: {steps} steps of {} x {} views, {:.1} ms per step (the profile's own timers included)",
        options.batch_size,
        options.views,
        per_step * 1e3
    );
    println!(
        "CPU: {}; {threads} thread{}; vector kernels chosen at run time: {} (gemm, flex), {} (msbreg's own loops){}",
        cpu.model,
        if threads == 1 { "" } else { "s" },
        cpu.kernels,
        crate::simd::variant(),
        cpu.ghz
            .map(|g| format!("; clock {g:.2} GHz (as the kernel reports it)"))
            .unwrap_or_default()
    );
    let busy = cpu_before
        .zip(cpu_after)
        .map(|(before, after)| (after - before) / (wall * threads as f64));
    if let Some(busy) = busy {
        println!(
            "threads busy: {:.0}% of {threads} x the wall time (CPU time of the process / (wall time x threads); 100% = every thread working throughout)",
            busy * 100.0
        );
    }

    let phase_rows = print_phases(&phases, wall, steps);
    let kind_rows = print_kinds(backend, &kinds, &fused, wall, steps);

    let flops = step_flops(options);
    let achieved = flops.map(|(total, _)| total / per_step / 1e9);
    let peak = cpu
        .ghz
        .map(|ghz| ghz * (cpu.unit_lanes.0 * 2 * 2) as f64 * threads as f64);
    if let (Some((total, _)), Some(achieved)) = (flops, achieved) {
        println!(
            "work: {:.1} GFLOP per step (the layers' products: online forward, 2x it backward, target forward); achieved {achieved:.1} GFLOP/s",
            total / 1e9
        );
    }
    if let Some(peak) = peak {
        println!(
            "peak estimate: {peak:.0} GFLOP/s ({threads} thread{} x {} f32 lanes{} x 2 (FMA) x 2 FMA units (assumed) x clock); {}",
            if threads == 1 { "" } else { "s" },
            cpu.unit_lanes.0,
            cpu.unit_lanes
                .1
                .map(|why| format!(" per unit ({why})"))
                .unwrap_or_default(),
            achieved
                .map(|a| format!("achieved {:.1}% of it", a / peak * 100.0))
                .unwrap_or_default()
        );
    }
    let in_cache = gemm_in_cache_gflops(threads);
    println!(
        "measured: {in_cache:.0} GFLOP/s from gemm on {GEMM_SIDE}^3 products that stay in cache ({threads} thread{}, each with its own matrices, {GEMM_SECS} s: the estimate above takes the clock the kernel reports, which can be below the one cores run at){}",
        if threads == 1 { "" } else { "s" },
        achieved
            .map(|a| format!("; the step achieved {:.1}% of it", a / in_cache * 100.0))
            .unwrap_or_default()
    );
    Ok(json!({
        "cpu": cpu.model, "vector_kernels": cpu.kernels,
        "own_loops_vector_kernels": crate::simd::variant(), "clock_ghz": cpu.ghz,
        "threads": threads, "threads_busy": busy,
        "ms_per_step": per_step * 1e3,
        "phases": phase_rows, "kinds": kind_rows,
        "gflop_per_step": flops.map(|(t, _)| t / 1e9),
        "achieved_gflops": achieved, "peak_gflops_estimate": peak,
        "gemm_in_cache_gflops": in_cache,
    }))
}

/// The side of [`gemm_in_cache_gflops`]'s square products: three 256 KiB matrices, in a
/// core's L2.
const GEMM_SIDE: usize = 256;
/// How long [`gemm_in_cache_gflops`] multiplies.
const GEMM_SECS: f64 = 0.3;

/// GFLOP/s of `threads` threads each multiplying its own [`GEMM_SIDE`]-square `f32` matrices
/// with gemm (the crate behind flex's and the convolution's products) for [`GEMM_SECS`]: what
/// this machine's products reach when memory is not in the way. A measured reference beside
/// the clock-based estimate, which depends on a clock the kernel may under-report.
fn gemm_in_cache_gflops(threads: usize) -> f64 {
    use rayon::prelude::*;
    let n = GEMM_SIDE;
    let start = Instant::now();
    let products: usize = (0..threads.max(1))
        .into_par_iter()
        .map(|_| {
            let lhs = vec![0.5f32; n * n];
            let rhs = vec![0.25f32; n * n];
            let mut dst = vec![0.0f32; n * n];
            let mut count = 0;
            let begin = Instant::now();
            while begin.elapsed().as_secs_f64() < GEMM_SECS {
                crate::model::conv3x3::square_product(n, &mut dst, &lhs, &rhs);
                count += 1;
            }
            std::hint::black_box(&dst);
            count
        })
        .sum();
    let secs = start.elapsed().as_secs_f64();
    2.0 * (n * n * n * products) as f64 / secs / 1e9
}

/// Prints the phases of the step; their JSON rows.
fn print_phases(phases: &[(crate::profile::Phase, f64)], wall: f64, steps: usize) -> Vec<Value> {
    let ms = |secs: f64| secs / steps as f64 * 1e3;
    println!("by phase of the step        ms/step   share");
    let phase_total: f64 = phases.iter().map(|(_, s)| s).sum();
    let mut phase_rows = Vec::new();
    for (phase, secs) in phases {
        println!(
            "  {:<24} {:>8.1} {:>6.1}%",
            phase.name(),
            ms(*secs),
            secs / wall * 100.0
        );
        phase_rows.push(json!({"phase": phase.name(), "ms_per_step": ms(*secs)}));
    }
    println!(
        "  {:<24} {:>8.1} {:>6.1}%",
        "(outside the phases)",
        ms(wall - phase_total),
        (wall - phase_total) / wall * 100.0
    );

    phase_rows
}

/// Prints flex's time by kind of work (flex only); their JSON rows.
fn print_kinds(
    backend: &Backend,
    kinds: &[(burn_flex::profile::Kind, f64, u64)],
    fused: &[(crate::profile::Fused, f64, u64)],
    wall: f64,
    steps: usize,
) -> Vec<Value> {
    let ms = |secs: f64| secs / steps as f64 * 1e3;
    let mut kind_rows = Vec::new();
    if backend.kind == BackendKind::Flex {
        println!("by kind of work in flex     ms/step   share   calls/step");
        let rows = kinds
            .iter()
            .map(|(kind, secs, calls)| (kind.name(), *secs, *calls))
            .chain(
                fused
                    .iter()
                    .map(|(op, secs, calls)| (op.name(), *secs, *calls)),
            );
        let mut total = 0.0;
        for (name, secs, calls) in rows {
            total += secs;
            if calls == 0 {
                continue;
            }
            println!(
                "  {:<45} {:>8.1} {:>6.1}% {:>8.0}",
                name,
                ms(secs),
                secs / wall * 100.0,
                calls as f64 / steps as f64
            );
            kind_rows.push(json!({"kind": name, "ms_per_step": ms(secs),
                "calls_per_step": calls as f64 / steps as f64}));
        }
        println!(
            "  {:<45} {:>8.1} {:>6.1}%",
            "(autodiff, optimizer and other code outside flex's ops)",
            ms(wall - total),
            (wall - total) / wall * 100.0
        );
        println!(
            "  (every batch norm + ReLU, encoder and heads, is msbreg's fused op: forward and backward in training, and the target's forward; so is every 3x3 convolution of the small CNN, its columns gathered and multiplied tile by tile in cache; the heads' products are flex's)"
        );
    } else {
        println!(
            "by kind of work: only counted on flex (this run is on {})",
            backend.kind.name()
        );
    }

    kind_rows
}
