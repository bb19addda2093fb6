//! The delayed-parameter target: `w' <- tau * w' + (1 - tau) * w`, parameter by parameter.
//!
//! The online and target modules have the same structure, so a visitor reads the online
//! parameters in traversal order and a mapper writes them into the target in the same order.
//! Batch-norm running statistics are not parameters and are left to each module.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::Tensor;

/// Reads every float parameter, flattened and detached, in traversal order.
struct Collect {
    params: Vec<Tensor<1>>,
}

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val().detach();
        let len = value.shape().num_elements();
        self.params.push(value.reshape([len]));
    }
}

/// Blends each target parameter with the online one at the same position.
struct Blend {
    online: std::vec::IntoIter<Tensor<1>>,
    tau: f64,
}

impl ModuleMapper for Blend {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(online) = self.online.next() else {
            // Structures differ: leave the parameter as it is (checked by the caller's tests).
            return param;
        };
        let tau = self.tau;
        param.map(|target| {
            let dims = target.dims();
            (target.mul_scalar(tau) + online.reshape(dims).mul_scalar(1.0 - tau)).detach()
        })
    }
}

/// Returns `target` moved toward `online`: each parameter becomes
/// `tau * target + (1 - tau) * online`. `tau = 1` keeps the target, `tau = 0` copies online.
pub fn ema_update<M: Module>(target: M, online: &M, tau: f64) -> M {
    let mut collect = Collect { params: Vec::new() };
    online.visit(&mut collect);
    let mut blend = Blend {
        online: collect.params.into_iter(),
        tau,
    };
    target.map(&mut blend)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{MlpConfig, seeded_init};
    use burn::tensor::Device;

    fn values(module: &crate::model::Mlp) -> Vec<f32> {
        let mut collect = Collect { params: Vec::new() };
        module.visit(&mut collect);
        collect
            .params
            .into_iter()
            .flat_map(|t| t.into_data().try_to_vec::<f32>().unwrap_or_default())
            .collect()
    }

    #[test]
    fn ema_blends_parameters() {
        let device = Device::flex();
        let config = MlpConfig {
            input: 3,
            hidden: vec![4],
            output: 2,
            batch_norm: true,
        };
        let online = seeded_init(
            config.init(&device),
            &mut crate::seed::rng(1, crate::seed::Stream::Weights),
        );
        let target = seeded_init(
            config.init(&device),
            &mut crate::seed::rng(2, crate::seed::Stream::Weights),
        );
        let (w_online, w_target) = (values(&online), values(&target));
        assert_ne!(w_online, w_target);

        assert_eq!(values(&ema_update(target.clone(), &online, 1.0)), w_target);
        assert_eq!(values(&ema_update(target.clone(), &online, 0.0)), w_online);
        let half = values(&ema_update(target, &online, 0.25));
        for ((h, o), t) in half.iter().zip(&w_online).zip(&w_target) {
            assert!((h - (0.25 * t + 0.75 * o)).abs() < 1e-6);
        }
    }
}
