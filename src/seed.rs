//! Every random stream of a run, derived from the run's one seed.
//!
//! A stream is a ChaCha8 generator seeded with the run's seed and set to a stream number of
//! its own, so that the draws of one purpose (the weights, the batches, the views of one image
//! at one step, ...) never shift when another purpose draws more or less. Nothing else in the
//! crate seeds a generator (`tests/seed.rs` checks the source for it).
//!
//! Two kinds of stream:
//! - [`rng`]: one sequential stream per purpose (stream number = the [`Stream`] value);
//! - [`indexed`]: a family of streams, one per index (an epoch, a step, an image), numbered
//!   `stream << 56 | index`, so that the draws for index i are a pure function of (seed, i):
//!   a loader thread can run ahead, and a resumed run draws what an uninterrupted one would.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The purposes a run draws random numbers for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// The sandbox's point sets.
    Dataset = 0,
    /// Initial weights (the networks, the linear probe).
    Weights = 1,
    /// The sandbox's batches and views; the linear probe's order.
    Batches = 2,
    /// Brownian kicks: sequential for the sandbox, indexed by step for image runs.
    Brownian = 3,
    /// Which held-out images evaluate a run; the sandbox's fixed evaluation views.
    EvalViews = 4,
    /// The permutation of the training images in each epoch (indexed by epoch).
    EpochOrder = 5,
    /// The augmentation of one view of one batch slot at one step (indexed).
    Views = 6,
    /// The procedural `shapes` images (indexed by image).
    Shapes = 7,
    /// The fixed augmented views of the displayed images (indexed by image and view).
    DisplayViews = 8,
    /// Which training images are held out as the test split when a data set has none.
    HoldOut = 9,
    /// The Brownian kicks the view's arrows show (indexed by step).
    DisplayKicks = 10,
}

/// The index bits of an indexed stream.
const INDEX_BITS: u32 = 56;
const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;

/// The sequential generator of `stream` for a run seeded with `seed`.
pub fn rng(seed: u64, stream: Stream) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream as u64);
    rng
}

/// The generator for item `index` of `stream` (only the low 56 bits of `index` count).
pub fn indexed(seed: u64, stream: Stream, index: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(((stream as u64) << INDEX_BITS) | (index & INDEX_MASK));
    rng
}

/// The order of the training images in epoch `epoch`.
pub fn epoch_rng(seed: u64, epoch: u64) -> ChaCha8Rng {
    indexed(seed, Stream::EpochOrder, epoch)
}

/// The stream of view `view` (< 16) of batch slot `slot` (< 2^20) at step `step` (< 2^32).
pub fn view_rng(seed: u64, step: u64, slot: usize, view: usize) -> ChaCha8Rng {
    indexed(
        seed,
        Stream::Views,
        (step << 24) | ((slot as u64 & 0xf_ffff) << 4) | (view as u64 & 0xf),
    )
}

/// The stream of the fixed augmented view `view` (< 16) of displayed image `index`.
pub fn display_view_rng(seed: u64, index: usize, view: usize) -> ChaCha8Rng {
    indexed(
        seed,
        Stream::DisplayViews,
        ((index as u64) << 4) | (view as u64 & 0xf),
    )
}

/// The Brownian kicks of step `step` of an image run.
pub fn brownian_rng(seed: u64, step: u64) -> ChaCha8Rng {
    indexed(seed, Stream::Brownian, step)
}

/// The stream of procedural image `index`.
pub fn shape_rng(seed: u64, index: u64) -> ChaCha8Rng {
    indexed(seed, Stream::Shapes, index)
}

#[cfg(test)]
mod tests {
    use rand::RngExt as _;

    use super::*;

    fn first(mut rng: ChaCha8Rng) -> u64 {
        rng.random()
    }

    #[test]
    fn streams_are_distinct_and_reproducible() {
        let seed = 7;
        let draws = [
            first(rng(seed, Stream::Weights)),
            first(rng(seed, Stream::Batches)),
            first(indexed(seed, Stream::Shapes, 1)),
            first(indexed(seed, Stream::Brownian, 1)),
            first(view_rng(seed, 0, 0, 1)),
            first(display_view_rng(seed, 0, 1)),
            first(epoch_rng(seed, 1)),
        ];
        for (i, a) in draws.iter().enumerate() {
            for b in &draws[i + 1..] {
                assert_ne!(a, b, "two purposes share a stream");
            }
        }
        assert_eq!(first(shape_rng(seed, 3)), first(shape_rng(seed, 3)));
        assert_ne!(first(shape_rng(seed, 3)), first(shape_rng(seed + 1, 3)));
    }
}
