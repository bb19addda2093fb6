//! The splits an image run trains and evaluates on: a test split held out of the training
//! split when a data set has none, the seeded evaluation subsets (kNN bank and queries), and
//! the training images (with STL-10's unlabeled split appended), moved rather than copied.

use rand::seq::SliceRandom;

use crate::config::EvalSettings;
use crate::data::images::{Dataset, ImageSet, Splits};
use crate::seed::{Stream, rng};

/// The images the encoder is evaluated on: a labelled bank and held-out labelled queries.
pub(super) struct EvalSet {
    pub bank: ImageSet,
    pub queries: ImageSet,
    /// The queries, then more of the test split in the same seeded order, up to
    /// `display_points` images in all (the app shows them).
    pub display: ImageSet,
}

/// Which labelled images evaluation uses: the test split as queries and the labelled training
/// split as the bank, each a seeded subset of the configured size; `None` without labels.
/// The displayed images continue the queries' order to `display_points`.
pub(super) fn eval_set(
    splits: &Splits,
    settings: &EvalSettings,
    display_points: usize,
    seed: u64,
) -> Option<EvalSet> {
    let labelled_train = splits.train.labels.as_ref().map(|_| &splits.train)?;
    let queries = splits.test.as_ref().filter(|t| t.labels.is_some())?;
    let mut rng = rng(seed, Stream::EvalViews);
    let mut order_of = |set: &ImageSet| {
        let mut order: Vec<usize> = (0..set.len()).collect();
        order.shuffle(&mut rng);
        order
    };
    let bank_order = order_of(labelled_train);
    let query_order = order_of(queries);
    let first = |order: &[usize], count: usize| order[..count.min(order.len())].to_vec();
    Some(EvalSet {
        bank: labelled_train.subset(&first(&bank_order, settings.bank_size)),
        queries: queries.subset(&first(&query_order, settings.query_size)),
        display: queries.subset(&first(
            &query_order,
            settings.query_size.max(display_points),
        )),
    })
}

/// The splits evaluation needs: a data set with labels but no labelled test split (an
/// MNIST-layout folder without the `t10k` files, a labelled image folder) gets one held out of
/// its training split (a seeded tenth, at most `query_size` and at least 2 images), which
/// training then does not see. Returns what was done, to be said once, or that nothing can
/// be evaluated without labels.
pub fn with_test_split(
    mut splits: Splits,
    settings: &EvalSettings,
    seed: u64,
    describe: &str,
) -> (Splits, Option<String>) {
    if splits.test.as_ref().is_some_and(|t| t.labels.is_some()) {
        return (splits, None);
    }
    if splits.train.labels.is_none() {
        return (
            splits,
            Some(format!(
                "{describe} has no labels: kNN and the linear probe cannot be measured, and no \
                 diagnostics are computed during training"
            )),
        );
    }
    let total = splits.train.len();
    let held = (total / 10).min(settings.query_size).max(2);
    if total < held + 2 {
        return (
            splits,
            Some(format!(
                "{describe} has no labelled test split and too few images ({total}) to hold \
                 some out: nothing is evaluated"
            )),
        );
    }
    let mut order: Vec<usize> = (0..total).collect();
    order.shuffle(&mut rng(seed, Stream::HoldOut));
    let (test, train) = order.split_at(held);
    let mut train = train.to_vec();
    train.sort_unstable();
    let mut test = test.to_vec();
    test.sort_unstable();
    splits.test = Some(splits.train.subset(&test));
    splits.train = splits.train.subset(&train);
    (
        splits,
        Some(format!(
            "{describe} has no labelled test split: {held} of its {total} training images are \
             held out as one (training does not see them; kNN, the diagnostics and `eval` use \
             them)"
        )),
    )
}

/// The training images: the training split, with the unlabeled split appended (STL-10).
pub(super) fn training_images(splits: Splits) -> ImageSet {
    let Splits {
        train, unlabeled, ..
    } = splits;
    match unlabeled {
        Some(extra) if extra.shape == train.shape => {
            let mut pixels = train.pixels;
            pixels.extend_from_slice(&extra.pixels);
            ImageSet {
                shape: train.shape,
                pixels,
                labels: None,
                class_names: train.class_names,
            }
        }
        // Moved, not copied: the pixels are held once.
        _ => train,
    }
}
