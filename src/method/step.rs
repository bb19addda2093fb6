//! One MSBReg training step, generic over what produces the embeddings.
//!
//! An [`Embedder`] maps a batch of inputs (points for the sandbox, images later) to
//! projections `g(f(x))` of shape `[B, D]`. [`Learner`] owns the online network (embedder plus
//! predictor head), the EMA target and the optimiser, and [`Learner::step`] does, in order:
//!
//! 1. online forward: `p = normalize(q(g(f(views))))` (or without `q` when the predictor is off);
//! 2. target forward: `t = normalize(g'(f'(views)))` with the EMA copy, or the online
//!    projection with stop-gradient when EMA is off;
//! 3. the three loss terms and their weighted total (see [`super::forces`]);
//! 4. a check that every value is finite, before any weight changes;
//! 5. backward, optimiser step, then the EMA update of the target.

use burn::module::{Module, ModuleDisplay};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::ema::ema_update;
use super::forces::{Dynamics, loss_terms, normalize};
use super::optim::OptimizerConfig;
use crate::model::Mlp;

/// Anything that maps a batch of inputs to projections, so that one step serves the sandbox's
/// points and image encoders alike.
pub trait Embedder: Module + ModuleDisplay + 'static {
    /// A batch of inputs, on the device, first dimension the batch.
    type Input: Clone + Send;

    /// The projection `g(f(x))`, before the predictor and before normalisation.
    ///
    /// # Shapes
    /// - `input`: `[B, ...]`
    /// - output: `[B, D]`
    fn project(&self, input: Self::Input) -> Tensor<2>;
}

/// The online network: an embedder and the predictor head `q` (used when the predictor is on).
#[derive(Module, Debug)]
pub struct Online<E: Embedder> {
    pub embedder: E,
    pub predictor: Mlp,
}

impl<E: Embedder> Online<E> {
    /// The normalised online output p: the projection, through the predictor when it is on.
    ///
    /// # Shapes
    /// - `projection`: `[B, D]`
    /// - output: `[B, D]`
    fn head(&self, projection: Tensor<2>, predictor: bool) -> Tensor<2> {
        if predictor {
            normalize(self.predictor.forward(projection))
        } else {
            normalize(projection)
        }
    }

    /// The normalised embeddings of `input`, as the particles the forces act on.
    ///
    /// # Shapes
    /// - output: `[B, D]`
    pub fn embed(&self, input: E::Input, predictor: bool) -> Tensor<2> {
        self.head(self.embedder.project(input), predictor)
    }
}

/// The losses of one step, before the update, as plain numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// The weighted total `L`.
    pub loss: f32,
    pub loss_centroid: f32,
    pub loss_sv: f32,
    pub loss_brownian: f32,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StepError {
    #[error(
        "the {term} loss is {value} (not finite); the weights are back to the last ones that \
         gave finite losses. Lower the learning rate or the force weights, or switch that \
         force off"
    )]
    NonFinite { term: &'static str, value: f32 },
    #[error(
        "views and directions disagree: {rows} rows of views for {images} images x {views} views"
    )]
    Shape {
        rows: usize,
        images: usize,
        views: usize,
    },
    #[error("could not read the loss back from the device: {0}")]
    Readback(String),
}

/// The online network, the EMA target and the optimiser of one run.
pub struct Learner<E: Embedder> {
    online: Online<E>,
    /// The EMA copy of the embedder; `None` while EMA is off (made from the online weights the
    /// first step EMA is on).
    target: Option<E>,
    optimizer: ModuleOptimizer,
    /// The online network and target before the last update, in evaluation mode: the last
    /// weights known to give finite losses once that update turns out to have produced
    /// non-finite ones. `valid()` snapshots the batch-norm running statistics, which a forward
    /// pass updates in place; the weights themselves are immutable tensors, shared, not copied.
    before_update: Option<(Online<E>, Option<E>)>,
}

impl<E: Embedder> Learner<E> {
    /// A learner over `online`, whose parameters must live on an autodiff device.
    pub fn new(online: Online<E>, optimizer: &OptimizerConfig) -> Self {
        Self {
            optimizer: optimizer.build(&online),
            online,
            target: None,
            before_update: None,
        }
    }

    pub fn online(&self) -> &Online<E> {
        &self.online
    }

    /// The EMA target, once EMA has been on.
    pub fn target(&self) -> Option<&E> {
        self.target.as_ref()
    }

    pub fn optimizer(&self) -> &ModuleOptimizer {
        &self.optimizer
    }

    /// A learner restored from a checkpoint's parts.
    pub fn from_parts(online: Online<E>, target: Option<E>, optimizer: ModuleOptimizer) -> Self {
        Self {
            online,
            target,
            optimizer,
            before_update: None,
        }
    }

    /// One training step.
    ///
    /// # Shapes
    /// - `views`: `[N * M, ...]`, image-major: row `i * M + m` is view m of image i
    /// - `directions`: `[N, D]`, the Brownian kicks (unit rows)
    ///
    /// # Errors
    /// [`StepError::NonFinite`] when a loss term is NaN or infinite. The weights that gave it
    /// came from the previous update, so that update is undone: the learner is left with the
    /// last weights that gave finite losses.
    pub fn step(
        &mut self,
        views: &E::Input,
        images: usize,
        views_per_image: usize,
        directions: Tensor<2>,
        dynamics: &Dynamics,
        learning_rate: f64,
    ) -> Result<StepReport, StepError> {
        let projection = self.online.embedder.project(views.clone());
        let [rows, dim] = projection.dims();
        if rows != images * views_per_image {
            return Err(StepError::Shape {
                rows,
                images,
                views: views_per_image,
            });
        }
        let online = self
            .online
            .head(projection.clone(), dynamics.predictor)
            .reshape([images, views_per_image, dim]);

        let target_projection = if dynamics.ema {
            let target = self
                .target
                .get_or_insert_with(|| self.online.embedder.clone().no_grad());
            target.project(views.clone())
        } else {
            self.target = None;
            projection
        };
        let target = normalize(target_projection.detach()).reshape([images, views_per_image, dim]);

        let terms = loss_terms(&online, target, directions, dynamics);
        let total = terms.total(dynamics);
        let values = terms
            .stacked(total.clone().detach())
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|err| StepError::Readback(format!("{err:?}")))?;
        let [loss, loss_centroid, loss_sv, loss_brownian] = values[..] else {
            return Err(StepError::Readback(format!(
                "expected 4 loss values, got {}",
                values.len()
            )));
        };
        for (term, value) in [
            ("total", loss),
            ("centroid", loss_centroid),
            ("singular value", loss_sv),
            ("Brownian", loss_brownian),
        ] {
            if !value.is_finite() {
                if let Some((online, target)) = self.before_update.take() {
                    self.online = online.train();
                    self.target = target.map(Module::train);
                }
                return Err(StepError::NonFinite { term, value });
            }
        }
        self.before_update = Some((self.online.valid(), self.target.as_ref().map(Module::valid)));

        let any_force = dynamics.centroid.on || dynamics.singular_value.on || dynamics.brownian.on;
        if any_force {
            let grads = GradientsParams::from_grads(total.backward(), &self.online);
            self.online = self
                .optimizer
                .step(learning_rate, self.online.clone(), grads);
        }
        if let Some(target) = self.target.take() {
            self.target = Some(ema_update(
                target,
                &self.online.embedder,
                f64::from(dynamics.tau),
            ));
        }

        Ok(StepReport {
            loss,
            loss_centroid,
            loss_sv,
            loss_brownian,
        })
    }
}
