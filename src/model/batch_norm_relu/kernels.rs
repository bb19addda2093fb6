//! The kernels of [`super::BatchNormReluBackend`] on flex, on slices of rows: column sums by
//! fixed blocks of rows, and the element-wise passes, over rayon's threads.

use rayon::prelude::*;

use super::BLOCK_ROWS;
use crate::simd::vectorized;

/// One block of rows' column statistics: its row count, column means and sums of squared
/// deviations from them, in `f32`.
pub(in crate::model) struct Moments {
    rows: usize,
    mean: Vec<f32>,
    squares: Vec<f32>,
}

impl Moments {
    /// The moments of `block`'s columns (rows of `channels`), in two passes over it while it is
    /// in cache. Call inside [`vectorized`].
    #[allow(clippy::inline_always)] // compiled inside `vectorized`'s variants
    #[inline(always)]
    pub(in crate::model) fn of(block: &[f32], channels: usize) -> Self {
        let rows = block.len() / channels.max(1);
        let mut mean = vec![0.0f32; channels];
        for row in block.chunks_exact(channels) {
            for (s, &v) in mean.iter_mut().zip(row) {
                *s += v;
            }
        }
        for m in &mut mean {
            *m /= rows.max(1) as f32;
        }
        let mut squares = vec![0.0f32; channels];
        for row in block.chunks_exact(channels) {
            for ((s, &v), &m) in squares.iter_mut().zip(row).zip(&mean) {
                let d = v - m;
                *s += d * d;
            }
        }
        Self {
            rows,
            mean,
            squares,
        }
    }

    /// The mean and biased variance of all the blocks' rows, the blocks combined in order in
    /// `f64` (Chan et al.'s pairwise update: the sum of squares around the overall mean is
    /// each block's plus its row count times the square of its mean's distance to the overall
    /// one). As exact as two passes over the whole matrix, with one read of it.
    pub(in crate::model) fn combine(blocks: &[Self], channels: usize) -> (Vec<f32>, Vec<f32>) {
        let count = blocks.iter().map(|b| b.rows).sum::<usize>().max(1) as f64;
        let mut sums = vec![0.0f64; channels];
        for block in blocks {
            for (s, &m) in sums.iter_mut().zip(&block.mean) {
                *s += block.rows as f64 * f64::from(m);
            }
        }
        let mean64: Vec<f64> = sums.iter().map(|&s| s / count).collect();
        let mut squares = vec![0.0f64; channels];
        for block in blocks {
            let per_channel = block.mean.iter().zip(&block.squares).zip(&mean64);
            for (s, ((&m, &q), &overall)) in squares.iter_mut().zip(per_channel) {
                let d = f64::from(m) - overall;
                *s += f64::from(q) + block.rows as f64 * d * d;
            }
        }
        let mean = mean64.iter().map(|&m| m as f32).collect();
        let var = squares.iter().map(|&s| (s / count) as f32).collect();
        (mean, var)
    }
}

/// The forward pass's per-column numbers.
pub(in crate::model) struct Forward {
    pub(in crate::model) mean: Vec<f32>,
    pub(in crate::model) var: Vec<f32>,
    /// `1 / sqrt(var + epsilon)`
    inv_std: Vec<f32>,
    /// `gamma / sqrt(var + epsilon)`
    scale: Vec<f32>,
    beta: Vec<f32>,
    channels: usize,
}

impl Forward {
    /// The statistics of `x`'s columns in one pass over memory: [`Moments`] of each block of
    /// [`BLOCK_ROWS`] rows, combined in order.
    pub(in crate::model) fn from_batch(
        x: &[f32],
        channels: usize,
        gamma: &[f32],
        beta: &[f32],
        epsilon: f64,
    ) -> Self {
        let blocks: Vec<Moments> = x
            .par_chunks(BLOCK_ROWS * channels.max(1))
            .map(|block| {
                vectorized(
                    #[inline(always)]
                    || Moments::of(block, channels),
                )
            })
            .collect();
        let (mean, var) = Moments::combine(&blocks, channels);
        Self::from_statistics(mean, var, gamma, beta, epsilon)
    }

    pub(in crate::model) fn from_statistics(
        mean: Vec<f32>,
        var: Vec<f32>,
        gamma: &[f32],
        beta: &[f32],
        epsilon: f64,
    ) -> Self {
        let inv_std: Vec<f32> = var
            .iter()
            .map(|&v| (1.0 / (f64::from(v) + epsilon).sqrt()) as f32)
            .collect();
        let scale = var
            .iter()
            .zip(gamma)
            .map(|(&v, &g)| (f64::from(g) / (f64::from(v) + epsilon).sqrt()) as f32)
            .collect();
        Self {
            channels: mean.len(),
            mean,
            var,
            inv_std,
            scale,
            beta: beta.to_vec(),
        }
    }

    /// `dst = relu((src - mean) * scale + beta)` for whole rows of channels. Call inside
    /// [`vectorized`].
    #[allow(clippy::inline_always)] // compiled inside `vectorized`'s variants
    #[inline(always)]
    pub(in crate::model) fn apply(&self, dst: &mut [f32], src: &[f32]) {
        let channels = self.channels;
        let per_channel = self.mean.iter().zip(&self.scale).zip(&self.beta);
        for (out, x) in dst
            .chunks_exact_mut(channels)
            .zip(src.chunks_exact(channels))
        {
            for ((o, &v), ((&m, &s), &b)) in out.iter_mut().zip(x).zip(per_channel.clone()) {
                *o = ((v - m) * s + b).max(0.0);
            }
        }
    }

    /// `relu((x - mean) * scale + beta)`, row blocks in parallel.
    pub(super) fn output(&self, x: &[f32]) -> Vec<f32> {
        let block = BLOCK_ROWS * self.channels;
        let mut out = vec![0.0f32; x.len()];
        out.par_chunks_mut(block)
            .zip(x.par_chunks(block))
            .for_each(|(out, x)| {
                vectorized(
                    #[inline(always)]
                    || self.apply(out, x),
                );
            });
        out
    }

    /// One block's column sums for the backward pass, `[sum of g, sum of g * x_hat]` with `g`
    /// the gradient through the ReLU (zero where the output was cut; the cut recomputed from
    /// `x`, as [`Self::apply`] makes it) and `x_hat = (x - mean) / sqrt(var + epsilon)`. Call
    /// inside [`vectorized`].
    #[allow(clippy::inline_always)] // compiled inside `vectorized`'s variants
    #[inline(always)]
    pub(in crate::model) fn gradient_sums(&self, x: &[f32], grad: &[f32]) -> [Vec<f32>; 2] {
        let channels = self.channels;
        let mut sum_g = vec![0.0f32; channels];
        let mut sum_gx = vec![0.0f32; channels];
        let per_channel =
            (self.mean.iter().zip(&self.inv_std)).zip(self.scale.iter().zip(&self.beta));
        for (x, grad) in x.chunks_exact(channels).zip(grad.chunks_exact(channels)) {
            let sums = sum_g.iter_mut().zip(sum_gx.iter_mut());
            for ((sum_g, sum_gx), ((&v, &g), ((&m, &i), (&s, &b)))) in
                sums.zip(x.iter().zip(grad).zip(per_channel.clone()))
            {
                let g = if (v - m) * s + b > 0.0 { g } else { 0.0 };
                *sum_g += g;
                *sum_gx += g * ((v - m) * i);
            }
        }
        [sum_g, sum_gx]
    }
}

/// The backward pass given the column sums of every block of rows.
pub(in crate::model) struct NormBackward {
    pub(in crate::model) dgamma: Vec<f32>,
    pub(in crate::model) dbeta: Vec<f32>,
    /// `gamma / sqrt(var + epsilon)`, `dbeta / rows`, `dgamma / rows`
    factor: Vec<f32>,
    mean_g: Vec<f32>,
    mean_gx: Vec<f32>,
}

impl NormBackward {
    /// From the blocks' [`Forward::gradient_sums`], added in order in `f64`, over `rows` rows.
    pub(in crate::model) fn from_sums(
        blocks: impl IntoIterator<Item = [Vec<f32>; 2]>,
        forward: &Forward,
        gamma: &[f32],
        rows: usize,
    ) -> Self {
        let channels = forward.channels;
        let count = rows.max(1) as f64;
        let mut sums = [vec![0.0f64; channels], vec![0.0f64; channels]];
        for block in blocks {
            for (total, block) in sums.iter_mut().zip(&block) {
                for (t, &b) in total.iter_mut().zip(block) {
                    *t += f64::from(b);
                }
            }
        }
        let [sum_g, sum_gx] = sums;
        Self {
            dbeta: sum_g.iter().map(|&s| s as f32).collect(),
            dgamma: sum_gx.iter().map(|&s| s as f32).collect(),
            factor: gamma
                .iter()
                .zip(&forward.inv_std)
                .map(|(&g, &s)| g * s)
                .collect(),
            mean_g: sum_g.iter().map(|&s| (s / count) as f32).collect(),
            mean_gx: sum_gx.iter().map(|&s| (s / count) as f32).collect(),
        }
    }

    /// The input's gradient written over `grad`, the output's:
    /// `gamma / sqrt(var + epsilon) * (g - dbeta / rows - x_hat * dgamma / rows)`, row blocks in
    /// parallel.
    pub(in crate::model) fn input_grad_in_place(
        &self,
        forward: &Forward,
        x: &[f32],
        grad: &mut [f32],
    ) {
        let block = BLOCK_ROWS * forward.channels;
        grad.par_chunks_mut(block)
            .zip(x.par_chunks(block))
            .for_each(|(grad, x)| {
                vectorized(
                    #[inline(always)]
                    || self.input_grad_block(forward, x, grad),
                );
            });
    }

    #[allow(clippy::inline_always)] // compiled inside `vectorized`'s variants
    #[inline(always)]
    fn input_grad_block(&self, forward: &Forward, x: &[f32], grad: &mut [f32]) {
        let channels = forward.channels;
        let normalise = (forward.mean.iter().zip(&forward.inv_std))
            .zip(forward.scale.iter().zip(&forward.beta));
        let per_channel = normalise.zip(
            self.factor
                .iter()
                .zip(self.mean_g.iter().zip(&self.mean_gx)),
        );
        for (x, grad) in x
            .chunks_exact(channels)
            .zip(grad.chunks_exact_mut(channels))
        {
            for ((&v, d), (((&m, &i), (&s, &b)), (&f, (&mg, &mgx)))) in
                x.iter().zip(grad.iter_mut()).zip(per_channel.clone())
            {
                let g = if (v - m) * s + b > 0.0 { *d } else { 0.0 };
                *d = f * (g - mg - (v - m) * i * mgx);
            }
        }
    }
}

/// The backward pass given `grad`, the output's gradient, over which the input's is written:
/// one pass of column sums, one pass for the input's gradient.
pub(super) fn backward(
    x: &[f32],
    grad: &mut [f32],
    forward: &Forward,
    gamma: &[f32],
) -> NormBackward {
    let channels = forward.channels.max(1);
    let block = BLOCK_ROWS * channels;
    let sums: Vec<[Vec<f32>; 2]> = x
        .par_chunks(block)
        .zip(grad.par_chunks(block))
        .map(|(x, grad)| {
            vectorized(
                #[inline(always)]
                || forward.gradient_sums(x, grad),
            )
        })
        .collect();
    let backward = NormBackward::from_sums(sums, forward, gamma, x.len() / channels);
    backward.input_grad_in_place(forward, x, grad);
    backward
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_bits_on_one_and_four_threads() {
        let (rows, channels) = (BLOCK_ROWS * 5 + 3, 9);
        // A fixed, uneven pattern: no random numbers needed.
        let pattern = |i: usize, k: usize| ((i * 7919 + k * 104_729) % 1000) as f32 / 250.0 - 1.0;
        let x: Vec<f32> = (0..rows * channels)
            .map(|i| pattern(i, 1) * 3.0 + 0.5)
            .collect();
        let grad: Vec<f32> = (0..rows * channels).map(|i| pattern(i, 2)).collect();
        let gamma: Vec<f32> = (0..channels).map(|c| 0.5 + c as f32 / 10.0).collect();
        let beta: Vec<f32> = (0..channels).map(|c| c as f32 / 10.0 - 0.4).collect();
        let run = |threads: usize| {
            crate::model::flex_slices::on_threads(threads, || {
                let forward = Forward::from_batch(&x, channels, &gamma, &beta, 1e-5);
                let out = forward.output(&x);
                let mut dx = grad.clone();
                let NormBackward { dgamma, dbeta, .. } = backward(&x, &mut dx, &forward, &gamma);
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                [out, dx, dgamma, dbeta, forward.mean, forward.var].map(|v| bits(&v))
            })
        };
        let one = run(1);
        assert!(one[0].contains(&0) && one[0].iter().any(|&b| b != 0));
        assert_eq!(one, run(4));
    }
}
