//! The headless sandbox run: train for `steps`, evaluate every `log_every` steps, and write a
//! run folder:
//!
//! - `config.toml`: the full resolved config (written first);
//! - `metrics.jsonl`: one JSON object per logged step (see [`MetricsRecord`]);
//! - `embeddings.tsv` and `labels.tsv`: the final unit embeddings of the evaluation set, one
//!   row per sample, and their labels (the TensorBoard projector reads both).
//!
//! A non-finite loss stops the run with an error naming the step; everything logged so far
//! stays, and the embeddings of the last weights that gave finite losses are written.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::Device;

use super::metrics::{MetricsRecord, MetricsWriter};
use super::sandbox::{Evaluation, SandboxRun};
use crate::config::{ConfigError, SimConfig};
use crate::method::StepError;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("output folder {path}: {reason}")]
    OutDir { path: PathBuf, reason: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("evaluation failed after step {step}: {reason}")]
    Evaluate { step: usize, reason: StepError },
    #[error("training stopped at step {step}: {reason}. Kept in {out}: {kept}")]
    Step {
        step: usize,
        reason: StepError,
        out: PathBuf,
        kept: String,
    },
}

/// Checks that `out` can hold a new run, and creates it.
///
/// # Errors
/// If its parent folder is missing, it is a file, or it already holds a run and `overwrite`
/// is false.
pub fn prepare_out_dir(out: &Path, overwrite: bool) -> Result<(), RunError> {
    let err = |reason: String| RunError::OutDir {
        path: out.to_owned(),
        reason,
    };
    if out.is_file() {
        return Err(err("is a file; choose a folder".to_owned()));
    }
    if out.join("metrics.jsonl").exists() && !overwrite {
        return Err(err(
            "already holds a run (metrics.jsonl); choose another --out or pass --overwrite"
                .to_owned(),
        ));
    }
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty())
        && !parent.is_dir()
    {
        return Err(err(format!(
            "its parent folder {} does not exist; create it first or choose another --out",
            parent.display()
        )));
    }
    std::fs::create_dir_all(out).map_err(|source| RunError::Write {
        path: out.to_owned(),
        source,
    })
}

fn write_file(path: &Path, text: &str) -> Result<(), RunError> {
    std::fs::write(path, text).map_err(|source| RunError::Write {
        path: path.to_owned(),
        source,
    })
}

/// Writes `embeddings.tsv` and `labels.tsv` of `evaluation` into `out`.
pub fn write_embeddings(out: &Path, evaluation: &Evaluation) -> Result<(), RunError> {
    let mut rows = String::new();
    for row in evaluation.embeddings.chunks(evaluation.dim.max(1)) {
        let line: Vec<String> = row.iter().map(|x| format!("{x:.6}")).collect();
        rows.push_str(&line.join("\t"));
        rows.push('\n');
    }
    write_file(&out.join("embeddings.tsv"), &rows)?;
    let mut labels = String::new();
    for label in &evaluation.labels {
        // Writing to a String cannot fail.
        let _ = writeln!(labels, "{label}");
    }
    write_file(&out.join("labels.tsv"), &labels)
}

/// Progress of a running simulation, for a progress bar.
#[derive(Clone, Debug)]
pub struct Progress {
    pub step: usize,
    pub steps: usize,
    pub loss: f32,
    pub last_record: Option<MetricsRecord>,
}

/// What a finished simulation reports.
#[derive(Clone, Debug)]
pub struct SimulateOutcome {
    pub final_record: MetricsRecord,
    pub elapsed_secs: f64,
    pub steps_per_sec: f64,
}

/// Runs `config` on `device` and writes the run folder `out` (which [`prepare_out_dir`] made).
///
/// # Errors
/// On a write failure, or when a loss is not finite (see the module docs).
pub fn simulate(
    config: &SimConfig,
    device: &Device,
    out: &Path,
    mut on_progress: impl FnMut(&Progress),
) -> Result<SimulateOutcome, RunError> {
    config.validate()?;
    write_file(&out.join("config.toml"), &config.to_toml())?;
    let metrics_path = out.join("metrics.jsonl");
    let mut metrics = MetricsWriter::create(&metrics_path).map_err(|source| RunError::Write {
        path: metrics_path.clone(),
        source,
    })?;
    let write_record = |metrics: &mut MetricsWriter, record: &MetricsRecord| {
        metrics.write(record).map_err(|source| RunError::Write {
            path: metrics.path().to_owned(),
            source,
        })
    };

    let start = Instant::now();
    let mut run = SandboxRun::new(config.clone(), device);
    let evaluate = |run: &SandboxRun, step: usize| {
        run.evaluate()
            .map_err(|reason| RunError::Evaluate { step, reason })
    };
    let first = evaluate(&run, 0)?;
    let mut last_record = MetricsRecord::new(0, None, &first.diagnostics, 0.0);
    write_record(&mut metrics, &last_record)?;
    let mut train_secs = 0.0;

    for step in 1..=config.steps {
        let step_start = Instant::now();
        let report = match run.step() {
            Ok(report) => report,
            Err(reason) => {
                let evaluation = evaluate(&run, step - 1)?;
                write_embeddings(out, &evaluation)?;
                return Err(RunError::Step {
                    step,
                    reason,
                    out: out.to_owned(),
                    kept: format!(
                        "config.toml, metrics.jsonl ({} lines), and embeddings.tsv/labels.tsv \
                         of the last weights that gave finite losses",
                        metrics.lines()
                    ),
                });
            }
        };
        train_secs += step_start.elapsed().as_secs_f64();
        let logged = step % config.log_every == 0 || step == config.steps;
        if logged {
            let evaluation = evaluate(&run, step)?;
            last_record = MetricsRecord::new(
                step,
                Some(report),
                &evaluation.diagnostics,
                start.elapsed().as_secs_f64(),
            );
            write_record(&mut metrics, &last_record)?;
            if step == config.steps {
                write_embeddings(out, &evaluation)?;
            }
        }
        on_progress(&Progress {
            step,
            steps: config.steps,
            loss: report.loss,
            last_record: logged.then(|| last_record.clone()),
        });
    }

    Ok(SimulateOutcome {
        final_record: last_record,
        elapsed_secs: start.elapsed().as_secs_f64(),
        steps_per_sec: config.steps as f64 / train_secs.max(1e-9),
    })
}
