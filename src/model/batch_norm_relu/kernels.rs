//! The kernels of [`super::BatchNormReluBackend`] on flex, on slices of rows: column sums by
//! fixed blocks of rows, and the element-wise passes, over rayon's threads.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::BLOCK_ROWS;
use crate::model::flex_slices::par_written;
use crate::simd::vectorized;

/// Column sums of `f(row)` over `values` (rows of `channels`), block by block: each block of
/// [`BLOCK_ROWS`] rows summed in `f32` in row order, the blocks added in order in `f64`.
fn column_sums<F>(rows: usize, channels: usize, per_block: F) -> Vec<Vec<f64>>
where
    F: Fn(std::ops::Range<usize>, &mut [Vec<f32>]) + Sync,
{
    let blocks = rows.div_ceil(BLOCK_ROWS);
    (0..blocks)
        .into_par_iter()
        .map(|block| {
            let start = block * BLOCK_ROWS;
            let range = start..(start + BLOCK_ROWS).min(rows);
            let mut sums = vec![vec![0.0f32; channels]; 2];
            vectorized(
                #[inline(always)]
                || per_block(range, &mut sums),
            );
            sums
        })
        .collect::<Vec<_>>()
        .into_iter()
        .fold(vec![vec![0.0f64; channels]; 2], |mut total, block| {
            for (total, block) in total.iter_mut().zip(&block) {
                for (t, &b) in total.iter_mut().zip(block) {
                    *t += f64::from(b);
                }
            }
            total
        })
}

/// The element-wise passes write their outputs into uninitialised memory
/// ([`par_written`]), one value per element of whole rows zipped with per-column numbers: a
/// ragged last row, or per-column numbers fewer than `channels`, would leave values unwritten.
fn assert_whole_rows(len: usize, channels: usize, per_column: &[usize]) {
    assert_eq!(
        len % channels.max(1),
        0,
        "batch norm: rows of unequal length"
    );
    assert!(
        per_column.iter().all(|&n| n == channels),
        "batch norm: {per_column:?} per-column values for {channels} columns"
    );
}

/// The forward pass's per-column numbers.
pub(super) struct Forward {
    pub(super) mean: Vec<f32>,
    pub(super) var: Vec<f32>,
    /// `gamma / sqrt(var + epsilon)`
    scale: Vec<f32>,
    beta: Vec<f32>,
    channels: usize,
}

impl Forward {
    /// The statistics of `x`'s columns in one pass over memory: each block of
    /// [`BLOCK_ROWS`] rows gets its mean and its sum of squared deviations from that mean (two
    /// passes over the block while it is in cache, in `f32`), and the blocks are combined in
    /// order in `f64` (Chan et al.'s pairwise update: the sum of squares around the overall
    /// mean is each block's plus its row count times the square of its mean's distance to
    /// the overall one). As exact as two passes over the whole matrix, with one read of it.
    pub(super) fn from_batch(
        x: &[f32],
        channels: usize,
        gamma: &[f32],
        beta: &[f32],
        epsilon: f64,
    ) -> Self {
        let rows = x.len() / channels.max(1);
        let count = rows.max(1) as f64;
        let blocks: Vec<(usize, Vec<f32>, Vec<f32>)> = x
            .par_chunks(BLOCK_ROWS * channels.max(1))
            .map(|block| {
                vectorized(
                    #[inline(always)]
                    || {
                        let n = block.len() / channels.max(1);
                        let mut mean = vec![0.0f32; channels];
                        for row in block.chunks_exact(channels) {
                            for (s, &v) in mean.iter_mut().zip(row) {
                                *s += v;
                            }
                        }
                        for m in &mut mean {
                            *m /= n.max(1) as f32;
                        }
                        let mut squares = vec![0.0f32; channels];
                        for row in block.chunks_exact(channels) {
                            for ((s, &v), &m) in squares.iter_mut().zip(row).zip(&mean) {
                                let d = v - m;
                                *s += d * d;
                            }
                        }
                        (n, mean, squares)
                    },
                )
            })
            .collect();
        let mut sums = vec![0.0f64; channels];
        for (n, mean, _) in &blocks {
            for (s, &m) in sums.iter_mut().zip(mean) {
                *s += *n as f64 * f64::from(m);
            }
        }
        let mean64: Vec<f64> = sums.iter().map(|&s| s / count).collect();
        let mut squares = vec![0.0f64; channels];
        for (n, mean, block_squares) in &blocks {
            for ((s, (&m, &q)), &overall) in squares
                .iter_mut()
                .zip(mean.iter().zip(block_squares))
                .zip(&mean64)
            {
                let d = f64::from(m) - overall;
                *s += f64::from(q) + *n as f64 * d * d;
            }
        }
        let mean: Vec<f32> = mean64.iter().map(|&m| m as f32).collect();
        let var: Vec<f32> = squares.iter().map(|&s| (s / count) as f32).collect();
        Self::from_statistics(mean, var, gamma, beta, epsilon)
    }

    pub(super) fn from_statistics(
        mean: Vec<f32>,
        var: Vec<f32>,
        gamma: &[f32],
        beta: &[f32],
        epsilon: f64,
    ) -> Self {
        let scale = var
            .iter()
            .zip(gamma)
            .map(|(&v, &g)| (f64::from(g) / (f64::from(v) + epsilon).sqrt()) as f32)
            .collect();
        Self {
            channels: mean.len(),
            mean,
            var,
            scale,
            beta: beta.to_vec(),
        }
    }

    /// `relu((x - mean) * scale + beta)`, row blocks in parallel.
    pub(super) fn output(&self, x: &[f32]) -> Vec<f32> {
        let channels = self.channels;
        assert_whole_rows(
            x.len(),
            channels,
            &[self.mean.len(), self.scale.len(), self.beta.len()],
        );
        let block = BLOCK_ROWS * channels;
        let write = |(): &mut (), i: usize, out: &mut [MaybeUninit<f32>]| {
            let x = &x[i * block..][..out.len()];
            vectorized(
                #[inline(always)]
                || {
                    let per_channel = self.mean.iter().zip(&self.scale).zip(&self.beta);
                    for (out, x) in out.chunks_exact_mut(channels).zip(x.chunks_exact(channels)) {
                        for ((o, &v), ((&m, &s), &b)) in
                            out.iter_mut().zip(x).zip(per_channel.clone())
                        {
                            o.write(((v - m) * s + b).max(0.0));
                        }
                    }
                },
            );
        };
        // SAFETY: `write` writes every element of its chunk (rows of `channels` zipped with
        // as many rows of `x`, which has the chunk's length).
        #[allow(unsafe_code)]
        unsafe {
            par_written(x.len(), block, || (), write)
        }
    }
}

/// The gradients `(x, gamma, beta)`: one pass of column sums (of the gradient through the
/// ReLU, and of it times the normalised input), one pass for the input's gradient.
#[allow(clippy::too_many_arguments)]
pub(super) fn backward(
    x: &[f32],
    out: &[f32],
    grad: &[f32],
    channels: usize,
    gamma: &[f32],
    mean: &[f32],
    var: &[f32],
    epsilon: f64,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let rows = x.len() / channels.max(1);
    let count = rows.max(1) as f64;
    let inv_std: Vec<f32> = var
        .iter()
        .map(|&v| (1.0 / (f64::from(v) + epsilon).sqrt()) as f32)
        .collect();
    let span = |range: &std::ops::Range<usize>| range.start * channels..range.end * channels;
    let sums = column_sums(
        rows,
        channels,
        #[inline(always)]
        |range, sums| {
            let span = span(&range);
            let rows = x[span.clone()]
                .chunks_exact(channels)
                .zip(out[span.clone()].chunks_exact(channels))
                .zip(grad[span].chunks_exact(channels));
            let [sum_g, sum_gx] = sums else {
                unreachable!("column_sums hands two rows of sums")
            };
            let per_channel = mean.iter().zip(&inv_std);
            for ((x, out), grad) in rows {
                let sums = sum_g.iter_mut().zip(sum_gx.iter_mut());
                let values = x.iter().zip(out).zip(grad);
                for ((sum_g, sum_gx), (((&v, &o), &g), (&m, &s))) in
                    sums.zip(values.zip(per_channel.clone()))
                {
                    let g = if o > 0.0 { g } else { 0.0 };
                    *sum_g += g;
                    *sum_gx += g * ((v - m) * s);
                }
            }
        },
    );
    let dbeta: Vec<f32> = sums[0].iter().map(|&s| s as f32).collect();
    let dgamma: Vec<f32> = sums[1].iter().map(|&s| s as f32).collect();
    // dx = gamma * inv_std * (g - dbeta / rows - x_hat * dgamma / rows)
    let factor: Vec<f32> = gamma.iter().zip(&inv_std).map(|(&g, &s)| g * s).collect();
    let mean_g: Vec<f32> = sums[0].iter().map(|&s| (s / count) as f32).collect();
    let mean_gx: Vec<f32> = sums[1].iter().map(|&s| (s / count) as f32).collect();
    let block = BLOCK_ROWS * channels;
    assert_whole_rows(
        x.len(),
        channels,
        &[mean.len(), inv_std.len(), factor.len()],
    );
    assert!(
        out.len() == x.len() && grad.len() == x.len(),
        "batch norm: unequal inputs"
    );
    let write = |(): &mut (), i: usize, dx: &mut [MaybeUninit<f32>]| {
        let span = i * block..i * block + dx.len();
        let (x, out, grad) = (&x[span.clone()], &out[span.clone()], &grad[span]);
        vectorized(
            #[inline(always)]
            || {
                let rows = dx
                    .chunks_exact_mut(channels)
                    .zip(x.chunks_exact(channels))
                    .zip(out.chunks_exact(channels).zip(grad.chunks_exact(channels)));
                let per_channel = mean
                    .iter()
                    .zip(&inv_std)
                    .zip(factor.iter().zip(mean_g.iter().zip(&mean_gx)));
                for ((dx, x), (out, grad)) in rows {
                    let values = dx.iter_mut().zip(x).zip(out.iter().zip(grad));
                    for (((d, &v), (&o, &g)), ((&m, &s), (&f, (&mg, &mgx)))) in
                        values.zip(per_channel.clone())
                    {
                        let g = if o > 0.0 { g } else { 0.0 };
                        let x_hat = (v - m) * s;
                        d.write(f * (g - mg - x_hat * mgx));
                    }
                }
            },
        );
    };
    // SAFETY: `write` writes every element of its chunk (rows of `channels` zipped with as many
    // rows of `x`, `out` and `grad`, which have the chunk's length).
    #[allow(unsafe_code)]
    let dx = unsafe { par_written(x.len(), block, || (), write) };
    (dx, dgamma, dbeta)
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
                let (dx, dgamma, dbeta) = backward(
                    &x,
                    &out,
                    &grad,
                    channels,
                    &gamma,
                    &forward.mean,
                    &forward.var,
                    1e-5,
                );
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                [out, dx, dgamma, dbeta, forward.mean, forward.var].map(|v| bits(&v))
            })
        };
        let one = run(1);
        assert!(one[0].contains(&0) && one[0].iter().any(|&b| b != 0));
        assert_eq!(one, run(4));
    }
}
