//! Batch norm with batch statistics, then ReLU, over the rows of `[rows, C]`, as one operation
//! with its own backward pass: a burn backend extension, implemented for flex (the CPU
//! backend) and for autodiff over it.
//!
//! Written with burn's tensor operations ([`super::im2col::batch_norm_rows`] then ReLU), the
//! pair is about 17 passes over the activation in a training step on flex: six forward (the
//! mean, the centring, the square, the variance, the scale, the shift; the ReLU) and a dozen in
//! autodiff's backward, each allocating its output. Here it is four: the statistics (each
//! block of rows' mean and squared deviations while the block is in cache) and the output
//! forward; one pass of column sums and one of the input's gradient backward. In the small
//! CNN's step the batch norms were most of flex's element-wise time (`msbreg bench train
//! --profile`).
//!
//! Sums run over fixed blocks of rows ([`BLOCK_ROWS`]), each block in `f32`, the blocks
//! combined in order in `f64`: the same numbers on any thread count. The values agree with the
//! composed operations to float rounding (the tests below, and `tests/same_seed.rs`).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::{ActivationOps, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, Dispatch, Flex, backend_extension};
use burn::tensor::{DType, Tensor};
use burn_flex::FlexTensor;

mod kernels;

use super::flex_slices::{f32_values, flex_tensor};

use kernels::{Forward, backward};

/// Rows per block of the column sums and of the element-wise passes: fixed, so that the sums
/// do not depend on how many threads there are.
pub const BLOCK_ROWS: usize = 256;

/// Batch norm (batch statistics, biased variance) then ReLU over the rows of a `[rows, C]`
/// matrix, and its backward pass.
#[backend_extension(Flex, Autodiff)]
pub trait BatchNormReluBackend: Backend {
    /// `(relu((x - mean) / sqrt(var + epsilon) * gamma + beta), mean, var)`, the statistics
    /// per column of `x`.
    ///
    /// # Shapes
    /// - `x`: `[rows, C]`; `gamma`, `beta`: `[C]`
    /// - outputs: `[rows, C]`, `[C]`, `[C]`
    fn batch_norm_relu(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// `relu((x - mean) / sqrt(var + epsilon) * gamma + beta)` with given statistics (the
    /// running ones, in inference).
    ///
    /// # Shapes
    /// - `x`: `[rows, C]`; the others `[C]`
    /// - output: `[rows, C]`
    fn batch_norm_relu_inference(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        var: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self>;

    /// The gradients `(x, gamma, beta)` of [`Self::batch_norm_relu`] given the gradient `grad`
    /// of its output `out`, and the `mean` and `var` it returned.
    fn batch_norm_relu_backward(
        x: FloatTensor<Self>,
        out: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        var: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// [`BatchNormReluBackend::batch_norm_relu`] on tensors.
///
/// Only on flex (with or without autodiff) and `f32`: [`supported`] says where.
pub fn batch_norm_relu(
    x: Tensor<2>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
) -> (Tensor<2>, Tensor<1>, Tensor<1>) {
    let (out, mean, var) = Dispatch::batch_norm_relu(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        epsilon,
    );
    (
        Tensor::from_dispatch(out),
        Tensor::from_dispatch(mean),
        Tensor::from_dispatch(var),
    )
}

/// [`BatchNormReluBackend::batch_norm_relu_inference`] on tensors.
///
/// Only on flex (with or without autodiff) and `f32`: [`supported`] says where.
pub fn batch_norm_relu_inference(
    x: Tensor<2>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    mean: Tensor<1>,
    var: Tensor<1>,
    epsilon: f64,
) -> Tensor<2> {
    Tensor::from_dispatch(Dispatch::batch_norm_relu_inference(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        mean.into_dispatch(),
        var.into_dispatch(),
        epsilon,
    ))
}

/// Whether [`batch_norm_relu`] and [`batch_norm_relu_inference`] serve `x`: `f32` on flex.
pub fn supported(x: &Tensor<2>) -> bool {
    x.dtype() == DType::F32 && super::im2col::prefers_im2col(&x.device())
}

fn rows_and_channels(x: &FlexTensor) -> (usize, usize) {
    let dims = x.layout().shape().to_vec();
    assert_eq!(
        dims.len(),
        2,
        "batch_norm_relu takes [rows, C], got {dims:?}"
    );
    (dims[0], dims[1])
}

impl BatchNormReluBackend for Flex {
    fn batch_norm_relu(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f64,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let _profile = crate::profile::fused(crate::profile::Fused::BatchNormRelu);
        let (rows, channels) = rows_and_channels(&x);
        let stats = Forward::from_batch(
            &f32_values(&x),
            channels,
            &f32_values(&gamma),
            &f32_values(&beta),
            epsilon,
        );
        let out = stats.output(&f32_values(&x));
        (
            flex_tensor(out, [rows, channels]),
            flex_tensor(stats.mean, [channels]),
            flex_tensor(stats.var, [channels]),
        )
    }

    fn batch_norm_relu_inference(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        mean: FlexTensor,
        var: FlexTensor,
        epsilon: f64,
    ) -> FlexTensor {
        let _profile = crate::profile::fused(crate::profile::Fused::BatchNormRelu);
        let (rows, channels) = rows_and_channels(&x);
        let stats = Forward::from_statistics(
            f32_values(&mean).into_owned(),
            f32_values(&var).into_owned(),
            &f32_values(&gamma),
            &f32_values(&beta),
            epsilon,
        );
        flex_tensor(stats.output(&f32_values(&x)), [rows, channels])
    }

    fn batch_norm_relu_backward(
        x: FlexTensor,
        out: FlexTensor,
        gamma: FlexTensor,
        mean: FlexTensor,
        var: FlexTensor,
        grad: FlexTensor,
        epsilon: f64,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let _profile = crate::profile::fused(crate::profile::Fused::BatchNormRelu);
        let (rows, channels) = rows_and_channels(&x);
        let (dx, dgamma, dbeta) = backward(
            &f32_values(&x),
            &f32_values(&out),
            &f32_values(&grad),
            channels,
            &f32_values(&gamma),
            &f32_values(&mean),
            &f32_values(&var),
            epsilon,
        );
        (
            flex_tensor(dx, [rows, channels]),
            flex_tensor(dgamma, [channels]),
            flex_tensor(dbeta, [channels]),
        )
    }
}

#[derive(Debug)]
struct BatchNormReluStep;

impl<B: BatchNormReluBackend> Backward<B, 3> for BatchNormReluStep {
    /// `x`, the output, `gamma`, the batch mean and variance, epsilon.
    type State = (
        FloatTensor<B>,
        FloatTensor<B>,
        FloatTensor<B>,
        FloatTensor<B>,
        FloatTensor<B>,
        f64,
    );

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x, out, gamma, mean, var, epsilon) = ops.state;
        let (dx, dgamma, dbeta) =
            B::batch_norm_relu_backward(x, out, gamma, mean, var, grad, epsilon);
        if let Some(node) = node_x {
            grads.register::<B>(node.id, dx);
        }
        if let Some(node) = node_gamma {
            grads.register::<B>(node.id, dgamma);
        }
        if let Some(node) = node_beta {
            grads.register::<B>(node.id, dbeta);
        }
    }
}

impl<B: BatchNormReluBackend, C: CheckpointStrategy> BatchNormReluBackend for Autodiff<B, C> {
    fn batch_norm_relu(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (x, x_node) = x.into_parts();
        let (gamma, gamma_node) = gamma.into_parts();
        let (beta, beta_node) = beta.into_parts();
        let (out, mean, var) = B::batch_norm_relu(x.clone(), gamma.clone(), beta, epsilon);
        let out = match BatchNormReluStep
            .prepare::<C>([x_node, gamma_node, beta_node])
            // Its state is kept, not recomputed, under gradient checkpointing.
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(
                (x, out.clone(), gamma, mean.clone(), var.clone(), epsilon),
                out,
            ),
            OpsKind::UnTracked(prep) => prep.finish(out),
        };
        // The statistics feed the running averages only: constants to autodiff.
        (out, Self::from_inner(mean), Self::from_inner(var))
    }

    /// Composed of autodiff's own operations, so that it differentiates; the fused kernel
    /// serves the plain backend (evaluation: kNN, the linear probe, export).
    fn batch_norm_relu_inference(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        var: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        Self::relu(Self::batch_norm(x, gamma, beta, mean, var, epsilon))
    }

    /// The backward pass of the inner backend, as constants: this operation is differentiated
    /// once, not twice.
    fn batch_norm_relu_backward(
        x: FloatTensor<Self>,
        out: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        var: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (dx, dgamma, dbeta) = B::batch_norm_relu_backward(
            Self::inner(x),
            Self::inner(out),
            Self::inner(gamma),
            Self::inner(mean),
            Self::inner(var),
            Self::inner(grad),
            epsilon,
        );
        (
            Self::from_inner(dx),
            Self::from_inner(dgamma),
            Self::from_inner(dbeta),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};

    fn values(x: Tensor<2>) -> Vec<f32> {
        x.into_data().try_to_vec::<f32>().unwrap_or_default()
    }

    fn max_abs_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        (a - b).abs().max().into_scalar::<f32>()
    }

    /// The composed operations, as `im2col::batch_norm_rows` then ReLU compute them.
    fn composed(x: Tensor<2>, gamma: Tensor<1>, beta: Tensor<1>, epsilon: f64) -> Tensor<2> {
        let mean = x.clone().mean_dim(0);
        let centred = x - mean;
        let variance = centred.clone().square().mean_dim(0);
        let scale = gamma.unsqueeze::<2>() / variance.add_scalar(epsilon).sqrt();
        burn::tensor::activation::relu(centred * scale + beta.unsqueeze::<2>())
    }

    #[test]
    fn output_statistics_and_gradients_match_the_composed_operations() {
        let device = Device::flex().autodiff();
        // Rows not a multiple of the block; a mean away from zero; some channels mostly cut
        // by the ReLU (beta below zero).
        let (rows, channels) = (BLOCK_ROWS * 3 + 17, 6);
        let x = Tensor::<2>::random([rows, channels], Distribution::Normal(1.5, 2.0), &device);
        let gamma = Tensor::<1>::random([channels], Distribution::Uniform(0.5, 1.5), &device);
        let beta = Tensor::<1>::random([channels], Distribution::Uniform(-1.0, 0.5), &device);
        let weights = Tensor::<2>::random([rows, channels], Distribution::Default, &device);
        let leaves = || {
            (
                Tensor::<2>::from_data(x.to_data(), &device).require_grad(),
                Tensor::<1>::from_data(gamma.to_data(), &device).require_grad(),
                Tensor::<1>::from_data(beta.to_data(), &device).require_grad(),
            )
        };
        let epsilon = 1e-5;

        let (x_ref, gamma_ref, beta_ref) = leaves();
        let reference = composed(x_ref.clone(), gamma_ref.clone(), beta_ref.clone(), epsilon);
        let (x_ours, gamma_ours, beta_ours) = leaves();
        assert!(supported(&x_ours));
        let (ours, mean, var) = batch_norm_relu(
            x_ours.clone(),
            gamma_ours.clone(),
            beta_ours.clone(),
            epsilon,
        );

        assert!(max_abs_diff(ours.clone(), reference.clone()) < 1e-5);
        let zeros = values(ours.clone()).iter().filter(|&&v| v == 0.0).count();
        assert!(zeros > rows * channels / 10, "the ReLU cut {zeros} values");
        let mean_ref = x.clone().mean_dim(0).reshape([channels]);
        let var_ref = (x.clone() - x.clone().mean_dim(0))
            .square()
            .mean_dim(0)
            .reshape([channels]);
        assert!(max_abs_diff(mean, mean_ref) < 1e-5);
        assert!(max_abs_diff(var, var_ref) < 1e-4);

        let g_ref = (reference * weights.clone()).sum().backward();
        let g_ours = (ours * weights).sum().backward();
        let grad = |t: &Tensor<2>, g| t.grad(g).expect("x has a gradient");
        let diff = max_abs_diff(grad(&x_ref, &g_ref), grad(&x_ours, &g_ours));
        assert!(diff < 1e-5, "x: {diff}");
        for (name, a, b) in [
            ("gamma", &gamma_ref, &gamma_ours),
            ("beta", &beta_ref, &beta_ours),
        ] {
            let (Some(a), Some(b)) = (a.grad(&g_ref), b.grad(&g_ours)) else {
                panic!("{name}: no gradient");
            };
            let scale = a.clone().abs().max().into_scalar::<f32>();
            let diff = max_abs_diff(a, b);
            assert!(
                diff < 1e-4 * scale.max(1.0),
                "{name}: {diff} (largest {scale})"
            );
        }
    }

    #[test]
    fn inference_matches_burns_batch_norm_then_relu() {
        let channels = 5;
        let random = |shape: [usize; 1], low, high, device: &Device| {
            Tensor::<1>::random(shape, Distribution::Uniform(low, high), device)
        };
        for device in [Device::flex(), Device::flex().autodiff()] {
            let x = Tensor::<2>::random([300, channels], Distribution::Normal(0.5, 2.0), &device);
            let gamma = random([channels], 0.5, 1.5, &device);
            let beta = random([channels], -1.0, 0.5, &device);
            let mean = random([channels], -0.5, 1.0, &device);
            let var = random([channels], 0.5, 4.0, &device);
            let ours = batch_norm_relu_inference(
                x.clone(),
                gamma.clone(),
                beta.clone(),
                mean.clone(),
                var.clone(),
                1e-5,
            );
            let reference = burn::tensor::activation::relu(burn::tensor::module::batch_norm(
                x, gamma, beta, mean, var, 1e-5,
            ));
            let zeros = values(ours.clone()).iter().filter(|&&v| v == 0.0).count();
            assert!(zeros > 30, "the ReLU cut {zeros} values");
            assert!(max_abs_diff(ours, reference) < 1e-5);
        }
    }

    #[test]
    fn works_without_autodiff_too() {
        // `batch_norm_relu_rows` takes it only in training, but flex alone serves it too.
        let device = Device::flex();
        let x = Tensor::<2>::random([8, 3], Distribution::Default, &device);
        assert!(supported(&x));
        let (out, _, _) = batch_norm_relu(
            x.clone(),
            Tensor::ones([3], &device),
            Tensor::zeros([3], &device),
            1e-5,
        );
        let reference = composed(
            x,
            Tensor::ones([3], &device),
            Tensor::zeros([3], &device),
            1e-5,
        );
        assert!(max_abs_diff(out, reference) < 1e-5);
    }
}
