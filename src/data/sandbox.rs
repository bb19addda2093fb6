//! The particle sandbox's data: labelled points in a low-dimensional input space, and views of
//! them made by jitter and scaling.
//!
//! A point has `content_dim` *content* coordinates, which carry its class, followed by
//! `style_dims` *style* coordinates, Gaussian noise that carries nothing:
//!
//! - `gaussians`: content from K isotropic Gaussian blobs; in 2-D their centres sit evenly on
//!   the unit circle, in more dimensions they are drawn at random, kept apart.
//! - `rings`: content on K concentric rings in 2-D, radius `(k + 1) / K`, class k.
//!
//! A view of a point keeps its content, scaled and jittered (`s * x + e`, `s` uniform in
//! `[scale_min, scale_max]`, `e` Gaussian with standard deviation `jitter`), and redraws its
//! style. So the views say what to ignore, as augmentations do for images: style dominates the
//! distances between raw points (a randomly initialised network's neighbours are mostly of
//! other classes), and a network that learns to be invariant across views learns the classes.
//! With `style_dims = 0` the classes are plain to see from the start.

use rand::{Rng, RngExt};
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxKind {
    #[default]
    Gaussians,
    Rings,
}

impl SandboxKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Gaussians => "gaussians",
            Self::Rings => "rings",
        }
    }
}

/// Which point set, and how big.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxDataConfig {
    pub kind: SandboxKind,
    /// K, the number of classes (blobs or rings).
    pub classes: usize,
    /// Class-bearing coordinates per point; `rings` needs exactly 2.
    pub content_dim: usize,
    /// Nuisance coordinates per point, redrawn in every view.
    pub style_dims: usize,
    /// Standard deviation of each style coordinate.
    pub style_std: f32,
    /// Points the batches are drawn from (also the labelled bank of the kNN diagnostic).
    pub train_size: usize,
    /// Held-out points every diagnostic is computed on.
    pub eval_size: usize,
    /// Standard deviation of each blob, or the radial thickness of each ring.
    pub spread: f32,
}

impl Default for SandboxDataConfig {
    fn default() -> Self {
        Self {
            kind: SandboxKind::Gaussians,
            classes: 8,
            content_dim: 2,
            style_dims: 8,
            style_std: 1.0,
            train_size: 2048,
            eval_size: 512,
            spread: 0.12,
        }
    }
}

/// How views are made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ViewConfig {
    /// M, views per image (2 to 8).
    pub count: usize,
    /// Standard deviation of the Gaussian jitter added to each coordinate.
    pub jitter: f32,
    pub scale_min: f32,
    pub scale_max: f32,
}

impl Default for ViewConfig {
    fn default() -> Self {
        Self {
            count: 2,
            jitter: 0.05,
            scale_min: 0.9,
            scale_max: 1.1,
        }
    }
}

impl SandboxDataConfig {
    /// Coordinates the network sees: content then style.
    pub fn input_dim(&self) -> usize {
        self.content_dim + self.style_dims
    }
}

/// Labelled points, row-major `[len, dim]`: `content_dim` content coordinates, then style.
#[derive(Clone, Debug, PartialEq)]
pub struct PointSet {
    pub points: Vec<f32>,
    pub labels: Vec<u32>,
    pub dim: usize,
    pub content_dim: usize,
    pub style_std: f32,
}

impl PointSet {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn point(&self, index: usize) -> &[f32] {
        &self.points[index * self.dim..(index + 1) * self.dim]
    }
}

/// The training and evaluation sets of `config`, drawn from `rng`.
pub fn generate(config: &SandboxDataConfig, rng: &mut impl Rng) -> (PointSet, PointSet) {
    let (train, eval, _) = generate_with_more(config, 0, rng);
    (train, eval)
}

/// [`generate`], and `more` points drawn after them from the same classes (the app's further
/// displayed points): the training and evaluation sets do not depend on `more`.
pub fn generate_with_more(
    config: &SandboxDataConfig,
    more: usize,
    rng: &mut impl Rng,
) -> (PointSet, PointSet, PointSet) {
    let centres = match config.kind {
        SandboxKind::Gaussians => blob_centres(config, rng),
        SandboxKind::Rings => Vec::new(),
    };
    let mut draw = |len: usize| {
        let mut set = PointSet {
            points: Vec::with_capacity(len * config.input_dim()),
            labels: Vec::with_capacity(len),
            dim: config.input_dim(),
            content_dim: config.content_dim,
            style_std: config.style_std,
        };
        for index in 0..len {
            // Classes in turn, so every class has the same number of points.
            let class = index % config.classes;
            match config.kind {
                SandboxKind::Gaussians => {
                    let centre =
                        &centres[class * config.content_dim..(class + 1) * config.content_dim];
                    for &c in centre {
                        let noise: f32 = rng.sample(StandardNormal);
                        set.points.push(c + config.spread * noise);
                    }
                }
                SandboxKind::Rings => {
                    let radius = (class + 1) as f32 / config.classes as f32;
                    let noise: f32 = rng.sample(StandardNormal);
                    let r = radius + config.spread * noise / config.classes as f32;
                    let angle = rng.random_range(0.0..std::f32::consts::TAU);
                    set.points.push(r * angle.cos());
                    set.points.push(r * angle.sin());
                }
            }
            for _ in 0..config.style_dims {
                let noise: f32 = rng.sample(StandardNormal);
                set.points.push(config.style_std * noise);
            }
            set.labels.push(class as u32);
        }
        set
    };
    let train = draw(config.train_size);
    let eval = draw(config.eval_size);
    let more = draw(more);
    (train, eval, more)
}

/// K blob centres, row-major `[K, dim]`: evenly on the unit circle in 2-D; otherwise Gaussian,
/// redrawn (a bounded number of times) while closer than six spreads to an earlier one.
fn blob_centres(config: &SandboxDataConfig, rng: &mut impl Rng) -> Vec<f32> {
    let dim = config.content_dim;
    let k = config.classes;
    if dim == 2 {
        return (0..k)
            .flat_map(|class| {
                let angle = std::f32::consts::TAU * class as f32 / k as f32;
                [angle.cos(), angle.sin()]
            })
            .collect();
    }
    let min_distance = 6.0 * config.spread;
    let mut centres: Vec<f32> = Vec::with_capacity(k * dim);
    for _ in 0..k {
        let mut candidate = vec![0.0f32; dim];
        for _attempt in 0..1000 {
            for c in &mut candidate {
                *c = rng.sample(StandardNormal);
            }
            let far_enough = centres.chunks(dim).all(|other| {
                let d2: f32 = other
                    .iter()
                    .zip(&candidate)
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum();
                d2.sqrt() >= min_distance
            });
            if far_enough {
                break;
            }
        }
        centres.extend_from_slice(&candidate);
    }
    centres
}

/// `count` views of each point of `set` listed in `indices`, image-major: row `i * count + m`
/// is view m of point `indices[i]`. Row-major `[indices.len() * count, dim]`. Content is
/// scaled and jittered; style is redrawn.
pub fn make_views(
    set: &PointSet,
    indices: &[usize],
    count: usize,
    views: &ViewConfig,
    rng: &mut impl Rng,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(indices.len() * count * set.dim);
    for &index in indices {
        let point = set.point(index);
        for _ in 0..count {
            let scale = if views.scale_max > views.scale_min {
                rng.random_range(views.scale_min..=views.scale_max)
            } else {
                views.scale_min
            };
            for &x in &point[..set.content_dim] {
                let noise: f32 = rng.sample(StandardNormal);
                out.push(scale * x + views.jitter * noise);
            }
            for _ in set.content_dim..set.dim {
                let noise: f32 = rng.sample(StandardNormal);
                out.push(set.style_std * noise);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seed::{Stream, rng};

    #[test]
    fn rings_lie_on_their_radius_and_classes_are_balanced() {
        let config = SandboxDataConfig {
            kind: SandboxKind::Rings,
            classes: 4,
            spread: 0.0,
            style_dims: 3,
            train_size: 400,
            eval_size: 40,
            ..SandboxDataConfig::default()
        };
        let (train, eval) = generate(&config, &mut rng(1, Stream::Dataset));
        assert_eq!((train.len(), eval.len(), train.dim), (400, 40, 5));
        for (index, &label) in train.labels.iter().enumerate() {
            let p = train.point(index);
            let radius = (p[0] * p[0] + p[1] * p[1]).sqrt();
            assert!(
                (radius - (label + 1) as f32 / 4.0).abs() < 1e-5,
                "{radius} {label}"
            );
        }
        for class in 0..4 {
            assert_eq!(train.labels.iter().filter(|&&l| l == class).count(), 100);
        }
    }

    #[test]
    fn views_keep_content_and_redraw_style() {
        let config = SandboxDataConfig {
            style_dims: 4,
            train_size: 16,
            eval_size: 2,
            ..SandboxDataConfig::default()
        };
        let (train, _) = generate(&config, &mut rng(2, Stream::Dataset));
        let views = ViewConfig {
            count: 3,
            jitter: 0.0,
            scale_min: 1.0,
            scale_max: 1.0,
        };
        let out = make_views(&train, &[5, 9], 3, &views, &mut rng(3, Stream::Batches));
        assert_eq!(out.len(), 2 * 3 * 6);
        for (i, &index) in [5usize, 9].iter().enumerate() {
            let point = train.point(index);
            let rows: Vec<&[f32]> = (0..3)
                .map(|m| &out[(i * 3 + m) * 6..(i * 3 + m + 1) * 6])
                .collect();
            for row in &rows {
                assert_eq!(
                    &row[..2],
                    &point[..2],
                    "content kept exactly without jitter"
                );
                assert_ne!(&row[2..], &point[2..], "style redrawn");
            }
            assert_ne!(rows[0][2..], rows[1][2..], "each view draws its own style");
        }
    }

    #[test]
    fn blob_centres_in_two_dimensions_are_on_the_unit_circle() {
        let config = SandboxDataConfig::default();
        let centres = blob_centres(&config, &mut rng(0, Stream::Dataset));
        assert_eq!(centres.len(), 2 * config.classes);
        for c in centres.chunks(2) {
            assert!(((c[0] * c[0] + c[1] * c[1]).sqrt() - 1.0).abs() < 1e-6);
        }
    }
}
