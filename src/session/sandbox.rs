//! The particle sandbox as a [`Run`]: labelled points in a low-dimensional space, an MLP
//! encoder, batches and Brownian kicks drawn from two sequential streams of the seed (their
//! positions go into checkpoints, so a restored run draws what the uninterrupted one would).
//! The display set is the whole evaluation set; `evaluate` embeds it, two fixed views of it
//! and the training bank.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use burn::module::Module;
use burn::tensor::Device;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;

use super::checkpoint::{CheckpointState, load_learner, save_learner};
use super::folder::write_atomic;
use super::{
    Cadence, DisplaySet, LabelledFeatures, Parts, Preview, Run, Schedule, SessionError, write_err,
};
use crate::config::{RunSettings, SimConfig, Workload};
use crate::data::sandbox::{PointSet, generate_with_more, make_views};
use crate::diagnostics::{self, Diagnostics, EvalEmbeddings, KnnConfig};
use crate::method::forces::{brownian_directions, tensor_2d};
use crate::method::{Learner, StepError, StepReport};
use crate::model::{Online, SandboxNet, seeded_init};
use crate::seed::{Stream, rng};

/// A sandbox run in memory.
pub struct SandboxRun {
    config: SimConfig,
    /// The autodiff device training runs on.
    device: Device,
    train: PointSet,
    eval: PointSet,
    /// Two fixed views of every evaluation point (for the alignment diagnostic), row-major.
    eval_view_a: Vec<f32>,
    eval_view_b: Vec<f32>,
    display: DisplaySet,
    /// The inputs of every displayed point (the evaluation set, then the points beyond it),
    /// row-major.
    display_inputs: Vec<f32>,
    learner: Learner<SandboxNet>,
    batch_rng: ChaCha8Rng,
    brownian_rng: ChaCha8Rng,
    steps_done: u64,
    /// Rows embedded outside training (see [`Run::rows_embedded`]).
    rows_embedded: AtomicU64,
}

/// The embeddings and diagnostics of one evaluation.
#[derive(Clone, Debug)]
pub struct Evaluation {
    pub diagnostics: Diagnostics,
    /// Unit embeddings of the evaluation set, row-major `[eval_size, D]`.
    pub embeddings: Vec<f32>,
    pub labels: Vec<u32>,
    pub dim: usize,
}

impl SandboxRun {
    /// A fresh run of `config` (assumed validated) on `device` (without autodiff).
    pub fn new(config: SimConfig, device: &Device) -> Self {
        let seed = config.seed;
        let beyond = config.display_points.saturating_sub(config.data.eval_size);
        let (train, eval, more) =
            generate_with_more(&config.data, beyond, &mut rng(seed, Stream::Dataset));
        let display_inputs: Vec<f32> = eval.points.iter().chain(&more.points).copied().collect();
        let mut eval_rng = rng(seed, Stream::EvalViews);
        let all: Vec<usize> = (0..eval.len()).collect();
        let eval_view_a = make_views(&eval, &all, 1, &config.views, &mut eval_rng);
        let eval_view_b = make_views(&eval, &all, 1, &config.views, &mut eval_rng);
        let display = DisplaySet {
            class_names: (0..config.data.classes)
                .map(|c| format!("class {c}"))
                .collect(),
            labels: eval.labels.iter().chain(&more.labels).copied().collect(),
            core: eval.len(),
            preview: Preview::Points {
                points: display_inputs.clone(),
                dim: eval.dim,
            },
        };

        let device = device.clone().autodiff();
        let online: Online<SandboxNet> = config.model.init(config.data.input_dim(), &device);
        let online = seeded_init(online, &mut rng(seed, Stream::Weights));
        let learner = Learner::new(online, &config.optimizer);
        Self {
            device,
            train,
            eval,
            eval_view_a,
            eval_view_b,
            display,
            display_inputs,
            learner,
            batch_rng: rng(seed, Stream::Batches),
            brownian_rng: rng(seed, Stream::Brownian),
            steps_done: 0,
            rows_embedded: AtomicU64::new(0),
            config,
        }
    }

    /// [`SandboxRun::new`] after checking that the run fits in the memory there is.
    ///
    /// # Errors
    /// The estimate, naming the setting that dominates it, when it does not fit.
    pub fn try_new(config: SimConfig, device: &Device) -> Result<Self, SessionError> {
        let model = &config.model;
        super::memory::sandbox_run(
            config.data.input_dim(),
            model.encoder_hidden,
            model.feature_dim,
            model.head_hidden,
            model.embed_dim,
            config.batch_size * config.views.count,
        )
        .check(super::memory::available_bytes())?;
        Ok(Self::new(config, device))
    }

    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    pub fn eval_set(&self) -> &PointSet {
        &self.eval
    }

    /// Unit embeddings of `points` (row-major, `dim` coordinates each) by the online network in
    /// evaluation mode, with the predictor when it is on.
    fn embed(&self, online: &Online<SandboxNet>, points: &[f32]) -> Result<Vec<f32>, StepError> {
        let dim = self.train.dim;
        let rows = points.len() / dim;
        self.rows_embedded.fetch_add(rows as u64, Ordering::Relaxed);
        let device = self.device.clone().without_autodiff();
        let input = tensor_2d(points.to_vec(), rows, dim, &device);
        let output = online.embed(input, self.config.dynamics.predictor);
        output
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|err| StepError::Readback(format!("{err:?}")))
    }

    /// Embeds the evaluation set, two fixed views of it and the training bank, and computes
    /// every diagnostic.
    ///
    /// # Errors
    /// When the embeddings cannot be read back from the device.
    pub fn evaluation(&self) -> Result<Evaluation, StepError> {
        let online = self.learner.online().valid();
        let embeddings = self.embed(&online, &self.eval.points)?;
        let view_a = self.embed(&online, &self.eval_view_a)?;
        let view_b = self.embed(&online, &self.eval_view_b)?;
        let bank = self.embed(&online, &self.train.points)?;
        let dim = self.config.model.embed_dim;
        let diagnostics = diagnostics::evaluate(
            &EvalEmbeddings {
                eval: &embeddings,
                eval_labels: &self.eval.labels,
                view_a: &view_a,
                view_b: &view_b,
                bank: &bank,
                bank_labels: &self.train.labels,
                dim,
            },
            self.config.knn,
        );
        Ok(Evaluation {
            diagnostics,
            embeddings,
            labels: self.eval.labels.clone(),
            dim,
        })
    }
}

impl Run for SandboxRun {
    fn workload(&self) -> Workload {
        Workload::Sandbox(self.config.clone())
    }

    fn settings(&self) -> &dyn RunSettings {
        &self.config
    }

    fn settings_mut(&mut self) -> &mut dyn RunSettings {
        &mut self.config
    }

    fn steps_done(&self) -> u64 {
        self.steps_done
    }

    fn total_steps(&self) -> u64 {
        self.config.steps as u64
    }

    fn images_per_step(&self) -> usize {
        self.config.batch_size * self.config.views.count
    }

    /// One training step on a fresh batch of N points with M views each.
    fn step(&mut self) -> Result<StepReport, SessionError> {
        let n = self.config.batch_size;
        let m = self.config.views.count;
        let d = self.config.model.embed_dim;
        let dim = self.train.dim;
        let indices = sample(&mut self.batch_rng, self.train.len(), n).into_vec();
        let views = make_views(
            &self.train,
            &indices,
            m,
            &self.config.views,
            &mut self.batch_rng,
        );
        let views = tensor_2d(views, n * m, dim, &self.device);
        let directions = tensor_2d(
            brownian_directions(&mut self.brownian_rng, n, d),
            n,
            d,
            &self.device,
        );
        let report = self.learner.step(
            &views,
            n,
            m,
            directions,
            &self.config.dynamics,
            self.config.learning_rate,
        )?;
        self.steps_done += 1;
        Ok(report)
    }

    fn schedule(&self, _step: u64) -> Schedule {
        Schedule {
            epoch: None,
            learning_rate: self.config.learning_rate,
            tau: f64::from(self.config.dynamics.tau),
        }
    }

    fn cadence(&self) -> Cadence {
        let log_every = self.config.log_every as u64;
        Cadence {
            record_every: self.config.record.every_steps as u64,
            embeddings_every: self.config.record.embeddings_every as u64,
            log_every,
            eval_every: log_every,
            checkpoint_every: 0,
            keep: 1,
        }
    }

    fn rows_embedded(&self) -> u64 {
        self.rows_embedded.load(Ordering::Relaxed)
    }

    fn knn(&self) -> KnnConfig {
        self.config.knn
    }

    fn display(&self) -> &DisplaySet {
        &self.display
    }

    fn display_embeddings(&self) -> Result<[Vec<f32>; 3], SessionError> {
        let online = self.learner.online().valid();
        Ok([
            self.embed(&online, &self.eval.points)?,
            self.embed(&online, &self.eval_view_a)?,
            self.embed(&online, &self.eval_view_b)?,
        ])
    }

    fn display_rows(&self, range: std::ops::Range<usize>) -> Result<Vec<f32>, SessionError> {
        let dim = self.eval.dim;
        let end = range.end.min(self.display.labels.len());
        let start = range.start.min(end);
        if start == end {
            return Ok(Vec::new());
        }
        let online = self.learner.online().valid();
        Ok(self.embed(&online, &self.display_inputs[start * dim..end * dim])?)
    }

    fn evaluate(&self) -> Result<Option<Diagnostics>, SessionError> {
        Ok(Some(self.evaluation()?.diagnostics))
    }

    fn knn_acc(&self) -> Result<Option<f64>, SessionError> {
        let online = self.learner.online().valid();
        let queries = self.embed(&online, &self.eval.points)?;
        let bank = self.embed(&online, &self.train.points)?;
        Ok(Some(diagnostics::knn_accuracy(
            &bank,
            &self.train.labels,
            &queries,
            &self.eval.labels,
            self.config.model.embed_dim,
            self.config.knn.k,
            self.config.knn.temperature,
        )))
    }

    fn labelled_features(&self, max_bank: usize) -> Result<LabelledFeatures, SessionError> {
        let online = self.learner.online().valid();
        let bank_len = self.train.len().min(max_bank);
        let bank = self.embed(&online, &self.train.points[..bank_len * self.train.dim])?;
        Ok(LabelledFeatures {
            bank,
            bank_labels: self.train.labels[..bank_len].to_vec(),
            queries: self.embed(&online, &self.eval.points)?,
            query_labels: self.eval.labels.clone(),
            dim: self.config.model.embed_dim,
            class_names: self.display.class_names.clone(),
        })
    }

    fn save_checkpoint(&self, dir: &Path) -> Result<(), SessionError> {
        save_learner(&self.learner, dir)?;
        CheckpointState {
            step: self.steps_done,
            total_steps: self.total_steps(),
            stream_words: Some([
                self.batch_rng.get_word_pos(),
                self.brownian_rng.get_word_pos(),
            ]),
        }
        .write(dir)
    }

    fn load_checkpoint(&mut self, dir: &Path, parts: Parts) -> Result<(), SessionError> {
        let state = CheckpointState::read(dir)?;
        if state.step > self.total_steps() {
            return Err(super::read_err(
                &dir.join("state.json"),
                format!(
                    "step {} is past the run's {} steps (config.toml and the checkpoint disagree)",
                    state.step,
                    self.total_steps()
                ),
            ));
        }
        let Some([batch_words, brownian_words]) = state.stream_words else {
            return Err(super::read_err(
                &dir.join("state.json"),
                "no `stream_words`: not a sandbox checkpoint",
            ));
        };
        self.learner = load_learner(&self.learner, &self.config.optimizer, dir, parts)?;
        self.batch_rng = rng(self.config.seed, Stream::Batches);
        self.batch_rng.set_word_pos(batch_words);
        self.brownian_rng = rng(self.config.seed, Stream::Brownian);
        self.brownian_rng.set_word_pos(brownian_words);
        self.steps_done = state.step;
        Ok(())
    }

    /// `embeddings.tsv` and `labels.tsv`: the unit embeddings of the evaluation set by the
    /// current weights, one row per point, and their labels (the TensorBoard projector reads
    /// both).
    fn write_outputs(&self, out: &Path) -> Result<Vec<String>, SessionError> {
        let evaluation = self.evaluation()?;
        let mut rows = String::new();
        for row in evaluation.embeddings.chunks(evaluation.dim.max(1)) {
            let line: Vec<String> = row.iter().map(|x| format!("{x:.6}")).collect();
            rows.push_str(&line.join("\t"));
            rows.push('\n');
        }
        write_atomic(&out.join("embeddings.tsv"), rows.as_bytes())?;
        let mut labels = String::new();
        for label in &evaluation.labels {
            writeln!(labels, "{label}").map_err(|e| write_err(&out.join("labels.tsv"), e))?;
        }
        write_atomic(&out.join("labels.tsv"), labels.as_bytes())?;
        Ok(vec!["embeddings.tsv".to_owned(), "labels.tsv".to_owned()])
    }
}
