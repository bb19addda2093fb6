//! Projection of D-dimensional unit embeddings to the 3 coordinates the particle view draws.
//!
//! The basis is the top three principal axes of the centred embeddings (eigenvectors of the
//! D x D covariance, largest eigenvalue first). Points are projected *without* centring or
//! rescaling: unit embeddings land inside the unit ball, so a collapsing cloud visibly shrinks
//! to a dot instead of being blown back up by a per-frame normalisation.
//!
//! Successive bases are aligned to the previous one by orthogonal Procrustes (the rotation R
//! within the new 3-D subspace minimising `||B_new R - B_prev||`), so that sign flips and
//! swapped axes between two snapshots do not move the picture: what moves on screen is the
//! particles. The sphere mode is the same 3 coordinates normalised to unit length.
//!
//! Pure functions plus [`Projector`], which remembers the previous basis. Runs on the trainer
//! thread, never on the UI thread.

mod frame;

use nalgebra::{DMatrix, Matrix3, SymmetricEigen};

pub use frame::{
    Coarsener, Frame, Framer, GRID, MAX_GRID_STEP, MAX_PRECISION_LEVEL, dequantize, quantize,
};

/// Coordinates the view draws: 3 per point.
pub const COMPONENTS: usize = 3;

/// An orthonormal `[D, 3]` basis (columns are axes).
pub type Basis = DMatrix<f64>;

/// The top `COMPONENTS` principal axes of `rows` (row-major `[n, d]`), largest variance
/// first. When `d < 3` the missing axes are zero columns.
///
/// # Shapes
/// - `rows`: `[n, d]` row-major
/// - output: `[d, 3]`
pub fn principal_axes(rows: &[f32], d: usize) -> Basis {
    principal_axes_and_spectrum(rows, d).0
}

/// The principal axes and, from the same eigen-decomposition, the singular values of the
/// centred rows (what `diagnostics::singular_values` computes), largest first: the trainer
/// needs both every display refresh and decomposes the covariance once.
///
/// # Shapes
/// - `rows`: `[n, d]` row-major
/// - output: `[d, 3]` and `d` values
pub fn principal_axes_and_spectrum(rows: &[f32], d: usize) -> (Basis, Vec<f64>) {
    let n = rows.len().checked_div(d).unwrap_or(0);
    let mut basis = DMatrix::<f64>::zeros(d, COMPONENTS);
    if n == 0 {
        return (basis, vec![0.0; d]);
    }
    let covariance = crate::diagnostics::covariance(rows, d);
    let eigen = SymmetricEigen::new(covariance);
    let mut order: Vec<usize> = (0..d).collect();
    order.sort_by(|&a, &b| eigen.eigenvalues[b].total_cmp(&eigen.eigenvalues[a]));
    for (column, &axis) in order.iter().take(COMPONENTS).enumerate() {
        basis.set_column(column, &eigen.eigenvectors.column(axis));
    }
    let spectrum = order
        .iter()
        .map(|&axis| eigen.eigenvalues[axis].max(0.0).sqrt())
        .collect();
    (basis, spectrum)
}

/// `new` rotated within its own span to best match `previous` (orthogonal Procrustes):
/// `new * R` with `R = U V^T` from the SVD of `new^T previous`. Returns `new` unchanged when
/// the shapes differ.
///
/// # Shapes
/// - `previous`, `new`, output: `[d, 3]`
pub fn align(previous: &Basis, new: Basis) -> Basis {
    if previous.shape() != new.shape() {
        return new;
    }
    let cross: Matrix3<f64> = Matrix3::from_iterator((new.transpose() * previous).iter().copied());
    let svd = cross.svd(true, true);
    let (Some(u), Some(v_t)) = (svd.u, svd.v_t) else {
        return new;
    };
    let rotation = u * v_t;
    let rotation = DMatrix::from_iterator(COMPONENTS, COMPONENTS, rotation.iter().copied());
    new * rotation
}

/// `rows · basis` for every row: 3 coordinates per point, no centring.
///
/// # Shapes
/// - `rows`: `[n, d]` row-major; `basis`: `[d, 3]`
/// - output: `[n]` of `[x, y, z]`
pub fn project(rows: &[f32], d: usize, basis: &Basis) -> Vec<[f32; 3]> {
    if d == 0 || basis.nrows() != d {
        return Vec::new();
    }
    rows.chunks_exact(d)
        .map(|row| {
            let mut out = [0.0f32; 3];
            for (c, slot) in out.iter_mut().enumerate() {
                let column = basis.column(c);
                *slot = row
                    .iter()
                    .zip(column.iter())
                    .map(|(&x, &b)| f64::from(x) * b)
                    .sum::<f64>() as f32;
            }
            out
        })
        .collect()
}

/// The point scaled to unit length (the sphere mode); a zero point stays at the origin.
pub fn on_sphere(p: [f32; 3]) -> [f32; 3] {
    let norm = (p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sqrt();
    if norm > 1e-12 {
        [p[0] / norm, p[1] / norm, p[2] / norm]
    } else {
        [0.0; 3]
    }
}

/// Remembers the last basis so that the next one is aligned to it.
#[derive(Debug, Default)]
pub struct Projector {
    basis: Option<Basis>,
}

impl Projector {
    /// Forget the last basis (a new run starts).
    pub fn reset(&mut self) {
        self.basis = None;
    }

    /// Fits the basis to `fit_rows`, aligns it to the previous one, and projects every slice
    /// of `project_rows` with it (e.g. the points, then their views).
    pub fn fit_project(
        &mut self,
        fit_rows: &[f32],
        d: usize,
        sets: &[&[f32]],
    ) -> Vec<Vec<[f32; 3]>> {
        self.fit_project_spectrum(fit_rows, d, sets).0
    }

    /// `rows` projected with the last basis (empty before the first fit).
    pub fn project(&self, rows: &[f32], d: usize) -> Vec<[f32; 3]> {
        self.basis
            .as_ref()
            .map_or_else(Vec::new, |basis| project(rows, d, basis))
    }

    /// [`Projector::fit_project`], also returning the singular values of `fit_rows`.
    pub fn fit_project_spectrum(
        &mut self,
        fit_rows: &[f32],
        d: usize,
        sets: &[&[f32]],
    ) -> (Vec<Vec<[f32; 3]>>, Vec<f64>) {
        let (fresh, spectrum) = principal_axes_and_spectrum(fit_rows, d);
        let basis = match &self.basis {
            Some(previous) => align(previous, fresh),
            None => fresh,
        };
        let out = sets.iter().map(|rows| project(rows, d, &basis)).collect();
        self.basis = Some(basis);
        (out, spectrum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spectrum_beside_the_axes_is_the_diagnostics_spectrum() {
        let rows: Vec<f32> = (0..40).map(|i| ((i * 37 % 11) as f32).sin()).collect();
        let (_, spectrum) = principal_axes_and_spectrum(&rows, 4);
        let expected = crate::diagnostics::singular_values(&rows, 4);
        assert_eq!(spectrum.len(), expected.len());
        for (a, b) in spectrum.iter().zip(&expected) {
            assert!((a - b).abs() < 1e-9, "{spectrum:?} vs {expected:?}");
        }
        assert!(spectrum.windows(2).all(|w| w[0] >= w[1]), "largest first");
    }

    /// Points on the axes of a 5-D space: +-2 along x, +-1 along y, +-0.5 along z, so the
    /// covariance is exactly diag(8, 2, 0.5, 0, 0) / 6 and the principal axes are x, y, z.
    fn anisotropic() -> Vec<f32> {
        let mut rows = Vec::new();
        for (axis, extent) in [(0, 2.0f32), (1, 1.0), (2, 0.5)] {
            for sign in [1.0f32, -1.0] {
                let mut row = [0.0f32; 5];
                row[axis] = sign * extent;
                rows.extend(row);
            }
        }
        rows
    }

    #[test]
    fn axes_come_out_in_variance_order() {
        let basis = principal_axes(&anisotropic(), 5);
        assert!((basis[(0, 0)].abs() - 1.0).abs() < 1e-6, "{basis}");
        assert!((basis[(1, 1)].abs() - 1.0).abs() < 1e-6, "{basis}");
        assert!((basis[(2, 2)].abs() - 1.0).abs() < 1e-6, "{basis}");
    }

    #[test]
    fn a_sign_flipped_and_swapped_basis_aligns_back() {
        let previous = principal_axes(&anisotropic(), 5);
        // The same subspace with axis 0 negated and axes 1 and 2 swapped.
        let mut scrambled = previous.clone();
        scrambled.set_column(0, &(-previous.column(0)));
        scrambled.set_column(1, &previous.column(2));
        scrambled.set_column(2, &previous.column(1));
        let aligned = align(&previous, scrambled);
        assert!((aligned - &previous).abs().max() < 1e-9);
    }

    #[test]
    fn projection_keeps_the_scale_of_a_shrunk_cloud() {
        let rows = anisotropic();
        let basis = principal_axes(&rows, 5);
        let small: Vec<f32> = rows.iter().map(|x| x * 0.01).collect();
        let big = project(&rows, 5, &basis);
        let tiny = project(&small, 5, &basis);
        let extent = |points: &[[f32; 3]]| points.iter().map(|p| p[0].abs()).fold(0.0f32, f32::max);
        assert!((extent(&big) - 2.0).abs() < 0.01);
        assert!((extent(&tiny) - 0.02).abs() < 1e-3);
    }

    #[test]
    fn degenerate_inputs_do_not_panic() {
        assert_eq!(principal_axes(&[], 4).shape(), (4, 3));
        let basis = principal_axes(&[1.0, 0.0], 2);
        assert_eq!(basis.shape(), (2, 3));
        assert_eq!(project(&[1.0, 0.0], 2, &basis).len(), 1);
        assert_eq!(on_sphere([0.0; 3]), [0.0; 3]);
        let p = on_sphere([3.0, 0.0, 4.0]);
        assert!((p[0] - 0.6).abs() < 1e-6 && (p[2] - 0.8).abs() < 1e-6);
    }

    #[test]
    fn the_projector_holds_still_on_the_same_data() {
        let rows = anisotropic();
        let mut projector = Projector::default();
        let first = projector.fit_project(&rows, 5, &[&rows]);
        let second = projector.fit_project(&rows, 5, &[&rows]);
        for (a, b) in first[0].iter().zip(&second[0]) {
            for c in 0..3 {
                assert!((a[c] - b[c]).abs() < 1e-5);
            }
        }
    }
}
