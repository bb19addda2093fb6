//! Batch norm with batch statistics, then ReLU, over the rows of `[rows, C]`, as one operation
//! with its own backward pass: a burn backend extension, implemented for flex (the CPU
//! backend) and for autodiff over it.
//!
//! Written with burn's tensor operations ([`super::im2col::batch_norm_rows`] then ReLU), the
//! pair is about 17 passes over the activation in a training step on flex: six forward (the
//! mean, the centring, the square, the variance, the scale, the shift; the ReLU) and a dozen in
//! autodiff's backward, each allocating its output. Here it is five: the two column sums and
//! the output forward; one pass of column sums and one of the input's gradient backward. In
//! the small CNN's step the batch norms were most of flex's element-wise time (`msbreg bench
//! train --profile`).
//!
//! Sums run over fixed blocks of rows ([`BLOCK_ROWS`]), each block in `f32`, the blocks added
//! in order in `f64`: the same numbers on any thread count. The values agree with the
//! composed operations to float rounding (the tests below, and `tests/same_seed.rs`).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::{ActivationOps, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, Dispatch, Flex, backend_extension};
use burn::tensor::{DType, Shape, Tensor, TensorData};
use burn_flex::FlexTensor;
use rayon::prelude::*;

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

fn f32_values(tensor: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    match tensor.as_slice::<f32>() {
        Some(values) => std::borrow::Cow::Borrowed(values),
        None => std::borrow::Cow::Owned(
            tensor
                .clone()
                .into_data()
                .try_to_vec::<f32>()
                .expect("batch_norm_relu takes f32 tensors (the caller checks `supported`)"),
        ),
    }
}

fn flex_tensor(values: Vec<f32>, shape: impl Into<Shape>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
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
        let _profile = crate::profile::fused();
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
        let _profile = crate::profile::fused();
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
        let _profile = crate::profile::fused();
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
    /// serves the plain backend (the EMA target, evaluation).
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

// ---- The kernels, on slices ------------------------------------------------------------

/// Column sums of `f(row)` over `values` (rows of `channels`), block by block: each block of
/// [`BLOCK_ROWS`] rows summed in `f32` in row order, the blocks added in order in `f64`.
fn column_sums<F>(rows: usize, channels: usize, per_block: F) -> Vec<Vec<f64>>
where
    F: Fn(std::ops::Range<usize>, &mut [Vec<f32>]) + Sync,
{
    let blocks = rows.div_ceil(BLOCK_ROWS);
    (0..blocks)
        .into_par_iter()
        .map(|block| {
            let start = block * BLOCK_ROWS;
            let range = start..(start + BLOCK_ROWS).min(rows);
            let mut sums = vec![vec![0.0f32; channels]; 2];
            per_block(range, &mut sums);
            sums
        })
        .collect::<Vec<_>>()
        .into_iter()
        .fold(vec![vec![0.0f64; channels]; 2], |mut total, block| {
            for (total, block) in total.iter_mut().zip(&block) {
                for (t, &b) in total.iter_mut().zip(block) {
                    *t += f64::from(b);
                }
            }
            total
        })
}

/// The forward pass's per-column numbers.
struct Forward {
    mean: Vec<f32>,
    var: Vec<f32>,
    /// `gamma / sqrt(var + epsilon)`
    scale: Vec<f32>,
    beta: Vec<f32>,
    channels: usize,
}

impl Forward {
    /// The statistics of `x`'s columns, in two passes: the mean, then the biased variance
    /// around it.
    fn from_batch(x: &[f32], channels: usize, gamma: &[f32], beta: &[f32], epsilon: f64) -> Self {
        let rows = x.len() / channels.max(1);
        let count = rows.max(1) as f64;
        let sums = column_sums(rows, channels, |range, sums| {
            for row in x[range.start * channels..range.end * channels].chunks_exact(channels) {
                for (s, &v) in sums[0].iter_mut().zip(row) {
                    *s += v;
                }
            }
        });
        let mean: Vec<f32> = sums[0].iter().map(|&s| (s / count) as f32).collect();
        let squares = column_sums(rows, channels, |range, sums| {
            for row in x[range.start * channels..range.end * channels].chunks_exact(channels) {
                for ((s, &v), &m) in sums[0].iter_mut().zip(row).zip(&mean) {
                    let d = v - m;
                    *s += d * d;
                }
            }
        });
        let var: Vec<f32> = squares[0].iter().map(|&s| (s / count) as f32).collect();
        Self::from_statistics(mean, var, gamma, beta, epsilon)
    }

    fn from_statistics(
        mean: Vec<f32>,
        var: Vec<f32>,
        gamma: &[f32],
        beta: &[f32],
        epsilon: f64,
    ) -> Self {
        let scale = var
            .iter()
            .zip(gamma)
            .map(|(&v, &g)| (f64::from(g) / (f64::from(v) + epsilon).sqrt()) as f32)
            .collect();
        Self {
            channels: mean.len(),
            mean,
            var,
            scale,
            beta: beta.to_vec(),
        }
    }

    /// `relu((x - mean) * scale + beta)`, row blocks in parallel.
    fn output(&self, x: &[f32]) -> Vec<f32> {
        let channels = self.channels;
        let mut out = vec![0.0f32; x.len()];
        out.par_chunks_mut(BLOCK_ROWS * channels)
            .zip(x.par_chunks(BLOCK_ROWS * channels))
            .for_each(|(out, x)| {
                let per_channel = self.mean.iter().zip(&self.scale).zip(&self.beta);
                for (out, x) in out.chunks_exact_mut(channels).zip(x.chunks_exact(channels)) {
                    for ((o, &v), ((&m, &s), &b)) in out.iter_mut().zip(x).zip(per_channel.clone())
                    {
                        *o = ((v - m) * s + b).max(0.0);
                    }
                }
            });
        out
    }
}

/// The gradients `(x, gamma, beta)`: one pass of column sums (of the gradient through the
/// ReLU, and of it times the normalised input), one pass for the input's gradient.
#[allow(clippy::too_many_arguments)]
fn backward(
    x: &[f32],
    out: &[f32],
    grad: &[f32],
    channels: usize,
    gamma: &[f32],
    mean: &[f32],
    var: &[f32],
    epsilon: f64,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let rows = x.len() / channels.max(1);
    let count = rows.max(1) as f64;
    let inv_std: Vec<f32> = var
        .iter()
        .map(|&v| (1.0 / (f64::from(v) + epsilon).sqrt()) as f32)
        .collect();
    let span = |range: &std::ops::Range<usize>| range.start * channels..range.end * channels;
    let sums = column_sums(rows, channels, |range, sums| {
        let span = span(&range);
        let rows = x[span.clone()]
            .chunks_exact(channels)
            .zip(out[span.clone()].chunks_exact(channels))
            .zip(grad[span].chunks_exact(channels));
        let [sum_g, sum_gx] = sums else {
            unreachable!("column_sums hands two rows of sums")
        };
        let per_channel = mean.iter().zip(&inv_std);
        for ((x, out), grad) in rows {
            let sums = sum_g.iter_mut().zip(sum_gx.iter_mut());
            let values = x.iter().zip(out).zip(grad);
            for ((sum_g, sum_gx), (((&v, &o), &g), (&m, &s))) in
                sums.zip(values.zip(per_channel.clone()))
            {
                let g = if o > 0.0 { g } else { 0.0 };
                *sum_g += g;
                *sum_gx += g * ((v - m) * s);
            }
        }
    });
    let dbeta: Vec<f32> = sums[0].iter().map(|&s| s as f32).collect();
    let dgamma: Vec<f32> = sums[1].iter().map(|&s| s as f32).collect();
    // dx = gamma * inv_std * (g - dbeta / rows - x_hat * dgamma / rows)
    let factor: Vec<f32> = gamma.iter().zip(&inv_std).map(|(&g, &s)| g * s).collect();
    let mean_g: Vec<f32> = sums[0].iter().map(|&s| (s / count) as f32).collect();
    let mean_gx: Vec<f32> = sums[1].iter().map(|&s| (s / count) as f32).collect();
    let mut dx = vec![0.0f32; x.len()];
    let block = BLOCK_ROWS * channels;
    dx.par_chunks_mut(block)
        .zip(x.par_chunks(block))
        .zip(out.par_chunks(block).zip(grad.par_chunks(block)))
        .for_each(|((dx, x), (out, grad))| {
            let rows = dx
                .chunks_exact_mut(channels)
                .zip(x.chunks_exact(channels))
                .zip(out.chunks_exact(channels).zip(grad.chunks_exact(channels)));
            let per_channel = mean
                .iter()
                .zip(&inv_std)
                .zip(factor.iter().zip(mean_g.iter().zip(&mean_gx)));
            for ((dx, x), (out, grad)) in rows {
                let values = dx.iter_mut().zip(x).zip(out.iter().zip(grad));
                for (((d, &v), (&o, &g)), ((&m, &s), (&f, (&mg, &mgx)))) in
                    values.zip(per_channel.clone())
                {
                    let g = if o > 0.0 { g } else { 0.0 };
                    let x_hat = (v - m) * s;
                    *d = f * (g - mg - x_hat * mgx);
                }
            }
        });
    (dx, dgamma, dbeta)
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
    fn same_bits_on_one_and_four_threads() {
        let (rows, channels) = (BLOCK_ROWS * 5 + 3, 9);
        // A fixed, uneven pattern: no random numbers needed.
        let pattern = |i: usize, k: usize| ((i * 7919 + k * 104_729) % 1000) as f32 / 250.0 - 1.0;
        let x: Vec<f32> = (0..rows * channels)
            .map(|i| pattern(i, 1) * 3.0 + 0.5)
            .collect();
        let grad: Vec<f32> = (0..rows * channels).map(|i| pattern(i, 2)).collect();
        let gamma: Vec<f32> = (0..channels).map(|c| 0.5 + c as f32 / 10.0).collect();
        let beta: Vec<f32> = (0..channels).map(|c| c as f32 / 10.0 - 0.4).collect();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("a thread pool");
            pool.install(|| {
                let forward = Forward::from_batch(&x, channels, &gamma, &beta, 1e-5);
                let out = forward.output(&x);
                let (dx, dgamma, dbeta) = backward(
                    &x,
                    &out,
                    &grad,
                    channels,
                    &gamma,
                    &forward.mean,
                    &forward.var,
                    1e-5,
                );
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                [out, dx, dgamma, dbeta, forward.mean, forward.var].map(|v| bits(&v))
            })
        };
        let one = run(1);
        assert!(one[0].iter().any(|&b| b == 0) && one[0].iter().any(|&b| b != 0));
        assert_eq!(one, run(4));
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
