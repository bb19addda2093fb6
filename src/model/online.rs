//! The online network every run trains: an [`Embedder`] (what maps inputs to projections:
//! the sandbox's MLP, the image encoders) with the predictor head `q`, and [`normalize`], which
//! puts the embeddings on the unit sphere where the forces act on them.

use burn::module::{Module, ModuleDisplay};
use burn::tensor::Tensor;

use super::mlp::Mlp;

/// The floor of the norm in [`normalize`]: `x / max(||x||, NORM_FLOOR)`.
pub const NORM_FLOOR: f64 = 1e-12;

/// `x / max(||x||, NORM_FLOOR)` along the last dimension.
///
/// Written as `x / sqrt(max(||x||^2, NORM_FLOOR^2))`, which is the same value, so that the
/// gradient at a zero vector is finite (`1 / NORM_FLOOR`, the slope of `x / NORM_FLOOR`) rather
/// than NaN.
///
/// # Shapes
/// - `x`: `[..., D]`
/// - output: `[..., D]`
pub fn normalize<const R: usize>(x: Tensor<R>) -> Tensor<R> {
    let norm = x
        .clone()
        .square()
        .sum_dim(R - 1)
        .clamp_min(NORM_FLOOR * NORM_FLOOR)
        .sqrt();
    x / norm
}

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
    pub(crate) fn head(&self, projection: Tensor<2>, predictor: bool) -> Tensor<2> {
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
