//! One line of `metrics.jsonl`, the same for every run (the writer is `super::folder`'s).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::diagnostics::Diagnostics;
use crate::method::StepReport;

/// One logged step: the losses of the step that brought the run to `step` steps (absent for
/// the line at step 0, before any training), and the diagnostics after it. JSON has no NaN:
/// a non-finite diagnostic is written as `null` and read back as NaN.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricsRecord {
    pub step: u64,
    pub loss: Option<f32>,
    pub loss_centroid: Option<f32>,
    pub loss_sv: Option<f32>,
    pub loss_brownian: Option<f32>,
    /// VICReg's terms, on the lines of steps that had them on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_variance: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_covariance: Option<f32>,
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
    /// Seconds since the run (or this process's part of it) started.
    pub elapsed_secs: f64,
    /// The epoch of the step (image runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    /// The learning rate and `tau` the step used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tau: Option<f64>,
    /// Training speed over the last few seconds (views counted as images).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images_per_sec: Option<f64>,
    /// Whether the diagnostics of this line were computed at this step (they are `null`
    /// otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluated: Option<bool>,
}

impl MetricsRecord {
    pub fn new(
        step: u64,
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
            loss_variance: report.and_then(|r| r.loss_variance),
            loss_covariance: report.and_then(|r| r.loss_covariance),
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
            epoch: None,
            lr: None,
            tau: None,
            images_per_sec: None,
            evaluated: None,
        }
    }
}

fn nan_if_null<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN))
}

/// Reads a `metrics.jsonl` back.
pub fn read_metrics(path: &Path) -> std::io::Result<Vec<MetricsRecord>> {
    std::fs::read_to_string(path)?
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).map_err(std::io::Error::other))
        .collect()
}

/// Diagnostics not computed at a step: NaN, written as null.
pub fn nan_diagnostics() -> Diagnostics {
    Diagnostics {
        effective_rank: f64::NAN,
        uniformity: f64::NAN,
        alignment: f64::NAN,
        collapse_level: f64::NAN,
        knn_acc: f64::NAN,
        singular_values: Vec::new(),
    }
}
