//! What to train, as one value: a [`Workload`] is a sandbox or an image run's config, and the
//! [`RunSettings`] both share (forces, learning rate, seed) are reached through one trait, so
//! that nothing else matches on the two.
//!
//! [`WorkloadSettings`] is what the app's controls choose (dataset, model, views, batch, seed);
//! the config an app run trains with (open-ended schedule, evaluation sizes) is made here, on
//! the run side, not in the UI.

use super::{ConfigError, Preset, SimConfig, TrainConfig, to_toml};
use crate::data::sandbox::SandboxKind;
use crate::data::source::{DataSource, SourceKind};
use crate::method::Dynamics;
use crate::model::EncoderKind;

/// The held-out points the app displays with their views, arrows and recorded frames (and
/// evaluates its display diagnostics on): the display set's core.
pub const DISPLAY_POINTS: usize = 512;

/// The most points a run displays in all (`display_points`): the core and further held-out
/// points beyond it, embedded in rolling chunks (see `trainer`).
pub const MAX_DISPLAY_POINTS: usize = 100_000;

/// What the app shows by default on `backend`: 10,000 held-out points on a GPU, 2,000 on the
/// CPU (where the rolling refresh of 10,000 images through a CNN takes half a minute).
pub fn default_display_points(gpu: bool) -> usize {
    if gpu { 10_000 } else { 2_000 }
}

/// What to train.
#[derive(Clone, Debug, PartialEq)]
pub enum Workload {
    /// The particle sandbox (points in a low-dimensional space, MLP encoder).
    Sandbox(SimConfig),
    /// Image pretraining (built-in or real datasets, CNN / ResNet / MLP encoders).
    Images(TrainConfig),
}

/// What every run config has, whatever it trains on.
pub trait RunSettings {
    fn seed(&self) -> u64;
    /// The forces (and the predictor, EMA and `tau` switches) in force.
    fn dynamics(&self) -> Dynamics;
    fn set_dynamics(&mut self, dynamics: Dynamics);
    /// The (peak) learning rate.
    fn learning_rate(&self) -> f64;
    fn set_learning_rate(&mut self, learning_rate: f64);
    /// The embedding dimension D.
    fn embed_dim(&self) -> usize;
    /// One line for a status bar or a progress line.
    fn describe(&self) -> String;
    /// The data, in a few words (what `msbreg runs` lists).
    fn dataset(&self) -> String;
    /// The preset the config started from.
    fn preset(&self) -> &str;
    /// Every key, as written into a run folder's `config.toml`.
    fn to_toml(&self) -> Result<String, ConfigError>;
    /// Checks every key.
    fn validate(&self) -> Result<(), ConfigError>;
}

impl Workload {
    /// The steps the config asks for, as far as it says without its data: the sandbox's
    /// `steps`, an image run's `steps` cut at `max_steps` (0 when it runs every epoch of a
    /// data set not yet loaded).
    pub fn planned_steps(&self) -> u64 {
        match self {
            Self::Sandbox(config) => config.steps as u64,
            Self::Images(config) => match (config.steps, config.max_steps) {
                (0, max) => max as u64,
                (steps, 0) => steps as u64,
                (steps, max) => steps.min(max) as u64,
            },
        }
    }

    pub fn settings(&self) -> &dyn RunSettings {
        match self {
            Self::Sandbox(config) => config,
            Self::Images(config) => config,
        }
    }

    pub fn settings_mut(&mut self) -> &mut dyn RunSettings {
        match self {
            Self::Sandbox(config) => config,
            Self::Images(config) => config,
        }
    }
}

macro_rules! run_settings {
    ($config:ty, $describe:expr, $dataset:expr) => {
        impl RunSettings for $config {
            fn seed(&self) -> u64 {
                self.seed
            }
            fn dynamics(&self) -> Dynamics {
                self.dynamics
            }
            fn set_dynamics(&mut self, dynamics: Dynamics) {
                self.dynamics = dynamics;
            }
            fn learning_rate(&self) -> f64 {
                self.learning_rate
            }
            fn set_learning_rate(&mut self, learning_rate: f64) {
                self.learning_rate = learning_rate;
            }
            fn embed_dim(&self) -> usize {
                self.model.embed_dim
            }
            fn describe(&self) -> String {
                let describe: fn(&Self) -> String = $describe;
                describe(self)
            }
            fn dataset(&self) -> String {
                let dataset: fn(&Self) -> String = $dataset;
                dataset(self)
            }
            fn preset(&self) -> &str {
                &self.preset
            }
            fn to_toml(&self) -> Result<String, ConfigError> {
                to_toml(self)
            }
            fn validate(&self) -> Result<(), ConfigError> {
                <$config>::validate(self)
            }
        }
    };
}

run_settings!(
    SimConfig,
    |config| format!(
        "sandbox {:?}, MLP, N {}, M {}, D {}",
        config.data.kind, config.batch_size, config.views.count, config.model.embed_dim
    ),
    |config| format!("sandbox {}", config.data.kind.name())
);
run_settings!(
    TrainConfig,
    |config| format!(
        "{}, {:?}, N {}, M {}, D {}",
        config.data.describe(),
        config.model.encoder,
        config.batch_size,
        config.views,
        config.model.embed_dim
    ),
    |config| config.data.describe()
);

/// The datasets the app offers, the built-in ones first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DataChoice {
    /// Procedural coloured shapes, 32x32 RGB, 10 classes.
    #[default]
    Shapes,
    /// UCI handwritten digits, 8x8, embedded.
    Digits,
    /// Debian's dataset-fashion-mnist, when installed.
    FashionMnist,
    /// Sandbox: 8 Gaussian blobs on a circle (plus style noise).
    SandboxGaussians,
    /// Sandbox: concentric rings.
    SandboxRings,
}

impl DataChoice {
    pub const ALL: [Self; 5] = [
        Self::Shapes,
        Self::Digits,
        Self::FashionMnist,
        Self::SandboxGaussians,
        Self::SandboxRings,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::Shapes => "Shapes (built-in images)",
            Self::Digits => "Digits (built-in 8x8)",
            Self::FashionMnist => "Fashion-MNIST",
            Self::SandboxGaussians => "Sandbox: Gaussian blobs",
            Self::SandboxRings => "Sandbox: rings",
        }
    }

    pub fn is_sandbox(self) -> bool {
        matches!(self, Self::SandboxGaussians | Self::SandboxRings)
    }
}

/// Encoders for image data (the sandbox always uses its MLP).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ModelChoice {
    #[default]
    Cnn,
    Mlp,
    Resnet18,
}

impl ModelChoice {
    pub const ALL: [Self; 3] = [Self::Cnn, Self::Mlp, Self::Resnet18];

    pub fn label(self) -> &'static str {
        match self {
            Self::Cnn => "Small CNN",
            Self::Mlp => "MLP",
            Self::Resnet18 => "ResNet-18 (GPU)",
        }
    }

    pub fn encoder(self) -> EncoderKind {
        match self {
            Self::Cnn => EncoderKind::Cnn,
            Self::Mlp => EncoderKind::Mlp,
            Self::Resnet18 => EncoderKind::Resnet18,
        }
    }

    /// The encoder called `name` in `--model` and lesson files (cnn, mlp, resnet18).
    pub fn named(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|choice| choice.name() == name)
    }

    /// Its name in `--model` and lesson files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cnn => "cnn",
            Self::Mlp => "mlp",
            Self::Resnet18 => "resnet18",
        }
    }
}

/// What the app's "Data and model" controls choose; changing any of it starts a fresh run.
/// The controls send these choices; [`WorkloadSettings::workload`] turns them into a config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkloadSettings {
    pub data: DataChoice,
    pub model: ModelChoice,
    /// M, views per image.
    pub views: usize,
    /// N, images per batch.
    pub batch_size: usize,
    pub seed: u64,
    /// Held-out points shown in all (the first [`DISPLAY_POINTS`] with their views and
    /// arrows); 0 or fewer than the core shows the core alone.
    pub display_points: usize,
}

/// The steps in the config of an app's sandbox run: more than anyone trains in the app.
pub const APP_SANDBOX_STEPS: usize = 1_000_000_000;

impl Default for WorkloadSettings {
    /// The images' defaults: shapes, small CNN, the msbreg preset's 4 views, 64 images per
    /// batch (what the app opens on is [`WorkloadSettings::app_default`]).
    fn default() -> Self {
        Self {
            data: DataChoice::Shapes,
            model: ModelChoice::Cnn,
            views: Preset::Msbreg.views(),
            batch_size: 64,
            seed: 0,
            display_points: 0,
        }
    }
}

impl WorkloadSettings {
    /// What the app opens on: the sandbox's Gaussian blobs, which teach in seconds. Measured
    /// with `msbreg bench teach` (AMD EPYC, 2 cores, flex, the app's loop timed whole): held-
    /// out kNN goes from 0.44 to 0.96 (+0.2 in 149 steps, 3.1 s), and the collapse preset
    /// collapses it in 1.2 s. The images cannot do it on such a machine in 30 s: the shapes
    /// (small CNN) were still at chance after 90 s (295 steps), also without their textured
    /// backgrounds and with the MLP; the digits start at kNN 0.90 with random features, so
    /// there is no +0.2 to show. The images are one click away in the Dataset list.
    pub fn app_default() -> Self {
        Self::sandbox(SandboxKind::Gaussians)
    }

    /// The workload called `name` in `--data` (shapes, digits, fashion-mnist, sandbox,
    /// rings), with its defaults.
    pub fn named(name: &str) -> Option<Self> {
        Some(match name {
            "shapes" => Self::default(),
            "digits" => Self {
                data: DataChoice::Digits,
                ..Self::default()
            },
            "fashion-mnist" => Self {
                data: DataChoice::FashionMnist,
                ..Self::default()
            },
            "sandbox" => Self::sandbox(SandboxKind::Gaussians),
            "rings" => Self::sandbox(SandboxKind::Rings),
            _ => return None,
        })
    }

    /// The sandbox defaults: 256 points per batch.
    pub fn sandbox(kind: SandboxKind) -> Self {
        Self {
            data: match kind {
                SandboxKind::Gaussians => DataChoice::SandboxGaussians,
                SandboxKind::Rings => DataChoice::SandboxRings,
            },
            batch_size: 256,
            ..Self::default()
        }
    }

    /// The workload these settings describe, with the msbreg preset's forces.
    pub fn workload(&self) -> Workload {
        if self.data.is_sandbox() {
            let mut config = SimConfig {
                seed: self.seed,
                batch_size: self.batch_size,
                ..Preset::Msbreg.config()
            };
            config.views.count = self.views;
            config.display_points = self.display_points;
            // An open-ended run (the app trains until paused), so that its checkpoints stay
            // within the steps of its config.toml.
            config.steps = APP_SANDBOX_STEPS;
            config.data.kind = if self.data == DataChoice::SandboxRings {
                SandboxKind::Rings
            } else {
                SandboxKind::Gaussians
            };
            if config.data.kind == SandboxKind::Rings {
                config.data.content_dim = 2;
                config.data.classes = config.data.classes.min(4);
            }
            Workload::Sandbox(config)
        } else {
            let mut config = TrainConfig::from_preset(Preset::Msbreg);
            config.seed = self.seed;
            config.data = DataSource {
                kind: match self.data {
                    DataChoice::Digits => SourceKind::Digits,
                    DataChoice::FashionMnist => SourceKind::FashionMnist,
                    _ => SourceKind::Shapes,
                },
                ..DataSource::default()
            };
            config.model.encoder = self.model.encoder();
            config.views = self.views;
            config.batch_size = self.batch_size;
            // An open-ended run: the schedule spans many epochs, the warm-up is short.
            config.epochs = 1000;
            config.steps = 0;
            // The rate the app's image runs were measured with (stop 15's `bench teach`); the
            // `train` recipe's 1e-2 is for batches of 128 on a schedule that decays.
            config.learning_rate = 2e-3;
            config.warmup_epochs = 0.05;
            config.eval.bank_size = 1000;
            config.eval.query_size = DISPLAY_POINTS;
            config.display_points = self.display_points;
            Workload::Images(config)
        }
    }
}
