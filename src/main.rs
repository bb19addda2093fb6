//! The `msbreg` command line: the app (the default), `simulate`, `train`, `eval`, `export`,
//! `bench` and `backends`.
//! Errors reach the user here once, as one message naming the problem and the fix.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

mod cli;

use clap::{Parser, Subcommand};

use msbreg::backend::{self, BackendChoice};

#[derive(Parser)]
#[command(
    name = "msbreg",
    version,
    about = "Watch and steer the embedding dynamics of self-supervised learning (MSBReg)",
    long_about = "Watch and steer the embedding dynamics of self-supervised learning (MSBReg).\n\n\
                  Without a subcommand, opens the app on the built-in shapes images with the \
                  `msbreg` preset, training on the best backend there is."
)]
struct Cli {
    /// Where to train: wgpu on a hardware GPU when there is one, else the CPU.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto, global = true)]
    backend: BackendChoice,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Open the app (the default without a subcommand).
    App(AppArgs),
    /// Train the particle sandbox headless and write a run folder.
    Simulate(cli::simulate::SimulateArgs),
    /// Measure speed, with ratios against a reference measured in the same run.
    Bench {
        #[command(subcommand)]
        which: BenchCommand,
    },
    /// Pretrain an image encoder with MSBReg, headless, and write a run folder.
    Train(Box<cli::train::TrainArgs>),
    /// Every point of a grid of config values for several seeds, each an ordinary run folder,
    /// evaluated (kNN, linear probe) beside the random-init encoder; writes table.md,
    /// table.csv and curves.png. Run it again to resume.
    Ablate(Box<cli::ablate::AblateArgs>),
    /// kNN and linear-probe accuracy of a run's encoder (at its last checkpoint).
    Eval {
        /// The run folder.
        #[arg(long, value_name = "DIR")]
        run: PathBuf,
        /// Labelled training images used as the kNN bank and the probe's training set.
        #[arg(long, default_value_t = 60_000)]
        max_train: usize,
        /// Passes of the linear probe over its training set.
        #[arg(long, default_value_t = 30)]
        probe_epochs: usize,
    },
    /// Write vectors.tsv + metadata.tsv of a run's encoder features for the TensorBoard
    /// Embedding Projector.
    Export {
        #[arg(long, value_name = "DIR")]
        run: PathBuf,
        /// At most this many (test) images.
        #[arg(long, default_value_t = 5000)]
        limit: usize,
        /// Where to write vectors.tsv and metadata.tsv (default: the run folder).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// List the runs of a runs directory (default runs/): preset, dataset, steps, recorded
    /// frames, last kNN, size, parent.
    Runs {
        /// The runs directory (or one run folder).
        #[arg(default_value = "runs")]
        dir: PathBuf,
        /// One JSON object per run and line (keys path, preset, dataset, steps, frames,
        /// first_step, last_step, knn_acc, bytes, parent, ...).
        #[arg(long)]
        json: bool,
    },
    /// Render a recorded span of a run folder as an animated GIF (3D PCA, as the app shows
    /// it), headless.
    Render {
        /// The run folder (its recording.msbrec).
        #[arg(long, value_name = "DIR")]
        run: PathBuf,
        /// The GIF to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// The first recorded step to include (default: the first).
        #[arg(long, value_name = "STEP")]
        from: Option<u64>,
        /// The last recorded step to include (default: the last).
        #[arg(long, value_name = "STEP")]
        to: Option<u64>,
        /// Width and height in pixels.
        #[arg(long, default_value_t = 480)]
        size: u32,
        /// At most this many frames (taken evenly from the span).
        #[arg(long, default_value_t = 300)]
        max_frames: usize,
        /// Playback speed against the recorded time.
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
    },
    /// List the built-in lessons (`msbreg app --lesson NAME` plays one).
    Lessons,
    /// List the wgpu adapters and the backend `auto` would take.
    Backends,
}

#[derive(clap::Args)]
struct AppArgs {
    /// What to start on: sandbox (the Gaussian blobs, the default: they learn in seconds),
    /// rings, shapes, digits or fashion-mnist.
    #[arg(long, value_name = "NAME")]
    data: Option<String>,
    /// The same as `--data sandbox` (the default).
    #[arg(long, hide = true)]
    sandbox: bool,
    /// Open paused (press Start or Space to train).
    #[arg(long)]
    paused: bool,
    /// The seed of the first run.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Held-out points shown (default: 10,000 on a GPU, 2,000 on the CPU); the first 512
    /// with their views and arrows, the rest refreshed a chunk at a time.
    #[arg(long, value_name = "N")]
    points: Option<usize>,
    /// Measure: repaint continuously while training, print frame-time percentiles after this
    /// many seconds, and close.
    #[arg(long, value_name = "SECS")]
    frame_stats: Option<f64>,
    /// With --frame-stats: also print a line this often (minutes, step, resident memory,
    /// history points, UI time per frame over the period), to watch a long session.
    #[arg(long, value_name = "SECS", requires = "frame_stats")]
    stats_every: Option<f64>,
    /// Where the app keeps its runs (every run that trains a step is a run folder here).
    #[arg(long, value_name = "DIR", default_value = "runs")]
    runs_dir: PathBuf,
    /// The most the runs directory may hold, in GB: beyond it the oldest unpinned app runs
    /// are removed (with a message).
    #[arg(long, value_name = "GB", default_value_t = 2.0)]
    runs_cap_gb: f64,
    /// Open a run folder (one `train` or `simulate` wrote, or an app run) to replay it; while
    /// another process still writes it, the app follows it live.
    #[arg(long, value_name = "DIR", conflicts_with = "compare")]
    open: Option<PathBuf>,
    /// Compare 2 to 4 run folders side by side (split views, overlaid curves, last values).
    #[arg(long, value_name = "DIR", num_args = 2..=4)]
    compare: Vec<PathBuf>,
    /// Play a lesson: a built-in one by name (`msbreg lessons` lists them) or a lesson file.
    #[arg(long, value_name = "NAME|FILE", conflicts_with_all = ["open", "compare"])]
    lesson: Option<String>,
}

impl Default for AppArgs {
    /// What `msbreg` without a subcommand opens: the same as `msbreg app`.
    fn default() -> Self {
        Self {
            data: None,
            sandbox: false,
            paused: false,
            seed: 0,
            points: None,
            frame_stats: None,
            stats_every: None,
            runs_dir: PathBuf::from(msbreg::session::catalog::DEFAULT_RUNS_DIR),
            runs_cap_gb: msbreg::session::catalog::DEFAULT_CAP_BYTES as f64 / 1e9,
            open: None,
            compare: Vec::new(),
            lesson: None,
        }
    }
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Steps/s of the sandbox step (N = 4096, M = 2, D = 64) per backend.
    Sandbox {
        /// Seconds to time each backend for (after a warm-up step).
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
    },
    /// A conv-net training step on flex and on wgpu: the figures behind `--backend auto`.
    Backends {
        /// Measure flex only.
        #[arg(long)]
        cpu_only: bool,
    },
    /// Images/s of the MSBReg training step (random inputs, and fed by the loader), with
    /// PyTorch eager's on the same workload when --torch is given.
    Train {
        /// The encoder: cnn (the tiny workload) or resnet18.
        #[arg(long, value_enum, default_value_t = msbreg::model::EncoderKind::Cnn)]
        model: msbreg::model::EncoderKind,
        #[arg(long, default_value_t = 256)]
        batch: usize,
        #[arg(long, default_value_t = 2)]
        views: usize,
        /// Timed steps (after two warm-up steps).
        #[arg(long, default_value_t = 10)]
        steps: usize,
        /// A Python with PyTorch, to run the reference in the same invocation.
        #[arg(long, value_name = "PYTHON")]
        torch: Option<PathBuf>,
        /// The reference script.
        #[arg(
            long,
            value_name = "FILE",
            default_value = "../shared/bench/torch_step.py"
        )]
        torch_script: PathBuf,
        /// The reference's device: cpu or cuda.
        #[arg(long, default_value = "cpu")]
        torch_device: String,
        /// Threads for both sides (rayon's pool here, torch.set_num_threads there); a list
        /// (1,2) measures each count in its own process and prints a table. Default: all cores.
        #[arg(long, value_delimiter = ',', value_name = "N")]
        threads: Vec<usize>,
        /// Measure each side this many times, alternating, and report the medians.
        #[arg(long, default_value_t = 1)]
        runs: usize,
        /// Also print where one step's time goes: by phase, by kind of work in flex, the CPU,
        /// the threads' use and the achieved GFLOP/s against an estimated peak.
        #[arg(long)]
        profile: bool,
        /// Another msbreg build to compare with: both run alternately, --runs times per thread
        /// count, in separate processes, and a table gives the median ratio (this / other).
        #[arg(long, value_name = "MSBREG")]
        against: Option<PathBuf>,
    },
    /// Frames/s of the particle renderer offscreen (1280x720, 3D orbit), geometry static and
    /// streamed every frame.
    Render {
        /// Particle counts.
        #[arg(long, value_delimiter = ',', default_value = "0,100000,1000000")]
        points: Vec<usize>,
        /// Timed frames per count (after one warm-up frame).
        #[arg(long, default_value_t = 30)]
        frames: usize,
    },
    /// How soon the app's default run learns (held-out kNN 0.2 above step 0) and collapses
    /// with the collapse preset (collapse level under 0.1), timed as the app runs it.
    Teach {
        /// Another workload than the app's default: shapes, digits, fashion-mnist, sandbox,
        /// rings.
        #[arg(long)]
        data: Option<String>,
        /// The image encoder: cnn, mlp, resnet18.
        #[arg(long)]
        model: Option<String>,
        /// Images per batch.
        #[arg(long)]
        batch: Option<usize>,
        /// Views per image.
        #[arg(long)]
        views: Option<usize>,
        /// Give up on a target after this many seconds.
        #[arg(long, default_value_t = 120.0)]
        max_seconds: f64,
    },
    /// What showing many points costs the app's trainer: its steps/s against the bare step,
    /// the display's share of its time, how long a round over every point takes.
    Display {
        /// One workload instead of the app's default and the shapes: shapes, digits,
        /// fashion-mnist, sandbox, rings.
        #[arg(long)]
        data: Option<String>,
        /// The image encoder: cnn, mlp, resnet18.
        #[arg(long)]
        model: Option<String>,
        /// Points shown.
        #[arg(long, default_value_t = 10_000)]
        points: usize,
        /// Seconds per measurement (the bare step, then the trainer).
        #[arg(long, default_value_t = 30.0)]
        seconds: f64,
    },
    /// The recording's size (MB per hour) and cost (% of the step time) at the app's default
    /// settings, on the app's default workload and on the sandbox.
    Record {
        /// Seconds to train and record each workload for (the first 30 s may run over the
        /// byte budget: give it at least a minute more than that).
        #[arg(long, default_value_t = 90.0)]
        seconds: f64,
    },
    /// nalgebra's eigen-solver against burn-linalg's SVD for D x D covariances.
    Spectrum {
        #[arg(long, value_delimiter = ',', default_value = "64,256,512,1024,2048")]
        dims: Vec<usize>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    pin_default_device(cli.backend);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        None => open_app(cli.backend, &AppArgs::default()),
        Some(Command::App(args)) => open_app(cli.backend, &args),
        Some(Command::Simulate(args)) => cli::simulate::simulate_command(cli.backend, &args),
        Some(Command::Train(args)) => {
            let backend = backend::select(cli.backend)?;
            cli::train::train_command(&backend, &args, || {
                cli::next_free_dir(Path::new("runs"), "train")
            })
        }
        Some(Command::Ablate(args)) => {
            cli::ablate::ablate_command(&backend::select(cli.backend)?, &args)
        }
        Some(Command::Eval {
            run,
            max_train,
            probe_epochs,
        }) => cli::evaluate::eval_command(
            &backend::select(cli.backend)?,
            &run,
            max_train,
            probe_epochs,
        ),
        Some(Command::Export { run, limit, out }) => cli::evaluate::export_command(
            &backend::select(cli.backend)?,
            &run,
            limit,
            out.as_deref(),
        ),
        Some(Command::Bench { which }) => bench_command(which, cli.backend),
        Some(Command::Runs { dir, json }) => cli::runs::runs_command(&dir, json),
        Some(Command::Lessons) => {
            for (name, _) in msbreg::config::lesson::BUILT_IN {
                let lesson = msbreg::config::lesson::Lesson::load(name)?;
                println!(
                    "{name:<22} {} ({} stages)",
                    lesson.title,
                    lesson.stages.len()
                );
            }
            println!("play one with: msbreg app --lesson NAME (or a lesson file)");
            Ok(())
        }
        Some(Command::Render {
            run,
            out,
            from,
            to,
            size,
            max_frames,
            speed,
        }) => render_command(
            &run,
            &out,
            &msbreg::render::clip::ClipOptions {
                from,
                to,
                size,
                max_frames,
                speed,
            },
        ),
        Some(Command::Backends) => {
            let adapters = backend::probe_adapters();
            if adapters.is_empty() {
                println!("no wgpu adapters (Vulkan, Metal, DX12)");
            }
            for adapter in &adapters {
                println!("adapter: {}", adapter.describe());
            }
            let chosen = backend::select(BackendChoice::Auto)?;
            println!("auto: {}", chosen.describe());
            Ok(())
        }
    }
}

fn bench_render(points: &[usize], frames: usize) -> anyhow::Result<()> {
    let lines = msbreg::render::bench_render(points, frames)?;
    for line in &lines {
        let reference = line
            .gpu_quads_static_frames_per_sec
            .map(|quads| {
                format!(
                    "; GPU quads (the reference, same run) {quads:.1} frames/s, ratio {:.1}x",
                    line.static_frames_per_sec / quads.max(1e-9)
                )
            })
            .unwrap_or_default();
        println!(
            "{:>9} particles at {} px, {:?}: {:.1} frames/s static, {:.1} frames/s streaming \
             (uploaded every frame){reference}; {} frames on {}",
            line.points,
            line.point_size_px,
            line.rasteriser,
            line.static_frames_per_sec,
            line.streaming_frames_per_sec,
            line.frames,
            line.adapter
        );
    }
    let json: Vec<serde_json::Value> = lines
        .iter()
        .map(|line| {
            serde_json::json!({
                "points": line.points,
                "frames": line.frames,
                "adapter": line.adapter,
                "rasteriser": format!("{:?}", line.rasteriser),
                "point_size_px": line.point_size_px,
                "static_frames_per_sec": line.static_frames_per_sec,
                "streaming_frames_per_sec": line.streaming_frames_per_sec,
                "gpu_quads_static_frames_per_sec": line.gpu_quads_static_frames_per_sec,
            })
        })
        .collect();
    println!(
        "{}",
        serde_json::json!({"bench": "render", "results": json})
    );
    Ok(())
}

fn open_app(choice: BackendChoice, args: &AppArgs) -> anyhow::Result<()> {
    let backend = backend::select(choice)?;
    eprintln!("msbreg: training on {}", backend.describe());
    let data = args.data.as_deref().or(args.sandbox.then_some("sandbox"));
    let mut settings = teach_settings(data, None, None, None)?;
    settings.seed = args.seed;
    settings.display_points = match args.points {
        Some(points) if points > msbreg::config::MAX_DISPLAY_POINTS => anyhow::bail!(
            "--points {points}: the app shows at most {} points",
            msbreg::config::MAX_DISPLAY_POINTS
        ),
        Some(points) => points,
        None => msbreg::config::default_display_points(
            backend.kind == msbreg::backend::BackendKind::Wgpu,
        ),
    };
    // A lesson is checked before a window opens: its errors name the line.
    let lesson = args
        .lesson
        .as_deref()
        .map(msbreg::config::lesson::Lesson::load)
        .transpose()?;
    for dir in args.open.iter().chain(&args.compare) {
        // Say what is wrong before a window opens.
        msbreg::session::RunFolder::open(dir)?;
    }
    if !(args.runs_cap_gb.is_finite() && args.runs_cap_gb > 0.0) {
        anyhow::bail!(
            "--runs-cap-gb {}: give the most the runs directory may hold, in GB (> 0)",
            args.runs_cap_gb
        );
    }
    msbreg::app::run_app(msbreg::app::AppOptions {
        runs: Some(msbreg::trainer::RunsDir {
            dir: args.runs_dir.clone(),
            cap_bytes: (args.runs_cap_gb * 1e9) as u64,
        }),
        open: args.open.clone(),
        compare: args.compare.clone(),
        lesson,
        backend,
        settings,
        running: !args.paused,
        frame_stats: args.frame_stats.map(|secs| msbreg::app::FrameStats {
            after: Duration::from_secs_f64(secs.max(1.0)),
            report_every: args
                .stats_every
                .map(|secs| Duration::from_secs_f64(secs.max(1.0))),
        }),
    })
}

/// Makes burn's `Device::default()` the CPU when training will run on the CPU, and the probe
/// of the adapters quiet.
///
/// A few burn paths create tensors on the default device rather than a given one (loading an
/// optimiser record does, when a run resumes), and the default prefers wgpu: on a machine
/// without a GPU that starts a software Vulkan device for nothing, or fails where there is no
/// Vulkan driver at all. `BURN_DEVICE` is the switch burn reads.
///
/// Without `XDG_RUNTIME_DIR`, every wgpu instance would print libwayland's complaint about it
/// (see `backend`); it points at a private folder for the rest of the process instead. The
/// adapters probed here are kept, and `backend::select` reuses them.
#[allow(unsafe_code)]
fn pin_default_device(choice: BackendChoice) {
    if let Some(dir) = backend::fallback_runtime_dir() {
        // SAFETY: called first thing in `main`, before this program starts any thread, so no
        // other thread can read the environment while it changes.
        unsafe { std::env::set_var("XDG_RUNTIME_DIR", dir) };
    }
    let cpu = match choice {
        BackendChoice::Cpu => true,
        BackendChoice::Gpu => false,
        BackendChoice::Auto => !backend::probe_adapters()
            .iter()
            .any(backend::AdapterSummary::is_hardware),
    };
    if cpu && std::env::var_os("BURN_DEVICE").is_none() {
        // SAFETY: called first thing in `main`, before this program starts any thread, so no
        // other thread can read the environment while it changes.
        unsafe { std::env::set_var("BURN_DEVICE", "flex") };
    }
}

/// The app's default workload, or the one asked for with `--data` and the rest.
fn teach_settings(
    data: Option<&str>,
    model: Option<&str>,
    batch: Option<usize>,
    views: Option<usize>,
) -> anyhow::Result<msbreg::config::WorkloadSettings> {
    use msbreg::config::{ModelChoice, WorkloadSettings};
    let mut settings = match data {
        None => WorkloadSettings::app_default(),
        Some(name) => WorkloadSettings::named(name).ok_or_else(|| {
            anyhow::anyhow!(
                "--data {name}: not a workload; use shapes, digits, fashion-mnist, sandbox or \
                 rings"
            )
        })?,
    };
    if let Some(name) = model {
        settings.model = ModelChoice::named(name).ok_or_else(|| {
            anyhow::anyhow!("--model {name}: not an encoder; use cnn, mlp or resnet18")
        })?;
    }
    if let Some(batch) = batch {
        settings.batch_size = batch;
    }
    if let Some(views) = views {
        settings.views = views;
    }
    Ok(settings)
}

/// `msbreg render`: a recorded span as a GIF.
fn render_command(
    run: &Path,
    out: &Path,
    options: &msbreg::render::clip::ClipOptions,
) -> anyhow::Result<()> {
    if !(options.speed.is_finite() && options.speed > 0.0) {
        anyhow::bail!(
            "--speed {}: give a positive playback speed (1 = as recorded)",
            options.speed
        );
    }
    if let (Some(from), Some(to)) = (options.from, options.to)
        && from > to
    {
        anyhow::bail!("--from {from} is after --to {to}: give the earlier step first");
    }
    let mut recording = msbreg::session::Recording::open(run)?;
    let summary = msbreg::render::clip::render_clip(&mut recording, options, out)?;
    let thinned = if summary.recorded > summary.frames {
        format!(
            " (every {:.1}th of {} recorded)",
            summary.recorded as f64 / summary.frames as f64,
            summary.recorded
        )
    } else {
        String::new()
    };
    eprintln!(
        "wrote {}: {} frames{thinned}, steps {} to {}, drawn on {}",
        out.display(),
        summary.frames,
        summary.first_step,
        summary.last_step,
        summary.adapter
    );
    Ok(())
}

/// `msbreg bench ...`.
fn bench_command(which: BenchCommand, choice: BackendChoice) -> anyhow::Result<()> {
    let cli_backend = choice;
    match which {
        BenchCommand::Sandbox { seconds } => {
            let only = match cli_backend {
                BackendChoice::Auto => None,
                choice => Some(choice),
            };
            msbreg::bench::run_sandbox(only, Duration::from_secs_f64(seconds.max(0.1)))
        }
        BenchCommand::Spectrum { dims } => msbreg::bench::run_spectrum(&dims),
        BenchCommand::Teach {
            data,
            model,
            batch,
            views,
            max_seconds,
        } => {
            let settings = teach_settings(data.as_deref(), model.as_deref(), batch, views)?;
            msbreg::bench::run_teach_bench(
                &backend::select(cli_backend)?,
                &settings,
                max_seconds.max(1.0),
            )
        }
        BenchCommand::Display {
            data,
            model,
            points,
            seconds,
        } => {
            let workloads = if data.is_some() || model.is_some() {
                vec![teach_settings(
                    data.as_deref(),
                    model.as_deref(),
                    None,
                    None,
                )?]
            } else {
                msbreg::bench::display_workloads()
            };
            if points > msbreg::config::MAX_DISPLAY_POINTS {
                anyhow::bail!(
                    "--points {points}: at most {} points",
                    msbreg::config::MAX_DISPLAY_POINTS
                );
            }
            msbreg::bench::run_display_bench(
                &backend::select(cli_backend)?,
                &workloads,
                points,
                seconds.max(1.0),
            )
        }
        BenchCommand::Record { seconds } => {
            msbreg::bench::run_record_bench(&backend::select(cli_backend)?, seconds.max(1.0))
        }
        BenchCommand::Render { points, frames } => bench_render(&points, frames),
        BenchCommand::Backends { cpu_only } => msbreg::bench::run_backends(!cpu_only),
        BenchCommand::Train {
            model,
            batch,
            views,
            steps,
            torch,
            torch_script,
            torch_device,
            threads,
            runs,
            profile,
            against,
        } => {
            if cli::bench::train_threads(&threads, runs, against.as_deref())? {
                return Ok(());
            }
            msbreg::bench::run_train_bench(
                &backend::select(cli_backend)?,
                &msbreg::bench::TrainBenchOptions {
                    encoder: model,
                    batch_size: batch,
                    views,
                    steps,
                    torch: torch.map(|python| (python, torch_script)),
                    torch_device,
                    threads: threads.first().copied(),
                    runs,
                    profile,
                },
            )
            .map(|_| ())
        }
    }
}
