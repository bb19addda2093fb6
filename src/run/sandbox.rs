//! The state of one sandbox run: data, learner, random streams, step counter. `step` trains
//! once; `evaluate` embeds the fixed evaluation set and computes the diagnostics. The
//! [`Dynamics`] can be replaced between any two steps.

use burn::module::Module;
use burn::tensor::Device;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;

use crate::config::SimConfig;
use crate::data::sandbox::{PointSet, generate, make_views};
use crate::data::{Stream, rng};
use crate::diagnostics::{Diagnostics, EvalEmbeddings, evaluate};
use crate::method::forces::{brownian_directions, tensor_2d};
use crate::method::step::Online;
use crate::method::{Dynamics, Learner, StepError, StepReport};
use crate::model::{SandboxNet, seeded_init};

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
    learner: Learner<SandboxNet>,
    batch_rng: ChaCha8Rng,
    brownian_rng: ChaCha8Rng,
    steps_done: usize,
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
        let (train, eval) = generate(&config.data, &mut rng(seed, Stream::Dataset));
        let mut eval_rng = rng(seed, Stream::EvalViews);
        let all: Vec<usize> = (0..eval.len()).collect();
        let eval_view_a = make_views(&eval, &all, 1, &config.views, &mut eval_rng);
        let eval_view_b = make_views(&eval, &all, 1, &config.views, &mut eval_rng);

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
            learner,
            batch_rng: rng(seed, Stream::Batches),
            brownian_rng: rng(seed, Stream::Brownian),
            steps_done: 0,
            config,
        }
    }

    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    pub fn steps_done(&self) -> usize {
        self.steps_done
    }

    pub fn dynamics(&self) -> Dynamics {
        self.config.dynamics
    }

    /// Takes effect on the next step.
    pub fn set_dynamics(&mut self, dynamics: Dynamics) {
        self.config.dynamics = dynamics;
    }

    /// Takes effect on the next step.
    pub fn set_learning_rate(&mut self, learning_rate: f64) {
        self.config.learning_rate = learning_rate;
    }

    /// Unit embeddings of the evaluation points and of their two fixed views, row-major
    /// `[eval_size, D]` each: what the app draws, without the kNN bank.
    ///
    /// # Errors
    /// When the embeddings cannot be read back from the device.
    pub fn display_embeddings(&self) -> Result<[Vec<f32>; 3], StepError> {
        let online = self.learner.online().valid();
        Ok([
            self.embed(&online, &self.eval.points)?,
            self.embed(&online, &self.eval_view_a)?,
            self.embed(&online, &self.eval_view_b)?,
        ])
    }

    pub fn eval_set(&self) -> &PointSet {
        &self.eval
    }

    /// One training step on a fresh batch of N points with M views each.
    ///
    /// # Errors
    /// When a loss is not finite; the weights are then unchanged and the step is not counted.
    pub fn step(&mut self) -> Result<StepReport, StepError> {
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

    /// Unit embeddings of `points` (row-major, `dim` coordinates each) by the online network in
    /// evaluation mode, with the predictor when it is on.
    fn embed(&self, online: &Online<SandboxNet>, points: &[f32]) -> Result<Vec<f32>, StepError> {
        let dim = self.train.dim;
        let rows = points.len() / dim;
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
    pub fn evaluate(&self) -> Result<Evaluation, StepError> {
        let online = self.learner.online().valid();
        let embeddings = self.embed(&online, &self.eval.points)?;
        let view_a = self.embed(&online, &self.eval_view_a)?;
        let view_b = self.embed(&online, &self.eval_view_b)?;
        let bank = self.embed(&online, &self.train.points)?;
        let dim = self.config.model.embed_dim;
        let diagnostics = evaluate(
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
