//! The convolutions against burn's `conv2d` and composed operations.

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

/// Channels-last rows `[N * H * W, C]` -> `[N, C, H, W]`.
fn to_nchw(x: Tensor<2>, [n, h, w]: [usize; 3]) -> Tensor<4> {
    let [_, c] = x.dims();
    x.reshape([n, h, w, c]).permute([0, 3, 1, 2])
}

/// Column mean and biased variance of `x`, with autodiff's operations.
fn statistics(x: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
    let mean = x.clone().mean_dim(0);
    let var = (x - mean.clone()).square().mean_dim(0);
    (mean, var)
}

#[test]
fn statistics_of_the_output_are_its_column_moments() {
    let device = Device::flex();
    let layer = conv(5, 7, 2, &device);
    // 9 images of 9 x 9: several tiles of uneven size, blocks of rows cut at tile ends.
    let x = Tensor::<2>::random([9 * 81, 5], Distribution::Normal(1.0, 3.0), &device);
    let (out, mean, var) = conv3x3_rows_statistics(x, layer.weight.val(), [9, 9, 9, 2]);
    let (mean_ref, var_ref) = statistics(out);
    assert!(max_abs_diff(mean, mean_ref.reshape([7])) < 1e-5);
    let largest = var_ref.clone().abs().max().into_scalar::<f32>();
    assert!(max_abs_diff(var, var_ref.reshape([7])) < 1e-5 * largest.max(1.0));
}

/// The batch norm (batch statistics) + ReLU of the input then the convolution, as one
/// operation, against the same composed of autodiff's operations and burn's `conv2d`: the
/// output, its statistics, and the gradients of the input (through the batch statistics),
/// gamma, beta and the weight.
#[test]
fn norm_relu_conv_matches_the_composed_operations() {
    let device = Device::flex().autodiff();
    let epsilon = 1e-5;
    for (stride, side, batch, c_in, c_out) in [(2, 7, 7, 40, 6), (1, 5, 3, 3, 4), (2, 8, 20, 2, 3)]
    {
        let layer = conv(c_in, c_out, stride, &device);
        let rows = batch * side * side;
        let x = Tensor::<2>::random([rows, c_in], Distribution::Normal(1.5, 2.0), &device);
        let gamma = Tensor::<1>::random([c_in], Distribution::Uniform(0.5, 1.5), &device);
        // Some channels mostly cut by the ReLU.
        let beta = Tensor::<1>::random([c_in], Distribution::Uniform(-1.0, 0.5), &device);
        let out_side = (side - 1) / stride + 1;
        let weights = Tensor::<2>::random(
            [batch * out_side * out_side, c_out],
            Distribution::Default,
            &device,
        );
        let leaves = || {
            (
                Tensor::<2>::from_data(x.to_data(), &device).require_grad(),
                Tensor::<1>::from_data(gamma.to_data(), &device).require_grad(),
                Tensor::<1>::from_data(beta.to_data(), &device).require_grad(),
            )
        };

        let (x_ref, gamma_ref, beta_ref) = leaves();
        let (mean, var) = statistics(x_ref.clone());
        let scale = gamma_ref.clone().unsqueeze::<2>() / var.add_scalar(epsilon).sqrt();
        let normalised = burn::tensor::activation::relu(
            (x_ref.clone() - mean) * scale + beta_ref.clone().unsqueeze::<2>(),
        );
        let reference = to_rows(layer.forward(to_nchw(normalised, [batch, side, side])));

        let (x_ours, gamma_ours, beta_ours) = leaves();
        let (mean, var) = statistics(x_ours.clone().detach());
        let norm = InputNorm {
            mean: mean.reshape([c_in]),
            var: var.reshape([c_in]),
            gamma: gamma_ours.clone(),
            beta: beta_ours.clone(),
            epsilon,
        };
        let (ours, out_mean, out_var) = norm_relu_conv3x3_rows(
            x_ours.clone(),
            norm,
            layer.weight.val(),
            [batch, side, side, stride],
        );
        let what = format!("stride {stride}, {batch} images of {side}");
        assert!(
            max_abs_diff(ours.clone(), reference.clone()) < 1e-4,
            "{what}: output"
        );
        let (mean_ref, var_ref) = statistics(reference.clone().detach());
        assert!(
            max_abs_diff(out_mean, mean_ref.reshape([c_out])) < 1e-4,
            "{what}: mean"
        );
        assert!(
            max_abs_diff(out_var, var_ref.reshape([c_out])) < 1e-3,
            "{what}: variance"
        );

        let g_ref = (reference * weights.clone()).sum().backward();
        let g_ours = (ours * weights).sum().backward();
        let relative = |a: Tensor<2>, b: Tensor<2>| {
            let largest = a.clone().abs().max().into_scalar::<f32>().max(1.0);
            max_abs_diff(a, b) / largest
        };
        let dx = relative(
            x_ref.grad(&g_ref).expect("x"),
            x_ours.grad(&g_ours).expect("x"),
        );
        assert!(dx < 1e-4, "{what}: x off by {dx}");
        for (name, a, b) in [
            ("gamma", &gamma_ref, &gamma_ours),
            ("beta", &beta_ref, &beta_ours),
        ] {
            let diff = relative(
                a.grad(&g_ref).expect(name).unsqueeze(),
                b.grad(&g_ours).expect(name).unsqueeze(),
            );
            assert!(diff < 1e-4, "{what}: {name} off by {diff}");
        }
        let dw = relative(
            layer
                .weight
                .grad(&g_ref)
                .expect("weight")
                .reshape([c_out, c_in * 9]),
            layer
                .weight
                .grad(&g_ours)
                .expect("weight")
                .reshape([c_out, c_in * 9]),
        );
        assert!(dw < 1e-4, "{what}: weight off by {dw}");
    }
}

#[test]
fn norm_relu_conv_same_bits_on_one_and_four_threads() {
    let device = Device::flex().autodiff();
    let layer = conv(16, 8, 2, &device);
    let weight: Param<Tensor<4>> = layer.weight.clone();
    let x =
        Tensor::<2>::random([37 * 81, 16], Distribution::Normal(0.5, 1.0), &device).require_grad();
    let gamma = Tensor::<1>::random([16], Distribution::Uniform(0.5, 1.5), &device).require_grad();
    let beta = Tensor::<1>::random([16], Distribution::Uniform(-1.0, 0.5), &device).require_grad();
    let run = |threads: usize| {
        crate::model::flex_slices::on_threads(threads, || {
            let (mean, var) = statistics(x.clone().detach());
            let norm = InputNorm {
                mean: mean.reshape([16]),
                var: var.reshape([16]),
                gamma: gamma.clone(),
                beta: beta.clone(),
                epsilon: 1e-5,
            };
            let (out, out_mean, out_var) =
                norm_relu_conv3x3_rows(x.clone(), norm, weight.val(), [37, 9, 9, 2]);
            let grads = (out.clone() * out.clone()).sum().backward();
            let bits = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap_or_default();
            [
                bits(out),
                bits(out_mean.unsqueeze()),
                bits(out_var.unsqueeze()),
                bits(x.grad(&grads).expect("x")),
                bits(gamma.grad(&grads).expect("gamma").unsqueeze()),
                bits(beta.grad(&grads).expect("beta").unsqueeze()),
                bits(weight.grad(&grads).expect("weight").reshape([8, 16 * 9])),
            ]
        })
    };
    assert_eq!(run(1), run(4));
}
