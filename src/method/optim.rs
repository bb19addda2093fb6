//! Optimisers: AdamW, SGD with momentum, and LARS (You et al. 2017, as BYOL and solo-learn use
//! it), with weight decay (and LARS's trust ratio) left off biases and normalisation
//! parameters: every parameter of rank 1 goes to a group of its own with plain momentum SGD, or
//! AdamW without decay.

use burn::module::{Module, ModuleVisitor, Param, ParamGroup, ParamId};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{
    AdamWConfig, LearningRate, ModuleOptimizer, Optimizer, Sgd, SgdConfig, SgdState,
};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    #[default]
    Adamw,
    Sgd,
    Lars,
}

/// The optimiser and its hyper-parameters other than the learning rate.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimizerConfig {
    pub kind: OptimizerKind,
    /// Momentum for SGD and LARS (AdamW uses its own betas).
    pub momentum: f64,
    /// Decoupled weight decay (AdamW) or L2 penalty (SGD, LARS).
    pub weight_decay: f32,
    /// LARS trust coefficient.
    pub lars_eta: f32,
    /// Keep weight decay (and LARS's adaptation) off biases and normalisation parameters.
    pub exclude_bias_and_norm: bool,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self {
            kind: OptimizerKind::Adamw,
            momentum: 0.9,
            weight_decay: 0.0,
            lars_eta: 0.02,
            exclude_bias_and_norm: true,
        }
    }
}

/// LARS: the gradient (plus weight decay) is rescaled per parameter tensor by
/// `eta * ||w|| / ||g||`, then momentum SGD applies it.
#[derive(Clone)]
pub struct Lars {
    sgd: Sgd,
    weight_decay: f32,
    eta: f32,
}

impl Optimizer for Lars {
    type State<const D: usize> = SgdState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let grad = grad + tensor.clone().mul_scalar(self.weight_decay);
        let weight_norm = tensor.clone().square().sum().sqrt();
        let grad_norm = grad.clone().square().sum().sqrt();
        let ratio = (weight_norm.clone() * self.eta) / grad_norm.clamp_min(1e-12);
        // A zero weight (a fresh bias, say) would never move: no adaptation there.
        let ratio = ratio.mask_fill(weight_norm.lower_equal_elem(0.0), 1.0);
        let grad = grad * ratio.reshape([1usize; D]);
        self.sgd.step(lr, tensor, grad, state)
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        Sgd::to_device(state, device)
    }
}

/// The ids of every float parameter of rank 1 (biases, batch-norm scales and shifts).
struct RankOneIds(Vec<ParamId>);

impl ModuleVisitor for RankOneIds {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if D == 1 {
            self.0.push(param.id);
        }
    }
}

fn momentum(value: f64) -> Option<MomentumConfig> {
    (value > 0.0).then_some(MomentumConfig {
        momentum: value,
        dampening: 0.0,
        nesterov: false,
    })
}

impl OptimizerConfig {
    /// The optimiser for `module`'s parameters.
    pub fn build<M: Module>(&self, module: &M) -> ModuleOptimizer {
        let decay = (self.weight_decay > 0.0).then_some(WeightDecayConfig {
            penalty: self.weight_decay,
        });
        let plain_sgd = SgdConfig::new().with_momentum(momentum(self.momentum));
        let main: ModuleOptimizer = match self.kind {
            OptimizerKind::Adamw => AdamWConfig::new()
                .with_weight_decay(self.weight_decay)
                .build()
                .into(),
            OptimizerKind::Sgd => plain_sgd.clone().with_weight_decay(decay).build().into(),
            OptimizerKind::Lars => Lars {
                sgd: plain_sgd.build(),
                weight_decay: self.weight_decay,
                eta: self.lars_eta,
            }
            .into(),
        };
        if !self.exclude_bias_and_norm {
            return main;
        }
        let mut ids = RankOneIds(Vec::new());
        module.visit(&mut ids);
        let group = ParamGroup::from_ids(ids.0);
        match self.kind {
            OptimizerKind::Adamw => main.with_group(
                group,
                AdamWConfig::new().with_weight_decay(0.0).build(),
                None,
            ),
            OptimizerKind::Sgd | OptimizerKind::Lars => main.with_group(
                group,
                SgdConfig::new()
                    .with_momentum(momentum(self.momentum))
                    .build(),
                None,
            ),
        }
    }
}
