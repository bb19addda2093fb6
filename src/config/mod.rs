//! What to run: one value that says everything about a run, read from TOML (every key has a
//! default, unknown keys are errors), checked for impossible settings (the error names the key,
//! the value and what is allowed), and written back into the run folder.
//!
//! - [`Preset`]: named starting points for the forces (and M);
//! - `sandbox`: [`SimConfig`], the particle sandbox's run;
//! - `image`: [`TrainConfig`], image pretraining;
//! - `workload`: [`Workload`] (one of the two) and [`WorkloadSettings`], what the app's
//!   controls choose, turned into a config here rather than in the UI.
//!
//! Every config is built the same way: the preset's values, then a TOML file's keys, then the
//! command line's, merged key by key ([`merge_tables`]) and checked once.

use std::path::PathBuf;

mod image;
pub mod lesson;
mod sandbox;
mod workload;

pub use image::{CheckpointSettings, EvalSettings, TrainConfig, measure_in_epochs};
pub use sandbox::SimConfig;
pub use workload::{
    DISPLAY_POINTS, DataChoice, MAX_DISPLAY_POINTS, ModelChoice, RunSettings, Workload,
    WorkloadSettings, default_display_points,
};

use serde::{Deserialize, Serialize};

use crate::data::sandbox::{SandboxDataConfig, ViewConfig};
use crate::diagnostics::KnnConfig;
use crate::method::{CentroidMode, Dynamics, Force, OptimizerConfig};
use crate::model::SandboxNetConfig;

/// Named starting points; each changes [`Dynamics`] (and M) from the defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// All three forces, predictor and EMA, 4 views.
    Msbreg,
    /// Centroid only, no predictor, no EMA: the cloud collapses.
    Collapse,
    /// BYOL: leave-one-out centroid with 2 views, predictor and EMA, no dispersion.
    Byol,
    /// SimSiam: BYOL without EMA (target = online, stop-gradient).
    Simsiam,
    /// MSBReg without the singular value loss.
    NoSv,
    /// MSBReg without the Brownian loss.
    NoBrownian,
    /// VICReg: invariance (the attraction, no predictor, no EMA), variance and covariance.
    Vicreg,
    /// BYOL with the MSBReg regularizer (the singular value and Brownian terms).
    ByolReg,
    /// SimSiam with the MSBReg regularizer.
    SimsiamReg,
    /// VICReg with the MSBReg regularizer.
    VicregReg,
}

impl Preset {
    pub const ALL: [Self; 10] = [
        Self::Msbreg,
        Self::Collapse,
        Self::Byol,
        Self::Simsiam,
        Self::NoSv,
        Self::NoBrownian,
        Self::Vicreg,
        Self::ByolReg,
        Self::SimsiamReg,
        Self::VicregReg,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Msbreg => "msbreg",
            Self::Collapse => "collapse",
            Self::Byol => "byol",
            Self::Simsiam => "simsiam",
            Self::NoSv => "no-sv",
            Self::NoBrownian => "no-brownian",
            Self::Vicreg => "vicreg",
            Self::ByolReg => "byol-reg",
            Self::SimsiamReg => "simsiam-reg",
            Self::VicregReg => "vicreg-reg",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::Msbreg => {
                "all three forces (centroid, singular value, Brownian) + predictor + EMA, M = 4"
            }
            Self::Collapse => "centroid only, no predictor, no EMA: watch the cloud collapse",
            Self::Byol => "BYOL: leave-one-out centroid, M = 2, predictor + EMA, no dispersion",
            Self::Simsiam => "SimSiam: leave-one-out centroid, M = 2, predictor, no EMA",
            Self::NoSv => "msbreg without the singular value loss (global dispersion off)",
            Self::NoBrownian => "msbreg without the Brownian loss (local dispersion off)",
            Self::Vicreg => {
                "VICReg: invariance (mean centroid), variance and covariance, M = 2, no \
                 predictor, no EMA"
            }
            Self::ByolReg => "BYOL with the MSBReg regularizer (singular value + Brownian)",
            Self::SimsiamReg => "SimSiam with the MSBReg regularizer (singular value + Brownian)",
            Self::VicregReg => "VICReg with the MSBReg regularizer (singular value + Brownian)",
        }
    }

    pub fn from_name(name: &str) -> Result<Self, ConfigError> {
        Self::ALL
            .into_iter()
            .find(|preset| preset.name() == name)
            .ok_or_else(|| ConfigError::UnknownPreset {
                name: name.to_owned(),
                available: Self::ALL.map(Self::name).join(", "),
            })
    }

    pub fn dynamics(self) -> Dynamics {
        let msbreg = Dynamics::default();
        match self {
            Self::Msbreg => msbreg,
            Self::Collapse => Dynamics {
                centroid: Force::on(1.0),
                centroid_mode: CentroidMode::Mean,
                singular_value: Force::off(msbreg.singular_value.weight),
                brownian: Force::off(msbreg.brownian.weight),
                predictor: false,
                ema: false,
                ..msbreg
            },
            Self::Byol | Self::Simsiam => Dynamics {
                centroid: Force::on(1.0),
                centroid_mode: CentroidMode::LeaveOneOut,
                singular_value: Force::off(msbreg.singular_value.weight),
                brownian: Force::off(msbreg.brownian.weight),
                predictor: true,
                ema: self == Self::Byol,
                ..msbreg
            },
            Self::NoSv => Dynamics {
                singular_value: Force::off(msbreg.singular_value.weight),
                ..msbreg
            },
            Self::NoBrownian => Dynamics {
                brownian: Force::off(msbreg.brownian.weight),
                ..msbreg
            },
            Self::Vicreg => Dynamics {
                centroid: Force::on(1.0),
                centroid_mode: CentroidMode::Mean,
                singular_value: Force::off(msbreg.singular_value.weight),
                brownian: Force::off(msbreg.brownian.weight),
                variance: Force::on(msbreg.variance.weight),
                covariance: Force::on(msbreg.covariance.weight),
                predictor: false,
                ema: false,
                ..msbreg
            },
            Self::ByolReg | Self::SimsiamReg | Self::VicregReg => {
                let base = match self {
                    Self::ByolReg => Self::Byol,
                    Self::SimsiamReg => Self::Simsiam,
                    _ => Self::Vicreg,
                }
                .dynamics();
                Dynamics {
                    singular_value: msbreg.singular_value,
                    brownian: msbreg.brownian,
                    ..base
                }
            }
        }
    }

    pub fn views(self) -> usize {
        match self {
            Self::Byol
            | Self::Simsiam
            | Self::Vicreg
            | Self::ByolReg
            | Self::SimsiamReg
            | Self::VicregReg => 2,
            _ => 4,
        }
    }

    /// The full config of this preset.
    pub fn config(self) -> SimConfig {
        SimConfig {
            preset: self.name().to_owned(),
            seed: 0,
            steps: 600,
            log_every: 50,
            batch_size: 256,
            learning_rate: 1e-3,
            data: SandboxDataConfig::default(),
            views: ViewConfig {
                count: self.views(),
                ..ViewConfig::default()
            },
            model: SandboxNetConfig::default(),
            dynamics: self.dynamics(),
            optimizer: OptimizerConfig::default(),
            knn: KnnConfig::default(),
            record: RecordSettings::every(10),
            display_points: 0,
        }
    }
}

/// How a run records its display set (`[record]`; see `session::recording`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordSettings {
    /// `train` and `simulate` record a frame every this many steps (and at the first and the
    /// last); 0 records nothing. The app records every frame it shows.
    pub every_steps: usize,
    /// The full D-dimensional display embeddings are stored with every this many frames (so a
    /// replay can re-project); 0 = never.
    pub embeddings_every: usize,
}

impl RecordSettings {
    /// A frame every `every_steps` steps, embeddings with every 20th.
    pub fn every(every_steps: usize) -> Self {
        Self {
            every_steps,
            embeddings_every: 20,
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        check(
            self.every_steps <= MAX_STEPS,
            "record.every_steps",
            self.every_steps,
            "0 (no recording) to 1,000,000,000 steps",
        )?;
        check(
            self.embeddings_every <= 1_000_000,
            "record.embeddings_every",
            self.embeddings_every,
            "0 (never) to 1,000,000 frames",
        )
    }
}

impl Default for RecordSettings {
    fn default() -> Self {
        Self::every(10)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key `{key}` = {value} is out of range: {expected}")]
    OutOfRange {
        key: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("the config could not be written as TOML ({message}); nothing was saved")]
    Serialize { message: String },
    #[error(
        "unknown preset `{name}`; the presets are: {available} (`msbreg simulate --list-presets`)"
    )]
    UnknownPreset { name: String, available: String },
}

/// The most steps a run may be asked for: far beyond any run this tool is for, and far from
/// the counters' limits.
pub const MAX_STEPS: usize = 1_000_000_000;

pub fn check(
    ok: bool,
    key: &'static str,
    value: impl std::fmt::Display,
    expected: &'static str,
) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError::OutOfRange {
            key,
            value: value.to_string(),
            expected,
        })
    }
}

/// Checks the optimiser's keys (`optimizer.*`), the same in every config.
pub fn validate_optimizer(optimizer: &OptimizerConfig) -> Result<(), ConfigError> {
    check(
        (0.0..1.0).contains(&optimizer.momentum),
        "optimizer.momentum",
        optimizer.momentum,
        "momentum must lie in [0, 1)",
    )?;
    check(
        optimizer.weight_decay.is_finite() && optimizer.weight_decay >= 0.0,
        "optimizer.weight_decay",
        optimizer.weight_decay,
        "a finite number >= 0",
    )?;
    check(
        optimizer.lars_eta.is_finite() && optimizer.lars_eta > 0.0,
        "optimizer.lars_eta",
        optimizer.lars_eta,
        "a finite number > 0 (LARS's trust coefficient, 0.001 is usual)",
    )
}

/// Checks a kNN setting; `keys` name its `k` and `temperature` where the config holds it.
pub fn validate_knn(knn: &KnnConfig, keys: [&'static str; 2]) -> Result<(), ConfigError> {
    check(knn.k >= 1, keys[0], knn.k, "at least 1 neighbour")?;
    check(
        knn.temperature.is_finite() && knn.temperature > 0.0,
        keys[1],
        knn.temperature,
        "a finite number > 0",
    )
}

/// Checks the values a user may change while a run is going (the app's sliders use this too).
pub fn validate_dynamics(dynamics: &Dynamics) -> Result<(), ConfigError> {
    for (key, force) in [
        ("dynamics.centroid.weight", dynamics.centroid),
        ("dynamics.singular_value.weight", dynamics.singular_value),
        ("dynamics.brownian.weight", dynamics.brownian),
        ("dynamics.variance.weight", dynamics.variance),
        ("dynamics.covariance.weight", dynamics.covariance),
    ] {
        check(
            force.weight.is_finite() && force.weight >= 0.0,
            key,
            force.weight,
            "a force weight must be a finite number >= 0 (switch the force off with `on = false`)",
        )?;
    }
    check(
        (0.0..=1.0).contains(&dynamics.tau),
        "dynamics.tau",
        dynamics.tau,
        "tau must lie in [0, 1] (0.99 is usual; 1 freezes the target)",
    )
}

/// `display_points`, as both run configs have it.
pub fn validate_display_points(points: usize) -> Result<(), ConfigError> {
    check(
        points <= MAX_DISPLAY_POINTS,
        "display_points",
        points,
        "at most 100,000 points (0: the display set alone)",
    )
}

/// `base` with every key of `overrides` laid over it, tables merged key by key.
pub fn merge_tables(mut base: toml::Table, overrides: toml::Table) -> toml::Table {
    for (key, value) in overrides {
        match (base.remove(&key), value) {
            (Some(toml::Value::Table(inner)), toml::Value::Table(over)) => {
                base.insert(key, toml::Value::Table(merge_tables(inner, over)));
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
    base
}

/// Lays `value` at the dotted `key` of `table` (`--set KEY=VALUE`, an ablation's grid): the
/// value as TOML when it is one TOML value (a number, a boolean, a quoted string, an array, an
/// inline table), else as a plain string. Built as a value, never as TOML text, so a value
/// cannot add keys of its own (a newline in it stays in the string).
///
/// # Errors
/// A key that is not names joined by dots, or that goes through a value.
pub fn set_key(table: &mut toml::Table, key: &str, value: &str) -> Result<(), String> {
    let parts: Vec<&str> = key.split('.').map(str::trim).collect();
    let bare = |part: &str| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    if !parts.iter().all(|part| bare(part)) {
        return Err(format!(
            "`{key}` is not a config key; keys are names joined by dots, e.g. dynamics.tau or \
             optimizer.kind"
        ));
    }
    let parsed = toml::from_str::<toml::Table>(&format!("value = {value}"))
        .ok()
        .filter(|t| t.len() == 1)
        .and_then(|mut t| t.remove("value"));
    let value = parsed.unwrap_or_else(|| toml::Value::String(value.to_owned()));
    let mut node = table;
    let (last, path) = parts.split_last().unwrap_or((&"", &[]));
    for part in path {
        let entry = node
            .entry((*part).to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(inner) = entry else {
            return Err(format!("`{part}` in `{key}` is a value, not a table"));
        };
        node = inner;
    }
    node.insert((*last).to_owned(), value);
    Ok(())
}

/// `config` as TOML, every key written. Fails (rather than writing an empty file) on what TOML
/// cannot hold, such as an integer above 2^63 - 1.
pub fn to_toml(config: &impl Serialize) -> Result<String, ConfigError> {
    toml::to_string_pretty(config).map_err(|err| ConfigError::Serialize {
        message: err.to_string(),
    })
}
