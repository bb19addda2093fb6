//! The three forces of MSBReg (see `../shared/MSBREG.md`), each a pure function on tensors of
//! shape `[N, M, D]`: N images, M views each, D embedding dimensions, rows already
//! L2-normalised.
//!
//! | force | function | effect on the particles |
//! |---|---|---|
//! | attraction | [`centroid_loss`] | pulls the views of one image toward their centroid |
//! | global dispersion | [`singular_value_loss`] | pushes the covariance toward `I / D` |
//! | local dispersion | [`brownian_loss`] | a random kick per image, shared by its views |
//!
//! Beside them, for the VICReg baseline (off unless a preset or config turns them on), the
//! variance and covariance terms of [`super::vicreg`]. With the attraction (mean centroid, no
//! predictor, no EMA) as its invariance term, they make VICReg.
//!
//! [`Dynamics`] holds the switches and weights of all three (plus predictor, EMA and `tau`) in
//! one plain value that the trainer may replace between any two steps.

use burn::tensor::{Device, Tensor};
use rand::{Rng, RngExt};
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

pub use super::vicreg::{
    VICREG_COVARIANCE_WEIGHT, VICREG_VARIANCE_WEIGHT, vicreg_covariance_loss, vicreg_variance_loss,
};
pub use crate::model::online::{NORM_FLOOR, normalize};

/// One force: whether it acts, and with what weight.
///
/// Both keys may be left out of a config file's table: a file's keys are laid over a preset's
/// key by key (`config::merge_tables`), so a table with only `weight` keeps the preset's `on`.
/// The serde default (on, weight 1) only fills a table parsed without a preset.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Force {
    pub on: bool,
    pub weight: f32,
}

impl Default for Force {
    fn default() -> Self {
        Self::on(1.0)
    }
}

impl Force {
    pub const fn on(weight: f32) -> Self {
        Self { on: true, weight }
    }

    pub const fn off(weight: f32) -> Self {
        Self { on: false, weight }
    }

    /// The factor this force's term enters the total loss with.
    pub fn factor(self) -> f32 {
        if self.on { self.weight } else { 0.0 }
    }
}

/// Which centroid each view is pulled toward.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CentroidMode {
    /// `c[i] = normalize(mean_m t[i,m])`, the same for all views of image i.
    #[default]
    Mean,
    /// `c[i,m] = normalize(mean_{m' != m} t[i,m'])`; with M = 2 this is BYOL's loss.
    LeaveOneOut,
}

/// Everything a user may steer between two steps without restarting the run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dynamics {
    /// Attraction: the multiview centroid loss.
    pub centroid: Force,
    pub centroid_mode: CentroidMode,
    /// Global dispersion: the singular value loss.
    pub singular_value: Force,
    /// Local dispersion: the Brownian diffusive loss.
    pub brownian: Force,
    /// VICReg's variance term ([`super::vicreg::vicreg_variance_loss`]).
    pub variance: Force,
    /// VICReg's covariance term ([`super::vicreg::vicreg_covariance_loss`]).
    pub covariance: Force,
    /// Pass the projection through the predictor head on the online branch.
    pub predictor: bool,
    /// Use an EMA target network; when off the target is the online network, stop-gradient.
    pub ema: bool,
    /// EMA decay: `w' <- tau * w' + (1 - tau) * w` after each step.
    pub tau: f32,
}

impl Default for Dynamics {
    /// The MSBReg defaults: all three forces, predictor and EMA. `w_s = 0.2` was tuned on the
    /// default sandbox (see ARCHITECTURE.md): at 1.0 the cloud spreads into the style noise and
    /// the views drift apart (kNN 0.94); at 0.03 to 0.1 the effective rank falls toward D / 2.
    fn default() -> Self {
        Self {
            centroid: Force::on(1.0),
            centroid_mode: CentroidMode::Mean,
            singular_value: Force::on(0.2),
            brownian: Force::on(0.1),
            variance: Force::off(VICREG_VARIANCE_WEIGHT),
            covariance: Force::off(VICREG_COVARIANCE_WEIGHT),
            predictor: true,
            ema: true,
            tau: 0.99,
        }
    }
}

impl Dynamics {
    /// What changed from `old` to `self`, in words ("Brownian off; singular value weight 0.2
    /// -> 0.5"); empty when nothing did. The timeline shows it on the event's mark.
    /// Whether any loss term acts (a step without one changes no weight).
    pub fn any_force(&self) -> bool {
        [
            self.centroid,
            self.singular_value,
            self.brownian,
            self.variance,
            self.covariance,
        ]
        .iter()
        .any(|force| force.on)
    }

    pub fn describe_change(&self, old: &Self) -> String {
        let mut parts = Vec::new();
        for (name, new, was) in [
            ("centroid", self.centroid, old.centroid),
            ("singular value", self.singular_value, old.singular_value),
            ("Brownian", self.brownian, old.brownian),
            ("variance", self.variance, old.variance),
            ("covariance", self.covariance, old.covariance),
        ] {
            if new.on != was.on {
                parts.push(format!("{name} {}", if new.on { "on" } else { "off" }));
            }
            if new.weight != was.weight {
                parts.push(format!("{name} weight {} -> {}", was.weight, new.weight));
            }
        }
        if self.centroid_mode != old.centroid_mode {
            parts.push(format!("centroid mode {:?}", self.centroid_mode));
        }
        for (name, new, was) in [
            ("predictor", self.predictor, old.predictor),
            ("EMA", self.ema, old.ema),
        ] {
            if new != was {
                parts.push(format!("{name} {}", if new { "on" } else { "off" }));
            }
        }
        if self.tau != old.tau {
            parts.push(format!("tau {} -> {}", old.tau, self.tau));
        }
        parts.join("; ")
    }
}

/// The centroids each view is pulled toward, from the target embeddings (no gradient).
///
/// # Shapes
/// - `target`: `[N, M, D]`
/// - output: `[N, 1, D]` for [`CentroidMode::Mean`], `[N, M, D]` for
///   [`CentroidMode::LeaveOneOut`]
pub fn centroids(target: Tensor<3>, mode: CentroidMode) -> Tensor<3> {
    let target = target.detach();
    match mode {
        CentroidMode::Mean => normalize(target.mean_dim(1)),
        // The mean over the other M - 1 views points the same way as their sum.
        CentroidMode::LeaveOneOut => normalize(target.clone().sum_dim(1) - target),
    }
}

/// Attraction: `L_c = mean_{i,m} || p[i,m] - c[i] ||^2`, with the centroids of
/// [`centroids`]. For unit vectors this equals `mean (2 - 2 <p, c>)`.
///
/// # Shapes
/// - `online`: `[N, M, D]`, normalised online predictions p
/// - `target`: `[N, M, D]`, normalised target embeddings t (gradients are not taken through it)
/// - output: `[1]`
pub fn centroid_loss(online: Tensor<3>, target: Tensor<3>, mode: CentroidMode) -> Tensor<1> {
    let centroid = centroids(target, mode);
    (online - centroid).square().sum_dim(2).mean()
}

/// The covariance `C = Zc^T Zc / rows` of the rows of `z`, centred.
///
/// # Shapes
/// - `z`: `[rows, D]`
/// - output: `[D, D]`
pub fn covariance(z: Tensor<2>) -> Tensor<2> {
    let [rows, _] = z.dims();
    let centred = z.clone() - z.mean_dim(0);
    centred
        .clone()
        .transpose()
        .matmul(centred)
        .div_scalar(rows as f64)
}

/// Global dispersion: `L_s = D * || C - I/D ||_F^2`, C the covariance of all N*M online
/// embeddings. Uniform on the sphere: 0; all at one point: 1; on one line: D - 1.
///
/// # Shapes
/// - `online`: `[N, M, D]`
/// - output: `[1]`
pub fn singular_value_loss(online: Tensor<3>) -> Tensor<1> {
    let [n, m, d] = online.dims();
    let device = online.device();
    let cov = covariance(online.reshape([n * m, d]));
    let isotropic = Tensor::<2>::eye(d, &device).div_scalar(d as f64);
    (cov - isotropic).square().sum().mul_scalar(d as f64)
}

/// Local dispersion: `L_b = mean_{i,m} <p[i,m], r[i]>`, one random unit direction per image
/// shared by its views. Its gradient on each particle is a random kick.
///
/// # Shapes
/// - `online`: `[N, M, D]`
/// - `directions`: `[N, D]`, unit rows (see [`brownian_directions`])
/// - output: `[1]`
pub fn brownian_loss(online: Tensor<3>, directions: Tensor<2>) -> Tensor<1> {
    (online * directions.unsqueeze_dim::<3>(1))
        .sum_dim(2)
        .mean()
}

/// N directions uniform on the unit sphere in D dimensions (normalised Gaussians), row-major
/// `[N, D]`, drawn from `rng` so that a seeded run is reproducible.
pub fn brownian_directions(rng: &mut impl Rng, n: usize, d: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n * d);
    for _ in 0..n {
        let start = out.len();
        let mut norm_sq = 0.0f64;
        for _ in 0..d {
            let x: f64 = rng.sample(StandardNormal);
            norm_sq += x * x;
            out.push(x as f32);
        }
        let inv = 1.0 / norm_sq.sqrt().max(NORM_FLOOR);
        for x in &mut out[start..] {
            *x = (f64::from(*x) * inv) as f32;
        }
    }
    out
}

/// The terms of one step, each a `[1]` tensor, before weighting: the three forces always,
/// VICReg's two only while they are on.
#[derive(Clone, Debug)]
pub struct LossTerms {
    pub centroid: Tensor<1>,
    pub singular_value: Tensor<1>,
    pub brownian: Tensor<1>,
    pub variance: Option<Tensor<1>>,
    pub covariance: Option<Tensor<1>>,
}

/// Computes the three terms. A term whose force is off is computed on detached inputs, so it
/// is still reported but costs no backward pass.
///
/// # Shapes
/// - `online`: `[N, M, D]`, normalised online predictions p
/// - `target`: `[N, M, D]`, normalised target embeddings t
/// - `directions`: `[N, D]`
pub fn loss_terms(
    online: &Tensor<3>,
    target: Tensor<3>,
    directions: Tensor<2>,
    dynamics: &Dynamics,
) -> LossTerms {
    let input = |force: Force| {
        if force.on {
            online.clone()
        } else {
            online.clone().detach()
        }
    };
    LossTerms {
        centroid: centroid_loss(input(dynamics.centroid), target, dynamics.centroid_mode),
        singular_value: singular_value_loss(input(dynamics.singular_value)),
        brownian: brownian_loss(input(dynamics.brownian), directions),
        variance: dynamics
            .variance
            .on
            .then(|| vicreg_variance_loss(online.clone())),
        covariance: dynamics
            .covariance
            .on
            .then(|| vicreg_covariance_loss(online.clone())),
    }
}

impl LossTerms {
    /// `L = w_c on_c L_c + w_s on_s L_s + w_b on_b L_b` (+ VICReg's terms while on).
    pub fn total(&self, dynamics: &Dynamics) -> Tensor<1> {
        let mut total = self.centroid.clone().mul_scalar(dynamics.centroid.factor())
            + self
                .singular_value
                .clone()
                .mul_scalar(dynamics.singular_value.factor())
            + self.brownian.clone().mul_scalar(dynamics.brownian.factor());
        if let Some(variance) = &self.variance {
            total = total + variance.clone().mul_scalar(dynamics.variance.factor());
        }
        if let Some(covariance) = &self.covariance {
            total = total + covariance.clone().mul_scalar(dynamics.covariance.factor());
        }
        total
    }

    /// `[total, centroid, singular_value, brownian]` then the VICReg terms that are on, in one
    /// tensor, read back with a single device synchronisation.
    pub fn stacked(&self, total: Tensor<1>) -> Tensor<1> {
        let mut parts = vec![
            total,
            self.centroid.clone(),
            self.singular_value.clone(),
            self.brownian.clone(),
        ];
        parts.extend(self.variance.iter().cloned());
        parts.extend(self.covariance.iter().cloned());
        Tensor::cat(parts, 0)
    }
}

/// A `[N, D]` tensor from row-major host data.
pub fn tensor_2d(data: Vec<f32>, rows: usize, cols: usize, device: &Device) -> Tensor<2> {
    Tensor::<2>::from_data(burn::tensor::TensorData::new(data, [rows, cols]), device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    use crate::method::test_support::{close, device, scalar, t3};

    #[test]
    fn vicreg_terms_enter_the_total_only_while_on() {
        let device = device();
        let online = crate::method::vicreg::axes(3, &device);
        let directions = tensor_2d([1.0, 0.0, 0.0].repeat(6), 6, 3, &device);
        let mut dynamics = crate::config::Preset::Vicreg.dynamics();
        let terms = loss_terms(&online, online.clone(), directions.clone(), &dynamics);
        assert!(terms.variance.is_some() && terms.covariance.is_some());
        assert_eq!(terms.stacked(terms.total(&dynamics)).dims(), [6]);
        dynamics.variance.on = false;
        dynamics.covariance.on = false;
        let terms = loss_terms(&online, online.clone(), directions, &dynamics);
        assert!(terms.variance.is_none() && terms.covariance.is_none());
        assert_eq!(terms.stacked(terms.total(&dynamics)).dims(), [4]);
    }

    #[test]
    fn centroid_loss_is_zero_when_all_views_are_equal() {
        let d = device();
        // Two images, three identical unit views each.
        let row_a = [0.6f32, 0.8, 0.0];
        let row_b = [0.0f32, 0.0, 1.0];
        let values: Vec<f32> = [row_a, row_a, row_a, row_b, row_b, row_b].concat();
        let p = t3(&values, [2, 3, 3], &d);
        for mode in [CentroidMode::Mean, CentroidMode::LeaveOneOut] {
            let loss = scalar(centroid_loss(p.clone(), p.clone(), mode));
            assert!(loss.abs() < 1e-6, "{mode:?}: {loss}");
        }
    }

    #[test]
    fn centroid_loss_of_two_orthogonal_views() {
        // p = t = (e1, e2). Mean centroid (1, 1)/sqrt(2): ||e1 - c||^2 = 2 - sqrt(2).
        // Leave-one-out: each view is pulled to the other, ||e1 - e2||^2 = 2.
        let d = device();
        let p = t3(&[1.0, 0.0, 0.0, 1.0], [1, 2, 2], &d);
        let mean = scalar(centroid_loss(p.clone(), p.clone(), CentroidMode::Mean));
        assert!(close(mean, 2.0 - 2f32.sqrt(), 1e-6), "{mean}");
        let loo = scalar(centroid_loss(p.clone(), p, CentroidMode::LeaveOneOut));
        assert!(close(loo, 2.0, 1e-6), "{loo}");
    }

    #[test]
    fn leave_one_out_with_two_views_is_byols_loss() {
        // BYOL: 2 - 2 <p_1, t_2> for view 1 and the same swapped, averaged.
        let d = device();
        let p_values = [0.6f32, 0.8, 0.0, 1.0];
        let t_values = [0.0f32, 1.0, 0.8, 0.6];
        let p = t3(&p_values, [1, 2, 2], &d);
        let t = t3(&t_values, [1, 2, 2], &d);
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        let byol = f32::midpoint(
            2.0 - 2.0 * dot(&p_values[0..2], &t_values[2..4]),
            2.0 - 2.0 * dot(&p_values[2..4], &t_values[0..2]),
        );
        let loss = scalar(centroid_loss(p, t, CentroidMode::LeaveOneOut));
        assert!(close(loss, byol, 1e-6), "{loss} vs {byol}");
    }

    #[test]
    fn singular_value_loss_closed_forms() {
        let d = device();
        // Fully collapsed: C = 0, L_s = D * D * (1/D)^2 = 1.
        let collapsed = t3(&[0.0, 1.0, 0.0, 0.0].repeat(8), [4, 2, 4], &d);
        let loss = scalar(singular_value_loss(collapsed));
        assert!(close(loss, 1.0, 1e-6), "collapsed: {loss}");
        // +-e1, +-e2 in D = 2: C = I / 2, L_s = 0.
        let uniform = t3(&[1.0, 0.0, -1.0, 0.0, 0.0, 1.0, 0.0, -1.0], [2, 2, 2], &d);
        let loss = scalar(singular_value_loss(uniform));
        assert!(loss.abs() < 1e-6, "uniform: {loss}");
        // +-e1 in D = 4: C = diag(1, 0, 0, 0), L_s = 4 * ((3/4)^2 + 3/16) = 3 = D - 1.
        let line = t3(&[1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0], [1, 2, 4], &d);
        let loss = scalar(singular_value_loss(line));
        assert!(close(loss, 3.0, 1e-6), "line: {loss}");
    }

    #[test]
    fn brownian_loss_is_the_mean_projection_on_the_kick() {
        let d = device();
        let r = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 0.0, 0.0, 1.0], [2, 2]), &d);
        // Image 0: views e1 and -e1 (projections 1, -1); image 1: e2, e2 (1, 1). Mean 0.5.
        let p = t3(&[1.0, 0.0, -1.0, 0.0, 0.0, 1.0, 0.0, 1.0], [2, 2, 2], &d);
        let loss = scalar(brownian_loss(p, r));
        assert!(close(loss, 0.5, 1e-6), "{loss}");
    }

    #[test]
    fn brownian_directions_are_unit_and_seeded() {
        let mut a = crate::seed::rng(7, crate::seed::Stream::Brownian);
        let mut b = crate::seed::rng(7, crate::seed::Stream::Brownian);
        let x = brownian_directions(&mut a, 50, 8);
        assert_eq!(x, brownian_directions(&mut b, 50, 8));
        for row in x.chunks(8) {
            let norm: f32 = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5);
        }
        // Isotropic: the mean of 50 x 8 coordinates is near 0.
        let mean: f32 = x.iter().sum::<f32>() / x.len() as f32;
        assert!(mean.abs() < 0.1, "{mean}");
    }

    #[test]
    fn normalize_of_a_zero_vector_has_a_finite_gradient() {
        let d = device().autodiff();
        let x = Tensor::<2>::zeros([1, 3], &d).require_grad();
        let y = normalize(x.clone()).sum();
        let grads = y.backward();
        let g = x
            .grad(&grads)
            .map(|g| g.into_data().try_to_vec::<f32>().unwrap_or_default());
        // Below the floor normalize is x / NORM_FLOOR: slope 1e12, not NaN.
        assert_eq!(g, Some(vec![1e12; 3]));
    }

    /// Finite-difference check of `d loss(normalize(x)) / dx` against autodiff.
    fn gradient_check(loss: impl Fn(Tensor<3>) -> Tensor<1>, dims: [usize; 3], seed: u64) {
        let d = device().autodiff();
        let mut rng = crate::seed::rng(seed, crate::seed::Stream::Dataset);
        let count: usize = dims.iter().product();
        let values: Vec<f32> = (0..count).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let x = t3(&values, dims, &d).require_grad();
        let grads = loss(normalize(x.clone())).backward();
        let analytic = x
            .grad(&grads)
            .map(|g| g.into_data().try_to_vec::<f32>().unwrap_or_default())
            .unwrap_or_default();
        assert_eq!(analytic.len(), count);
        let plain = device();
        let eval = |v: &[f32]| scalar(loss(normalize(t3(v, dims, &plain))));
        let eps = 1e-2f32;
        for i in 0..count {
            let mut plus = values.clone();
            plus[i] += eps;
            let mut minus = values.clone();
            minus[i] -= eps;
            let numeric = (eval(&plus) - eval(&minus)) / (2.0 * eps);
            assert!(
                (numeric - analytic[i]).abs() <= 2e-3 + 2e-2 * numeric.abs(),
                "coordinate {i}: finite differences {numeric}, autodiff {}",
                analytic[i]
            );
        }
    }

    #[test]
    fn centroid_loss_gradient_matches_finite_differences() {
        let dims = [3, 3, 4];
        let mut rng = crate::seed::rng(11, crate::seed::Stream::Dataset);
        let target_values: Vec<f32> = (0..36).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        for mode in [CentroidMode::Mean, CentroidMode::LeaveOneOut] {
            let target_values = target_values.clone();
            gradient_check(
                move |p| {
                    let target = normalize(t3(&target_values, dims, &p.device()));
                    centroid_loss(p, target, mode)
                },
                dims,
                1,
            );
        }
    }

    #[test]
    fn singular_value_loss_gradient_matches_finite_differences() {
        gradient_check(singular_value_loss, [4, 2, 3], 2);
    }

    #[test]
    fn brownian_loss_gradient_matches_finite_differences() {
        let mut rng = crate::seed::rng(3, crate::seed::Stream::Brownian);
        let r = brownian_directions(&mut rng, 3, 4);
        gradient_check(
            move |p| {
                let directions = tensor_2d(r.clone(), 3, 4, &p.device());
                brownian_loss(p, directions)
            },
            [3, 2, 4],
            3,
        );
    }

    #[test]
    fn switched_off_terms_are_reported_but_not_in_the_total() {
        let d = device();
        let p = t3(&[1.0, 0.0, 0.0, 1.0], [1, 2, 2], &d);
        let r = tensor_2d(vec![1.0, 0.0], 1, 2, &d);
        let dynamics = Dynamics {
            centroid: Force::on(2.0),
            singular_value: Force::off(5.0),
            brownian: Force::on(0.5),
            ..Dynamics::default()
        };
        let terms = loss_terms(&p, p.clone(), r, &dynamics);
        let c = scalar(terms.centroid.clone());
        let s = scalar(terms.singular_value.clone());
        let b = scalar(terms.brownian.clone());
        assert!(s > 0.0, "the switched-off term is still computed");
        let total = scalar(terms.total(&dynamics));
        assert!(close(total, 2.0 * c + 0.5 * b, 1e-6), "{total}");
    }
}
