//! The sandbox network: an MLP encoder `f` over low-dimensional points and an MLP projector
//! `g`, together an [`Embedder`] for the MSBReg step.

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::mlp::{Mlp, MlpConfig};
use super::online::{Embedder, Online};

/// Widths of the sandbox network and its predictor head.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxNetConfig {
    /// Hidden width of the encoder f (two hidden layers).
    pub encoder_hidden: usize,
    /// Width of the representation f(x).
    pub feature_dim: usize,
    /// Hidden width of the projector g and the predictor q.
    pub head_hidden: usize,
    /// D, the embedding width: the particles live on the unit sphere in D dimensions.
    pub embed_dim: usize,
    /// Batch norm on the hidden layers of the projector and predictor (as BYOL).
    pub batch_norm: bool,
}

impl Default for SandboxNetConfig {
    fn default() -> Self {
        Self {
            encoder_hidden: 128,
            feature_dim: 64,
            head_hidden: 256,
            embed_dim: 32,
            batch_norm: true,
        }
    }
}

#[derive(Module, Debug)]
pub struct SandboxNet {
    pub encoder: Mlp,
    pub projector: Mlp,
}

impl SandboxNetConfig {
    /// The online network for inputs of `input_dim` coordinates.
    pub fn init(&self, input_dim: usize, device: &Device) -> Online<SandboxNet> {
        let encoder = MlpConfig {
            input: input_dim,
            hidden: vec![self.encoder_hidden, self.encoder_hidden],
            output: self.feature_dim,
            batch_norm: false,
        }
        .init(device);
        let projector = MlpConfig {
            input: self.feature_dim,
            hidden: vec![self.head_hidden],
            output: self.embed_dim,
            batch_norm: self.batch_norm,
        }
        .init(device);
        let predictor = MlpConfig {
            input: self.embed_dim,
            hidden: vec![self.head_hidden],
            output: self.embed_dim,
            batch_norm: self.batch_norm,
        }
        .init(device);
        Online {
            embedder: SandboxNet { encoder, projector },
            predictor,
        }
    }
}

impl SandboxNet {
    /// The representation f(x).
    ///
    /// # Shapes
    /// - `input`: `[B, input_dim]`
    /// - output: `[B, feature_dim]`
    pub fn features(&self, input: Tensor<2>) -> Tensor<2> {
        self.encoder.forward(input)
    }
}

impl Embedder for SandboxNet {
    type Input = Tensor<2>;

    fn project(&self, input: Tensor<2>) -> Tensor<2> {
        self.projector.forward(self.encoder.forward(input))
    }
}
