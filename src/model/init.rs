//! Seeded weight initialisation, independent of the backend's own random generator.
//!
//! burn's initialisers draw from the device's generator, which some backends seed globally:
//! two runs in one process (tests, the app's resets) would then see each other's draws. This
//! mapper redraws every float parameter from a generator the caller seeds: weights uniform in
//! `+-sqrt(6 / fan_in)` (He, for ReLU networks), biases and batch-norm shifts zero, batch-norm
//! scales one. Batch-norm running statistics are visited as float parameters too: the running
//! mean starts at zero and the running variance at one, as burn makes them.

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Tensor, TensorData};
use rand::{Rng, RngExt};

struct SeededInit<'a, R: Rng> {
    rng: &'a mut R,
    /// The names of the fields entered so far; the last is the parameter's own name.
    path: Vec<String>,
}

impl<R: Rng> ModuleMapper for SeededInit<'_, R> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_owned());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let name = self.path.last().map_or("", String::as_str);
        let rng = &mut *self.rng;
        param.map(|tensor| {
            let dims = tensor.dims();
            let device = tensor.device();
            let require_grad = tensor.is_require_grad();
            let count: usize = dims.iter().product();
            let values: Vec<f32> = match (D, name) {
                (1, "gamma" | "running_var") => vec![1.0; count],
                (1, _) => vec![0.0; count],
                _ => {
                    let bound = (6.0 / fan_in(&dims) as f64).sqrt() as f32;
                    (0..count)
                        .map(|_| rng.random_range(-bound..=bound))
                        .collect()
                }
            };
            Tensor::from_data(TensorData::new(values, dims), &device).set_require_grad(require_grad)
        })
    }
}

/// The number of inputs each output of a weight sees: `[in, out]` for burn's `Linear`,
/// `[out, in, k, k]` for convolutions.
fn fan_in(dims: &[usize]) -> usize {
    match dims {
        [input, _] => *input,
        [_, input, rest @ ..] => *input * rest.iter().product::<usize>(),
        _ => dims.iter().product(),
    }
    .max(1)
}

/// `module` with every float parameter redrawn from `rng`.
pub fn seeded_init<M: Module>(module: M, rng: &mut impl Rng) -> M {
    module.map(&mut SeededInit {
        rng,
        path: Vec::new(),
    })
}
