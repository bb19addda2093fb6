//! Data: the sandbox's synthetic labelled point sets and their views; image sets (built-in,
//! IDX, CIFAR, STL-10, image folders) behind the `Dataset` trait; multi-view augmentation and
//! the loader thread; and the seeded random streams every run draws from.

pub mod augment;
pub mod builtin;
pub mod cifar;
pub mod folder;
pub mod idx;
pub mod images;
pub mod loader;
pub mod sandbox;
pub mod source;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The independent random streams of a run. Each purpose has its own stream of the run's seed,
/// so that, say, changing how many views are drawn does not change the initial weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Dataset = 0,
    Weights = 1,
    Batches = 2,
    Brownian = 3,
    EvalViews = 4,
}

/// The generator of `stream` for a run seeded with `seed`.
pub fn rng(seed: u64, stream: Stream) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream as u64);
    rng
}
