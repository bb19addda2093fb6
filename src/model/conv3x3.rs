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

use super::flex_slices::{f32_values, flex_tensor};

/// Chunks of images the weight's gradient is summed over: fixed, so that the sums do not
/// depend on how many threads there are.
pub const WEIGHT_CHUNKS: usize = 16;
/// The fewest output rows a chunk of the weight's gradient holds: on small batches fewer,
/// larger chunks (each chunk's partial sum is a whole weight-sized matrix to allocate and add).
pub const WEIGHT_CHUNK_MIN_ROWS: usize = 512;

/// A 3x3 convolution with padding 1 and no bias on channels-last rows, and its gradients.
#[backend_extension(Flex, Autodiff)]
pub trait Conv3x3Backend: Backend {
    /// The convolution of `x`, `batch` images of `height x width` pixels, channels-last, by
    /// `weight` at `stride` along both axes.
    ///
    /// # Shapes
    /// - `x`: `[batch * height * width, C]`; `weight`: `[out, C, 3, 3]`
    /// - output: `[batch * H_out * W_out, out]`, `H_out = (height - 1) / stride + 1`
    fn conv3x3_rows(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        batch: usize,
        height: usize,
        width: usize,
        stride: usize,
    ) -> FloatTensor<Self>;

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

/// [`Conv3x3Backend::conv3x3_rows`] on tensors. Only on flex (with or without autodiff) and
/// `f32`: [`supported`] says where.
pub fn conv3x3_rows(
    x: Tensor<2>,
    weight: Tensor<4>,
    batch: usize,
    height: usize,
    width: usize,
    stride: usize,
) -> Tensor<2> {
    Tensor::from_dispatch(Dispatch::conv3x3_rows(
        x.into_dispatch(),
        weight.into_dispatch(),
        batch,
        height,
        width,
        stride,
    ))
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
    ) -> FlexTensor {
        let _profile = crate::profile::fused(crate::profile::Fused::Conv3x3);
        let g = Geometry::new(&weight, batch, height, width, stride);
        g.check_input(&x);
        let out = kernels::forward(&f32_values(&x), &f32_values(&weight), &g);
        flex_tensor(out, vec![batch * g.out_height() * g.out_width(), g.out])
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
        let dx = kernels::input_grad(&f32_values(&grad), &f32_values(&weight), &g);
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
        let dw = kernels::weight_grad(&f32_values(&x), &f32_values(&grad), &g);
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

impl<B: Conv3x3Backend, C: CheckpointStrategy> Conv3x3Backend for Autodiff<B, C> {
    fn conv3x3_rows(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        batch: usize,
        height: usize,
        width: usize,
        stride: usize,
    ) -> FloatTensor<Self> {
        let (x, x_node) = x.into_parts();
        let (weight, weight_node) = weight.into_parts();
        let out = B::conv3x3_rows(x.clone(), weight.clone(), batch, height, width, stride);
        match Conv3x3Step
            .prepare::<C>([x_node, weight_node])
            // Its state is kept, not recomputed, under gradient checkpointing.
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((x, weight, (batch, height, width, stride)), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
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
mod tests {
    use super::*;
    use burn::module::Param;
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::{Conv2d, Conv2dConfig};
    use burn::tensor::{Device, Distribution};

    fn conv(input: usize, output: usize, stride: usize, device: &Device) -> Conv2d {
        Conv2dConfig::new([input, output], [3, 3])
            .with_stride([stride, stride])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .with_bias(false)
            .init(device)
    }

    /// `[N, C, H, W]` -> channels-last rows `[N * H * W, C]`.
    fn to_rows(x: Tensor<4>) -> Tensor<2> {
        let [n, c, h, w] = x.dims();
        x.permute([0, 2, 3, 1]).reshape([n * h * w, c])
    }

    fn max_abs_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        (a - b).abs().max().into_scalar::<f32>()
    }

    #[test]
    fn output_and_gradients_match_conv2d() {
        let device = Device::flex().autodiff();
        // Odd sides check the padding and the output size at both strides; 7 images of 7 x 7
        // with 40 channels make several tiles and weight chunks of uneven size. Strides 3 and 4
        // leave input pixels that one tap reads, or none.
        for (stride, side, batch, c_in, c_out) in [
            (2, 7, 7, 40, 6),
            (1, 5, 3, 3, 4),
            (2, 8, 20, 2, 3),
            (3, 8, 3, 2, 3),
            (4, 9, 2, 2, 2),
        ] {
            let layer = conv(c_in, c_out, stride, &device);
            let x = Tensor::<4>::random([batch, c_in, side, side], Distribution::Default, &device)
                .require_grad();
            let reference = layer.forward(x.clone());
            let [_, _, out_h, out_w] = reference.dims();
            // A loss that weighs every output differently.
            let weights =
                Tensor::<4>::random([batch, c_out, out_h, out_w], Distribution::Default, &device);
            let ours = conv3x3_rows(
                to_rows(x.clone()),
                layer.weight.val(),
                batch,
                side,
                side,
                stride,
            );
            assert!(max_abs_diff(ours.clone(), to_rows(reference.clone())) < 1e-5);
            let g_ref = (reference * weights.clone()).sum().backward();
            let g_ours = (ours * to_rows(weights)).sum().backward();
            let grad = |g: &burn::tensor::Gradients| {
                (
                    x.grad(g).expect("input gradient"),
                    layer.weight.grad(g).expect("weight gradient"),
                )
            };
            let (dx_ref, dw_ref) = grad(&g_ref);
            let (dx, dw) = grad(&g_ours);
            let dx_diff = max_abs_diff(dx, dx_ref);
            let dw_diff = max_abs_diff(dw, dw_ref);
            assert!(
                dx_diff < 1e-4,
                "stride {stride}: input gradient off by {dx_diff}"
            );
            assert!(
                dw_diff < 1e-3,
                "stride {stride}: weight gradient off by {dw_diff}"
            );
        }
    }

    #[test]
    fn an_untracked_input_gets_no_gradient_and_the_weight_does() {
        let device = Device::flex().autodiff();
        let layer = conv(3, 4, 2, &device);
        let x = Tensor::<4>::random([2, 3, 6, 6], Distribution::Default, &device);
        let out = conv3x3_rows(to_rows(x.clone()), layer.weight.val(), 2, 6, 6, 2);
        let grads = out.sum().backward();
        assert!(x.grad(&grads).is_none());
        assert!(layer.weight.grad(&grads).is_some());
    }

    #[test]
    fn square_product_is_the_matrix_product() {
        let n = 5;
        let lhs: Vec<f32> = (0..n * n).map(|i| (i % 7) as f32 - 3.0).collect();
        let rhs: Vec<f32> = (0..n * n).map(|i| (i % 4) as f32 * 0.5).collect();
        let mut dst = vec![f32::NAN; n * n];
        square_product(n, &mut dst, &lhs, &rhs);
        for i in 0..n {
            for j in 0..n {
                let expected: f32 = (0..n).map(|k| lhs[i * n + k] * rhs[k * n + j]).sum();
                assert!((dst[i * n + j] - expected).abs() < 1e-5, "({i}, {j})");
            }
        }
    }

    #[test]
    fn same_bits_on_one_and_four_threads() {
        let device = Device::flex().autodiff();
        let layer = conv(16, 8, 2, &device);
        let weight: Param<Tensor<4>> = layer.weight.clone();
        let x = Tensor::<4>::random([37, 16, 9, 9], Distribution::Default, &device).require_grad();
        let run = |threads: usize| {
            crate::model::flex_slices::on_threads(threads, || {
                let out = conv3x3_rows(to_rows(x.clone()), weight.val(), 37, 9, 9, 2);
                let grads = (out.clone() * out.clone()).sum().backward();
                let bits = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap_or_default();
                (
                    bits(out),
                    bits(to_rows(x.grad(&grads).expect("input gradient"))),
                    weight
                        .grad(&grads)
                        .expect("weight gradient")
                        .into_data()
                        .try_to_vec::<f32>()
                        .unwrap_or_default(),
                )
            })
        };
        assert_eq!(run(1), run(4));
    }
}
