//! A run folder opened to watch (`msbreg app --open DIR`): its recording on the timeline, its
//! `metrics.jsonl` in the plots, both followed while another process (`msbreg train --out
//! DIR`) still writes them, as TensorBoard follows a training job.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::History;
use crate::method::StepReport;
use crate::session::{
    LockHolder, MetricsRecord, Preview, Recording, RunFolder, current_writer, read_metrics,
};
use crate::trainer::{DisplayDiagnostics, MetricsPoint, RunInfo};

const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// See the module docs.
pub struct Opened {
    pub dir: PathBuf,
    pub info: Arc<RunInfo>,
    pub history: History,
    /// Lines of `metrics.jsonl` already in the history.
    lines_read: usize,
    /// The process writing the folder now, if one is.
    pub writer: Option<LockHolder>,
    last_poll: Instant,
}

impl Opened {
    /// Opens the run folder `dir`; `run_id` tells its history apart from the trainer's runs.
    ///
    /// # Errors
    /// The folder is not a run folder, or its config does not parse. A folder without a
    /// recording opens (its plots show; the timeline says why it has nothing).
    pub fn open(dir: &Path, run_id: u64) -> Result<Self, String> {
        let folder = RunFolder::open(dir).map_err(|e| e.to_string())?;
        let workload = folder.read_workload().map_err(|e| e.to_string())?;
        let (labels, class_names) = match Recording::open(dir) {
            Ok(recording) => (
                recording.header().labels.clone(),
                recording.header().class_names.clone(),
            ),
            Err(_) => (Vec::new(), Vec::new()),
        };
        let embed_dim = workload.settings().embed_dim();
        let info = RunInfo {
            run_id,
            workload,
            backend: format!("recorded in {}", dir.display()),
            class_names,
            labels,
            preview: Preview::Points {
                points: Vec::new(),
                dim: 0,
            },
            embed_dim,
        };
        let mut opened = Self {
            dir: dir.to_owned(),
            info: Arc::new(info),
            history: History::default(),
            lines_read: 0,
            writer: None,
            last_poll: Instant::now(),
        };
        opened.read_new_metrics();
        opened.writer = current_writer(dir);
        Ok(opened)
    }

    /// Reads the metrics lines written since the last look (every half second at most).
    pub fn poll(&mut self) {
        if self.last_poll.elapsed() < POLL_INTERVAL {
            return;
        }
        self.last_poll = Instant::now();
        self.read_new_metrics();
        self.writer = current_writer(&self.dir);
    }

    fn read_new_metrics(&mut self) {
        let path = self.dir.join("metrics.jsonl");
        // A torn last line (a writer mid-write) fails to parse: read up to the last good one.
        let Ok(records) = read_metrics_prefix(&path) else {
            return;
        };
        if records.len() < self.lines_read {
            // Rewritten (a resumed run cut it back): start over.
            self.history = History::default();
            self.lines_read = 0;
        }
        let points: Vec<MetricsPoint> = records[self.lines_read..].iter().map(point).collect();
        self.history.extend(&points, self.info.embed_dim);
        self.lines_read = records.len();
    }
}

/// The records of `metrics.jsonl` up to the first line that does not parse.
fn read_metrics_prefix(path: &Path) -> std::io::Result<Vec<MetricsRecord>> {
    if let Ok(records) = read_metrics(path) {
        return Ok(records);
    }
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .map_while(|line| serde_json::from_str(line).ok())
        .collect())
}

/// A metrics line as the plots take it.
pub fn point(record: &MetricsRecord) -> MetricsPoint {
    let losses = match (
        record.loss,
        record.loss_centroid,
        record.loss_sv,
        record.loss_brownian,
    ) {
        (Some(loss), Some(loss_centroid), Some(loss_sv), Some(loss_brownian)) => Some(StepReport {
            loss,
            loss_centroid,
            loss_sv,
            loss_brownian,
            loss_variance: record.loss_variance,
            loss_covariance: record.loss_covariance,
        }),
        _ => None,
    };
    let diagnostics = record
        .effective_rank
        .is_finite()
        .then_some(DisplayDiagnostics {
            effective_rank: record.effective_rank,
            collapse_level: record.collapse_level,
            uniformity: record.uniformity,
            alignment: record.alignment,
            // Not in metrics.jsonl: the share plot stays empty for a replayed folder.
            force_shares: [f64::NAN; 3],
        });
    MetricsPoint {
        step: record.step,
        losses,
        diagnostics,
        knn_acc: record.knn_acc.is_finite().then_some(record.knn_acc),
    }
}
