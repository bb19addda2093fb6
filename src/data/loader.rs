//! Batches of augmented views, prepared off the training thread.
//!
//! [`BatchPlan`] says which images step s uses and how they are augmented, as a pure function
//! of the seed and s: epoch e is a seeded permutation of the training set, step s takes the
//! `(s mod steps_per_epoch)`-th block of N images of epoch `s / steps_per_epoch` (the remainder
//! of an epoch is dropped), and each view draws from its own stream (see
//! [`crate::seed::view_rng`]). So a resumed run sees exactly the batches an uninterrupted
//! one would.
//!
//! [`Loader`] runs a plan on a named thread, building each batch across images on a rayon
//! pool of its own ([`loader_threads`] threads, apart from the pool the training step uses,
//! as PyTorch's `DataLoader` workers are apart from its intra-op threads), and hands ready
//! batches over a bounded channel: the training step only waits when augmentation cannot keep
//! up, and [`Loader::wait_secs`] says how long it waited. With the step's pool, augmentation
//! took its turn on the step's threads: at `--threads 1` the step lost 7-12% to it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Receiver, bounded};
use rand::seq::SliceRandom;
use rayon::prelude::*;

use super::augment::{AugmentConfig, augment_view};
use super::images::{Dataset, ImageSet};
use crate::seed::view_rng;

/// One step's input: N images x M views, image-major, CHW each.
#[derive(Clone, Debug)]
pub struct Batch {
    pub step: u64,
    pub epoch: u64,
    /// `[N * M, channels, side, side]`, row `i * M + m` is view m of image i.
    pub data: Vec<f32>,
    /// Labels of the N images (empty for an unlabeled set).
    pub labels: Vec<u32>,
}

/// How a run's batches are made.
#[derive(Clone, Debug)]
pub struct BatchPlan {
    pub seed: u64,
    pub images: Arc<ImageSet>,
    pub batch_size: usize,
    pub views: usize,
    /// Output side of every view.
    pub side: usize,
    pub augment: AugmentConfig,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl BatchPlan {
    pub fn steps_per_epoch(&self) -> u64 {
        (self.images.len() / self.batch_size.max(1)).max(1) as u64
    }

    /// Floats per view.
    pub fn view_len(&self) -> usize {
        self.images.shape.channels * self.side * self.side
    }

    /// The permutation of epoch `epoch`.
    pub fn permutation(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.images.len()).collect();
        let mut rng = crate::seed::epoch_rng(self.seed, epoch);
        order.shuffle(&mut rng);
        order
    }

    /// The batch of step `step`, given the permutation of its epoch.
    pub fn batch(&self, step: u64, permutation: &[usize]) -> Batch {
        let per_epoch = self.steps_per_epoch();
        let epoch = step / per_epoch;
        let start = ((step % per_epoch) as usize) * self.batch_size;
        let indices = &permutation[start..start + self.batch_size];
        let view_len = self.view_len();
        let image_len = view_len * self.views;
        let mut data = vec![0.0f32; indices.len() * image_len];
        data.par_chunks_mut(image_len)
            .zip(indices.par_iter())
            .enumerate()
            .for_each(|(slot, (out, &index))| {
                let image = self.images.image(index);
                for (view, view_out) in out.chunks_mut(view_len).enumerate() {
                    let mut rng = view_rng(self.seed, step, slot, view);
                    augment_view(
                        image,
                        self.images.shape,
                        self.side,
                        view,
                        &self.augment,
                        &self.mean,
                        &self.std,
                        &mut rng,
                        view_out,
                    );
                }
            });
        let labels = indices
            .iter()
            .filter_map(|&i| self.images.label(i))
            .collect();
        Batch {
            step,
            epoch,
            data,
            labels,
        }
    }

    /// The batch of step `step`, computing its epoch's permutation.
    pub fn batch_at(&self, step: u64) -> Batch {
        let permutation = self.permutation(step / self.steps_per_epoch());
        self.batch(step, &permutation)
    }
}

/// Threads of the loader's pool: a quarter of the machine's, at least one. A batch of the
/// small CNN's default workload (256 images x 2 views of 32x32) takes one thread about 8-9 ms
/// (AMD EPYC Zen 4), against a step of 85-185 ms on one or two threads there; the quarter
/// keeps up with steps several times faster on larger machines.
pub fn loader_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 4).max(1))
}

/// A plan running on its own thread, `capacity` batches ahead.
pub struct Loader {
    batches: Receiver<Batch>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    wait_secs: f64,
}

impl Loader {
    /// Prepares the batches of steps `first..end`.
    pub fn spawn(
        plan: Arc<BatchPlan>,
        first: u64,
        end: u64,
        capacity: usize,
    ) -> std::io::Result<Self> {
        let (sender, batches) = bounded(capacity.max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = Arc::clone(&stop);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(loader_threads())
            .thread_name(|i| format!("msbreg-loader-{i}"))
            .build()
            .map_err(std::io::Error::other)?;
        let handle = std::thread::Builder::new()
            .name("msbreg-loader".to_owned())
            .spawn(move || {
                let mut cached: Option<(u64, Vec<usize>)> = None;
                for step in first..end {
                    if stop_flag.load(Ordering::Relaxed) {
                        break;
                    }
                    let epoch = step / plan.steps_per_epoch();
                    if cached.as_ref().is_none_or(|(e, _)| *e != epoch) {
                        cached = Some((epoch, plan.permutation(epoch)));
                    }
                    let Some((_, permutation)) = &cached else {
                        break;
                    };
                    let batch = pool.install(|| plan.batch(step, permutation));
                    if sender.send(batch).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Self {
            batches,
            stop,
            handle: Some(handle),
            wait_secs: 0.0,
        })
    }

    /// The next batch, waiting for it if needed; `None` after the last.
    pub fn next_batch(&mut self) -> Option<Batch> {
        let start = Instant::now();
        let batch = self.batches.recv().ok();
        self.wait_secs += start.elapsed().as_secs_f64();
        batch
    }

    /// Seconds the consumer has spent waiting in [`Self::next_batch`].
    pub fn wait_secs(&self) -> f64 {
        self.wait_secs
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Unblock a send in progress, then let the thread end.
        while self.batches.try_recv().is_ok() {}
        if let Some(handle) = self.handle.take() {
            drop(std::mem::replace(&mut self.batches, bounded(1).1));
            let _ = handle.join();
        }
    }
}
