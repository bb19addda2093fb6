//! 3x3 convolutions (padding 1) over the whole batch for burn's flex CPU backend, with the
//! activations channels-last between blocks: for `f32`, [`super::conv3x3`]'s tiled operation;
//! for other types, one gather and one matrix product (below).
//!
//! flex's `conv2d` works image by image: per image and per tile of at most 512 output pixels
//! an im2col buffer and a small GEMM (64 x 288 x 64 for the small CNN's second block), after a
//! single-threaded NHWC copy of the input. Its backward pass is a transposed convolution for
//! the input and, for the weights, a convolution over the batch-swapped input with the
//! gradient as kernel. That suits a few large images; the small CNN trains on 512 images of
//! 32 x 32 or less, where those per-image GEMMs are tiny. Written as `select` (gather rows of
//! the input) and `matmul`, the forward pass is one GEMM with N * H_out * W_out rows, and
//! autodiff makes the backward pass two GEMMs over the batch and one scatter-add of rows.
//!
//! Layout: a block's output is `[N * H * W, C]` (row `(n, h, w)`), which is what the matrix
//! product gives. Batch norm over the rows of that matrix computes the per-channel statistics
//! of `[N, C, H, W]`, so the network computes the same function as with `conv2d` (the sums run
//! in another order: values agree to float rounding, see the tests).

use burn::module::RunningState;
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, PaddingConfig2d};
use burn::tensor::{Device, Int, Tensor, TensorData};

/// Whether `conv` is one this module computes: 3x3, padding 1, one group, no dilation, the same
/// stride along both axes.
pub fn supported(conv: &Conv2d) -> bool {
    conv.kernel_size == [3, 3]
        && conv.dilation == [1, 1]
        && conv.groups == 1
        && conv.stride[0] == conv.stride[1]
        && conv.padding == PaddingConfig2d::Explicit(1, 1, 1, 1)
}

/// Whether `device` is flex's, where [`conv3x3_rows`] beats `conv2d`.
pub fn prefers_im2col(device: &Device) -> bool {
    device.clone().without_autodiff() == Device::flex()
}

/// Channels-last activations: row `(n, h, w)` of `rows` holds the channels of pixel (h, w) of
/// image n.
///
/// # Shapes
/// - `rows`: `[batch * height * width, channels]`
#[derive(Clone, Debug)]
pub struct Rows {
    pub rows: Tensor<2>,
    pub batch: usize,
    pub height: usize,
    pub width: usize,
}

/// The output side of a 3x3 convolution with padding 1 (also [`super::conv3x3`]'s).
pub(super) fn out_side(side: usize, stride: usize) -> usize {
    side.saturating_sub(1) / stride + 1
}

/// The input coordinate that tap `k` (0..3) of output `o` reads, `None` in the padding (also
/// [`super::conv3x3`]'s).
pub(super) fn tap(o: usize, k: usize, stride: usize, side: usize) -> Option<usize> {
    (o * stride + k).checked_sub(1).filter(|&i| i < side)
}

fn index_tensor(index: &[usize], device: &Device) -> Tensor<1, Int> {
    // No tensor has i64::MAX elements: the fallback is never taken.
    let index: Vec<i64> = index
        .iter()
        .map(|&i| i64::try_from(i).unwrap_or(i64::MAX))
        .collect();
    let len = index.len();
    Tensor::from_data(TensorData::new(index, [len]), device)
}

/// `conv` (see [`supported`]) on an NCHW batch, the first block's input: the images made
/// channels-last (one copy), then [`conv3x3_rows`].
///
/// # Shapes
/// - `x`: `[N, C, H, W]`
/// - output rows: `[N * H_out * W_out, out]`
pub fn conv3x3_image(conv: &Conv2d, x: Tensor<4>) -> Rows {
    conv3x3_rows(conv, channels_last(x))
}

/// `[N, C, H, W]` as channels-last rows.
fn channels_last(x: Tensor<4>) -> Rows {
    let [batch, channels, height, width] = x.dims();
    Rows {
        rows: x
            .permute([0, 2, 3, 1])
            .reshape([batch * height * width, channels]),
        batch,
        height,
        width,
    }
}

/// `conv` (see [`supported`]) on channels-last rows.
///
/// For `f32` on flex, the tiled operation of [`super::conv3x3`]. Otherwise the columns are
/// gathered as whole rows, column `(kh, kw, c)`, and multiplied in one product.
///
/// # Shapes
/// - `x.rows`: `[N * H * W, C]`
/// - output rows: `[N * H_out * W_out, out]`
pub fn conv3x3_rows(conv: &Conv2d, x: Rows) -> Rows {
    if !super::conv3x3::supported(&x.rows) {
        return conv3x3_rows_gathered(conv, x);
    }
    let Rows {
        rows,
        batch,
        height,
        width,
    } = x;
    let stride = conv.stride[0];
    let rows = super::conv3x3::conv3x3_rows(rows, conv.weight.val(), batch, height, width, stride);
    Rows {
        rows: with_bias(conv, rows),
        batch,
        height: out_side(height, stride),
        width: out_side(width, stride),
    }
}

/// [`conv3x3_rows`] as one gather and one matrix product (types other than `f32`).
fn conv3x3_rows_gathered(conv: &Conv2d, x: Rows) -> Rows {
    let Rows {
        rows,
        batch,
        height,
        width,
    } = x;
    let [pixels, channels] = rows.dims();
    let stride = conv.stride[0];
    let (out_h, out_w) = (out_side(height, stride), out_side(width, stride));
    let device = rows.device();
    // One zero row past the batch stands for every padding position.
    let padded = Tensor::cat(vec![rows, Tensor::zeros([1, channels], &device)], 0);
    let mut index = Vec::with_capacity(batch * out_h * out_w * 9);
    for n in 0..batch {
        let image = n * height * width;
        for oh in 0..out_h {
            for ow in 0..out_w {
                for kh in 0..3 {
                    for kw in 0..3 {
                        let at = match (tap(oh, kh, stride, height), tap(ow, kw, stride, width)) {
                            (Some(ih), Some(iw)) => image + ih * width + iw,
                            _ => pixels,
                        };
                        index.push(at);
                    }
                }
            }
        }
    }
    let columns = padded
        .select(0, index_tensor(&index, &device))
        .reshape([batch * out_h * out_w, 9 * channels]);
    let weight = conv.weight.val();
    let [out, input, _, _] = weight.dims();
    let weight = weight
        .permute([0, 2, 3, 1])
        .reshape([out, 9 * input])
        .transpose();
    Rows {
        rows: with_bias(conv, columns.matmul(weight)),
        batch,
        height: out_h,
        width: out_w,
    }
}

fn with_bias(conv: &Conv2d, rows: Tensor<2>) -> Tensor<2> {
    match &conv.bias {
        Some(bias) => rows + bias.val().unsqueeze::<2>(),
        None => rows,
    }
}

/// `norm` over the rows of `x`: each channel normalised over all rows, as [`BatchNorm::forward`]
/// does, with the same running statistics update, but with the statistics taken by column means
/// (`mean_dim(0)`) rather than through burn's `batch_norm_train`, whose generic form transposes
/// `[rows, C]` to `[C, rows]` twice forward and twice backward (on flex a strided copy of the
/// whole activation each time).
///
/// Training mode (batch statistics, running statistics updated) on an autodiff device with the
/// layer's training flag on, as in burn; otherwise burn's own inference path.
///
/// # Shapes
/// - `x`: `[rows, C]`
/// - output: `[rows, C]`
pub fn batch_norm_rows(norm: &BatchNorm, x: Tensor<2>) -> Tensor<2> {
    if !(x.device().is_autodiff() && norm.training.is_enabled()) {
        return norm.forward(x);
    }
    let mean = x.clone().mean_dim(0);
    let centred = x - mean.clone();
    // The biased variance, as burn's `batch_norm_train` takes it.
    let variance = centred.clone().square().mean_dim(0);
    let scale =
        norm.gamma.val().unsqueeze::<2>() / variance.clone().add_scalar(norm.epsilon).sqrt();
    let output = centred * scale + norm.beta.val().unsqueeze::<2>();

    let [channels] = norm.gamma.dims();
    update_running(norm, mean.reshape([channels]), variance.reshape([channels]));
    output
}

/// `norm`'s running statistics moved towards a batch's, as burn's [`BatchNorm`] does.
fn update_running(norm: &BatchNorm, mean: Tensor<1>, variance: Tensor<1>) {
    let device = mean.device();
    let momentum = norm.momentum;
    let update = |running: &RunningState<Tensor<1>>, batch: Tensor<1>| {
        let value = running
            .value_sync()
            .to_device(&device)
            .mul_scalar(1.0 - momentum)
            .add(batch.detach().mul_scalar(momentum));
        running.update(value.detach());
    };
    update(&norm.running_mean, mean);
    update(&norm.running_var, variance);
}

/// [`batch_norm_rows`] then ReLU. On flex (`f32`), one fused operation: in training with its
/// own backward pass (also the EMA target's forward: an untracked copy of the online network,
/// batch statistics), in inference (running statistics) on the plain device (evaluation); see
/// [`super::batch_norm_relu`]. Elsewhere the two, composed.
///
/// # Shapes
/// - `x`: `[rows, C]`
/// - output: `[rows, C]`
pub fn batch_norm_relu_rows(norm: &BatchNorm, x: Tensor<2>) -> Tensor<2> {
    let autodiff = x.device().is_autodiff();
    let training = autodiff && norm.training.is_enabled();
    if !super::batch_norm_relu::supported(&x) || (autodiff && !training) {
        return burn::tensor::activation::relu(batch_norm_rows(norm, x));
    }
    if !training {
        let device = x.device();
        return super::batch_norm_relu::batch_norm_relu_inference(
            x,
            norm.gamma.val(),
            norm.beta.val(),
            norm.running_mean.value().to_device(&device),
            norm.running_var.value().to_device(&device),
            norm.epsilon,
        );
    }
    let (output, mean, variance) =
        super::batch_norm_relu::batch_norm_relu(x, norm.gamma.val(), norm.beta.val(), norm.epsilon);
    update_running(norm, mean, variance);
    output
}

/// `[N * H * W, C]` -> `[N, C]` by averaging over space.
pub fn global_average(x: Rows) -> Tensor<2> {
    let [_, channels] = x.rows.dims();
    x.rows
        .reshape([x.batch, x.height * x.width, channels])
        .mean_dim(1)
        .reshape([x.batch, channels])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::Distribution;

    fn conv(input: usize, output: usize, stride: usize, bias: bool) -> Conv2d {
        Conv2dConfig::new([input, output], [3, 3])
            .with_stride([stride, stride])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .with_bias(bias)
            .init(&Device::flex())
    }

    /// `[N * H * W, C]` rows back to `[N, C, H, W]`.
    fn to_nchw(x: Rows) -> Tensor<4> {
        let [_, channels] = x.rows.dims();
        x.rows
            .reshape([x.batch, x.height, x.width, channels])
            .permute([0, 3, 1, 2])
    }

    fn max_abs_diff(a: Tensor<4>, b: Tensor<4>) -> f32 {
        (a - b).abs().max().into_scalar::<f32>()
    }

    type RowsFn = fn(&Conv2d, Rows) -> Rows;

    #[test]
    fn matches_conv2d_on_images_and_rows() {
        let device = Device::flex();
        // Odd sides check the padding and the output size at both strides.
        for (stride, side) in [(2, 8), (2, 7), (1, 5)] {
            let first = conv(3, 4, stride, true);
            let second = conv(4, 5, stride, false);
            assert!(supported(&first) && supported(&second));
            let x = Tensor::<4>::random([2, 3, side, side], Distribution::Default, &device);
            let reference = first.forward(x.clone());
            let reference_second = second.forward(reference.clone());
            // The tiled operation (f32 on flex) and the gathered product.
            let paths: [RowsFn; 2] = [conv3x3_rows, conv3x3_rows_gathered];
            for rows_fn in paths {
                let rows = rows_fn(&first, channels_last(x.clone()));
                assert!(max_abs_diff(to_nchw(rows.clone()), reference.clone()) < 1e-5);
                let rows = rows_fn(&second, rows);
                assert_eq!(rows.rows.dims()[0], 2 * rows.height * rows.width);
                assert!(max_abs_diff(to_nchw(rows), reference_second.clone()) < 1e-5);
            }
        }
    }

    #[test]
    fn gradients_match_conv2d() {
        let device = Device::flex().autodiff();
        let first = Conv2dConfig::new([2, 3], [3, 3])
            .with_stride([2, 2])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .with_bias(false)
            .init(&device);
        let second = Conv2dConfig::new([3, 4], [3, 3])
            .with_stride([2, 2])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .with_bias(false)
            .init(&device);
        let x = Tensor::<4>::random([3, 2, 6, 6], Distribution::Default, &device);
        // A loss that weighs every output differently.
        let weights = Tensor::<4>::random([3, 4, 2, 2], Distribution::Default, &device);
        let reference = (second.forward(first.forward(x.clone())) * weights.clone()).sum();
        let g_ref = reference.backward();
        let tiled = to_nchw(conv3x3_rows(&second, conv3x3_image(&first, x.clone())));
        let gathered = to_nchw(conv3x3_rows_gathered(
            &second,
            conv3x3_rows_gathered(&first, channels_last(x)),
        ));
        for (ours, path) in [(tiled, "tiled"), (gathered, "gathered")] {
            let g_ours = (ours * weights.clone()).sum().backward();
            for (conv, name) in [(&first, "first"), (&second, "second")] {
                let (Some(a), Some(b)) = (conv.weight.grad(&g_ref), conv.weight.grad(&g_ours))
                else {
                    panic!("{path} {name}: no gradient");
                };
                let diff = (a - b).abs().max().into_scalar::<f32>();
                assert!(diff < 1e-4, "{path} {name}: {diff}");
            }
        }
    }

    #[test]
    fn global_average_of_rows() {
        let device = Device::flex();
        // Two images of 1 x 2 pixels, two channels.
        let rows = Tensor::<2>::from_data(
            TensorData::new(vec![1.0f32, 10.0, 3.0, 30.0, 5.0, 50.0, 7.0, 70.0], [4, 2]),
            &device,
        );
        let mean = global_average(Rows {
            rows,
            batch: 2,
            height: 1,
            width: 2,
        });
        let values = mean.into_data().try_to_vec::<f32>().unwrap_or_default();
        assert_eq!(values, vec![2.0, 20.0, 6.0, 60.0]);
    }
}
