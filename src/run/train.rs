//! Real pretraining on images: a [`TrainConfig`] (every key defaulted, unknown keys rejected),
//! an [`ImageRun`] that owns the data, the learner and the step counter, and [`train`], the
//! headless loop that writes a run folder:
//!
//! - `config.toml`: the resolved config;
//! - `metrics.jsonl`: the sandbox's keys plus `epoch`, `lr`, `tau`, `images_per_sec`, with the
//!   diagnostics (kNN on a held-out labelled split) every `eval.every_steps`;
//! - `checkpoints/step-NNNNNNNN/`: `online.bpk`, `target.bpk`, `optimizer.bpk`, `state.json`,
//!   written into a temporary folder and renamed into place, the last `checkpoint.keep` kept.
//!
//! Batches are a pure function of the seed and the step (see `data::loader`), and so are the
//! Brownian kicks, so [`resume`] from the last checkpoint continues with the very curve an
//! uninterrupted run would have drawn.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use burn::module::Module;
use burn::optim::OptimizerRecord;
use burn::store::ModuleRecord;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::metrics::{MetricsRecord, read_metrics};
use crate::config::{ConfigError, Preset, check, merge_tables, validate_dynamics};
use crate::data::augment::{AugmentConfig, augment_view, channel_stats, plain_view, view_rng};
use crate::data::images::{DataError, Dataset, ImageSet, Splits};
use crate::data::loader::{Batch, BatchPlan, Loader};
use crate::data::source::DataSource;
use crate::data::{Stream, rng};
use crate::diagnostics::{self, Diagnostics, KnnConfig};
use crate::method::forces::{brownian_directions, tensor_2d};
use crate::method::schedule::{TauSchedule, tau_at, warmup_cosine};
use crate::method::step::Online;
use crate::method::{Dynamics, Learner, OptimizerConfig, OptimizerKind, StepError, StepReport};
use crate::model::{ImageNet, ImageNetConfig, seeded_init};

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

/// Everything an image pretraining run needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// The dynamics preset this config started from (informational).
    pub preset: String,
    pub seed: u64,
    pub data: DataSource,
    pub epochs: usize,
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
    /// Batches the loader thread prepares ahead.
    pub loader_queue: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self::from_preset(Preset::Msbreg)
    }
}

impl TrainConfig {
    /// The default run with the dynamics (and views) of `preset`.
    pub fn from_preset(preset: Preset) -> Self {
        Self {
            preset: preset.name().to_owned(),
            seed: 0,
            data: DataSource::default(),
            epochs: 10,
            max_steps: 0,
            batch_size: 256,
            views: preset.views(),
            image_side: 0,
            augment: AugmentConfig::default(),
            model: ImageNetConfig::default(),
            dynamics: preset.dynamics(),
            tau_schedule: TauSchedule::Constant,
            optimizer: OptimizerConfig {
                kind: OptimizerKind::Adamw,
                weight_decay: 1e-5,
                ..OptimizerConfig::default()
            },
            learning_rate: 2e-3,
            warmup_epochs: 1.0,
            log_every: 10,
            eval: EvalSettings::default(),
            checkpoint: CheckpointSettings::default(),
            loader_queue: 4,
        }
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
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
        let overrides: toml::Table = toml::from_str(text).map_err(parse_err)?;
        let base: toml::Table =
            toml::from_str(&Self::from_preset(preset).to_toml()).map_err(parse_err)?;
        let config: Self = merge_tables(base, overrides)
            .try_into()
            .map_err(parse_err)?;
        config.validate()?;
        Ok(config)
    }

    #[allow(clippy::too_many_lines)] // one flat check per key reads best as one list
    pub fn validate(&self) -> Result<(), ConfigError> {
        check(self.epochs >= 1, "epochs", self.epochs, "at least 1 epoch")?;
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
        check(
            self.image_side == 0 || self.image_side >= 8,
            "image_side",
            self.image_side,
            "0 (the dataset's own side) or at least 8 pixels",
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
            (0.0..1.0).contains(&self.optimizer.momentum),
            "optimizer.momentum",
            self.optimizer.momentum,
            "momentum must lie in [0, 1)",
        )?;
        check(
            self.optimizer.weight_decay.is_finite() && self.optimizer.weight_decay >= 0.0,
            "optimizer.weight_decay",
            self.optimizer.weight_decay,
            "a finite number >= 0",
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
        check(
            self.eval.knn.k >= 1,
            "eval.knn.k",
            self.eval.knn.k,
            "at least 1 neighbour",
        )?;
        check(
            self.checkpoint.keep >= 1,
            "checkpoint.keep",
            self.checkpoint.keep,
            "keep at least 1",
        )?;
        validate_dynamics(&self.dynamics)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("{what}: {reason}")]
    Setup { what: String, reason: String },
    #[error("cannot write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("cannot read the run in {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error(
        "training stopped at step {step}: {reason}. Kept in {out}: config.toml, metrics.jsonl and the checkpoints written so far"
    )]
    Step {
        step: u64,
        reason: StepError,
        out: PathBuf,
    },
}

fn write_err(path: &Path, reason: impl std::fmt::Display) -> TrainError {
    TrainError::Write {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// One line of a training run's `metrics.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainRecord {
    pub epoch: u64,
    pub lr: f64,
    pub tau: f64,
    pub images_per_sec: f64,
    /// Whether the diagnostics of this line were computed at this step.
    pub evaluated: bool,
    #[serde(flatten)]
    pub metrics: MetricsRecord,
}

/// The images the encoder is evaluated on: a labelled bank and held-out labelled queries.
struct EvalSet {
    bank: ImageSet,
    queries: ImageSet,
}

/// An image pretraining run in memory.
pub struct ImageRun {
    config: TrainConfig,
    device: Device,
    plan: Arc<BatchPlan>,
    eval: Option<EvalSet>,
    learner: Learner<ImageNet>,
    /// Steps done.
    step: u64,
    total_steps: u64,
}

/// Which labelled images evaluation uses: the test split as queries and the labelled training
/// split as the bank, each a seeded subset of the configured size; `None` without labels.
fn eval_set(splits: &Splits, settings: &EvalSettings, seed: u64) -> Option<EvalSet> {
    use rand::seq::SliceRandom;
    let labelled_train = splits.train.labels.as_ref().map(|_| &splits.train)?;
    let queries = splits.test.as_ref().filter(|t| t.labels.is_some())?;
    let mut rng = rng(seed, Stream::EvalViews);
    let mut pick = |set: &ImageSet, count: usize| {
        let mut order: Vec<usize> = (0..set.len()).collect();
        order.shuffle(&mut rng);
        order.truncate(count.min(set.len()));
        set.subset(&order)
    };
    Some(EvalSet {
        bank: pick(labelled_train, settings.bank_size),
        queries: pick(queries, settings.query_size),
    })
}

/// The training images: the training split, with the unlabeled split appended (STL-10).
fn training_images(splits: &Splits) -> ImageSet {
    match &splits.unlabeled {
        Some(extra) if extra.shape == splits.train.shape => {
            let mut pixels = splits.train.pixels.clone();
            pixels.extend_from_slice(&extra.pixels);
            ImageSet {
                shape: splits.train.shape,
                pixels,
                labels: None,
                class_names: splits.train.class_names.clone(),
            }
        }
        _ => splits.train.clone(),
    }
}

impl ImageRun {
    /// A fresh run: loads the data, builds the network from the seed.
    pub fn new(config: TrainConfig, device: &Device) -> Result<Self, TrainError> {
        config.validate()?;
        let splits = config.data.load(config.seed)?;
        let images = training_images(&splits);
        if images.len() < config.batch_size {
            return Err(TrainError::Setup {
                what: format!("data {}", config.data.describe()),
                reason: format!(
                    "{} training images, fewer than one batch of {}; lower batch_size",
                    images.len(),
                    config.batch_size
                ),
            });
        }
        let side = if config.image_side == 0 {
            images.shape.height
        } else {
            config.image_side
        };
        let channels = images.shape.channels;
        let (mean, std) = channel_stats(&images.pixels, channels);
        let plan = Arc::new(BatchPlan {
            seed: config.seed,
            images: Arc::new(images),
            batch_size: config.batch_size,
            views: config.views,
            side,
            augment: config.augment.clone(),
            mean,
            std,
        });
        let total_steps = {
            let all = plan.steps_per_epoch() * config.epochs as u64;
            if config.max_steps > 0 {
                all.min(config.max_steps as u64)
            } else {
                all
            }
        };
        let device = device.clone().autodiff();
        let online: Online<ImageNet> = config.model.init(channels, side, &device);
        let online = seeded_init(online, &mut rng(config.seed, Stream::Weights));
        let learner = Learner::new(online, &config.optimizer);
        Ok(Self {
            eval: eval_set(&splits, &config.eval, config.seed),
            config,
            device,
            plan,
            learner,
            step: 0,
            total_steps,
        })
    }

    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    pub fn steps_done(&self) -> u64 {
        self.step
    }

    pub fn total_steps(&self) -> u64 {
        self.total_steps
    }

    pub fn plan(&self) -> &Arc<BatchPlan> {
        &self.plan
    }

    pub fn learner(&self) -> &Learner<ImageNet> {
        &self.learner
    }

    /// The schedule the whole run follows: all epochs, whatever `max_steps` says.
    fn schedule_steps(&self) -> u64 {
        self.plan.steps_per_epoch() * self.config.epochs as u64
    }

    pub fn learning_rate(&self, step: u64) -> f64 {
        let warmup =
            (self.config.warmup_epochs * self.plan.steps_per_epoch() as f64).round() as u64;
        warmup_cosine(
            step,
            self.schedule_steps(),
            warmup,
            self.config.learning_rate,
        )
    }

    pub fn tau(&self, step: u64) -> f64 {
        tau_at(
            self.config.tau_schedule,
            f64::from(self.config.dynamics.tau),
            step,
            self.schedule_steps(),
        )
    }

    /// Trains on `batch`, which must be the batch of the next step.
    pub fn step(&mut self, batch: &Batch) -> Result<StepReport, StepError> {
        let n = self.config.batch_size;
        let m = self.config.views;
        let d = self.config.model.embed_dim;
        let side = self.plan.side;
        let channels = self.plan.images.shape.channels;
        let views = Tensor::<4>::from_data(
            TensorData::new(batch.data.clone(), [n * m, channels, side, side]),
            &self.device,
        );
        // The kicks of step s come from stream s, so a resumed run draws the same ones.
        let mut kicks = rng(self.config.seed, Stream::Brownian);
        kicks.set_stream((Stream::Brownian as u64) << 40 | batch.step);
        let directions = tensor_2d(brownian_directions(&mut kicks, n, d), n, d, &self.device);
        let mut dynamics = self.config.dynamics;
        dynamics.tau = self.tau(batch.step) as f32;
        let report = self.learner.step(
            &views,
            n,
            m,
            directions,
            &dynamics,
            self.learning_rate(batch.step),
        )?;
        self.step = batch.step + 1;
        Ok(report)
    }

    /// Runs `f` over `set` in chunks of normalised plain views; returns the rows it produces.
    fn embed_set(
        &self,
        set: &ImageSet,
        augmented: Option<u64>,
        f: impl Fn(&Online<ImageNet>, Tensor<4>) -> Tensor<2>,
    ) -> Result<Vec<f32>, StepError> {
        const CHUNK: usize = 256;
        let online = self.learner.online().valid();
        let device = self.device.clone().without_autodiff();
        let side = self.plan.side;
        let channels = set.shape.channels;
        let view_len = channels * side * side;
        let mut out = Vec::new();
        for start in (0..set.len()).step_by(CHUNK) {
            let end = (start + CHUNK).min(set.len());
            let mut data = vec![0.0f32; (end - start) * view_len];
            for (slot, chunk) in data.chunks_mut(view_len).enumerate() {
                let image = set.image(start + slot);
                match augmented {
                    None => plain_view(
                        image,
                        set.shape,
                        side,
                        &self.plan.mean,
                        &self.plan.std,
                        chunk,
                    ),
                    Some(view) => {
                        let mut rng = view_rng(
                            self.config.seed,
                            u64::MAX >> 24,
                            start + slot,
                            view as usize,
                        );
                        augment_view(
                            image,
                            set.shape,
                            side,
                            view as usize,
                            &self.config.augment,
                            &self.plan.mean,
                            &self.plan.std,
                            &mut rng,
                            chunk,
                        );
                    }
                }
            }
            let input = Tensor::<4>::from_data(
                TensorData::new(data, [end - start, channels, side, side]),
                &device,
            );
            let rows = f(&online, input)
                .into_data()
                .try_to_vec::<f32>()
                .map_err(|err| StepError::Readback(format!("{err:?}")))?;
            out.extend(rows);
        }
        Ok(out)
    }

    /// The encoder's features of every image of `set` (plain views), row-major.
    pub fn embed_features(&self, set: &ImageSet) -> Result<Vec<f32>, StepError> {
        self.embed_set(set, None, |online, x| online.embedder.features(x))
    }

    /// Takes effect on the next step (the `tau` schedule, if any, still applies).
    pub fn set_dynamics(&mut self, dynamics: Dynamics) {
        self.config.dynamics = dynamics;
    }

    /// The peak learning rate of the schedule; takes effect on the next step.
    pub fn set_learning_rate(&mut self, learning_rate: f64) {
        self.config.learning_rate = learning_rate;
    }

    /// The held-out images the app shows (at most `count` of the evaluation queries, or of
    /// the training images when there is no labelled test split).
    pub fn display_set(&self, count: usize) -> ImageSet {
        let set = match &self.eval {
            Some(eval) => &eval.queries,
            None => self.plan.images.as_ref(),
        };
        let take: Vec<usize> = (0..set.len().min(count)).collect();
        set.subset(&take)
    }

    /// Unit online embeddings (with the predictor when it is on) of the plain images of `set`
    /// and of two fixed augmented views of each, row-major `[len, D]` each.
    pub fn display_embeddings(&self, set: &ImageSet) -> Result<[Vec<f32>; 3], StepError> {
        let predictor = self.config.dynamics.predictor;
        let embed = |online: &Online<ImageNet>, x: Tensor<4>| online.embed(x, predictor);
        Ok([
            self.embed_set(set, None, embed)?,
            self.embed_set(set, Some(0), embed)?,
            self.embed_set(set, Some(1), embed)?,
        ])
    }

    /// kNN accuracy of the encoder's features and the diagnostics of the normalised online
    /// embeddings, on the held-out queries; `None` when the data has no labelled test split.
    pub fn evaluate(&self) -> Result<Option<Diagnostics>, StepError> {
        let Some(eval) = &self.eval else {
            return Ok(None);
        };
        let predictor = self.config.dynamics.predictor;
        let features = |online: &Online<ImageNet>, x: Tensor<4>| online.embedder.features(x);
        let embed = |online: &Online<ImageNet>, x: Tensor<4>| online.embed(x, predictor);
        let bank = self.embed_set(&eval.bank, None, features)?;
        let queries = self.embed_set(&eval.queries, None, features)?;
        let feature_dim = bank.len() / eval.bank.len().max(1);
        let embeddings = self.embed_set(&eval.queries, None, embed)?;
        let view_a = self.embed_set(&eval.queries, Some(0), embed)?;
        let view_b = self.embed_set(&eval.queries, Some(1), embed)?;
        let d = self.config.model.embed_dim;
        let singular_values = diagnostics::singular_values(&embeddings, d);
        Ok(Some(Diagnostics {
            effective_rank: diagnostics::effective_rank(&singular_values),
            uniformity: diagnostics::uniformity(&embeddings, d),
            alignment: diagnostics::alignment(&view_a, &view_b, d),
            collapse_level: diagnostics::collapse_level(&embeddings, d),
            knn_acc: diagnostics::knn_accuracy(
                &bank,
                eval.bank.labels.as_deref().unwrap_or_default(),
                &queries,
                eval.queries.labels.as_deref().unwrap_or_default(),
                feature_dim,
                self.config.eval.knn.k,
                self.config.eval.knn.temperature,
            ),
            singular_values,
        }))
    }

    fn checkpoint_dir(out: &Path, step: u64) -> PathBuf {
        out.join("checkpoints").join(format!("step-{step:08}"))
    }

    /// Writes a checkpoint of the current state atomically, keeping the newest `keep`.
    pub fn save_checkpoint(&self, out: &Path) -> Result<PathBuf, TrainError> {
        let root = out.join("checkpoints");
        std::fs::create_dir_all(&root).map_err(|e| write_err(&root, e))?;
        let final_dir = Self::checkpoint_dir(out, self.step);
        let tmp = root.join(format!(".tmp-step-{:08}", self.step));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| write_err(&tmp, e))?;
        }
        std::fs::create_dir_all(&tmp).map_err(|e| write_err(&tmp, e))?;
        let online_path = tmp.join("online.bpk");
        self.learner
            .online()
            .clone()
            .save_file(&online_path)
            .map_err(|e| write_err(&online_path, format!("{e:?}")))?;
        if let Some(target) = self.learner.target() {
            let path = tmp.join("target.bpk");
            target
                .clone()
                .save_file(&path)
                .map_err(|e| write_err(&path, format!("{e:?}")))?;
        }
        let optimizer_path = tmp.join("optimizer.bpk");
        self.learner
            .optimizer()
            .to_record()
            .save(&optimizer_path)
            .map_err(|e| write_err(&optimizer_path, format!("{e:?}")))?;
        let state_path = tmp.join("state.json");
        let state = serde_json::json!({"step": self.step, "total_steps": self.total_steps});
        std::fs::write(&state_path, state.to_string()).map_err(|e| write_err(&state_path, e))?;
        if final_dir.exists() {
            std::fs::remove_dir_all(&final_dir).map_err(|e| write_err(&final_dir, e))?;
        }
        std::fs::rename(&tmp, &final_dir).map_err(|e| write_err(&final_dir, e))?;
        for old in list_checkpoints(out)?
            .into_iter()
            .rev()
            .skip(self.config.checkpoint.keep)
        {
            std::fs::remove_dir_all(&old.1).map_err(|e| write_err(&old.1, e))?;
        }
        Ok(final_dir)
    }

    /// Restores the learner and step counter from a checkpoint folder.
    pub fn load_checkpoint(&mut self, dir: &Path) -> Result<(), TrainError> {
        let read_err = |path: &Path, reason: String| TrainError::Read {
            path: path.to_owned(),
            reason,
        };
        let state_path = dir.join("state.json");
        let state: serde_json::Value = std::fs::read_to_string(&state_path)
            .map_err(|e| read_err(&state_path, e.to_string()))
            .and_then(|t| {
                serde_json::from_str(&t).map_err(|e| read_err(&state_path, e.to_string()))
            })?;
        let step = state["step"]
            .as_u64()
            .ok_or_else(|| read_err(&state_path, "no `step`".to_owned()))?;
        let online_path = dir.join("online.bpk");
        let record = ModuleRecord::load(&online_path)
            .map_err(|e| read_err(&online_path, format!("{e:?}")))?;
        let online = self
            .learner
            .online()
            .clone()
            .try_load_record(record)
            .map_err(|e| read_err(&online_path, format!("{e:?}")))?;
        let target_path = dir.join("target.bpk");
        let target = if target_path.is_file() {
            let record = ModuleRecord::load(&target_path)
                .map_err(|e| read_err(&target_path, format!("{e:?}")))?;
            Some(
                online
                    .embedder
                    .clone()
                    .try_load_record(record)
                    .map_err(|e| read_err(&target_path, format!("{e:?}")))?
                    .no_grad(),
            )
        } else {
            None
        };
        let optimizer_path = dir.join("optimizer.bpk");
        let record = OptimizerRecord::load(&optimizer_path)
            .map_err(|e| read_err(&optimizer_path, format!("{e:?}")))?;
        let optimizer = self.config.optimizer.build(&online).load_record(record);
        self.learner = Learner::from_parts(online, target, optimizer);
        self.step = step;
        Ok(())
    }
}

/// The checkpoints of a run, oldest first: (step, folder).
pub fn list_checkpoints(out: &Path) -> Result<Vec<(u64, PathBuf)>, TrainError> {
    let root = out.join("checkpoints");
    if !root.is_dir() {
        return Ok(Vec::new());
    }
    let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(&root)
        .map_err(|e| TrainError::Read {
            path: root.clone(),
            reason: e.to_string(),
        })?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let step = name.strip_prefix("step-")?.parse().ok()?;
            Some((step, entry.path()))
        })
        .collect();
    found.sort();
    Ok(found)
}

/// How far a call of [`train`] goes.
#[derive(Clone, Copy, Debug, Default)]
pub struct TrainOptions {
    /// Stop (as if interrupted) once this many steps are done; the run can be resumed.
    pub stop_after: Option<u64>,
}

/// Progress for a progress bar.
#[derive(Clone, Debug)]
pub struct TrainProgress {
    pub step: u64,
    pub total_steps: u64,
    pub epoch: u64,
    pub loss: f32,
    pub images_per_sec: f64,
    pub knn_acc: Option<f64>,
}

/// What a finished (or stopped) call of [`train`] reports.
#[derive(Clone, Debug)]
pub struct TrainOutcome {
    pub steps_done: u64,
    pub last: Option<TrainRecord>,
    pub images_per_sec: f64,
    pub loader_wait_secs: f64,
    pub elapsed_secs: f64,
}

fn append_record(path: &Path, record: &TrainRecord) -> Result<(), TrainError> {
    use std::io::Write as _;
    let line = serde_json::to_string(record).map_err(|e| write_err(path, e))?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| write_err(path, e))?;
    writeln!(file, "{line}").map_err(|e| write_err(path, e))
}

/// Trains `run` from its current step, writing into `out`, until the end (or
/// `options.stop_after`).
#[allow(clippy::too_many_lines)] // the training loop, read top to bottom
pub fn train(
    run: &mut ImageRun,
    out: &Path,
    options: TrainOptions,
    mut on_progress: impl FnMut(&TrainProgress),
) -> Result<TrainOutcome, TrainError> {
    let config = run.config.clone();
    std::fs::write(out.join("config.toml"), config.to_toml())
        .map_err(|e| write_err(&out.join("config.toml"), e))?;
    let metrics_path = out.join("metrics.jsonl");
    let end = options
        .stop_after
        .map_or(run.total_steps, |s| s.min(run.total_steps));
    let start_step = run.step;
    let mut loader = Loader::spawn(Arc::clone(&run.plan), start_step, end, config.loader_queue)
        .map_err(|e| TrainError::Setup {
            what: "the loader thread".to_owned(),
            reason: e.to_string(),
        })?;
    let per_epoch = run.plan.steps_per_epoch();
    let eval_every = if config.eval.every_steps == 0 {
        per_epoch
    } else {
        config.eval.every_steps as u64
    };
    let images_per_step = (config.batch_size * config.views) as f64;
    let start = Instant::now();
    let mut window_start = Instant::now();
    let mut window_steps = 0u64;
    let mut images_per_sec = 0.0;
    let mut last = None;
    let mut last_knn = None;

    // The step-0 line, unless a run resumed from its step-0 checkpoint already has it.
    if start_step == 0 && !metrics_path.exists() {
        let diagnostics = run.evaluate().map_err(|reason| TrainError::Step {
            step: 0,
            reason,
            out: out.to_owned(),
        })?;
        let record = TrainRecord {
            epoch: 0,
            lr: run.learning_rate(0),
            tau: run.tau(0),
            images_per_sec: 0.0,
            evaluated: diagnostics.is_some(),
            metrics: MetricsRecord::new(0, None, &diagnostics.unwrap_or_else(nan_diagnostics), 0.0),
        };
        append_record(&metrics_path, &record)?;
        if end == 0 {
            // `--stop-after 0`: the initial weights, as a baseline for `msbreg eval`.
            run.save_checkpoint(out)?;
        }
    }

    while run.step < end {
        let Some(batch) = loader.next_batch() else {
            break;
        };
        let step_index = batch.step;
        let report = run.step(&batch).map_err(|reason| TrainError::Step {
            step: step_index + 1,
            reason,
            out: out.to_owned(),
        })?;
        let step = run.step;
        window_steps += 1;
        let window_secs = window_start.elapsed().as_secs_f64();
        if window_secs >= 2.0 || step == end {
            images_per_sec = window_steps as f64 * images_per_step / window_secs.max(1e-9);
            window_start = Instant::now();
            window_steps = 0;
        }
        let evaluate_now = step.is_multiple_of(eval_every) || step == run.total_steps;
        let log_now = evaluate_now || step.is_multiple_of(config.log_every as u64);
        if log_now {
            let diagnostics = if evaluate_now {
                run.evaluate().map_err(|reason| TrainError::Step {
                    step,
                    reason,
                    out: out.to_owned(),
                })?
            } else {
                None
            };
            if let Some(d) = &diagnostics {
                last_knn = Some(d.knn_acc);
            }
            let record = TrainRecord {
                epoch: (step - 1) / per_epoch,
                lr: run.learning_rate(step - 1),
                tau: run.tau(step - 1),
                images_per_sec,
                evaluated: diagnostics.is_some(),
                metrics: MetricsRecord::new(
                    step as usize,
                    Some(report),
                    &diagnostics.unwrap_or_else(nan_diagnostics),
                    start.elapsed().as_secs_f64(),
                ),
            };
            append_record(&metrics_path, &record)?;
            last = Some(record);
        }
        let checkpoint_every = config.checkpoint.every_steps as u64;
        if (checkpoint_every > 0 && step.is_multiple_of(checkpoint_every)) || step == end {
            run.save_checkpoint(out)?;
        }
        on_progress(&TrainProgress {
            step,
            total_steps: run.total_steps,
            epoch: (step - 1) / per_epoch,
            loss: report.loss,
            images_per_sec,
            knn_acc: last_knn,
        });
    }
    let elapsed_secs = start.elapsed().as_secs_f64();
    Ok(TrainOutcome {
        steps_done: run.step,
        last,
        images_per_sec: (run.step - start_step) as f64 * images_per_step / elapsed_secs.max(1e-9),
        loader_wait_secs: loader.wait_secs(),
        elapsed_secs,
    })
}

/// Diagnostics not computed at a step: NaN, written as null.
fn nan_diagnostics() -> Diagnostics {
    Diagnostics {
        effective_rank: f64::NAN,
        uniformity: f64::NAN,
        alignment: f64::NAN,
        collapse_level: f64::NAN,
        knn_acc: f64::NAN,
        singular_values: Vec::new(),
    }
}

/// Reopens the run in `out` at its last checkpoint, dropping metrics lines logged after it.
pub fn resume(out: &Path, device: &Device) -> Result<ImageRun, TrainError> {
    let config_path = out.join("config.toml");
    let text = std::fs::read_to_string(&config_path).map_err(|e| TrainError::Read {
        path: config_path.clone(),
        reason: e.to_string(),
    })?;
    let config: TrainConfig = toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: config_path.clone(),
        message: e.to_string(),
    })?;
    let Some((step, dir)) = list_checkpoints(out)?.pop() else {
        return Err(TrainError::Read {
            path: out.to_owned(),
            reason: "no checkpoint to resume from (checkpoints/step-*)".to_owned(),
        });
    };
    let mut run = ImageRun::new(config, device)?;
    run.load_checkpoint(&dir)?;
    let metrics_path = out.join("metrics.jsonl");
    if metrics_path.is_file() {
        let kept: Vec<String> = std::fs::read_to_string(&metrics_path)
            .map_err(|e| TrainError::Read {
                path: metrics_path.clone(),
                reason: e.to_string(),
            })?
            .lines()
            .filter(|line| {
                serde_json::from_str::<serde_json::Value>(line)
                    .ok()
                    .and_then(|v| v["step"].as_u64())
                    .is_some_and(|s| s <= step)
            })
            .map(str::to_owned)
            .collect();
        let mut text = kept.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        std::fs::write(&metrics_path, text).map_err(|e| write_err(&metrics_path, e))?;
    }
    Ok(run)
}

/// Reads a training run's metrics (the records' shared keys).
pub fn read_train_metrics(out: &Path) -> std::io::Result<Vec<MetricsRecord>> {
    read_metrics(&out.join("metrics.jsonl"))
}
