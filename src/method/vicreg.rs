//! VICReg's variance and covariance terms (Bardes et al. 2022) on the unit embeddings the
//! particle view shows, for the VICReg baseline and its regularized variant (see
//! `config::Preset::Vicreg`); [`super::forces::loss_terms`] adds them while they are on.

use burn::tensor::Tensor;

use super::forces::covariance;

/// VICReg's weights relative to its invariance (the attraction at weight 1): the paper's
/// 25 : 25 : 1 (invariance, variance, covariance).
pub const VICREG_VARIANCE_WEIGHT: f32 = 1.0;
pub const VICREG_COVARIANCE_WEIGHT: f32 = 0.04;

/// VICReg's variance term on the sphere: `mean_{m,d} relu(gamma - std_i p[i,m,d])`, the
/// standard deviation over the batch of every dimension of every view's embeddings held up to
/// `gamma = 1 / sqrt(D)`, which is what a cloud spread uniformly over the unit sphere has (the
/// paper's gamma = 1 is for unnormalised embeddings; ours are on the sphere). Collapsed: gamma;
/// every dimension spread at least that much: 0.
///
/// # Shapes
/// - `online`: `[N, M, D]`
/// - output: `[1]`
pub fn vicreg_variance_loss(online: Tensor<3>) -> Tensor<1> {
    let [_, _, d] = online.dims();
    let gamma = 1.0 / (d as f64).sqrt();
    let centred = online.clone() - online.mean_dim(0);
    let std = centred.square().mean_dim(0).add_scalar(1e-8).sqrt();
    (std.neg().add_scalar(gamma)).clamp_min(0.0).mean()
}

/// VICReg's covariance term: `mean_m D * sum_{d != d'} C_m[d, d']^2`, `C_m` the covariance over
/// the batch of view m's embeddings: 0 when the dimensions are uncorrelated. On the sphere
/// the entries are of order 1 / D; the factor D puts the term on the scale of
/// [`super::forces::singular_value_loss`], whose off-diagonal part it is (per view).
///
/// # Shapes
/// - `online`: `[N, M, D]`
/// - output: `[1]`
pub fn vicreg_covariance_loss(online: Tensor<3>) -> Tensor<1> {
    let [n, m, d] = online.dims();
    let device = online.device();
    let off_diagonal = Tensor::<2>::ones([d, d], &device) - Tensor::<2>::eye(d, &device);
    let views = online.chunk(m, 1);
    let per_view: Vec<Tensor<1>> = views
        .into_iter()
        .map(|view| {
            let rows = view.reshape([n, d]);
            (covariance(rows) * off_diagonal.clone())
                .square()
                .sum()
                .mul_scalar(d as f64)
        })
        .collect();
    Tensor::cat(per_view, 0).mean()
}

#[cfg(test)]
/// The D basis vectors and their negatives, as N = 2D images of M = 2 identical views:
/// a cloud whose every dimension has std 1 / sqrt(D) exactly and no covariance.
pub(crate) fn axes(d: usize, device: &burn::tensor::Device) -> Tensor<3> {
    let mut values = Vec::new();
    for sign in [1.0f32, -1.0] {
        for axis in 0..d {
            for _view in 0..2 {
                values.extend((0..d).map(|k| if k == axis { sign } else { 0.0 }));
            }
        }
    }
    Tensor::from_data(burn::tensor::TensorData::new(values, [2 * d, 2, d]), device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::test_support::{close, device, scalar, t3};

    #[test]
    fn vicreg_variance_is_gamma_when_collapsed_and_zero_when_spread_like_the_sphere() {
        let device = device();
        let d = 4;
        let collapsed = t3(&[0.5f32, 0.5, 0.5, 0.5].repeat(6), [3, 2, d], &device);
        let gamma = 1.0 / (d as f32).sqrt();
        assert!(close(scalar(vicreg_variance_loss(collapsed)), gamma, 1e-4));
        assert!(scalar(vicreg_variance_loss(axes(d, &device))).abs() < 1e-4);
        // Spread along one axis only: the other D - 1 dimensions are at gamma each; the spread
        // one has std 1 > gamma.
        let mut line = Vec::new();
        for sign in [1.0f32, -1.0] {
            for _view in 0..2 {
                line.extend([sign, 0.0, 0.0, 0.0]);
            }
        }
        let line = t3(&line, [2, 2, d], &device);
        let expected = gamma * (d as f32 - 1.0) / d as f32;
        assert!(close(scalar(vicreg_variance_loss(line)), expected, 1e-4));
    }

    #[test]
    fn vicreg_covariance_is_zero_without_correlation_and_d_over_2_on_a_diagonal_line() {
        let device = device();
        let d = 4;
        assert!(scalar(vicreg_covariance_loss(axes(d, &device))).abs() < 1e-6);
        // Rows +-u, u = (1, 1, 0, 0) / sqrt 2: C = u u^T, off-diagonal entries 1/2 and 1/2,
        // so D * (1/4 + 1/4) = D / 2 for each view.
        let h = std::f32::consts::FRAC_1_SQRT_2;
        let mut rows = Vec::new();
        for sign in [1.0f32, -1.0] {
            for _view in 0..2 {
                rows.extend([sign * h, sign * h, 0.0, 0.0]);
            }
        }
        let line = t3(&rows, [2, 2, d], &device);
        assert!(close(
            scalar(vicreg_covariance_loss(line)),
            d as f32 / 2.0,
            1e-4
        ));
    }
}
