//! Image pretraining as a [`Run`]: a data source loaded into memory, a loader thread that
//! augments each batch's views ahead of the step, an image encoder, warm-up + cosine
//! learning rate and the `tau` schedule over all epochs, and evaluation (kNN on the encoder's
//! features, the diagnostics on the online embeddings) on a seeded labelled subset.
//!
//! Batches and Brownian kicks are pure functions of (seed, step) (see `crate::seed`), so a run
//! restored from a checkpoint continues with the very curve an uninterrupted run would have
//! drawn: only the learner and the step go into the checkpoint.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use rand::seq::SliceRandom;

use super::checkpoint::{CheckpointState, load_learner, save_learner};
use super::splits::{EvalSet, eval_set, training_images, with_test_split};
use super::{
    Cadence, DisplaySet, LabelledFeatures, Parts, Preview, Run, Schedule, SessionError, read_err,
};
use crate::config::{DISPLAY_POINTS, RunSettings, TrainConfig, Workload};
use crate::data::augment::{augment_view, channel_stats, plain_view};
use crate::data::images::{Dataset, ImageSet};
use crate::data::loader::{Batch, BatchPlan, Loader};
use crate::diagnostics::{self, Diagnostics, KnnConfig};
use crate::method::forces::{brownian_directions, tensor_2d};
use crate::method::schedule::{tau_at, warmup_cosine};
use crate::method::{Learner, StepError, StepReport};
use crate::model::{ImageNet, Online, seeded_init};
use crate::seed::{Stream, brownian_rng, display_view_rng, rng};

/// An image pretraining run in memory.
pub struct ImageRun {
    config: TrainConfig,
    device: Device,
    plan: Arc<BatchPlan>,
    eval: Option<EvalSet>,
    display: DisplaySet,
    /// The displayed images (a prefix of the held-out queries and of the test split beyond
    /// them, or of the training images), the core first.
    display_images: ImageSet,
    /// The first [`DisplaySet::core`] of them.
    display_core: ImageSet,
    learner: Learner<ImageNet>,
    /// Steps done.
    step: u64,
    total_steps: u64,
    /// The loader thread feeding [`Run::step`], started at the first step from the step the
    /// run is at (and again after a checkpoint is loaded).
    loader: Option<Loader>,
    /// Seconds earlier loaders made the steps wait.
    past_wait_secs: f64,
    /// Images embedded outside training (see [`Run::rows_embedded`]).
    rows_embedded: AtomicU64,
    /// What the user should be told once (see [`Run::notes`]).
    notes: Vec<String>,
}

impl ImageRun {
    /// A fresh run: loads the data, builds the network from the seed.
    pub fn new(config: TrainConfig, device: &Device) -> Result<Self, SessionError> {
        config.validate()?;
        let (splits, note) = with_test_split(
            config.data.load(config.seed)?,
            &config.eval,
            config.seed,
            &config.data.describe(),
        );
        // The evaluation subsets first: then the training split moves into the loader's set.
        let eval = eval_set(&splits, &config.eval, config.display_points, config.seed);
        let images = training_images(splits);
        if images.len() < config.batch_size {
            return Err(SessionError::Setup {
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
        super::memory::image_run(
            config.model.encoder,
            channels,
            side,
            config.batch_size * config.views,
            config.model.head_hidden,
            config.model.embed_dim,
        )
        .check(super::memory::available_bytes())?;
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
            let all = config.schedule_steps(plan.steps_per_epoch());
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
        // The core: the first queries (or training images), as many as `DISPLAY_POINTS`; then
        // more of the same order up to `display_points`.
        let display_images = {
            let set = eval.as_ref().map_or(plan.images.as_ref(), |e| &e.display);
            let all = set.len().min(DISPLAY_POINTS.max(config.display_points));
            set.subset(&(0..all).collect::<Vec<_>>())
        };
        let core = display_images.len().min(DISPLAY_POINTS);
        let display_core = display_images.subset(&(0..core).collect::<Vec<_>>());
        let display = DisplaySet {
            core,
            class_names: display_images.class_names.clone(),
            labels: display_images
                .labels
                .clone()
                .unwrap_or_else(|| vec![0; display_images.len()]),
            preview: Preview::Images(display_images.clone()),
        };
        Ok(Self {
            eval,
            display,
            display_images,
            display_core,
            config,
            device,
            plan,
            learner,
            step: 0,
            total_steps,
            loader: None,
            past_wait_secs: 0.0,
            rows_embedded: AtomicU64::new(0),
            notes: note.into_iter().collect(),
        })
    }

    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    pub fn plan(&self) -> &Arc<BatchPlan> {
        &self.plan
    }

    pub fn learner(&self) -> &Learner<ImageNet> {
        &self.learner
    }

    /// The schedule the whole run follows: all its steps (or epochs), whatever `max_steps`
    /// says.
    fn schedule_steps(&self) -> u64 {
        self.config.schedule_steps(self.plan.steps_per_epoch())
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

    /// Trains on `batch`, which must be the batch of the next step (benchmarks feed their own
    /// batches; [`Run::step`] takes them from the loader thread).
    pub fn step_batch(&mut self, batch: &Batch) -> Result<StepReport, StepError> {
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
        let mut kicks = brownian_rng(self.config.seed, batch.step);
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
        self.rows_embedded
            .fetch_add(set.len() as u64, Ordering::Relaxed);
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
                        let mut rng =
                            display_view_rng(self.config.seed, start + slot, view as usize);
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

    /// Unit online embeddings (with the predictor when it is on) of the plain images of `set`
    /// and of two fixed augmented views of each, row-major `[len, D]` each.
    fn embed_display(&self, set: &ImageSet) -> Result<[Vec<f32>; 3], StepError> {
        let predictor = self.config.dynamics.predictor;
        let embed = |online: &Online<ImageNet>, x: Tensor<4>| online.embed(x, predictor);
        Ok([
            self.embed_set(set, None, embed)?,
            self.embed_set(set, Some(0), embed)?,
            self.embed_set(set, Some(1), embed)?,
        ])
    }
}

impl Run for ImageRun {
    fn workload(&self) -> Workload {
        Workload::Images(self.config.clone())
    }

    fn settings(&self) -> &dyn RunSettings {
        &self.config
    }

    fn settings_mut(&mut self) -> &mut dyn RunSettings {
        &mut self.config
    }

    fn steps_done(&self) -> u64 {
        self.step
    }

    fn total_steps(&self) -> u64 {
        self.total_steps
    }

    fn images_per_step(&self) -> usize {
        self.config.batch_size * self.config.views
    }

    fn step(&mut self) -> Result<StepReport, SessionError> {
        if self.loader.is_none() {
            let loader = Loader::spawn(
                Arc::clone(&self.plan),
                self.step,
                self.total_steps,
                self.config.loader_queue,
            )
            .map_err(|e| SessionError::Setup {
                what: "the loader thread".to_owned(),
                reason: e.to_string(),
            })?;
            self.loader = Some(loader);
        }
        let batch = self.loader.as_mut().and_then(Loader::next_batch);
        let Some(batch) = batch else {
            return Err(SessionError::Finished {
                total: self.total_steps,
            });
        };
        Ok(self.step_batch(&batch)?)
    }

    fn schedule(&self, step: u64) -> Schedule {
        Schedule {
            epoch: Some(step / self.plan.steps_per_epoch().max(1)),
            learning_rate: self.learning_rate(step),
            tau: self.tau(step),
        }
    }

    fn cadence(&self) -> Cadence {
        let eval_every = match self.config.eval.every_steps {
            0 => self.plan.steps_per_epoch(),
            every => every as u64,
        };
        Cadence {
            record_every: self.config.record.every_steps as u64,
            embeddings_every: self.config.record.embeddings_every as u64,
            log_every: self.config.log_every as u64,
            eval_every,
            checkpoint_every: self.config.checkpoint.every_steps as u64,
            keep: self.config.checkpoint.keep,
        }
    }

    fn notes(&self) -> &[String] {
        &self.notes
    }

    fn rows_embedded(&self) -> u64 {
        self.rows_embedded.load(Ordering::Relaxed)
    }

    fn knn(&self) -> KnnConfig {
        self.config.eval.knn
    }

    fn input_wait_secs(&self) -> f64 {
        self.past_wait_secs + self.loader.as_ref().map_or(0.0, Loader::wait_secs)
    }

    fn display(&self) -> &DisplaySet {
        &self.display
    }

    fn display_embeddings(&self) -> Result<[Vec<f32>; 3], SessionError> {
        Ok(self.embed_display(&self.display_core)?)
    }

    fn display_rows(&self, range: std::ops::Range<usize>) -> Result<Vec<f32>, SessionError> {
        let end = range.end.min(self.display_images.len());
        let start = range.start.min(end);
        if start == end {
            return Ok(Vec::new());
        }
        let set = self
            .display_images
            .subset(&(start..end).collect::<Vec<_>>());
        let predictor = self.config.dynamics.predictor;
        Ok(
            self.embed_set(&set, None, |online: &Online<ImageNet>, x: Tensor<4>| {
                online.embed(x, predictor)
            })?,
        )
    }

    /// kNN accuracy of the encoder's features, and the diagnostics of the normalised online
    /// embeddings of the held-out queries and two fixed views of each (the display's own
    /// embedding); `None` when the data has no labelled test split.
    fn evaluate(&self) -> Result<Option<Diagnostics>, SessionError> {
        let (Some(eval), Some(knn_acc)) = (&self.eval, self.knn_acc()?) else {
            return Ok(None);
        };
        let [embeddings, view_a, view_b] = self.embed_display(&eval.queries)?;
        let d = self.config.model.embed_dim;
        let singular_values = diagnostics::singular_values(&embeddings, d);
        Ok(Some(Diagnostics {
            effective_rank: diagnostics::effective_rank(&singular_values),
            uniformity: diagnostics::uniformity(&embeddings, d),
            alignment: diagnostics::alignment(&view_a, &view_b, d),
            collapse_level: diagnostics::collapse_level(&embeddings, d),
            knn_acc,
            singular_values,
        }))
    }

    fn knn_acc(&self) -> Result<Option<f64>, SessionError> {
        let Some(eval) = &self.eval else {
            return Ok(None);
        };
        let bank = self.embed_features(&eval.bank)?;
        let queries = self.embed_features(&eval.queries)?;
        Ok(Some(diagnostics::knn_accuracy(
            &bank,
            eval.bank.labels.as_deref().unwrap_or_default(),
            &queries,
            eval.queries.labels.as_deref().unwrap_or_default(),
            bank.len() / eval.bank.len().max(1),
            self.config.eval.knn.k,
            self.config.eval.knn.temperature,
        )))
    }

    /// The labelled training split (a seeded subset of at most `max_bank`) and the labelled
    /// test split, through the encoder (plain views).
    fn labelled_features(&self, max_bank: usize) -> Result<LabelledFeatures, SessionError> {
        let (splits, _) = with_test_split(
            self.config.data.load(self.config.seed)?,
            &self.config.eval,
            self.config.seed,
            &self.config.data.describe(),
        );
        let setup = |reason: &str| SessionError::Setup {
            what: format!("evaluating on {}", self.config.data.describe()),
            reason: reason.to_owned(),
        };
        let Some(train_labels) = splits.train.labels.as_ref() else {
            return Err(setup("the training split has no labels"));
        };
        let Some(test) = splits.test.as_ref() else {
            return Err(setup("there is no test split"));
        };
        let Some(query_labels) = test.labels.clone() else {
            return Err(setup("the test split has no labels"));
        };
        let mut order: Vec<usize> = (0..splits.train.len()).collect();
        order.shuffle(&mut rng(self.config.seed, Stream::EvalViews));
        order.truncate(max_bank.min(splits.train.len()));
        let bank_set = splits.train.subset(&order);
        let bank = self.embed_features(&bank_set)?;
        let queries = self.embed_features(test)?;
        Ok(LabelledFeatures {
            dim: queries.len() / test.len().max(1),
            bank,
            bank_labels: order.iter().map(|&i| train_labels[i]).collect(),
            queries,
            query_labels,
            class_names: splits.train.class_names.clone(),
        })
    }

    fn save_checkpoint(&self, dir: &Path) -> Result<(), SessionError> {
        save_learner(&self.learner, dir)?;
        CheckpointState {
            step: self.step,
            total_steps: self.total_steps,
            stream_words: None,
        }
        .write(dir)
    }

    fn load_checkpoint(&mut self, dir: &Path, parts: Parts) -> Result<(), SessionError> {
        let state = CheckpointState::read(dir)?;
        if state.step > self.total_steps {
            return Err(read_err(
                &dir.join("state.json"),
                format!(
                    "step {} is past the run's {} steps (config.toml and the checkpoint disagree)",
                    state.step, self.total_steps
                ),
            ));
        }
        self.learner = load_learner(&self.learner, &self.config.optimizer, dir, parts)?;
        self.step = state.step;
        if let Some(loader) = self.loader.take() {
            self.past_wait_secs += loader.wait_secs();
        }
        Ok(())
    }
}
