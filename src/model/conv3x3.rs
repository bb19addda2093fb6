//! A 3x3 convolution (padding 1, no bias) on channels-last rows, as one operation with its own
//! backward pass: a burn backend extension, implemented for flex (the CPU backend) and for
//! autodiff over it.
//!
//! Written with burn's tensor operations ([`super::im2col`]: a gather of the columns, one
//! matrix product over the batch and, backward, the columns' gradient scattered back), the
//! columns of a layer are materialised for the whole batch: 38 MB for the small CNN's second
//! layer, written by the gather, read by the product, kept for the backward pass, and as much
//! again for their gradient. Those passes are bound by memory bandwidth, which a second core
//! does not double. Here the batch is cut into tiles of whole images whose columns (about 256
//! KiB) are gathered into a buffer that stays in cache and multiplied there, one tile per
//! thread: forward, for the input's gradient (the columns' gradient added back to the pixels
//! of the tile's own images) and for the weight's (the columns gathered again from the input,
//! which the backward pass keeps instead of the columns).
//!
//! The batch norm + ReLU between two convolutions is applied by the second as it gathers its
//! columns ([`Conv3x3Backend::norm_relu_conv3x3_rows`]): the first returns its output's column
//! statistics, taken tile by tile while each tile is in cache, and the normalised activation is
//! never written out. Per forward pass that saves a read of the activation for the statistics
//! and a write and a read for the normalised copy; backward, the batch norm's column sums are
//! taken tile by tile as the input's gradient is added back, and its input gradient is written
//! over that gradient.
//!
//! The weight's gradient is summed over chunks of images fixed by the shapes ([`WEIGHT_CHUNKS`]
//! of them, of at least [`WEIGHT_CHUNK_MIN_ROWS`] output rows), each in
//! order, the chunks added in order: the same numbers on any thread count. Values agree with
//! burn's `conv2d` to float rounding (the tests below, and `tests/same_seed.rs`).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, Dispatch, Flex, backend_extension};
use burn::tensor::{DType, Tensor};
use burn_flex::FlexTensor;

mod kernels;

use super::batch_norm_relu::{Forward, NormBackward};
use super::flex_slices::{f32_values, flex_tensor};

/// Chunks of images the weight's gradient is summed over: fixed, so that the sums do not
/// depend on how many threads there are.
pub const WEIGHT_CHUNKS: usize = 16;
/// The fewest output rows a chunk of the weight's gradient holds: on small batches fewer,
/// larger chunks (each chunk's partial sum is a whole weight-sized matrix to allocate and add).
pub const WEIGHT_CHUNK_MIN_ROWS: usize = 512;

/// A 3x3 convolution with padding 1 and no bias on channels-last rows, and its gradients; and
/// the same convolution of a batch norm + ReLU of its input, applied as the columns are
/// gathered, so that the normalised input is never written out.
#[backend_extension(Flex, Autodiff)]
#[allow(clippy::too_many_arguments)]
pub trait Conv3x3Backend: Backend {
    /// The convolution of `x`, `batch` images of `height x width` pixels, channels-last, by
    /// `weight` at `stride` along both axes; and the output's column mean and biased variance
    /// (for the batch norm that follows: constants to autodiff).
    ///
    /// # Shapes
    /// - `x`: `[batch * height * width, C]`; `weight`: `[out, C, 3, 3]`
    /// - outputs: `[batch * H_out * W_out, out]`, `H_out = (height - 1) / stride + 1`; `[out]`,
    ///   `[out]`
    fn conv3x3_rows(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        batch: usize,
        height: usize,
        width: usize,
        stride: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// [`Self::conv3x3_rows`] of `relu((x - mean) / sqrt(var + epsilon) * gamma + beta)`. In
    /// training `mean` and `var` are `x`'s batch statistics and the backward pass
    /// differentiates through them, as through a batch norm's; in inference, the running ones.
    ///
    /// # Shapes
    /// - `x`: `[batch * height * width, C]`; `mean`, `var`, `gamma`, `beta`: `[C]`; `weight`:
    ///   `[out, C, 3, 3]`
    /// - outputs: as [`Self::conv3x3_rows`]'s
    fn norm_relu_conv3x3_rows(
        x: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        var: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        epsilon: f64,
        batch: usize,
        height: usize,
        width: usize,
        stride: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// The gradients `(x, gamma, beta, weight)` of [`Self::norm_relu_conv3x3_rows`] given
    /// `grad`, its output's, `mean` and `var` being `x`'s batch statistics.
    fn norm_relu_conv3x3_rows_backward(
        x: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        var: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        epsilon: f64,
        batch: usize,
        height: usize,
        width: usize,
        stride: usize,
    ) -> (
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
    );

    /// The gradient of [`Self::conv3x3_rows`]'s input given `grad`, its output's.
    fn conv3x3_rows_input_grad(
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        batch: usize,
        height: usize,
        width: usize,
        stride: usize,
    ) -> FloatTensor<Self>;

    /// The gradient of [`Self::conv3x3_rows`]'s weight given `grad`, its output's.
    fn conv3x3_rows_weight_grad(
        x: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        batch: usize,
        height: usize,
        width: usize,
        stride: usize,
    ) -> FloatTensor<Self>;
}

/// The shapes of one convolution.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    batch: usize,
    height: usize,
    width: usize,
    /// Input channels.
    channels: usize,
    /// Output channels.
    out: usize,
    stride: usize,
}

impl Geometry {
    fn new(weight: &FlexTensor, batch: usize, height: usize, width: usize, stride: usize) -> Self {
        let dims = weight.layout().shape().to_vec();
        assert!(
            dims.len() == 4 && dims[2] == 3 && dims[3] == 3,
            "conv3x3 takes a [out, in, 3, 3] weight, got {dims:?}"
        );
        assert!(stride > 0, "conv3x3: stride 0");
        Self {
            batch,
            height,
            width,
            channels: dims[1],
            out: dims[0],
            stride,
        }
    }

    fn out_height(&self) -> usize {
        super::im2col::out_side(self.height, self.stride)
    }

    fn out_width(&self) -> usize {
        super::im2col::out_side(self.width, self.stride)
    }

    /// Checks that `x` holds this geometry's input rows.
    fn check_input(&self, x: &FlexTensor) {
        let dims = x.layout().shape().to_vec();
        assert_eq!(
            dims,
            vec![self.batch * self.height * self.width, self.channels],
            "conv3x3: input rows do not match {self:?}"
        );
    }

    /// The batch norm `[mean, var, gamma, beta]` over this geometry's input channels.
    fn input_norm(&self, [mean, var, gamma, beta]: [&FlexTensor; 4], epsilon: f64) -> Forward {
        for t in [mean, var, gamma, beta] {
            assert_eq!(
                t.layout().shape().to_vec(),
                vec![self.channels],
                "conv3x3: the input's batch norm does not match {self:?}"
            );
        }
        Forward::from_statistics(
            f32_values(mean).into_owned(),
            f32_values(var).into_owned(),
            &f32_values(gamma),
            &f32_values(beta),
            epsilon,
        )
    }

    /// The output rows of this geometry, and their mean and variance, as tensors.
    fn output_tensors(
        &self,
        (out, mean, var): (Vec<f32>, Vec<f32>, Vec<f32>),
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let rows = self.batch * self.out_height() * self.out_width();
        (
            flex_tensor(out, vec![rows, self.out]),
            flex_tensor(mean, vec![self.out]),
            flex_tensor(var, vec![self.out]),
        )
    }

    /// Checks that `grad` holds this geometry's output rows.
    fn check_output(&self, grad: &FlexTensor) {
        let dims = grad.layout().shape().to_vec();
        assert_eq!(
            dims,
            vec![self.batch * self.out_height() * self.out_width(), self.out],
            "conv3x3: output gradient does not match {self:?}"
        );
    }
}

/// [`Conv3x3Backend::conv3x3_rows`] on tensors, without the statistics. Only on flex (with or
/// without autodiff) and `f32`: [`supported`] says where.
pub fn conv3x3_rows(
    x: Tensor<2>,
    weight: Tensor<4>,
    batch: usize,
    height: usize,
    width: usize,
    stride: usize,
) -> Tensor<2> {
    conv3x3_rows_statistics(x, weight, [batch, height, width, stride]).0
}

/// [`Conv3x3Backend::conv3x3_rows`] on tensors: the output rows, their column mean and biased
/// variance. `shape`: `[batch, height, width, stride]`.
pub fn conv3x3_rows_statistics(
    x: Tensor<2>,
    weight: Tensor<4>,
    [batch, height, width, stride]: [usize; 4],
) -> (Tensor<2>, Tensor<1>, Tensor<1>) {
    let (out, mean, var) = Dispatch::conv3x3_rows(
        x.into_dispatch(),
        weight.into_dispatch(),
        batch,
        height,
        width,
        stride,
    );
    (
        Tensor::from_dispatch(out),
        Tensor::from_dispatch(mean),
        Tensor::from_dispatch(var),
    )
}

/// A batch norm with given statistics, then ReLU: what [`norm_relu_conv3x3_rows`] applies to
/// its input.
#[derive(Clone, Debug)]
pub struct InputNorm {
    pub mean: Tensor<1>,
    pub var: Tensor<1>,
    pub gamma: Tensor<1>,
    pub beta: Tensor<1>,
    pub epsilon: f64,
}

/// [`Conv3x3Backend::norm_relu_conv3x3_rows`] on tensors: the output rows, their column mean
/// and biased variance. `shape`: `[batch, height, width, stride]`. Only where [`supported`].
pub fn norm_relu_conv3x3_rows(
    x: Tensor<2>,
    norm: InputNorm,
    weight: Tensor<4>,
    [batch, height, width, stride]: [usize; 4],
) -> (Tensor<2>, Tensor<1>, Tensor<1>) {
    let (out, mean, var) = Dispatch::norm_relu_conv3x3_rows(
        x.into_dispatch(),
        norm.mean.into_dispatch(),
        norm.var.into_dispatch(),
        norm.gamma.into_dispatch(),
        norm.beta.into_dispatch(),
        weight.into_dispatch(),
        norm.epsilon,
        batch,
        height,
        width,
        stride,
    );
    (
        Tensor::from_dispatch(out),
        Tensor::from_dispatch(mean),
        Tensor::from_dispatch(var),
    )
}

/// `dst = lhs * rhs` for row-major `n x n` matrices, on the calling thread, by the product
/// the kernels use: `bench train --profile` measures with it what products reach in cache.
pub(crate) fn square_product(n: usize, dst: &mut [f32], lhs: &[f32], rhs: &[f32]) {
    kernels::product((n, n, n), dst, (1, n), lhs, (1, n), rhs, (1, n), false);
}

/// Whether [`conv3x3_rows`] serves `x`: `f32` on flex.
pub fn supported(x: &Tensor<2>) -> bool {
    x.dtype() == DType::F32 && super::im2col::prefers_im2col(&x.device())
}

impl Conv3x3Backend for Flex {
    fn conv3x3_rows(
        x: FlexTensor,
        weight: FlexTensor,
        batch: usize,
        height: usize,
        width: usize,
        stride: usize,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let _profile = crate::profile::fused(crate::profile::Fused::Conv3x3);
        let g = Geometry::new(&weight, batch, height, width, stride);
        g.check_input(&x);
        let out = kernels::forward(&f32_values(&x), &f32_values(&weight), &g, None);
        g.output_tensors(out)
    }

    fn norm_relu_conv3x3_rows(
        x: FlexTensor,
        mean: FlexTensor,
        var: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        weight: FlexTensor,
        epsilon: f64,
        batch: usize,
        height: usize,
        width: usize,
        stride: usize,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let _profile = crate::profile::fused(crate::profile::Fused::Conv3x3);
        let g = Geometry::new(&weight, batch, height, width, stride);
        g.check_input(&x);
        let norm = g.input_norm([&mean, &var, &gamma, &beta], epsilon);
        let out = kernels::forward(&f32_values(&x), &f32_values(&weight), &g, Some(&norm));
        g.output_tensors(out)
    }

    fn norm_relu_conv3x3_rows_backward(
        x: FlexTensor,
        mean: FlexTensor,
        var: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        weight: FlexTensor,
        grad: FlexTensor,
        epsilon: f64,
        batch: usize,
        height: usize,
        width: usize,
        stride: usize,
    ) -> (FlexTensor, FlexTensor, FlexTensor, FlexTensor) {
        let _profile = crate::profile::fused(crate::profile::Fused::Conv3x3);
        let g = Geometry::new(&weight, batch, height, width, stride);
        g.check_input(&x);
        g.check_output(&grad);
        let norm = g.input_norm([&mean, &var, &gamma, &beta], epsilon);
        let (x, grad) = (f32_values(&x), f32_values(&grad));
        // The normalised input's gradient, with the batch norm's column sums taken tile by
        // tile; then the batch norm's input gradient written over it.
        let (mut dx, sums) =
            kernels::input_grad(&grad, &f32_values(&weight), &g, Some((&norm, &x)));
        let backward =
            NormBackward::from_sums(sums, &norm, &f32_values(&gamma), batch * height * width);
        backward.input_grad_in_place(&norm, &x, &mut dx);
        let dw = kernels::weight_grad(&x, &grad, &g, Some(&norm));
        (
            flex_tensor(dx, vec![batch * height * width, g.channels]),
            flex_tensor(backward.dgamma, vec![g.channels]),
            flex_tensor(backward.dbeta, vec![g.channels]),
            flex_tensor(dw, vec![g.out, g.channels, 3, 3]),
        )
    }

    fn conv3x3_rows_input_grad(
        weight: FlexTensor,
        grad: FlexTensor,
        batch: usize,
        height: usize,
        width: usize,
        stride: usize,
    ) -> FlexTensor {
        let _profile = crate::profile::fused(crate::profile::Fused::Conv3x3);
        let g = Geometry::new(&weight, batch, height, width, stride);
        g.check_output(&grad);
        let (dx, _) = kernels::input_grad(&f32_values(&grad), &f32_values(&weight), &g, None);
        flex_tensor(dx, vec![batch * height * width, g.channels])
    }

    fn conv3x3_rows_weight_grad(
        x: FlexTensor,
        grad: FlexTensor,
        batch: usize,
        height: usize,
        width: usize,
        stride: usize,
    ) -> FlexTensor {
        let _profile = crate::profile::fused(crate::profile::Fused::Conv3x3);
        let dims = x.layout().shape().to_vec();
        let grad_dims = grad.layout().shape().to_vec();
        let (channels, out) = (dims[1], grad_dims[1]);
        let g = Geometry {
            batch,
            height,
            width,
            channels,
            out,
            stride,
        };
        g.check_input(&x);
        g.check_output(&grad);
        let dw = kernels::weight_grad(&f32_values(&x), &f32_values(&grad), &g, None);
        flex_tensor(dw, vec![out, channels, 3, 3])
    }
}

#[derive(Debug)]
struct Conv3x3Step;

impl<B: Conv3x3Backend> Backward<B, 2> for Conv3x3Step {
    /// The input rows, the weight, and `(batch, height, width, stride)`.
    type State = (FloatTensor<B>, FloatTensor<B>, (usize, usize, usize, usize));

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_weight] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x, weight, (batch, height, width, stride)) = ops.state;
        if let Some(node) = node_x {
            let dx = B::conv3x3_rows_input_grad(weight, grad.clone(), batch, height, width, stride);
            grads.register::<B>(node.id, dx);
        }
        if let Some(node) = node_weight {
            let dw = B::conv3x3_rows_weight_grad(x, grad, batch, height, width, stride);
            grads.register::<B>(node.id, dw);
        }
    }
}

#[derive(Debug)]
struct NormReluConv3x3Step;

impl<B: Conv3x3Backend> Backward<B, 4> for NormReluConv3x3Step {
    /// The input rows, `[mean, var, gamma, beta]` of its batch norm, the weight, epsilon, and
    /// `(batch, height, width, stride)`.
    type State = (
        FloatTensor<B>,
        [FloatTensor<B>; 4],
        FloatTensor<B>,
        f64,
        (usize, usize, usize, usize),
    );

    fn backward(
        self,
        ops: Ops<Self::State, 4>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let grad = grads.consume::<B>(&ops.node);
        let (x, [mean, var, gamma, beta], weight, epsilon, (batch, height, width, stride)) =
            ops.state;
        let (dx, dgamma, dbeta, dw) = B::norm_relu_conv3x3_rows_backward(
            x, mean, var, gamma, beta, weight, grad, epsilon, batch, height, width, stride,
        );
        for (node, grad) in ops.parents.into_iter().zip([dx, dgamma, dbeta, dw]) {
            if let Some(node) = node {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

impl<B: Conv3x3Backend, C: CheckpointStrategy> Conv3x3Backend for Autodiff<B, C> {
    fn conv3x3_rows(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        batch: usize,
        height: usize,
        width: usize,
        stride: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (x, x_node) = x.into_parts();
        let (weight, weight_node) = weight.into_parts();
        let (out, mean, var) =
            B::conv3x3_rows(x.clone(), weight.clone(), batch, height, width, stride);
        let out = match Conv3x3Step
            .prepare::<C>([x_node, weight_node])
            // Its state is kept, not recomputed, under gradient checkpointing.
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((x, weight, (batch, height, width, stride)), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        };
        // The statistics feed the batch norm that follows and its running averages: constants
        // to autodiff (the batch norm's backward pass differentiates through them).
        (out, Self::from_inner(mean), Self::from_inner(var))
    }

    fn norm_relu_conv3x3_rows(
        x: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        var: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        epsilon: f64,
        batch: usize,
        height: usize,
        width: usize,
        stride: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (x, x_node) = x.into_parts();
        let (gamma, gamma_node) = gamma.into_parts();
        let (beta, beta_node) = beta.into_parts();
        let (weight, weight_node) = weight.into_parts();
        let (mean, var) = (Self::inner(mean), Self::inner(var));
        let shape = (batch, height, width, stride);
        let (out, out_mean, out_var) = B::norm_relu_conv3x3_rows(
            x.clone(),
            mean.clone(),
            var.clone(),
            gamma.clone(),
            beta.clone(),
            weight.clone(),
            epsilon,
            batch,
            height,
            width,
            stride,
        );
        let out = match NormReluConv3x3Step
            .prepare::<C>([x_node, gamma_node, beta_node, weight_node])
            // Its state is kept, not recomputed, under gradient checkpointing.
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                prep.finish((x, [mean, var, gamma, beta], weight, epsilon, shape), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(out),
        };
        (out, Self::from_inner(out_mean), Self::from_inner(out_var))
    }

    /// The inner backend's, as constants: this operation is differentiated once, not twice.
    fn norm_relu_conv3x3_rows_backward(
        x: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        var: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        epsilon: f64,
        batch: usize,
        height: usize,
        width: usize,
        stride: usize,
    ) -> (
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
    ) {
        let (dx, dgamma, dbeta, dw) = B::norm_relu_conv3x3_rows_backward(
            Self::inner(x),
            Self::inner(mean),
            Self::inner(var),
            Self::inner(gamma),
            Self::inner(beta),
            Self::inner(weight),
            Self::inner(grad),
            epsilon,
            batch,
            height,
            width,
            stride,
        );
        (
            Self::from_inner(dx),
            Self::from_inner(dgamma),
            Self::from_inner(dbeta),
            Self::from_inner(dw),
        )
    }

    /// The inner backend's, as a constant: this operation is differentiated once, not twice.
    fn conv3x3_rows_input_grad(
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        batch: usize,
        height: usize,
        width: usize,
        stride: usize,
    ) -> FloatTensor<Self> {
        Self::from_inner(B::conv3x3_rows_input_grad(
            Self::inner(weight),
            Self::inner(grad),
            batch,
            height,
            width,
            stride,
        ))
    }

    /// The inner backend's, as a constant: this operation is differentiated once, not twice.
    fn conv3x3_rows_weight_grad(
        x: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        batch: usize,
        height: usize,
        width: usize,
        stride: usize,
    ) -> FloatTensor<Self> {
        Self::from_inner(B::conv3x3_rows_weight_grad(
            Self::inner(x),
            Self::inner(grad),
            batch,
            height,
            width,
            stride,
        ))
    }
}

#[cfg(test)]
mod tests;
