//! The image pretraining run's config: the data, augmentation, encoder, forces, optimiser and
//! schedules, evaluation and checkpoints.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{
    ConfigError, MAX_STEPS, Preset, RecordSettings, check, merge_tables, to_toml,
    validate_display_points, validate_dynamics, validate_knn, validate_optimizer,
};
use crate::data::augment::AugmentConfig;
use crate::data::source::DataSource;
use crate::diagnostics::KnnConfig;
use crate::method::schedule::TauSchedule;
use crate::method::{Dynamics, OptimizerConfig, OptimizerKind};
use crate::model::ImageNetConfig;

/// When and on what the diagnostics are computed.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalSettings {
    /// Evaluate every this many steps (and at the end); 0 = at the end of every epoch.
    pub every_steps: usize,
    /// Labelled training images in the kNN bank (the first ones of a seeded shuffle).
    pub bank_size: usize,
    /// Held-out labelled images queried (and embedded for the diagnostics).
    pub query_size: usize,
    pub knn: KnnConfig,
}

impl Default for EvalSettings {
    fn default() -> Self {
        Self {
            every_steps: 0,
            bank_size: 5000,
            query_size: 1000,
            knn: KnnConfig::default(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointSettings {
    /// Write a checkpoint every this many steps (and at the end); 0 = at the end only.
    pub every_steps: usize,
    /// How many checkpoints to keep (the newest).
    pub keep: usize,
}

impl Default for CheckpointSettings {
    fn default() -> Self {
        Self {
            every_steps: 500,
            keep: 3,
        }
    }
}

/// The default run's length: about 10 minutes of the small CNN on 2 cores (flex).
pub const RECIPE_STEPS: usize = 5000;

/// Makes a config layer that names `epochs` and not `steps` count in epochs (`steps = 0`),
/// so that `epochs = 20` in a file or `--set epochs=20` means 20 epochs, not the default's
/// step budget.
pub fn measure_in_epochs(layer: &mut toml::Table) {
    if layer.contains_key("epochs") && !layer.contains_key("steps") {
        layer.insert("steps".to_owned(), toml::Value::Integer(0));
    }
}

/// Everything an image pretraining run needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// The dynamics preset this config started from (informational).
    pub preset: String,
    pub seed: u64,
    pub data: DataSource,
    pub epochs: usize,
    /// The run's length in steps, which the learning-rate and tau schedules span, whatever the
    /// set's size; 0: `epochs` decide. A config (file, `--set`, `--epochs`) that names `epochs`
    /// and not `steps` sets it to 0 ([`measure_in_epochs`]). A run folder's config written
    /// before this key existed reads as 0.
    #[serde(default)]
    pub steps: usize,
    /// Stop after this many steps (0 = run every epoch). The schedules still span all epochs.
    pub max_steps: usize,
    /// N, images per batch.
    pub batch_size: usize,
    /// M, views per image (2 to 8).
    pub views: usize,
    /// Side of every view; 0 = the dataset's own.
    pub image_side: usize,
    pub augment: AugmentConfig,
    pub model: ImageNetConfig,
    pub dynamics: Dynamics,
    pub tau_schedule: TauSchedule,
    pub optimizer: OptimizerConfig,
    /// Peak learning rate, reached after the warm-up, then decayed by a cosine to 0.
    pub learning_rate: f64,
    pub warmup_epochs: f64,
    /// Write a metrics line (losses, lr, speed) every this many steps.
    pub log_every: usize,
    pub eval: EvalSettings,
    pub checkpoint: CheckpointSettings,
    pub record: RecordSettings,
    /// Batches the loader thread prepares ahead.
    pub loader_queue: usize,
    /// Held-out images the app shows in all: the display set (the first `eval.query_size`,
    /// with their views and arrows) and more of the test split beyond it (0: the display set
    /// alone).
    pub display_points: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self::from_preset(Preset::Msbreg)
    }
}

impl TrainConfig {
    /// The default run with the dynamics of `preset`: the CPU recipe for small images (issue
    /// 11, measured on Fashion-MNIST with `msbreg ablate`, AMD EPYC, 2 cores, flex; the README's
    /// "A recipe that learns on a CPU in minutes"). A step budget rather than epochs, so that a
    /// run takes about the same time on a set of 8,000 images as on 60,000; 2 views (at a
    /// fixed time two views and more steps beat four: 0.845 against 0.837 linear probe in
    /// 15 minutes); batch 128 at a peak learning rate of 1e-2 (at 5 epochs: 0.848, against
    /// 0.843 at 5e-3 and 0.826 at 2e-3; batch 256 at 2e-3: 0.817); crops of at least a quarter
    /// of the image (the 8 % of 224-pixel recipes leaves a few pixels of a 28-pixel garment:
    /// 0.817 against 0.806).
    pub fn from_preset(preset: Preset) -> Self {
        Self {
            preset: preset.name().to_owned(),
            seed: 0,
            data: DataSource::default(),
            epochs: 10,
            steps: RECIPE_STEPS,
            max_steps: 0,
            batch_size: 128,
            views: 2,
            image_side: 0,
            augment: AugmentConfig {
                crop_scale: [0.25, 1.0],
                ..AugmentConfig::default()
            },
            model: ImageNetConfig::default(),
            dynamics: preset.dynamics(),
            tau_schedule: TauSchedule::Constant,
            optimizer: OptimizerConfig {
                kind: OptimizerKind::Adamw,
                weight_decay: 1e-5,
                ..OptimizerConfig::default()
            },
            learning_rate: 1e-2,
            warmup_epochs: 1.0,
            log_every: 10,
            eval: EvalSettings::default(),
            checkpoint: CheckpointSettings::default(),
            // A frame costs a forward pass of the display set (about one step): 2%.
            record: RecordSettings::every(50),
            loader_queue: 4,
            display_points: 0,
        }
    }

    /// Steps the schedules span: `steps`, or `epochs` of `steps_per_epoch`.
    pub fn schedule_steps(&self, steps_per_epoch: u64) -> u64 {
        if self.steps > 0 {
            self.steps as u64
        } else {
            steps_per_epoch * self.epochs as u64
        }
    }

    /// The config as TOML, every key written.
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        to_toml(self)
    }

    /// The preset's config with the keys of `overrides` (TOML text from a file, named `path`
    /// in errors) laid over it.
    pub fn from_preset_and_toml(
        preset: Preset,
        text: &str,
        path: &Path,
    ) -> Result<Self, ConfigError> {
        let parse_err = |err: toml::de::Error| ConfigError::Parse {
            path: path.to_owned(),
            message: err.to_string(),
        };
        toml::from_str::<Self>(text).map_err(parse_err)?;
        let mut overrides: toml::Table = toml::from_str(text).map_err(parse_err)?;
        measure_in_epochs(&mut overrides);
        let base: toml::Table =
            toml::from_str(&Self::from_preset(preset).to_toml()?).map_err(parse_err)?;
        let config: Self = merge_tables(base, overrides)
            .try_into()
            .map_err(parse_err)?;
        config.validate()?;
        Ok(config)
    }

    #[allow(clippy::too_many_lines)] // one flat check per key reads best as one list
    pub fn validate(&self) -> Result<(), ConfigError> {
        check(
            (1..=1_000_000).contains(&self.epochs),
            "epochs",
            self.epochs,
            "1 to 1,000,000 epochs",
        )?;
        check(
            self.steps <= MAX_STEPS,
            "steps",
            self.steps,
            "0 (epochs decide) or at most 1,000,000,000 steps",
        )?;
        check(
            self.max_steps <= MAX_STEPS,
            "max_steps",
            self.max_steps,
            "0 (every epoch) or at most 1,000,000,000 steps",
        )?;
        check(
            self.batch_size >= 2,
            "batch_size",
            self.batch_size,
            "N must be at least 2",
        )?;
        check(
            (2..=8).contains(&self.views),
            "views",
            self.views,
            "M must be 2 to 8 views per image",
        )?;
        check(
            self.learning_rate.is_finite() && self.learning_rate > 0.0,
            "learning_rate",
            self.learning_rate,
            "a finite number > 0",
        )?;
        check(
            self.warmup_epochs.is_finite() && self.warmup_epochs >= 0.0,
            "warmup_epochs",
            self.warmup_epochs,
            "a finite number >= 0",
        )?;
        check(
            self.log_every >= 1,
            "log_every",
            self.log_every,
            "at least 1",
        )?;
        check(
            self.loader_queue >= 1,
            "loader_queue",
            self.loader_queue,
            "at least 1",
        )?;
        check(
            self.model.embed_dim >= 2,
            "model.embed_dim",
            self.model.embed_dim,
            "D must be at least 2",
        )?;
        check(
            self.model.head_hidden >= 1,
            "model.head_hidden",
            self.model.head_hidden,
            "at least 1",
        )?;
        let max_side = crate::data::images::LoadLimits::DEFAULT.max_side;
        check(
            self.image_side == 0 || (8..=max_side).contains(&self.image_side),
            "image_side",
            self.image_side,
            "0 (the dataset's own side) or 8 to 512 pixels (LoadLimits::DEFAULT.max_side)",
        )?;
        let a = &self.augment;
        check(
            0.0 < a.crop_scale[0] && a.crop_scale[0] <= a.crop_scale[1] && a.crop_scale[1] <= 1.0,
            "augment.crop_scale",
            format!("{:?}", a.crop_scale),
            "[min, max] with 0 < min <= max <= 1",
        )?;
        check(
            0.0 < a.crop_ratio[0] && a.crop_ratio[0] <= a.crop_ratio[1],
            "augment.crop_ratio",
            format!("{:?}", a.crop_ratio),
            "[min, max] with 0 < min <= max",
        )?;
        for (key, p) in [
            ("augment.flip_prob", a.flip_prob),
            ("augment.jitter_prob", a.jitter_prob),
            ("augment.grayscale_prob", a.grayscale_prob),
        ] {
            check((0.0..=1.0).contains(&p), key, p, "a probability in [0, 1]")?;
        }
        for (key, probs) in [
            ("augment.blur_prob", &a.blur_prob),
            ("augment.solarize_prob", &a.solarize_prob),
        ] {
            check(
                !probs.is_empty() && probs.iter().all(|p| (0.0..=1.0).contains(p)),
                key,
                format!("{probs:?}"),
                "a non-empty list of probabilities in [0, 1], one per view (cycled)",
            )?;
        }
        check(
            0.0 < a.blur_sigma[0] && a.blur_sigma[0] <= a.blur_sigma[1],
            "augment.blur_sigma",
            format!("{:?}", a.blur_sigma),
            "[min, max] with 0 < min <= max",
        )?;
        for (key, amount) in [
            ("augment.brightness", a.brightness),
            ("augment.contrast", a.contrast),
            ("augment.saturation", a.saturation),
        ] {
            check(
                amount.is_finite() && amount >= 0.0,
                key,
                amount,
                "a finite number >= 0",
            )?;
        }
        check(
            (0.0..=0.5).contains(&a.hue),
            "augment.hue",
            a.hue,
            "a hue shift in [0, 0.5]",
        )?;
        check(
            self.eval.bank_size >= 1,
            "eval.bank_size",
            self.eval.bank_size,
            "at least 1",
        )?;
        check(
            self.eval.query_size >= 2,
            "eval.query_size",
            self.eval.query_size,
            "at least 2",
        )?;
        validate_optimizer(&self.optimizer)?;
        validate_knn(&self.eval.knn, ["eval.knn.k", "eval.knn.temperature"])?;
        self.record.validate()?;
        validate_display_points(self.display_points)?;
        check(
            self.checkpoint.keep >= 1,
            "checkpoint.keep",
            self.checkpoint.keep,
            "keep at least 1",
        )?;
        validate_dynamics(&self.dynamics)
    }
}
