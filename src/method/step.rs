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

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::ema::ema_update;
use super::forces::{Dynamics, LossTerms, loss_terms};
use super::optim::OptimizerConfig;
use crate::model::{Embedder, Online, normalize};
use crate::profile::{self, Phase};

/// The losses of one step, before the update, as plain numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// The weighted total `L`.
    pub loss: f32,
    pub loss_centroid: f32,
    pub loss_sv: f32,
    pub loss_brownian: f32,
    /// VICReg's terms, while they are on.
    #[serde(default)]
    pub loss_variance: Option<f32>,
    #[serde(default)]
    pub loss_covariance: Option<f32>,
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

/// The state a non-finite step rolls back to.
struct Rollback<E: Embedder> {
    online: Online<E>,
    target: Option<E>,
    optimizer: ModuleOptimizer,
}

/// The online network, the EMA target and the optimiser of one run.
pub struct Learner<E: Embedder> {
    online: Online<E>,
    /// The EMA copy of the embedder; `None` while EMA is off (made from the online weights the
    /// first step EMA is on).
    target: Option<E>,
    optimizer: ModuleOptimizer,
    /// The online network, target and optimiser state before the last update: the last state
    /// known to give finite losses, once that update turns out to have produced non-finite
    /// ones. The networks are kept in evaluation mode: `valid()` snapshots the batch-norm
    /// running statistics, which a forward pass updates in place. Weights and optimiser moments
    /// are immutable tensors, shared, not copied.
    before_update: Option<Rollback<E>>,
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
    /// last weights, target and optimiser state (momentum, moments) that gave finite losses.
    pub fn step(
        &mut self,
        views: &E::Input,
        images: usize,
        views_per_image: usize,
        directions: Tensor<2>,
        dynamics: &Dynamics,
        learning_rate: f64,
    ) -> Result<StepReport, StepError> {
        let views = views.clone();
        crate::backend::on_cpu_threads(move || {
            self.step_here(
                &views,
                images,
                views_per_image,
                directions,
                dynamics,
                learning_rate,
            )
        })
    }

    /// [`Self::step`] on the calling thread.
    fn step_here(
        &mut self,
        views: &E::Input,
        images: usize,
        views_per_image: usize,
        directions: Tensor<2>,
        dynamics: &Dynamics,
        learning_rate: f64,
    ) -> Result<StepReport, StepError> {
        let online_phase = profile::phase(Phase::OnlineForward);
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
        drop(online_phase);

        let target_phase = profile::phase(Phase::TargetForward);
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
        drop(target_phase);

        let losses_phase = profile::phase(Phase::Losses);
        let terms = loss_terms(&online, target, directions, dynamics);
        let total = terms.total(dynamics);
        let report = read_back(&terms, total.clone())?;
        for (term, value) in [
            ("total", report.loss),
            ("centroid", report.loss_centroid),
            ("singular value", report.loss_sv),
            ("Brownian", report.loss_brownian),
            ("variance", report.loss_variance.unwrap_or(0.0)),
            ("covariance", report.loss_covariance.unwrap_or(0.0)),
        ] {
            if !value.is_finite() {
                if let Some(rollback) = self.before_update.take() {
                    self.online = rollback.online.train();
                    self.target = rollback.target.map(Module::train);
                    self.optimizer = rollback.optimizer;
                }
                return Err(StepError::NonFinite { term, value });
            }
        }
        drop(losses_phase);
        let snapshot_phase = profile::phase(Phase::Snapshot);
        self.before_update = Some(Rollback {
            online: self.online.valid(),
            target: self.target.as_ref().map(Module::valid),
            optimizer: self.optimizer.clone(),
        });

        drop(snapshot_phase);

        if dynamics.any_force() {
            let backward_phase = profile::phase(Phase::Backward);
            let grads = total.backward();
            drop(backward_phase);
            let _optimizer_phase = profile::phase(Phase::Optimizer);
            let grads = GradientsParams::from_grads(grads, &self.online);
            self.online = self
                .optimizer
                .step(learning_rate, self.online.clone(), grads);
        }
        if let Some(target) = self.target.take() {
            let _ema_phase = profile::phase(Phase::Ema);
            self.target = Some(ema_update(
                target,
                &self.online.embedder,
                f64::from(dynamics.tau),
            ));
        }

        Ok(report)
    }
}

/// The loss terms as plain numbers, read back from the device in one transfer.
fn read_back(terms: &LossTerms, total: Tensor<1>) -> Result<StepReport, StepError> {
    let values = terms
        .stacked(total.detach())
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|err| StepError::Readback(format!("{err:?}")))?;
    let expected =
        4 + usize::from(terms.variance.is_some()) + usize::from(terms.covariance.is_some());
    let wrong_count = || {
        StepError::Readback(format!(
            "expected {expected} loss values, got {}",
            values.len()
        ))
    };
    if values.len() != expected {
        return Err(wrong_count());
    }
    let [loss, loss_centroid, loss_sv, loss_brownian, ref vicreg @ ..] = values[..] else {
        return Err(wrong_count());
    };
    let mut vicreg = vicreg.iter().copied();
    Ok(StepReport {
        loss,
        loss_centroid,
        loss_sv,
        loss_brownian,
        loss_variance: terms.variance.as_ref().and_then(|_| vicreg.next()),
        loss_covariance: terms.covariance.as_ref().and_then(|_| vicreg.next()),
    })
}
