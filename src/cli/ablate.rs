//! `msbreg ablate`: the flags into an [`AblateSpec`], a progress line (grid point, seed, ETA
//! over all the runs' steps), and what was written.

use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};

use msbreg::backend::Backend;
use msbreg::headless::ablate::{AblateSpec, Axis, Event, RunResult, read_results, run_ablation};
use msbreg::headless::ablate_file::AblateFile;

#[derive(clap::Args)]
pub struct AblateArgs {
    /// An ablation file (assets/ablations/*.toml): title, sandbox or data, preset, seeds,
    /// [set], [grid]; the flags below add to it (a flag's preset, data or seeds wins).
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// A TOML config laid over the preset (unknown keys are errors): the base of every run.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The base preset (msbreg, collapse, byol, simsiam, no-sv, no-brownian, vicreg,
    /// byol-reg, simsiam-reg, vicreg-reg); a grid may vary it with the key `preset`.
    /// [default: msbreg]
    #[arg(long, value_name = "NAME")]
    pub preset: Option<String>,
    /// The images of every run (as `train --data`): shapes, digits, fashion-mnist[:DIR],
    /// mnist:DIR, cifar10:DIR, folder:DIR, ... (image runs only).
    #[arg(long, value_name = "SOURCE")]
    pub data: Option<String>,
    /// Any config key for every run, e.g. --set max_steps=500 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// A grid axis: a config key (or `preset`) and its values, e.g.
    /// --grid dynamics.brownian.weight=0,0.1,1 (repeatable: every combination runs).
    #[arg(
        long = "grid",
        value_name = "KEY=V1,V2,...",
        required_unless_present = "file"
    )]
    pub grid: Vec<String>,
    /// Seeds per grid point (0 to N-1, added to the config's seed). [default: 3]
    #[arg(long)]
    pub seeds: Option<u64>,
    /// The ablation's folder: a run folder per point and seed, results.jsonl, table.md,
    /// table.csv, curves.png. Run the same command again to resume an interrupted ablation.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Runs at a time.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Sandbox runs (as `msbreg simulate`) instead of image runs (as `msbreg train`).
    #[arg(long)]
    pub sandbox: bool,
    /// Evaluation: labelled training images for the kNN bank and the linear probe.
    #[arg(long, default_value_t = 60_000)]
    pub max_train: usize,
    /// Evaluation: passes of the linear probe over its training set.
    #[arg(long, default_value_t = 30)]
    pub probe_epochs: usize,
}

/// The ablation the flags describe.
pub fn spec_of(args: &AblateArgs) -> anyhow::Result<AblateSpec> {
    let file = args
        .file
        .as_ref()
        .map(|path| {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the ablation file {}", path.display()))?;
            AblateFile::parse(&text, &path.display().to_string()).map_err(anyhow::Error::msg)
        })
        .transpose()?;
    if let Some(file) = &file {
        eprintln!("ablation file: {}", file.title);
    }
    let seeds = args
        .seeds
        .or_else(|| file.as_ref().and_then(|f| f.seeds))
        .unwrap_or(3);
    if seeds == 0 {
        anyhow::bail!("--seeds 0: give at least 1 seed per grid point");
    }
    let sandbox = args.sandbox || file.as_ref().is_some_and(|f| f.sandbox);
    let data = args
        .data
        .clone()
        .or_else(|| file.as_ref().and_then(|f| f.data.clone()));
    if sandbox && data.is_some() {
        anyhow::bail!("a sandbox ablation takes no --data (its points are generated)");
    }
    let (config, config_source) = match &args.config {
        Some(path) => (
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?,
            path.display().to_string(),
        ),
        None => (String::new(), "(no config file)".to_owned()),
    };
    let mut sets = Vec::new();
    if let Some(spec) = &data {
        let (data, detected) = msbreg::data::source::DataSource::parse_detected(spec)?;
        if let Some(detected) = &detected {
            eprintln!("--data {spec}: {}", detected.describe());
        }
        sets.push(("data.kind".to_owned(), format!("\"{}\"", data.kind.name())));
        if let Some(path) = &data.path {
            let path = toml::Value::String(path.display().to_string()).to_string();
            sets.push(("data.path".to_owned(), path));
        }
    }
    let flags = args
        .sets
        .iter()
        .map(|set| {
            set.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .with_context(|| {
                    format!("--set {set}: write it as KEY=VALUE, e.g. --set max_steps=500")
                })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if let Some(file) = &file {
        sets.extend(file.sets.iter().cloned());
    }
    sets.extend(flags);
    let mut grid = file.as_ref().map(|f| f.grid.clone()).unwrap_or_default();
    for axis in &args.grid {
        grid.push(Axis::parse(axis)?);
    }
    let preset = args
        .preset
        .clone()
        .or_else(|| file.as_ref().and_then(|f| f.preset.clone()))
        .unwrap_or_else(|| "msbreg".to_owned());
    Ok(AblateSpec {
        sandbox,
        preset,
        config,
        config_source,
        sets,
        grid,
        seeds,
        max_train: args.max_train,
        probe_epochs: args.probe_epochs,
    })
}

/// The line a finished run leaves.
fn finished_line(outcome: &Result<RunResult, String>, dir: &std::path::Path) -> String {
    match outcome {
        Ok(r) => format!(
            "done {}: kNN {:.3}, linear probe {:.3}{} ({:.0} s)",
            r.dir.display(),
            r.knn_acc,
            r.linear_probe_acc,
            r.effective_rank
                .map(|rank| format!(", effective rank {rank:.1}"))
                .unwrap_or_default()
                + &r.collapse_level
                    .map(|level| format!(", collapse level {level:.2}"))
                    .unwrap_or_default(),
            r.secs
        ),
        Err(reason) => format!("FAILED {}: {reason}", dir.display()),
    }
}

/// Per run: (steps done, steps in all) once it started.
type Tally = Vec<Option<(u64, u64)>>;

pub fn ablate_command(backend: &Backend, args: &AblateArgs) -> anyhow::Result<()> {
    let spec = spec_of(args)?;
    let plan = spec.plan()?;
    eprintln!(
        "ablation: {} grid points x {} seeds + the random-init baseline = {} runs on {} -> {}",
        plan.points.len() - 1,
        spec.seeds,
        plan.jobs.len(),
        backend.describe(),
        args.out.display()
    );
    // Steps per run before each has started: its config's (0 for an image run over every
    // epoch of data not loaded yet; its own total once it starts).
    let planned: Vec<u64> = plan
        .jobs
        .iter()
        .map(|job| {
            if job.untrained {
                0
            } else {
                job.workload.planned_steps()
            }
        })
        .collect();
    // One bar over every run's steps: its ETA is the ablation's.
    let bar = ProgressBar::new(planned.iter().sum());
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} steps  eta {eta}  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    // Runs done already (a resumed ablation) count as done.
    let earlier = read_results(&args.out);
    let tally: Mutex<Tally> = Mutex::new(
        plan.jobs
            .iter()
            .map(|job| {
                earlier
                    .iter()
                    .find(|r| r.dir == job.dir)
                    .map(|r| (r.steps, r.steps))
            })
            .collect(),
    );
    let on_event = |event: &Event| {
        let mut runs = tally
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match event {
            Event::Skipped { runs } => {
                bar.suspend(|| eprintln!("resuming: {runs} runs are done already"));
            }
            Event::Started {
                job,
                jobs,
                point,
                seed,
                step,
                total,
            } => {
                runs[*job] = Some((*step, *total));
                bar.set_message(format!("run {}/{jobs}: {point}, seed {seed}", job + 1));
            }
            Event::Step { job, step } => {
                if let Some((done, _)) = &mut runs[*job] {
                    *done = *step;
                }
            }
            Event::Finished { job, outcome } => {
                let line = finished_line(outcome, &plan.jobs[*job].dir);
                bar.suspend(|| eprintln!("{line}"));
            }
        }
        let (done, all) = runs
            .iter()
            .zip(&planned)
            .fold((0, 0), |(d, a), (run, planned)| {
                let (done, total) = run.unwrap_or((0, *planned));
                (d + done, a + total)
            });
        bar.set_length(all);
        bar.set_position(done);
    };
    let summary = run_ablation(&spec, &args.out, &backend.device, args.jobs, &on_event)?;
    bar.finish_and_clear();
    for (dir, reason) in &summary.failed {
        eprintln!(
            "failed: {}: {reason} (run the command again to retry)",
            dir.display()
        );
    }
    print!(
        "{}",
        std::fs::read_to_string(args.out.join("table.md")).unwrap_or_default()
    );
    for file in &summary.files {
        println!("wrote {}", file.display());
    }
    if !summary.failed.is_empty() {
        anyhow::bail!(
            "{} of {} runs failed; the tables hold the others",
            summary.failed.len(),
            summary.plan.jobs.len()
        );
    }
    Ok(())
}
