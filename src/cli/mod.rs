//! The image-pretraining commands of the `msbreg` binary: `train`, `eval`, `export`.
//! (The sandbox commands and benches live in `main.rs`.)

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};

use msbreg::backend::Backend;
use msbreg::config::Preset;
use msbreg::data::images::Dataset;
use msbreg::data::source::DataSource;
use msbreg::model::EncoderKind;
use msbreg::run::evaluate::{evaluate_run, export};
use msbreg::run::simulate::prepare_out_dir;
use msbreg::run::train::{ImageRun, TrainConfig, TrainOptions, TrainProgress, resume, train};

#[derive(clap::Args)]
pub struct TrainArgs {
    /// A TOML config; its keys override the preset's (unknown keys are errors).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The dynamics preset to start from (msbreg, collapse, byol, simsiam, no-sv, no-brownian).
    #[arg(long, value_name = "NAME", default_value = "msbreg")]
    pub preset: String,
    /// The images: shapes, digits, fashion-mnist[:DIR], mnist:DIR, cifar10:DIR, cifar100:DIR,
    /// stl10:DIR or folder:DIR.
    #[arg(long, value_name = "SOURCE")]
    pub data: Option<String>,
    /// The encoder.
    #[arg(long, value_enum)]
    pub model: Option<EncoderKind>,
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Stop after this many steps (the schedules still span all epochs).
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
    /// Continue the run in DIR from its last checkpoint (other options are ignored).
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
    /// Stop once this many steps are done, with a checkpoint, as if interrupted; continue
    /// later with --resume. `--stop-after 0` saves the initial weights: `msbreg eval` on that
    /// run measures the encoder at random initialisation.
    #[arg(long, value_name = "STEPS")]
    pub stop_after: Option<u64>,
}

/// `key = value` as a TOML line: the value as TOML when it parses, else as a string.
fn toml_line(key: &str, value: &str) -> String {
    let line = format!("{key} = {value}");
    if toml::from_str::<toml::Table>(&line).is_ok() {
        line
    } else {
        format!("{key} = {}", toml::Value::String(value.to_owned()))
    }
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
    let mut lines = Vec::new();
    if let Some(spec) = &args.data {
        let data = DataSource::parse(spec)?;
        lines.push(toml_line("data.kind", data.kind.name()));
        if let Some(path) = &data.path {
            lines.push(format!(
                "data.path = {}",
                toml::Value::String(path.display().to_string())
            ));
        }
    }
    if let Some(model) = args.model {
        lines.push(toml_line("model.encoder", model.name()));
    }
    for (key, value) in [
        ("epochs", args.epochs.map(|v| v.to_string())),
        ("max_steps", args.max_steps.map(|v| v.to_string())),
        ("batch_size", args.batch_size.map(|v| v.to_string())),
        ("views", args.views.map(|v| v.to_string())),
        ("learning_rate", args.lr.map(|v| format!("{v:?}"))),
        ("seed", args.seed.map(|v| v.to_string())),
    ] {
        if let Some(value) = value {
            lines.push(toml_line(key, &value));
        }
    }
    for set in &args.sets {
        let (key, value) = set.split_once('=').with_context(|| {
            format!("--set {set}: write it as KEY=VALUE, e.g. --set dynamics.tau=0.996")
        })?;
        lines.push(toml_line(key.trim(), value.trim()));
    }
    if !lines.is_empty() {
        // Flags as a TOML document laid over the file's: parse both, merge, re-serialise.
        let flags: toml::Table = toml::from_str(&lines.join("\n"))
            .map_err(|err| anyhow::anyhow!("the command-line overrides: {err}"))?;
        let file: toml::Table = toml::from_str(&text)
            .map_err(|err| anyhow::anyhow!("config file {}: {err}", source.display()))?;
        text = toml::to_string(&msbreg::config::merge_tables(file, flags))?;
    }
    let source = if lines.is_empty() {
        source
    } else {
        PathBuf::from(format!("{} + command-line flags", source.display()))
    };
    Ok(TrainConfig::from_preset_and_toml(preset, &text, &source)?)
}

fn progress_bar(total: u64, done: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_position(done);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} step {pos}/{len}  eta {eta}  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

pub fn train_command(
    backend: &Backend,
    args: &TrainArgs,
    default_out: impl FnOnce() -> anyhow::Result<PathBuf>,
) -> anyhow::Result<()> {
    let (mut run, out) = if let Some(dir) = &args.resume {
        let run = resume(dir, &backend.device)?;
        eprintln!(
            "resuming {} at step {} of {}",
            dir.display(),
            run.steps_done(),
            run.total_steps()
        );
        (run, dir.clone())
    } else {
        let config = resolve_config(args)?;
        let out = match &args.out {
            Some(out) => out.clone(),
            None => default_out()?,
        };
        prepare_out_dir(&out, args.overwrite)?;
        if args.overwrite {
            for stale in ["metrics.jsonl", "checkpoints"] {
                let path = out.join(stale);
                if path.is_dir() {
                    std::fs::remove_dir_all(&path)?;
                } else if path.exists() {
                    std::fs::remove_file(&path)?;
                }
            }
        }
        eprintln!("loading {} ...", config.data.describe());
        (ImageRun::new(config, &backend.device)?, out)
    };
    let config = run.config().clone();
    eprintln!("backend: {}", backend.describe());
    eprintln!(
        "preset {} | {} | {} encoder | {} images/batch x {} views | {} steps ({} per epoch) | seed {} -> {}",
        config.preset,
        config.data.describe(),
        config.model.encoder.name(),
        config.batch_size,
        config.views,
        run.total_steps(),
        run.plan().steps_per_epoch(),
        config.seed,
        out.display()
    );
    let bar = progress_bar(run.total_steps(), run.steps_done());
    let options = TrainOptions {
        stop_after: args.stop_after,
    };
    let outcome = train(&mut run, &out, options, |p: &TrainProgress| {
        bar.set_position(p.step);
        bar.set_message(format!(
            "epoch {}  {:.0} img/s  loss {:.4}{}",
            p.epoch + 1,
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
        outcome.steps_done, outcome.elapsed_secs, outcome.images_per_sec, outcome.loader_wait_secs
    );
    if let Some(last) = &outcome.last {
        let m = &last.metrics;
        println!(
            "last evaluation: kNN accuracy {:.4} | effective rank {:.2} | collapse level {:.3} | uniformity {:.3} | alignment {:.4}",
            m.knn_acc, m.effective_rank, m.collapse_level, m.uniformity, m.alignment
        );
    }
    println!(
        "wrote {} (evaluate with `msbreg eval --run {}`)",
        out.display(),
        out.display()
    );
    Ok(())
}

fn open_run(dir: &Path, backend: &Backend) -> anyhow::Result<ImageRun> {
    let run = resume(dir, &backend.device)
        .with_context(|| format!("opening the run {}", dir.display()))?;
    eprintln!(
        "run {} at step {} ({})",
        dir.display(),
        run.steps_done(),
        run.config().data.describe()
    );
    Ok(run)
}

pub fn eval_command(
    backend: &Backend,
    dir: &Path,
    max_train: usize,
    probe_epochs: usize,
) -> anyhow::Result<()> {
    let run = open_run(dir, backend)?;
    let result = evaluate_run(&run, max_train, probe_epochs)?;
    println!(
        "step {}: kNN (k = {}, T = {}) top-1 {:.4} | linear probe top-1 {:.4} | bank {} images, test {} images",
        result.step,
        run.config().eval.knn.k,
        run.config().eval.knn.temperature,
        result.knn_acc,
        result.linear_probe_acc,
        result.bank,
        result.queries
    );
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}

pub fn export_command(backend: &Backend, dir: &Path, limit: usize) -> anyhow::Result<()> {
    let run = open_run(dir, backend)?;
    let splits = run.config().data.load(run.config().seed)?;
    let set = splits.test.as_ref().unwrap_or(&splits.train);
    let count = limit.min(set.len());
    let indices: Vec<usize> = (0..count).collect();
    let subset = set.subset(&indices);
    let written = export(&run, &subset, dir)?;
    println!(
        "wrote {} rows to {} and {} (load both at projector.tensorflow.org)",
        written,
        dir.join("vectors.tsv").display(),
        dir.join("metadata.tsv").display()
    );
    Ok(())
}
