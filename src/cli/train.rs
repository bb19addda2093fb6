//! `msbreg train`: the preset, a config file and the flags laid over each other into a
//! [`TrainConfig`], a fresh run folder (or `--resume DIR`), and the headless loop with a
//! progress bar.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use msbreg::backend::Backend;
use msbreg::config::{Preset, TrainConfig, Workload};
use msbreg::data::source::DataSource;
use msbreg::headless::{DriveOptions, Progress, drive};
use msbreg::model::EncoderKind;
use msbreg::session::{self, Parts, Run, RunWriter};

use super::progress_bar;

#[derive(clap::Args)]
pub struct TrainArgs {
    /// A TOML config; its keys override the preset's (unknown keys are errors).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The dynamics preset to start from (msbreg, collapse, byol, simsiam, no-sv,
    /// no-brownian, vicreg, byol-reg, simsiam-reg, vicreg-reg).
    #[arg(long, value_name = "NAME", default_value = "msbreg")]
    pub preset: String,
    /// The images: shapes, digits, fashion-mnist[:DIR], mnist:DIR, cifar10:DIR, cifar100:DIR,
    /// stl10:DIR, folder:DIR, or a DIR whose format is detected from its files.
    #[arg(long, value_name = "SOURCE")]
    pub data: Option<String>,
    /// The encoder.
    #[arg(long, value_enum)]
    pub model: Option<EncoderKind>,
    /// Train for this many passes over the training split (instead of the default's step
    /// budget, `steps`).
    #[arg(long, conflicts_with = "steps")]
    pub epochs: Option<usize>,
    /// Train for this many steps, whatever the set's size (the schedules span them; 0: epochs
    /// decide).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Stop after this many steps (the schedules still span the whole run).
    #[arg(long)]
    pub max_steps: Option<usize>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// M, views per image.
    #[arg(long)]
    pub views: Option<usize>,
    /// Peak learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Any config key, e.g. --set optimizer.kind=lars --set dynamics.tau=0.996 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// The run folder to write (created; its parent must exist). Default: runs/train-NNN.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Replace a run already in --out.
    #[arg(long)]
    pub overwrite: bool,
    /// Continue the run in DIR (image or sandbox) from its last checkpoint (other options are
    /// ignored).
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
    /// Stop once this many steps are done, with a checkpoint, as if interrupted; continue
    /// later with --resume. `--stop-after 0` saves the initial weights: `msbreg eval` on that
    /// run measures the encoder at random initialisation.
    #[arg(long, value_name = "STEPS")]
    pub stop_after: Option<u64>,
}

/// [`msbreg::config::set_key`], its error naming `flag`.
fn set_key(table: &mut toml::Table, flag: &str, key: &str, value: &str) -> anyhow::Result<()> {
    msbreg::config::set_key(table, key, value).map_err(|err| anyhow::anyhow!("{flag}: {err}"))
}

/// The config from the preset, the file, then the flags, in that order of precedence.
pub fn resolve_config(args: &TrainArgs) -> anyhow::Result<TrainConfig> {
    let preset = Preset::from_name(&args.preset)?;
    let (mut text, source) = match &args.config {
        Some(path) => (
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?,
            path.clone(),
        ),
        None => (String::new(), PathBuf::from("(flags)")),
    };
    // Check the file on its own first, so its errors point at its own lines.
    TrainConfig::from_preset_and_toml(preset, &text, &source)?;
    let mut flags = toml::Table::new();
    if let Some(spec) = &args.data {
        let (data, detected) = DataSource::parse_detected(spec)?;
        if let Some(detected) = &detected {
            eprintln!("--data {spec}: {}", detected.describe());
        }
        let mut table = toml::Table::new();
        table.insert("kind".to_owned(), data.kind.name().into());
        if let Some(path) = &data.path {
            table.insert("path".to_owned(), path.display().to_string().into());
        }
        flags.insert("data".to_owned(), table.into());
    }
    if let Some(model) = args.model {
        set_key(&mut flags, "--model", "model.encoder", model.name())?;
    }
    for set in &args.sets {
        let (key, value) = set.split_once('=').with_context(|| {
            format!("--set {set}: write it as KEY=VALUE, e.g. --set dynamics.tau=0.996")
        })?;
        let flag = format!("--set {set}");
        set_key(&mut flags, &flag, key.trim(), value.trim())?;
        // Check the flag on its own over the preset, so that its error names the flag.
        let mut single = toml::Table::new();
        set_key(&mut single, &flag, key.trim(), value.trim())?;
        let base: toml::Table = toml::from_str(&TrainConfig::from_preset(preset).to_toml()?)?;
        toml::Value::Table(msbreg::config::merge_tables(base, single))
            .try_into::<TrainConfig>()
            .map_err(|err| anyhow::anyhow!("{flag}: {err}"))?;
    }
    msbreg::config::measure_in_epochs(&mut flags);
    if !flags.is_empty() {
        // The flags laid over the file's keys: merge the two tables, re-serialise.
        let file: toml::Table = toml::from_str(&text)
            .map_err(|err| anyhow::anyhow!("config file {}: {err}", source.display()))?;
        text = toml::to_string(&msbreg::config::merge_tables(file, flags))?;
    }
    let source = if args.data.is_none() && args.model.is_none() && args.sets.is_empty() {
        source
    } else {
        PathBuf::from(format!("{} + command-line flags", source.display()))
    };
    let mut config = TrainConfig::from_preset_and_toml(preset, &text, &source)?;
    // Typed flags go straight into the config (not through TOML text), so that their errors
    // name the flag's key and value, not a TOML line the user never wrote.
    if let Some(epochs) = args.epochs {
        config.epochs = epochs;
        config.steps = 0;
    }
    if let Some(steps) = args.steps {
        config.steps = steps;
    }
    if let Some(max_steps) = args.max_steps {
        config.max_steps = max_steps;
    }
    if let Some(batch_size) = args.batch_size {
        config.batch_size = batch_size;
    }
    if let Some(views) = args.views {
        config.views = views;
    }
    if let Some(learning_rate) = args.lr {
        config.learning_rate = learning_rate;
    }
    if let Some(seed) = args.seed {
        config.seed = seed;
    }
    config.validate()?;
    Ok(config)
}

/// Reopens the run in `dir` for writing at its newest intact checkpoint; `None` when it has
/// nothing left to do.
fn resume(backend: &Backend, dir: &Path) -> anyhow::Result<Option<(Box<dyn Run>, RunWriter)>> {
    // The lock before anything is read: the checkpoint and the metrics are this run's.
    let folder = RunWriter::open_for_writing(dir)?;
    if let Some(stale) = folder.taken_over() {
        eprintln!("{stale}");
    }
    let (run, notes) = folder
        .reopen(&backend.device, Parts::All)
        .with_context(|| format!("resuming {}", dir.display()))?;
    for note in notes {
        eprintln!("note: {note}");
    }
    if run.steps_done() >= run.total_steps() {
        println!(
            "{} has done all its {} steps; nothing to resume (raise `steps`, `epochs` or \
             `max_steps` in its config.toml to train on)",
            dir.display(),
            run.total_steps()
        );
        return Ok(None);
    }
    // The lines logged after the checkpoint will be logged again.
    folder.keep_metrics_through(run.steps_done())?;
    eprintln!(
        "resuming {} at step {} of {}",
        dir.display(),
        run.steps_done(),
        run.total_steps()
    );
    Ok(Some((run, folder)))
}

pub fn train_command(
    backend: &Backend,
    args: &TrainArgs,
    default_out: impl FnOnce() -> anyhow::Result<PathBuf>,
) -> anyhow::Result<()> {
    let (mut run, folder) = if let Some(dir) = &args.resume {
        let Some(resumed) = resume(backend, dir)? else {
            return Ok(());
        };
        resumed
    } else {
        let config = resolve_config(args)?;
        // Fail before creating anything when the config cannot be written back.
        config.to_toml()?;
        let out = match &args.out {
            Some(out) => out.clone(),
            None => default_out()?,
        };
        let folder = RunWriter::create(&out, args.overwrite)?;
        if let Some(stale) = folder.taken_over() {
            eprintln!("{stale}");
        }
        eprintln!("loading {} ...", config.data.describe());
        let run = match session::open(&Workload::Images(config), &backend.device) {
            Ok(run) => run,
            Err(err) => {
                // Leave no empty folder behind for a run that never started (the lock file
                // goes with the writer).
                let path = folder.path().to_owned();
                drop(folder);
                let _ = std::fs::remove_dir(&path);
                return Err(err.into());
            }
        };
        (run, folder)
    };
    for note in run.notes() {
        eprintln!("note: {note}");
    }
    eprintln!("backend: {}", backend.describe());
    let preset = match run.workload() {
        Workload::Images(config) => config.preset,
        Workload::Sandbox(config) => config.preset,
    };
    eprintln!(
        "preset {preset} | {} | {} steps | seed {} -> {}",
        run.settings().describe(),
        run.total_steps(),
        run.settings().seed(),
        folder.path().display()
    );
    let bar = progress_bar(run.total_steps(), run.steps_done());
    let options = DriveOptions {
        stop_after: args.stop_after,
    };
    let outcome = drive(run.as_mut(), &folder, options, |p: &Progress| {
        bar.set_position(p.step);
        bar.set_message(format!(
            "{}{:.0} img/s  loss {:.4}{}",
            p.epoch
                .map(|e| format!("epoch {}  ", e + 1))
                .unwrap_or_default(),
            p.images_per_sec,
            p.loss,
            p.knn_acc
                .map(|k| format!("  kNN {k:.3}"))
                .unwrap_or_default()
        ));
    });
    bar.finish();
    let outcome = outcome?;
    println!(
        "done: {} steps in {:.1} s ({:.0} images/s, the step waited {:.1} s for the loader)",
        outcome.steps_done, outcome.elapsed_secs, outcome.images_per_sec, outcome.input_wait_secs
    );
    if let Some(m) = &outcome.last_evaluated {
        println!(
            "last evaluation (step {}): kNN accuracy {:.4} | effective rank {:.2} | collapse \
             level {:.3} | uniformity {:.3} | alignment {:.4}",
            m.step, m.knn_acc, m.effective_rank, m.collapse_level, m.uniformity, m.alignment
        );
    }
    if let Some(line) = super::recording_line(
        folder.path(),
        outcome.frames_recorded,
        outcome.recording_bytes,
    ) {
        println!("{line}");
    }
    println!(
        "wrote {} (evaluate with `msbreg eval --run {}`)",
        folder.path().display(),
        folder.path().display()
    );
    Ok(())
}
