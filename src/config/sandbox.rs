//! The sandbox run's config: points in a low-dimensional space, an MLP encoder, the forces.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{
    ConfigError, MAX_STEPS, Preset, RecordSettings, check, merge_tables, to_toml,
    validate_display_points, validate_dynamics, validate_knn, validate_optimizer,
};
use crate::data::sandbox::{SandboxDataConfig, SandboxKind, ViewConfig};
use crate::diagnostics::KnnConfig;
use crate::method::{Dynamics, OptimizerConfig};
use crate::model::SandboxNetConfig;

/// Everything a sandbox run needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// The preset this config started from (informational).
    pub preset: String,
    /// Every random number of the run derives from this seed.
    pub seed: u64,
    /// Training steps.
    pub steps: usize,
    /// Evaluate the diagnostics and write a metrics line every this many steps (and at the end).
    pub log_every: usize,
    /// N, images (points) per batch.
    pub batch_size: usize,
    pub learning_rate: f64,
    pub data: SandboxDataConfig,
    pub views: ViewConfig,
    pub model: SandboxNetConfig,
    pub dynamics: Dynamics,
    pub optimizer: OptimizerConfig,
    pub knn: KnnConfig,
    pub record: RecordSettings,
    /// Points the app shows in all: the evaluation set (with its views and arrows) and as
    /// many more drawn from the same blobs (0: the evaluation set alone).
    pub display_points: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        Preset::Msbreg.config()
    }
}

impl SimConfig {
    /// Reads a TOML file: every key optional, unknown keys rejected.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// Parses TOML text; `path` only names the source in errors.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|err| ConfigError::Parse {
            path: path.to_owned(),
            message: err.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The preset's config with the keys of a TOML file laid over it. The file is checked on
    /// its own first, so that errors name its own lines and keys.
    pub fn from_preset_and_file(preset: Preset, path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let parse_err = |err: toml::de::Error| ConfigError::Parse {
            path: path.to_owned(),
            message: err.to_string(),
        };
        toml::from_str::<Self>(&text).map_err(parse_err)?;
        let overrides: toml::Table = toml::from_str(&text).map_err(parse_err)?;
        let base: toml::Table = toml::from_str(&preset.config().to_toml()?).map_err(parse_err)?;
        let merged = merge_tables(base, overrides);
        let config: Self = merged.try_into().map_err(parse_err)?;
        config.validate()?;
        Ok(config)
    }

    /// The config as TOML, every key written.
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        to_toml(self)
    }

    /// Rejects impossible settings with the key, the value and what is allowed.
    #[allow(clippy::too_many_lines)] // one flat check per key reads best as one list
    pub fn validate(&self) -> Result<(), ConfigError> {
        check(
            (1..=MAX_STEPS).contains(&self.steps),
            "steps",
            self.steps,
            "1 to 1,000,000,000 steps",
        )?;
        check(
            self.log_every >= 1,
            "log_every",
            self.log_every,
            "at least 1",
        )?;
        check(
            self.batch_size >= 2,
            "batch_size",
            self.batch_size,
            "N must be at least 2 (the covariance needs two images)",
        )?;
        check(
            self.learning_rate.is_finite() && self.learning_rate > 0.0,
            "learning_rate",
            self.learning_rate,
            "a finite number > 0",
        )?;
        check(
            (2..=8).contains(&self.views.count),
            "views.count",
            self.views.count,
            "M must be 2 to 8 views per image",
        )?;
        check(
            self.views.jitter.is_finite() && self.views.jitter >= 0.0,
            "views.jitter",
            self.views.jitter,
            "a finite number >= 0",
        )?;
        check(
            self.views.scale_min.is_finite() && self.views.scale_min > 0.0,
            "views.scale_min",
            self.views.scale_min,
            "a finite number > 0",
        )?;
        check(
            self.views.scale_max.is_finite() && self.views.scale_max >= self.views.scale_min,
            "views.scale_max",
            self.views.scale_max,
            "a finite number >= views.scale_min",
        )?;
        check(
            self.data.classes >= 2,
            "data.classes",
            self.data.classes,
            "at least 2 classes",
        )?;
        check(
            self.data.content_dim >= 1,
            "data.content_dim",
            self.data.content_dim,
            "at least 1 coordinate",
        )?;
        check(
            self.data.kind != SandboxKind::Rings || self.data.content_dim == 2,
            "data.content_dim",
            self.data.content_dim,
            "`rings` are 2-D: set data.content_dim = 2",
        )?;
        check(
            self.data.style_std.is_finite() && self.data.style_std >= 0.0,
            "data.style_std",
            self.data.style_std,
            "a finite number >= 0",
        )?;
        check(
            self.data.train_size >= self.batch_size,
            "data.train_size",
            self.data.train_size,
            "at least batch_size points (a batch holds distinct points)",
        )?;
        check(
            self.data.eval_size >= 2,
            "data.eval_size",
            self.data.eval_size,
            "at least 2 points",
        )?;
        check(
            self.data.spread.is_finite() && self.data.spread >= 0.0,
            "data.spread",
            self.data.spread,
            "a finite number >= 0",
        )?;
        check(
            self.model.embed_dim >= 2,
            "model.embed_dim",
            self.model.embed_dim,
            "D must be at least 2",
        )?;
        for (key, width) in [
            ("model.encoder_hidden", self.model.encoder_hidden),
            ("model.feature_dim", self.model.feature_dim),
            ("model.head_hidden", self.model.head_hidden),
        ] {
            check(width >= 1, key, width, "at least 1")?;
        }
        validate_optimizer(&self.optimizer)?;
        validate_knn(&self.knn, ["knn.k", "knn.temperature"])?;
        self.record.validate()?;
        validate_display_points(self.display_points)?;
        validate_dynamics(&self.dynamics)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::method::CentroidMode;

    fn parse(text: &str) -> Result<SimConfig, ConfigError> {
        SimConfig::from_toml(text, Path::new("run.toml"))
    }

    fn out_of_range_key(result: Result<SimConfig, ConfigError>) -> &'static str {
        match result {
            Err(ConfigError::OutOfRange { key, .. }) => key,
            other => panic!("expected an out-of-range error, got {other:?}"),
        }
    }

    #[test]
    fn every_key_has_a_default_and_the_config_round_trips() {
        let config = parse("").expect("an empty file is the default config");
        assert_eq!(config, SimConfig::default());
        for preset in Preset::ALL {
            let config = preset.config();
            config.validate().expect("presets are valid");
            assert_eq!(
                parse(&config.to_toml().expect("serialises")).expect("round trip"),
                config
            );
        }
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = parse("stpes = 10").expect_err("typo").to_string();
        assert!(err.contains("stpes") && err.contains("run.toml"), "{err}");
        let err = parse("[dynamics]\nbrownain = { on = true, weight = 0.1 }")
            .expect_err("typo in a table")
            .to_string();
        assert!(err.contains("brownain"), "{err}");
    }

    #[test]
    fn impossible_settings_name_their_key() {
        assert_eq!(out_of_range_key(parse("[views]\ncount = 1")), "views.count");
        assert_eq!(out_of_range_key(parse("[views]\ncount = 9")), "views.count");
        assert_eq!(out_of_range_key(parse("batch_size = 1")), "batch_size");
        assert_eq!(
            out_of_range_key(parse("[dynamics]\ntau = 1.5")),
            "dynamics.tau"
        );
        assert_eq!(
            out_of_range_key(parse("[dynamics]\ntau = -0.1")),
            "dynamics.tau"
        );
        assert_eq!(
            out_of_range_key(parse("[dynamics]\nbrownian = { on = true, weight = -1.0 }")),
            "dynamics.brownian.weight"
        );
        assert_eq!(
            out_of_range_key(parse("learning_rate = 0.0")),
            "learning_rate"
        );
        assert_eq!(
            out_of_range_key(parse("[data]\nkind = \"rings\"\ncontent_dim = 3")),
            "data.content_dim"
        );
        let message = parse("[views]\ncount = 1").expect_err("M < 2").to_string();
        assert!(
            message.contains("views.count") && message.contains("2 to 8"),
            "{message}"
        );
    }

    #[test]
    fn presets_by_name() {
        for preset in Preset::ALL {
            assert_eq!(Preset::from_name(preset.name()).ok(), Some(preset));
        }
        let err = Preset::from_name("bryol").expect_err("unknown").to_string();
        assert!(
            err.contains("bryol") && err.contains("no-brownian"),
            "{err}"
        );
    }

    #[test]
    fn presets_switch_what_their_names_say() {
        let collapse = Preset::Collapse.dynamics();
        assert!(collapse.centroid.on && !collapse.singular_value.on && !collapse.brownian.on);
        assert!(!collapse.predictor && !collapse.ema);
        let byol = Preset::Byol.dynamics();
        assert_eq!(byol.centroid_mode, CentroidMode::LeaveOneOut);
        assert!(byol.predictor && byol.ema && !byol.singular_value.on);
        assert_eq!(Preset::Byol.views(), 2);
        let msbreg = Preset::Msbreg.dynamics();
        assert!(msbreg.centroid.on && msbreg.singular_value.on && msbreg.brownian.on);
        assert!(!Preset::NoSv.dynamics().singular_value.on);
        assert!(!Preset::NoBrownian.dynamics().brownian.on);
    }

    #[test]
    fn a_file_overrides_only_its_keys_of_the_preset() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("run.toml");
        std::fs::write(&path, "steps = 7\n[dynamics]\ntau = 0.5\n").expect("write");
        let config = SimConfig::from_preset_and_file(Preset::Byol, &path).expect("valid");
        assert_eq!(config.steps, 7);
        assert_eq!(config.dynamics.tau, 0.5);
        assert_eq!(config.views.count, 2, "kept from the byol preset");
        assert_eq!(config.dynamics.centroid_mode, CentroidMode::LeaveOneOut);
        std::fs::write(&path, "[views]\ncuont = 3\n").expect("write");
        let err = SimConfig::from_preset_and_file(Preset::Byol, &path)
            .expect_err("unknown key")
            .to_string();
        assert!(err.contains("cuont") && err.contains("line 2"), "{err}");
    }
}
