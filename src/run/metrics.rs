//! One line of `metrics.jsonl`, and the writer that appends and flushes line by line so that a
//! run stopped at any point keeps every line it logged.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::diagnostics::Diagnostics;
use crate::method::StepReport;

/// One logged step: the losses of the step that brought the run to `step` steps (absent for
/// the line at step 0, before any training), and the diagnostics after it. JSON has no NaN:
/// a non-finite diagnostic is written as `null` and read back as NaN.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricsRecord {
    pub step: usize,
    pub loss: Option<f32>,
    pub loss_centroid: Option<f32>,
    pub loss_sv: Option<f32>,
    pub loss_brownian: Option<f32>,
    #[serde(deserialize_with = "nan_if_null")]
    pub effective_rank: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub uniformity: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub alignment: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub collapse_level: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub knn_acc: f64,
    /// Singular values of the centred evaluation embeddings, largest first.
    pub spectrum: Vec<Option<f64>>,
    /// Seconds since the run started.
    pub elapsed_secs: f64,
}

impl MetricsRecord {
    pub fn new(
        step: usize,
        report: Option<StepReport>,
        diagnostics: &Diagnostics,
        elapsed_secs: f64,
    ) -> Self {
        Self {
            step,
            loss: report.map(|r| r.loss),
            loss_centroid: report.map(|r| r.loss_centroid),
            loss_sv: report.map(|r| r.loss_sv),
            loss_brownian: report.map(|r| r.loss_brownian),
            effective_rank: diagnostics.effective_rank,
            uniformity: diagnostics.uniformity,
            alignment: diagnostics.alignment,
            collapse_level: diagnostics.collapse_level,
            knn_acc: diagnostics.knn_acc,
            spectrum: diagnostics
                .singular_values
                .iter()
                .map(|&s| s.is_finite().then_some(s))
                .collect(),
            elapsed_secs,
        }
    }
}

fn nan_if_null<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN))
}

/// Appends records to a JSON-lines file, flushing after each.
pub struct MetricsWriter {
    path: PathBuf,
    out: BufWriter<File>,
    lines: usize,
}

impl MetricsWriter {
    pub fn create(path: &Path) -> std::io::Result<Self> {
        Ok(Self {
            path: path.to_owned(),
            out: BufWriter::new(File::create(path)?),
            lines: 0,
        })
    }

    pub fn write(&mut self, record: &MetricsRecord) -> std::io::Result<()> {
        let line = serde_json::to_string(record).map_err(std::io::Error::other)?;
        writeln!(self.out, "{line}")?;
        self.out.flush()?;
        self.lines += 1;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn lines(&self) -> usize {
        self.lines
    }
}

/// Reads a `metrics.jsonl` back (tests, and later the app's "open run").
pub fn read_metrics(path: &Path) -> std::io::Result<Vec<MetricsRecord>> {
    std::fs::read_to_string(path)?
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).map_err(std::io::Error::other))
        .collect()
}
