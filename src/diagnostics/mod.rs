//! Diagnostics of collapse and homogenisation (see `../shared/MSBREG.md`), as pure functions on
//! host embeddings: `&[f32]` row-major `[n, d]`, one row per sample.
//!
//! The eigen-decomposition of the `d x d` covariance runs on the CPU with nalgebra: it is small
//! next to the embedding pass, and `msbreg bench spectrum` compares it with burn-linalg's SVD.

use nalgebra::DMatrix;
use rayon::prelude::*;

/// Rows scaled to unit length (`x / max(||x||, 1e-12)`), row-major `[n, d]`.
pub fn normalize_rows(rows: &[f32], d: usize) -> Vec<f32> {
    let mut out = rows.to_vec();
    for row in out.chunks_mut(d.max(1)) {
        let norm = row
            .iter()
            .map(|&x| f64::from(x) * f64::from(x))
            .sum::<f64>()
            .sqrt()
            .max(1e-12);
        for x in row {
            *x = (f64::from(*x) / norm) as f32;
        }
    }
    out
}

/// The centred covariance `Zc^T Zc / n`, `d x d`.
pub fn covariance(rows: &[f32], d: usize) -> DMatrix<f64> {
    let n = rows.len() / d.max(1);
    if n == 0 {
        return DMatrix::zeros(d, d);
    }
    let mut z = DMatrix::<f64>::from_row_iterator(n, d, rows.iter().map(|&x| f64::from(x)));
    let means: Vec<f64> = (0..d).map(|j| z.column(j).mean()).collect();
    for (j, mean) in means.into_iter().enumerate() {
        z.column_mut(j).add_scalar_mut(-mean);
    }
    (z.transpose() * &z) / n as f64
}

/// The singular values `s_k` of `Zc / sqrt(n)` (square roots of the covariance eigenvalues),
/// largest first.
pub fn singular_values(rows: &[f32], d: usize) -> Vec<f64> {
    if d == 0 {
        return Vec::new();
    }
    let eigen = covariance(rows, d).symmetric_eigenvalues();
    let mut values: Vec<f64> = eigen.iter().map(|&e| e.max(0.0).sqrt()).collect();
    values.sort_by(|a, b| b.total_cmp(a));
    values
}

/// RankMe (Garrido et al. 2023): `exp(-sum_k p_k log p_k)`, `p_k = s_k / sum_j s_j + 1e-7`.
/// 1 when all variance lies on one axis, d when the spectrum is flat.
pub fn effective_rank(singular_values: &[f64]) -> f64 {
    let total: f64 = singular_values.iter().sum();
    if total <= 0.0 {
        // No variance at all: everything is one point.
        return 1.0;
    }
    let entropy: f64 = singular_values
        .iter()
        .map(|&s| {
            let p = s / total + 1e-7;
            -p * p.ln()
        })
        .sum();
    entropy.exp()
}

/// Uniformity (Wang & Isola 2020): `log mean_{i != j} exp(-2 ||z_i - z_j||^2)` over unit rows.
/// 0 when all rows coincide; lower is more uniform.
pub fn uniformity(unit_rows: &[f32], d: usize) -> f64 {
    let n = unit_rows.len() / d.max(1);
    if n < 2 {
        return 0.0;
    }
    // Row sums in parallel, then added in row order: the same value on every run (a parallel
    // reduction would add in a thread-dependent order).
    let row_sums: Vec<f64> = (0..n)
        .into_par_iter()
        .map(|i| {
            let zi = &unit_rows[i * d..(i + 1) * d];
            (0..n)
                .filter(|&j| j != i)
                .map(|j| (-2.0 * squared_distance(zi, &unit_rows[j * d..(j + 1) * d])).exp())
                .sum::<f64>()
        })
        .collect();
    let total: f64 = row_sums.iter().sum();
    (total / (n * (n - 1)) as f64).ln()
}

/// Alignment: `mean_i ||a_i - b_i||^2` over two views `a`, `b` of the same samples.
pub fn alignment(a: &[f32], b: &[f32], d: usize) -> f64 {
    let n = a.len() / d.max(1);
    if n == 0 {
        return 0.0;
    }
    squared_distance(a, b) / n as f64
}

/// `sum_k (a_k - b_k)^2`, in f64.
fn squared_distance(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let diff = f64::from(*x) - f64::from(*y);
            diff * diff
        })
        .sum()
}

/// Collapse level (SimSiam): the standard deviation over samples of the unit rows, averaged
/// over dimensions, times `sqrt(d)`. About 1 for healthy embeddings, 0 when collapsed.
pub fn collapse_level(unit_rows: &[f32], d: usize) -> f64 {
    let n = unit_rows.len() / d.max(1);
    if n == 0 || d == 0 {
        return 0.0;
    }
    let mean_std: f64 = (0..d)
        .map(|j| {
            let column = unit_rows.iter().skip(j).step_by(d).map(|&x| f64::from(x));
            let mean = column.clone().sum::<f64>() / n as f64;
            let var = column.map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
            var.sqrt()
        })
        .sum::<f64>()
        / d as f64;
    mean_std * (d as f64).sqrt()
}

/// Weighted kNN accuracy (Wu et al. 2018): each query votes over its `k` most cosine-similar
/// bank rows, each with weight `exp(sim / temperature)`; the accuracy is the fraction of
/// queries whose top class is their label. Rows need not be normalised.
pub fn knn_accuracy(
    bank: &[f32],
    bank_labels: &[u32],
    queries: &[f32],
    query_labels: &[u32],
    d: usize,
    k: usize,
    temperature: f64,
) -> f64 {
    if query_labels.is_empty() || bank_labels.is_empty() {
        return 0.0;
    }
    let bank = normalize_rows(bank, d);
    let queries = normalize_rows(queries, d);
    let classes = bank_labels.iter().max().map_or(0, |&c| c as usize + 1);
    let k = k.min(bank_labels.len()).max(1);
    let correct: usize = query_labels
        .par_iter()
        .enumerate()
        .filter(|&(i, &label)| {
            let q = &queries[i * d..(i + 1) * d];
            let mut sims: Vec<(f64, u32)> = bank_labels
                .iter()
                .enumerate()
                .map(|(j, &bank_label)| {
                    let row = &bank[j * d..(j + 1) * d];
                    let sim: f64 = q
                        .iter()
                        .zip(row)
                        .map(|(a, b)| f64::from(*a) * f64::from(*b))
                        .sum();
                    (sim, bank_label)
                })
                .collect();
            sims.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
            let mut votes = vec![0.0f64; classes];
            for &(sim, bank_label) in &sims[..k] {
                votes[bank_label as usize] += (sim / temperature).exp();
            }
            let predicted = votes
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(class, _)| class);
            predicted == Some(label as usize)
        })
        .count();
    correct as f64 / query_labels.len() as f64
}

/// All scalar diagnostics of one evaluation.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Diagnostics {
    pub effective_rank: f64,
    pub uniformity: f64,
    pub alignment: f64,
    pub collapse_level: f64,
    pub knn_acc: f64,
    /// Singular values of the centred evaluation embeddings, largest first.
    pub singular_values: Vec<f64>,
}

/// The inputs of one evaluation: unit embeddings of the evaluation set, of two fixed views of
/// it, and of the labelled bank.
pub struct EvalEmbeddings<'a> {
    pub eval: &'a [f32],
    pub eval_labels: &'a [u32],
    pub view_a: &'a [f32],
    pub view_b: &'a [f32],
    pub bank: &'a [f32],
    pub bank_labels: &'a [u32],
    pub dim: usize,
}

/// kNN settings: `k` neighbours, softmax `temperature`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KnnConfig {
    pub k: usize,
    pub temperature: f64,
}

impl Default for KnnConfig {
    fn default() -> Self {
        Self {
            k: 20,
            temperature: 0.07,
        }
    }
}

pub fn evaluate(input: &EvalEmbeddings<'_>, knn: KnnConfig) -> Diagnostics {
    let d = input.dim;
    let singular_values = singular_values(input.eval, d);
    Diagnostics {
        effective_rank: effective_rank(&singular_values),
        uniformity: uniformity(input.eval, d),
        alignment: alignment(input.view_a, input.view_b, d),
        collapse_level: collapse_level(input.eval, d),
        knn_acc: knn_accuracy(
            input.bank,
            input.bank_labels,
            input.eval,
            input.eval_labels,
            d,
            knn.k,
            knn.temperature,
        ),
        singular_values,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngExt;
    use rand_distr::StandardNormal;

    fn gaussian(n: usize, d: usize, seed: u64) -> Vec<f32> {
        let mut rng = crate::seed::rng(seed, crate::seed::Stream::Dataset);
        (0..n * d).map(|_| rng.sample(StandardNormal)).collect()
    }

    #[test]
    fn isotropic_gaussian_has_effective_rank_near_d() {
        let d = 16;
        let rows = gaussian(8000, d, 1);
        let rank = effective_rank(&singular_values(&rows, d));
        assert!(rank > 15.5 && rank <= 16.0 + 1e-6, "{rank}");
    }

    #[test]
    fn rank_one_data_has_effective_rank_near_one() {
        let d = 16;
        let direction: Vec<f32> = (0..d).map(|j| (j as f32 + 1.0).sin()).collect();
        let mut rng = crate::seed::rng(2, crate::seed::Stream::Dataset);
        let rows: Vec<f32> = (0..500)
            .flat_map(|_| {
                let a: f32 = rng.sample(StandardNormal);
                direction.iter().map(move |x| a * x).collect::<Vec<_>>()
            })
            .collect();
        let rank = effective_rank(&singular_values(&rows, d));
        assert!((1.0..1.01).contains(&rank), "{rank}");
    }

    #[test]
    fn singular_values_of_a_known_covariance() {
        // Rows +-2 e1 and +-1 e2: C = diag(2, 0.5), s = (sqrt 2, sqrt 0.5).
        let rows = [2.0f32, 0.0, -2.0, 0.0, 0.0, 1.0, 0.0, -1.0];
        let s = singular_values(&rows, 2);
        assert!(
            (s[0] - 2f64.sqrt()).abs() < 1e-9 && (s[1] - 0.5f64.sqrt()).abs() < 1e-9,
            "{s:?}"
        );
    }

    #[test]
    fn effective_rank_of_a_flat_and_an_empty_spectrum() {
        let rank = effective_rank(&[1.0; 8]);
        assert!((rank - 8.0).abs() < 1e-4, "{rank}");
        assert_eq!(effective_rank(&[0.0; 8]), 1.0);
    }

    #[test]
    fn uniformity_closed_forms() {
        // All rows equal: log mean exp(0) = 0.
        assert!(uniformity(&[0.6, 0.8, 0.6, 0.8, 0.6, 0.8], 2).abs() < 1e-12);
        // Two antipodal rows: ||zi - zj||^2 = 4, log exp(-8) = -8.
        assert!((uniformity(&[1.0, 0.0, -1.0, 0.0], 2) + 8.0).abs() < 1e-9);
        // e1, e2, e3: every pair at distance^2 2, log exp(-4) = -4.
        let eye = [1.0f32, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
        assert!((uniformity(&eye, 3) + 4.0).abs() < 1e-9);
        assert_eq!(
            uniformity(&[1.0, 0.0], 2),
            0.0,
            "one row: nothing to compare"
        );
    }

    #[test]
    fn alignment_closed_forms() {
        let a = [1.0f32, 0.0, 0.0, 1.0];
        assert_eq!(alignment(&a, &a, 2), 0.0);
        let b = [-1.0f32, 0.0, 0.0, 1.0];
        // Row 0 differs by 2 e1 (squared 4), row 1 equal: mean 2.
        assert!((alignment(&a, &b, 2) - 2.0).abs() < 1e-12);
    }

    #[test]
    fn collapse_level_is_zero_collapsed_and_one_when_spread() {
        assert_eq!(collapse_level(&[0.6, 0.8].repeat(10), 2), 0.0);
        // +-e_k for every k in D = 4: each coordinate has std sqrt(2/8) = 1/2, times sqrt(4) = 1.
        let d = 4;
        let mut rows = Vec::new();
        for k in 0..d {
            for sign in [1.0f32, -1.0] {
                let mut row = vec![0.0f32; d];
                row[k] = sign;
                rows.extend(row);
            }
        }
        assert!((collapse_level(&rows, d) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn knn_separates_two_clusters_and_counts_mistakes() {
        let bank = [1.0f32, 0.1, 1.0, -0.1, -1.0, 0.1, -1.0, -0.1];
        let bank_labels = [0, 0, 1, 1];
        let queries = [0.9f32, 0.0, -0.9, 0.05];
        assert_eq!(
            knn_accuracy(&bank, &bank_labels, &queries, &[0, 1], 2, 2, 0.07),
            1.0
        );
        assert_eq!(
            knn_accuracy(&bank, &bank_labels, &queries, &[1, 1], 2, 2, 0.07),
            0.5
        );
        // k larger than the bank uses the whole bank; the closer pair still wins by weight.
        assert_eq!(
            knn_accuracy(&bank, &bank_labels, &queries, &[0, 1], 2, 20, 0.07),
            1.0
        );
    }

    #[test]
    fn normalize_rows_makes_unit_rows_and_keeps_zero_rows() {
        let rows = normalize_rows(&[3.0, 4.0, 0.0, 0.0], 2);
        assert_eq!(rows, vec![0.6, 0.8, 0.0, 0.0]);
    }
}
