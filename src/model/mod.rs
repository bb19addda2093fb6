//! The networks that produce embeddings: the [`Online`] network (an [`Embedder`] and the
//! predictor head) every run trains, an [`Mlp`] building block (projector and predictor
//! heads are MLPs), the sandbox's [`SandboxNet`], the image encoders and [`ImageNet`], and a
//! seeded initialiser so that the same seed gives the same weights on every backend.

pub mod batch_norm_relu;
pub mod conv3x3;
mod flex_slices;
pub mod im2col;
pub mod image;
pub mod init;
pub mod mlp;
pub mod online;
pub mod sandbox;

pub use image::{EncoderKind, ImageNet, ImageNetConfig};
pub use init::seeded_init;
pub use mlp::{Mlp, MlpConfig};
pub use online::{Embedder, NORM_FLOOR, Online, normalize};
pub use sandbox::{SandboxNet, SandboxNetConfig};
