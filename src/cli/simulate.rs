//! `msbreg simulate`: the particle sandbox, headless, into a run folder.

use std::path::PathBuf;

use msbreg::backend::{self, BackendChoice};
use msbreg::config::{Preset, SimConfig};
use msbreg::headless::{DriveOptions, Progress, drive};
use msbreg::session::{RunWriter, SandboxRun};

use super::progress_bar;

#[derive(clap::Args)]
pub struct SimulateArgs {
    /// Start from this preset (see --list-presets).
    #[arg(long, value_name = "NAME", default_value = "msbreg")]
    pub preset: String,
    /// A TOML config; its keys override the preset's (unknown keys are errors).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Training steps (overrides the config).
    #[arg(long)]
    pub steps: Option<usize>,
    /// The run's seed (overrides the config).
    #[arg(long)]
    pub seed: Option<u64>,
    /// The run folder to write (created; its parent must exist).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Replace a run already in --out.
    #[arg(long)]
    pub overwrite: bool,
    /// Print the presets, one line each, and exit.
    #[arg(long)]
    pub list_presets: bool,
}

pub fn simulate_command(choice: BackendChoice, args: &SimulateArgs) -> anyhow::Result<()> {
    if args.list_presets {
        for preset in Preset::ALL {
            println!("{:<12} {}", preset.name(), preset.describe());
        }
        return Ok(());
    }
    let preset = Preset::from_name(&args.preset)?;
    let mut config = match &args.config {
        Some(path) => SimConfig::from_preset_and_file(preset, path)?,
        None => preset.config(),
    };
    if let Some(steps) = args.steps {
        config.steps = steps;
    }
    if let Some(seed) = args.seed {
        config.seed = seed;
    }
    config.validate()?;
    config.to_toml()?;
    let Some(out) = &args.out else {
        anyhow::bail!("simulate needs --out DIR, the run folder to write");
    };
    let folder = RunWriter::create(out, args.overwrite)?;
    if let Some(stale) = folder.taken_over() {
        eprintln!("{stale}");
    }

    let backend = backend::select(choice)?;
    eprintln!("backend: {}", backend.describe());
    eprintln!(
        "preset {} | seed {} | {} steps | N = {} x M = {} views | D = {}",
        config.preset,
        config.seed,
        config.steps,
        config.batch_size,
        config.views.count,
        config.model.embed_dim
    );

    let bar = progress_bar(config.steps as u64, 0);
    let mut run = SandboxRun::try_new(config.clone(), &backend.device)?;
    let outcome = drive(
        &mut run,
        &folder,
        DriveOptions::default(),
        |p: &Progress| {
            bar.set_position(p.step);
            if let Some(record) = &p.record {
                bar.set_message(format!(
                    "loss {:.4}  rank {:.1}  collapse {:.2}  knn {:.3}",
                    p.loss, record.effective_rank, record.collapse_level, record.knn_acc
                ));
            }
        },
    );
    bar.finish();
    let outcome = outcome?;
    if let Some(last) = &outcome.last_evaluated {
        println!(
            "done: {} steps in {:.1} s ({:.1} steps/s) | effective rank {:.2} of D = {} | \
             collapse level {:.3} | uniformity {:.3} | alignment {:.4} | kNN accuracy {:.3}",
            last.step,
            outcome.elapsed_secs,
            outcome.steps_per_sec,
            last.effective_rank,
            config.model.embed_dim,
            last.collapse_level,
            last.uniformity,
            last.alignment,
            last.knn_acc
        );
    }
    if let Some(line) = super::recording_line(out, outcome.frames_recorded, outcome.recording_bytes)
    {
        println!("{line}");
    }
    println!("wrote {}", out.display());
    Ok(())
}
