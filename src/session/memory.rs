//! A run's memory, estimated before anything is allocated, so that a setting that cannot fit
//! (`image_side = 100000`, `model.embed_dim = 100000000`) is refused with the key, the estimate
//! and the memory there is, instead of an allocation failure and a backtrace.
//!
//! The estimate is deliberately rough (within a small factor): parameters with their
//! gradients, two optimiser moments, the EMA target and the rollback copy; activations of
//! the online and target passes with their gradients. It only has to tell "fits" from "cannot
//! possibly fit".

use super::SessionError;
use crate::model::EncoderKind;

const F32: f64 = 4.0;
const GIB: f64 = (1u64 << 30) as f64;

/// What dominates a run's memory, as (config key, bytes).
#[derive(Clone, Debug, Default)]
pub struct Estimate {
    pub terms: Vec<(&'static str, f64)>,
}

impl Estimate {
    pub fn total_bytes(&self) -> f64 {
        self.terms.iter().map(|(_, bytes)| bytes).sum()
    }

    /// Refuses the run when it cannot fit in `available_bytes`, naming the largest term's key.
    pub fn check(&self, available_bytes: Option<f64>) -> Result<(), SessionError> {
        let Some(available) = available_bytes else {
            return Ok(());
        };
        let total = self.total_bytes();
        if total <= available {
            return Ok(());
        }
        let (key, _) = self
            .terms
            .iter()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .copied()
            .unwrap_or(("batch_size", 0.0));
        Err(SessionError::Setup {
            what: format!("the run's memory (mostly `{key}`)"),
            reason: format!(
                "it would need about {:.1} GiB, and {:.1} GiB are available; lower `{key}`",
                total / GIB,
                available / GIB
            ),
        })
    }
}

/// Parameters (with gradient, two moments, target and rollback copy: 6 copies) of an MLP
/// head `input -> hidden -> output`.
fn head_bytes(input: usize, hidden: usize, output: usize) -> f64 {
    6.0 * F32 * (input as f64 * hidden as f64 + hidden as f64 * output as f64)
}

/// An image run: `images` per step (views counted) of `channels x side x side`.
pub fn image_run(
    encoder: EncoderKind,
    channels: usize,
    side: usize,
    images: usize,
    head_hidden: usize,
    embed_dim: usize,
) -> Estimate {
    let pixels = side as f64 * side as f64;
    let batch = images as f64;
    // Floats per input pixel held for the backward pass, per image, measured from the layer
    // shapes: the CNN's first block (32 channels at half resolution) and its im2col columns;
    // ResNet-18's stem and first stage (64 channels at full resolution, several tensors).
    let (encoder_params, features, per_pixel) = match encoder {
        EncoderKind::Cnn => (1.0e5, 128, 8.0 + 9.0 * channels as f64 / 4.0),
        EncoderKind::Resnet18 => (1.1e7, 512, 64.0 * 12.0),
        EncoderKind::Mlp => (channels as f64 * pixels * 512.0 + 512.0 * 512.0, 512, 1.0),
    };
    // Online and target passes, activations and their gradients.
    // Plus the loader's queue of prepared batches (about 6 batches of input).
    let activations = 4.0 * F32 * batch * pixels * (channels as f64 + per_pixel)
        + 6.0 * F32 * batch * pixels * channels as f64;
    Estimate {
        terms: vec![
            ("image_side", activations + 6.0 * F32 * encoder_params),
            (
                "model.embed_dim",
                head_bytes(features, head_hidden, embed_dim)
                    + head_bytes(embed_dim, head_hidden, embed_dim),
            ),
        ],
    }
}

/// A sandbox run with inputs of `input_dim` coordinates.
pub fn sandbox_run(
    input_dim: usize,
    encoder_hidden: usize,
    feature_dim: usize,
    head_hidden: usize,
    embed_dim: usize,
    points: usize,
) -> Estimate {
    let encoder = head_bytes(input_dim, encoder_hidden, encoder_hidden)
        + head_bytes(encoder_hidden, feature_dim, 1);
    Estimate {
        terms: vec![
            ("model.encoder_hidden", encoder),
            (
                "model.embed_dim",
                head_bytes(feature_dim, head_hidden, embed_dim)
                    + head_bytes(embed_dim, head_hidden, embed_dim)
                    + 4.0 * F32 * points as f64 * embed_dim as f64,
            ),
        ],
    }
}

/// The memory the system says is available (`MemAvailable` in /proc/meminfo); `None` where
/// it cannot be read (the check is then skipped).
pub fn available_bytes() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_runs_fit_and_absurd_settings_name_their_key() {
        let small = image_run(EncoderKind::Cnn, 3, 32, 256 * 4, 512, 128);
        assert!(
            small.total_bytes() < 2.0 * GIB,
            "{}",
            small.total_bytes() / GIB
        );
        assert!(small.check(Some(4.0 * GIB)).is_ok());
        let huge_side = image_run(EncoderKind::Cnn, 3, 100_000, 256 * 4, 512, 128);
        let err = huge_side.check(Some(16.0 * GIB)).expect_err("cannot fit");
        assert!(err.to_string().contains("image_side"), "{err}");
        let huge_dim = image_run(EncoderKind::Cnn, 3, 32, 256 * 4, 512, 100_000_000);
        let err = huge_dim.check(Some(16.0 * GIB)).expect_err("cannot fit");
        assert!(err.to_string().contains("model.embed_dim"), "{err}");
        assert!(err.to_string().contains("GiB"), "{err}");
        let sandbox = sandbox_run(10, 256, 128, 256, 100_000_000, 256 * 4);
        assert!(sandbox.check(Some(16.0 * GIB)).is_err());
        assert!(
            sandbox_run(10, 256, 128, 256, 32, 1024)
                .check(Some(GIB))
                .is_ok()
        );
    }
}
