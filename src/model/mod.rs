//! The networks that produce embeddings: an [`Mlp`] building block (projector and predictor
//! heads are MLPs), the sandbox's [`SandboxNet`], the image encoders and [`ImageNet`], and a
//! seeded initialiser so that the same seed gives the same weights on every backend.

pub mod im2col;
pub mod image;
pub mod init;
pub mod mlp;
pub mod sandbox;

pub use image::{EncoderKind, ImageNet, ImageNetConfig};
pub use init::seeded_init;
pub use mlp::{Mlp, MlpConfig};
pub use sandbox::{SandboxNet, SandboxNetConfig};
