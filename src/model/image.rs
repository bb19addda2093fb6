//! Image encoders and the image network: an encoder `f` (MLP over flattened pixels, a small
//! CNN, or ResNet-18 with the CIFAR stem) and a projector `g`, together an [`Embedder`] over
//! `[B, C, H, W]` batches.
//!
//! - `mlp`: flatten, 512, 512, 256 (ReLU, batch norm on hidden layers).
//! - `cnn`: three 3x3 stride-2 conv blocks (32, 64, 128 channels, batch norm, ReLU), global
//!   average pooling: 128 features. The interactive default on the CPU, and the workload of
//!   `../shared/bench/torch_step.py --model tiny`.
//! - `resnet18`: ResNet-18 with a 3x3 stride-1 first convolution and no max-pool (the CIFAR
//!   stem), basic blocks [2, 2, 2, 2] of 64..512 channels: 512 features. For GPU runs.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d, Relu};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::im2col::{self, Rows};
use super::mlp::{Mlp, MlpConfig};
use super::online::{Embedder, Online};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum EncoderKind {
    Mlp,
    #[default]
    Cnn,
    Resnet18,
}

impl EncoderKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Mlp => "mlp",
            Self::Cnn => "cnn",
            Self::Resnet18 => "resnet18",
        }
    }
}

/// A 3x3 convolution without bias (batch norm follows), `stride`, padding 1.
fn conv3x3(input: usize, output: usize, stride: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([input, output], [3, 3])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_bias(false)
        .init(device)
}

/// `[B, C, H, W]` -> `[B, C]` by averaging over space.
fn global_average(x: Tensor<4>) -> Tensor<2> {
    let [batch, channels, _, _] = x.dims();
    x.mean_dim(3).mean_dim(2).reshape([batch, channels])
}

/// conv 3x3 -> batch norm -> ReLU.
#[derive(Module, Debug)]
pub struct ConvBlock {
    conv: Conv2d,
    norm: BatchNorm,
    activation: Relu,
}

impl ConvBlock {
    fn new(input: usize, output: usize, stride: usize, device: &Device) -> Self {
        Self {
            conv: conv3x3(input, output, stride, device),
            norm: BatchNormConfig::new(output).init(device),
            activation: Relu::new(),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.activation
            .forward(self.norm.forward(self.conv.forward(x)))
    }

    /// The block through [`im2col`], from an NCHW batch to channels-last rows.
    fn forward_image_to_rows(&self, x: Tensor<4>) -> Rows {
        self.norm_relu_rows(im2col::conv3x3_image(&self.conv, x))
    }

    /// The block through [`im2col`], on channels-last rows.
    fn forward_rows(&self, x: Rows) -> Rows {
        self.norm_relu_rows(im2col::conv3x3_rows(&self.conv, x))
    }

    /// Batch norm over the rows of `[N * H * W, C]` normalises each channel over N, H and W, as
    /// on `[N, C, H, W]`.
    fn norm_relu_rows(&self, x: Rows) -> Rows {
        let rows = im2col::batch_norm_relu_rows(&self.norm, x.rows);
        Rows { rows, ..x }
    }
}

/// The small CNN: three stride-2 blocks and global average pooling.
#[derive(Module, Debug)]
pub struct SmallCnn {
    blocks: Vec<ConvBlock>,
}

impl SmallCnn {
    /// # Shapes
    /// - `x`: `[B, C, H, W]`
    /// - output: `[B, 128]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let im2col = im2col::prefers_im2col(&x.device())
            && self
                .blocks
                .iter()
                .all(|block| im2col::supported(&block.conv));
        if im2col {
            self.forward_im2col(x)
        } else {
            self.forward_conv2d(x)
        }
    }

    /// Through burn's `conv2d`, NCHW throughout: the path on wgpu.
    pub fn forward_conv2d(&self, x: Tensor<4>) -> Tensor<2> {
        let mut x = x;
        for block in &self.blocks {
            x = block.forward(x);
        }
        global_average(x)
    }

    /// Through [`im2col`] (for `f32`, the tiled convolution of `model::conv3x3`), channels-last
    /// between blocks: the path on flex. Even as a plain gather and matrix product the whole
    /// `bench train` step took 98 ms this way against 234 ms through `conv2d` (2 cores);
    /// BENCHMARKS.md has the figures since.
    pub fn forward_im2col(&self, x: Tensor<4>) -> Tensor<2> {
        let Some((first, rest)) = self.blocks.split_first() else {
            return global_average(x);
        };
        let mut x = first.forward_image_to_rows(x);
        for block in rest {
            x = block.forward_rows(x);
        }
        im2col::global_average(x)
    }
}

/// ResNet's basic block: two 3x3 convolutions with a shortcut (1x1 conv when the shape changes).
#[derive(Module, Debug)]
pub struct BasicBlock {
    conv1: Conv2d,
    norm1: BatchNorm,
    conv2: Conv2d,
    norm2: BatchNorm,
    shortcut: Option<(Conv2d, BatchNorm)>,
    activation: Relu,
}

impl BasicBlock {
    fn new(input: usize, output: usize, stride: usize, device: &Device) -> Self {
        let shortcut = (stride != 1 || input != output).then(|| {
            (
                Conv2dConfig::new([input, output], [1, 1])
                    .with_stride([stride, stride])
                    .with_bias(false)
                    .init(device),
                BatchNormConfig::new(output).init(device),
            )
        });
        Self {
            conv1: conv3x3(input, output, stride, device),
            norm1: BatchNormConfig::new(output).init(device),
            conv2: conv3x3(output, output, 1, device),
            norm2: BatchNormConfig::new(output).init(device),
            shortcut,
            activation: Relu::new(),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = match &self.shortcut {
            Some((conv, norm)) => norm.forward(conv.forward(x.clone())),
            None => x.clone(),
        };
        let out = self
            .activation
            .forward(self.norm1.forward(self.conv1.forward(x)));
        let out = self.norm2.forward(self.conv2.forward(out));
        self.activation.forward(out + identity)
    }
}

/// ResNet-18 with the CIFAR stem.
#[derive(Module, Debug)]
pub struct ResNet18 {
    stem: ConvBlock,
    blocks: Vec<BasicBlock>,
}

/// The encoder f. (One per network, never in a collection: the variants' sizes do not matter.)
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Encoder {
    Mlp(Mlp),
    Cnn(SmallCnn),
    Resnet18(ResNet18),
}

impl Encoder {
    /// An encoder for images of `channels x side x side`; also returns its feature width.
    pub fn new(kind: EncoderKind, channels: usize, side: usize, device: &Device) -> (Self, usize) {
        match kind {
            EncoderKind::Mlp => {
                let mlp = MlpConfig {
                    input: channels * side * side,
                    hidden: vec![512, 512],
                    output: 256,
                    batch_norm: true,
                }
                .init(device);
                (Self::Mlp(mlp), 256)
            }
            EncoderKind::Cnn => {
                let widths = [channels, 32, 64, 128];
                let blocks = widths
                    .windows(2)
                    .map(|w| ConvBlock::new(w[0], w[1], 2, device))
                    .collect();
                (Self::Cnn(SmallCnn { blocks }), 128)
            }
            EncoderKind::Resnet18 => {
                let mut blocks = Vec::new();
                let mut input = 64;
                for (stage, output) in [64, 128, 256, 512].into_iter().enumerate() {
                    for index in 0..2 {
                        let stride = if stage > 0 && index == 0 { 2 } else { 1 };
                        blocks.push(BasicBlock::new(input, output, stride, device));
                        input = output;
                    }
                }
                let stem = ConvBlock::new(channels, 64, 1, device);
                (Self::Resnet18(ResNet18 { stem, blocks }), 512)
            }
        }
    }

    /// # Shapes
    /// - `x`: `[B, C, H, W]`
    /// - output: `[B, features]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        match self {
            Self::Mlp(mlp) => {
                let [batch, c, h, w] = x.dims();
                mlp.forward(x.reshape([batch, c * h * w]))
            }
            Self::Cnn(cnn) => cnn.forward(x),
            Self::Resnet18(net) => {
                let mut x = net.stem.forward(x);
                for block in &net.blocks {
                    x = block.forward(x);
                }
                global_average(x)
            }
        }
    }
}

/// Widths of the image network's heads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImageNetConfig {
    pub encoder: EncoderKind,
    /// Hidden width of the projector and predictor.
    pub head_hidden: usize,
    /// D, the embedding width.
    pub embed_dim: usize,
}

impl Default for ImageNetConfig {
    /// The `torch_step.py --model tiny` workload: CNN, heads 128-512-128.
    fn default() -> Self {
        Self {
            encoder: EncoderKind::Cnn,
            head_hidden: 512,
            embed_dim: 128,
        }
    }
}

#[derive(Module, Debug)]
pub struct ImageNet {
    pub encoder: Encoder,
    pub projector: Mlp,
}

impl ImageNetConfig {
    /// The online network (encoder, projector, predictor) for `channels x side x side` images.
    pub fn init(&self, channels: usize, side: usize, device: &Device) -> Online<ImageNet> {
        let (encoder, features) = Encoder::new(self.encoder, channels, side, device);
        let head = |input| MlpConfig {
            input,
            hidden: vec![self.head_hidden],
            output: self.embed_dim,
            batch_norm: true,
        };
        Online {
            embedder: ImageNet {
                encoder,
                projector: head(features).init(device),
            },
            predictor: head(self.embed_dim).init(device),
        }
    }
}

impl ImageNet {
    /// The representation f(x), what kNN and the linear probe read.
    ///
    /// # Shapes
    /// - `x`: `[B, C, H, W]`
    /// - output: `[B, features]`
    pub fn features(&self, x: Tensor<4>) -> Tensor<2> {
        self.encoder.forward(x)
    }
}

impl Embedder for ImageNet {
    type Input = Tensor<4>;

    fn project(&self, input: Tensor<4>) -> Tensor<2> {
        self.projector.forward(self.encoder.forward(input))
    }
}
