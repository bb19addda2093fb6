//! A multi-layer perceptron: `Linear -> [BatchNorm] -> ReLU` for each hidden layer, then a
//! final `Linear`. BYOL-style projector and predictor heads use batch norm on hidden layers.

use burn::module::Module;
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, Relu};
use burn::tensor::{Device, Tensor};

/// Widths of an MLP: input, hidden layers, output.
#[derive(Clone, Debug, PartialEq)]
pub struct MlpConfig {
    pub input: usize,
    pub hidden: Vec<usize>,
    pub output: usize,
    pub batch_norm: bool,
}

#[derive(Module, Debug)]
pub struct Mlp {
    layers: Vec<Linear>,
    norms: Vec<BatchNorm>,
    activation: Relu,
}

impl MlpConfig {
    pub fn init(&self, device: &Device) -> Mlp {
        let widths: Vec<usize> = std::iter::once(self.input)
            .chain(self.hidden.iter().copied())
            .chain(std::iter::once(self.output))
            .collect();
        let layers = widths
            .windows(2)
            .map(|pair| LinearConfig::new(pair[0], pair[1]).init(device))
            .collect();
        let norms = if self.batch_norm {
            self.hidden
                .iter()
                .map(|&width| BatchNormConfig::new(width).init(device))
                .collect()
        } else {
            Vec::new()
        };
        Mlp {
            layers,
            norms,
            activation: Relu::new(),
        }
    }
}

impl Mlp {
    /// # Shapes
    /// - `input`: `[B, input]`
    /// - output: `[B, output]`
    pub fn forward(&self, input: Tensor<2>) -> Tensor<2> {
        let last = self.layers.len().saturating_sub(1);
        let mut x = input;
        for (index, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x);
            if index < last {
                match self.norms.get(index) {
                    // On flex, one fused operation (`batch_norm_relu`).
                    Some(norm) if super::batch_norm_relu::supported(&x) => {
                        x = super::im2col::batch_norm_relu_rows(norm, x);
                    }
                    Some(norm) => x = self.activation.forward(norm.forward(x)),
                    None => x = self.activation.forward(x),
                }
            }
        }
        x
    }
}
