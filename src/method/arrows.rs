//! The three forces on each displayed particle, for the view's arrows: the negative gradient
//! of each weighted term (see `forces` and MSBREG.md) with respect to that particle's unit
//! embedding, on the display set with its views taken as one batch (N displayed images, M = 3
//! embeddings each: the plain image and its two fixed views; online embeddings stand in for
//! the targets). Each is the tangent part (the embeddings live on the unit sphere), and is the
//! gradient of the batch mean times the batch size `K = N M`: the force on one particle,
//! independent of how many there are.
//!
//! Closed forms (`z[i,m]` unit embeddings, `w` a force's weight, 0 when it is off):
//! - attraction: `2 w_c c[i]` with `c[i] = normalize(mean_m z[i,m])` (leave-one-out: the mean
//!   of the other views), toward the image's centroid;
//! - global dispersion: `-4 D w_s Zc (C - I/D)` per row, `Zc` the centred rows and `C` their
//!   covariance: outward along directions with less than their share `1/D` of the variance,
//!   inward along those with more;
//! - local dispersion: `w_b k[i]`, the image's kick `k[i] = -r[i]` (moving along `-r` lowers
//!   `<z, r>`), the same for its views.
//!
//! Computed on the CPU from the display embeddings the trainer already has: for the display
//! set (512 x 3 rows of D <= 128) a few milliseconds, no second pass through the network.

use rand::Rng;

use super::forces::{CentroidMode, Dynamics, brownian_directions};

/// The forces, in the order of [`FORCE_NAMES`].
pub const FORCES: usize = 3;
/// Their names as the view labels them.
pub const FORCE_NAMES: [&str; FORCES] = ["Attraction", "Global dispersion", "Local dispersion"];

/// The forces on every displayed particle.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParticleForces {
    pub dim: usize,
    /// Per force, `[3N, D]` row-major: the points' forces, then the first views', then the
    /// second views' (the order of the display embeddings).
    pub forces: [Vec<f32>; FORCES],
}

impl ParticleForces {
    /// The root of the summed squared force of each kind over the particles.
    pub fn norms(&self) -> [f64; FORCES] {
        self.forces.each_ref().map(|f| {
            f.iter()
                .map(|&x| f64::from(x) * f64::from(x))
                .sum::<f64>()
                .sqrt()
        })
    }

    /// Each force's share of the three norms' sum (zeros when all are zero).
    pub fn shares(&self) -> [f64; FORCES] {
        let norms = self.norms();
        let total: f64 = norms.iter().sum();
        if total > 0.0 {
            norms.map(|n| n / total)
        } else {
            [0.0; FORCES]
        }
    }
}

/// The Brownian kicks of the displayed images: one unit direction per image, from `rng`.
pub fn display_kicks(rng: &mut impl Rng, n: usize, d: usize) -> Vec<f32> {
    brownian_directions(rng, n, d)
}

/// The forces on the display embeddings `rows` (`[points, view_a, view_b]`, `[N, D]` unit
/// rows each) under `dynamics`, with `r` the images' Brownian directions (`[N, D]`).
pub fn particle_forces(
    rows: &[Vec<f32>; 3],
    d: usize,
    dynamics: &Dynamics,
    r: &[f32],
) -> ParticleForces {
    let n = rows[0].len().checked_div(d).unwrap_or(0);
    let mut out = ParticleForces {
        dim: d,
        forces: std::array::from_fn(|_| vec![0.0; 3 * n * d]),
    };
    if n == 0 || rows.iter().any(|r| r.len() != n * d) || r.len() != n * d {
        return out;
    }
    let m = rows.len();
    let z = |i: usize, v: usize| &rows[v][i * d..(i + 1) * d];
    let weight = |force: &super::forces::Force| {
        if force.on {
            f64::from(force.weight)
        } else {
            0.0
        }
    };

    // Attraction.
    let w_c = weight(&dynamics.centroid);
    if w_c != 0.0 {
        for i in 0..n {
            let sum: Vec<f64> = (0..d)
                .map(|k| (0..m).map(|v| f64::from(z(i, v)[k])).sum())
                .collect();
            for v in 0..m {
                let centre: Vec<f64> = match dynamics.centroid_mode {
                    CentroidMode::Mean => sum.clone(),
                    CentroidMode::LeaveOneOut => {
                        (0..d).map(|k| sum[k] - f64::from(z(i, v)[k])).collect()
                    }
                };
                let force: Vec<f64> = normalized(&centre).iter().map(|c| 2.0 * w_c * c).collect();
                write_tangent(&mut out.forces[0], v * n + i, d, z(i, v), &force);
            }
        }
    }

    // Global dispersion, with nalgebra's products: `Zc` is [K, D].
    let w_s = weight(&dynamics.singular_value);
    if w_s != 0.0 {
        let count = n * m;
        let mut centred = nalgebra::DMatrix::<f64>::zeros(count, d);
        for v in 0..m {
            for i in 0..n {
                for (k, &x) in z(i, v).iter().enumerate() {
                    centred[(v * n + i, k)] = f64::from(x);
                }
            }
        }
        let mean = centred.row_mean();
        for mut row in centred.row_iter_mut() {
            row -= &mean;
        }
        let mut excess = centred.transpose() * &centred / count as f64;
        for a in 0..d {
            excess[(a, a)] -= 1.0 / d as f64;
        }
        let forces = centred * excess * (-4.0 * d as f64 * w_s);
        for v in 0..m {
            for i in 0..n {
                let row = v * n + i;
                let force: Vec<f64> = forces.row(row).iter().copied().collect();
                write_tangent(&mut out.forces[1], row, d, z(i, v), &force);
            }
        }
    }

    // Local dispersion: the kick -r[i], on the image's every view.
    let w_b = weight(&dynamics.brownian);
    if w_b != 0.0 {
        for i in 0..n {
            let force: Vec<f64> = r[i * d..(i + 1) * d]
                .iter()
                .map(|&x| -w_b * f64::from(x))
                .collect();
            for v in 0..m {
                write_tangent(&mut out.forces[2], v * n + i, d, z(i, v), &force);
            }
        }
    }
    out
}

fn normalized(x: &[f64]) -> Vec<f64> {
    let norm = x.iter().map(|a| a * a).sum::<f64>().sqrt();
    if norm > 1e-12 {
        x.iter().map(|a| a / norm).collect()
    } else {
        vec![0.0; x.len()]
    }
}

/// Writes the part of `force` tangent to the sphere at the unit `z` into row `row`.
fn write_tangent(out: &mut [f32], row: usize, d: usize, z: &[f32], force: &[f64]) {
    let radial: f64 = force.iter().zip(z).map(|(f, &x)| f * f64::from(x)).sum();
    for (k, slot) in out[row * d..(row + 1) * d].iter_mut().enumerate() {
        *slot = (force[k] - radial * f64::from(z[k])) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::forces::Force;

    fn only(which: usize, weight: f32) -> Dynamics {
        let mut dynamics = Dynamics::default();
        for (i, force) in [
            &mut dynamics.centroid,
            &mut dynamics.singular_value,
            &mut dynamics.brownian,
        ]
        .into_iter()
        .enumerate()
        {
            *force = Force {
                on: i == which,
                weight,
            };
        }
        dynamics.centroid_mode = CentroidMode::Mean;
        dynamics
    }

    fn unit(v: &[f64]) -> Vec<f32> {
        normalized(v).iter().map(|&x| x as f32).collect()
    }

    fn dot(a: &[f32], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(&x, y)| f64::from(x) * y).sum()
    }

    #[test]
    fn attraction_points_each_view_toward_the_centroid_of_its_image() {
        let d = 3;
        // One image: its plain embedding and two views spread around the x axis.
        let rows = [
            unit(&[1.0, 0.3, 0.0]),
            unit(&[1.0, -0.2, 0.25]),
            unit(&[1.0, -0.1, -0.3]),
        ];
        let forces = particle_forces(&rows, d, &only(0, 1.5), &[0.0, 0.0, 1.0]);
        let sum: Vec<f64> = (0..d)
            .map(|k| rows.iter().map(|r| f64::from(r[k])).sum())
            .collect();
        let c = normalized(&sum);
        for (v, row) in rows.iter().enumerate() {
            let f = &forces.forces[0][v * d..(v + 1) * d];
            // The closed form: 2 w c, minus its radial part.
            let radial = dot(row, &c);
            for k in 0..d {
                let expected = 2.0 * 1.5 * (c[k] - radial * f64::from(row[k]));
                assert!((f64::from(f[k]) - expected).abs() < 1e-6, "{f:?}");
            }
            // Toward the centroid: moving along it brings the view closer.
            let toward: Vec<f64> = (0..d).map(|k| c[k] - f64::from(row[k])).collect();
            assert!(dot(f, &toward) > 0.0);
        }
        assert!(
            forces.forces[1]
                .iter()
                .chain(&forces.forces[2])
                .all(|&x| x == 0.0)
        );
    }

    #[test]
    fn global_dispersion_pushes_a_collapsed_cloud_outward_along_its_spread() {
        // Nearly collapsed onto the x axis, spread a little along y: 3 images x 3 views.
        let d = 3;
        let spread = [-0.1, 0.0, 0.1];
        let rows: [Vec<f32>; 3] = std::array::from_fn(|v| {
            (0..3)
                .flat_map(|i| unit(&[1.0, spread[i] + 0.01 * v as f64, 0.0]))
                .collect()
        });
        let forces = particle_forces(&rows, d, &only(1, 1.0), &[0.0; 9]);
        for v in 0..3 {
            for i in 0..3 {
                let f = &forces.forces[1][(v * 3 + i) * d..(v * 3 + i + 1) * d];
                let y = f64::from(rows[v][i * d + 1]);
                let mean_y = (0..3)
                    .flat_map(|w| (0..3).map(move |j| (w, j)))
                    .map(|(w, j)| f64::from(rows[w][j * d + 1]))
                    .sum::<f64>()
                    / 9.0;
                if (y - mean_y).abs() > 0.05 {
                    // Outward: the force's y part has the sign of the offset from the mean.
                    assert!(
                        f64::from(f[1]) * (y - mean_y) > 0.0,
                        "view {v} image {i}: {f:?}, offset {}",
                        y - mean_y
                    );
                }
            }
        }
    }

    #[test]
    fn the_brownian_force_is_the_weight_times_the_kick_projected() {
        let d = 4;
        let rows = [
            unit(&[1.0, 0.0, 0.0, 0.0]),
            unit(&[0.9, 0.1, 0.0, 0.0]),
            unit(&[0.9, 0.0, 0.1, 0.0]),
        ];
        let r = unit(&[0.3, -0.5, 0.2, 0.8]);
        let forces = particle_forces(&rows, d, &only(2, 0.25), &r);
        for (v, row) in rows.iter().enumerate() {
            let kick: Vec<f64> = r.iter().map(|&x| -f64::from(x)).collect();
            let radial = dot(row, &kick);
            let f = &forces.forces[2][v * d..(v + 1) * d];
            for k in 0..d {
                let expected = 0.25 * (kick[k] - radial * f64::from(row[k]));
                assert!((f64::from(f[k]) - expected).abs() < 1e-6, "{f:?}");
            }
        }
        let shares = forces.shares();
        assert_eq!(shares, [0.0, 0.0, 1.0]);
    }

    #[test]
    fn a_force_that_is_off_has_no_arrows() {
        let d = 2;
        let rows = [unit(&[1.0, 0.0]), unit(&[0.0, 1.0]), unit(&[1.0, 1.0])];
        let mut dynamics = Dynamics::default();
        dynamics.centroid.on = false;
        dynamics.singular_value.on = false;
        dynamics.brownian.on = false;
        let forces = particle_forces(&rows, d, &dynamics, &[1.0, 0.0]);
        assert!(forces.forces.iter().flatten().all(|&x| x == 0.0));
        assert_eq!(forces.shares(), [0.0; 3]);
    }

    /// The closed forms against burn's autodiff of the loss terms themselves (`forces`):
    /// minus K times the gradient of each weighted term, tangent part.
    #[test]
    fn the_arrows_are_the_negative_gradients_of_the_loss_terms() {
        use crate::method::forces::{brownian_loss, centroid_loss, singular_value_loss};
        use burn::tensor::{Tensor, TensorData};
        use rand::RngExt;
        let (n, m, d) = (5, 3, 4);
        let mut rng = crate::seed::rng(3, crate::seed::Stream::Dataset);
        let rows: [Vec<f32>; 3] = std::array::from_fn(|_| {
            (0..n)
                .flat_map(|_| {
                    let v: Vec<f64> = (0..d).map(|_| rng.random_range(-1.0..1.0)).collect();
                    unit(&v)
                })
                .collect()
        });
        let r = display_kicks(&mut rng, n, d);
        let device = burn::tensor::Device::flex().autodiff();
        // [N, M, D]: image i, view v.
        let online: Vec<f32> = (0..n)
            .flat_map(|i| {
                (0..m)
                    .flat_map(|v| rows[v][i * d..(i + 1) * d].to_vec())
                    .collect::<Vec<_>>()
            })
            .collect();
        for (which, mode) in [
            (0, CentroidMode::Mean),
            (0, CentroidMode::LeaveOneOut),
            (1, CentroidMode::Mean),
            (2, CentroidMode::Mean),
        ] {
            let mut dynamics = only(which, 0.7);
            dynamics.centroid_mode = mode;
            let z = Tensor::<3>::from_data(TensorData::new(online.clone(), [n, m, d]), &device)
                .require_grad();
            let loss = match which {
                0 => centroid_loss(z.clone(), z.clone().detach(), mode),
                1 => singular_value_loss(z.clone()),
                _ => brownian_loss(
                    z.clone(),
                    Tensor::<2>::from_data(TensorData::new(r.clone(), [n, d]), &device),
                ),
            } * 0.7;
            let grads = loss.backward();
            let gradient = z
                .grad(&grads)
                .map(|g| g.into_data().try_to_vec::<f32>().unwrap_or_default())
                .unwrap_or_default();
            let ours = particle_forces(&rows, d, &dynamics, &r);
            for i in 0..n {
                for (v, view_rows) in rows.iter().enumerate() {
                    let at = (i * m + v) * d;
                    let g: Vec<f64> = gradient[at..at + d]
                        .iter()
                        .map(|&x| -f64::from(x) * (n * m) as f64)
                        .collect();
                    let row = &view_rows[i * d..(i + 1) * d];
                    let radial = dot(row, &g);
                    let f = &ours.forces[which][(v * n + i) * d..(v * n + i + 1) * d];
                    for k in 0..d {
                        let expected = g[k] - radial * f64::from(row[k]);
                        assert!(
                            (f64::from(f[k]) - expected).abs() < 1e-4 + 1e-3 * expected.abs(),
                            "force {which} {mode:?}, image {i} view {v}: {f:?} against {expected}"
                        );
                    }
                }
            }
        }
    }
}
