//! The forces drawn: for each displayed point, one short line per force switched on in the
//! toolbar (attraction, global dispersion, local dispersion: `method::arrows`), from the
//! point along the force as the view projects it (on the sphere: its tangent part), with a
//! dot at the tip. One length scale for all three, so that their sizes compare: the longest
//! tenth of the arrows shown reach [`ARROW_LENGTH`]. Live only: the recording keeps frames,
//! not forces.

use super::view::ViewMode;
use crate::render::{LineVertex, Particle};
use crate::trainer::{Arrows, Frame};

/// The colour of each force's arrows (and of its curve in the shares plot).
pub const ARROW_COLORS: [[u8; 3]; 3] = [[0, 220, 220], [250, 210, 40], [255, 90, 200]];

/// How long (in view units: the unit ball's radius is 1) the 90th-percentile arrow is drawn.
pub const ARROW_LENGTH: f32 = 0.12;

fn rgba([r, g, b]: [u8; 3], alpha: f32) -> [f32; 4] {
    [
        f32::from(r) / 255.0,
        f32::from(g) / 255.0,
        f32::from(b) / 255.0,
        alpha,
    ]
}

fn length(v: [f32; 3]) -> f32 {
    (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt()
}

/// The arrows of the forces `shown` (per force) on `frame`'s points in `mode`; nothing when
/// `arrows` belong to another step than the frame.
pub fn arrow_geometry(
    frame: &Frame,
    arrows: &Arrows,
    shown: [bool; 3],
    mode: ViewMode,
) -> (Vec<Particle>, Vec<LineVertex>) {
    if arrows.step != frame.step {
        return (Vec::new(), Vec::new());
    }
    let positions = match mode {
        ViewMode::Sphere => &frame.sphere,
        ViewMode::Pca2d | ViewMode::Pca3d => &frame.points,
    };
    let flatten = |p: [f32; 3]| match mode {
        ViewMode::Pca2d => [p[0], p[1], 0.0],
        ViewMode::Pca3d | ViewMode::Sphere => p,
    };
    // Each shown force's vectors as drawn (before scaling).
    let drawn: Vec<(usize, Vec<[f32; 3]>)> = (0..3)
        .filter(|&f| shown[f])
        .map(|f| {
            let vectors = arrows.vectors[f]
                .iter()
                .zip(positions)
                .map(|(&v, &p)| {
                    let v = if mode == ViewMode::Sphere {
                        let radial = v[0] * p[0] + v[1] * p[1] + v[2] * p[2];
                        [
                            v[0] - radial * p[0],
                            v[1] - radial * p[1],
                            v[2] - radial * p[2],
                        ]
                    } else {
                        v
                    };
                    flatten(v)
                })
                .collect();
            (f, vectors)
        })
        .collect();
    let mut lengths: Vec<f32> = drawn
        .iter()
        .flat_map(|(_, vs)| vs.iter().map(|&v| length(v)))
        .filter(|l| l.is_finite())
        .collect();
    if lengths.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let at = (lengths.len() * 9 / 10).min(lengths.len() - 1);
    let p90 = *lengths.select_nth_unstable_by(at, f32::total_cmp).1;
    if p90 <= 0.0 {
        return (Vec::new(), Vec::new());
    }
    let scale = ARROW_LENGTH / p90;
    let mut tips = Vec::new();
    let mut lines = Vec::new();
    for (f, vectors) in &drawn {
        let color = rgba(ARROW_COLORS[*f], 0.9);
        for (&v, &p) in vectors.iter().zip(positions) {
            if !(v.iter().all(|x| x.is_finite())) {
                continue;
            }
            let start = flatten(p);
            let end = [
                start[0] + scale * v[0],
                start[1] + scale * v[1],
                start[2] + scale * v[2],
            ];
            lines.push(LineVertex::new(start, color));
            lines.push(LineVertex::new(end, color));
            tips.push(Particle::new(end, color).with_size_scale(0.4));
        }
    }
    (tips, lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrows_start_at_their_points_share_one_scale_and_follow_the_switches() {
        let points = [[0.1f32, 0.2, 0.3], [-0.4, 0.0, 0.5]];
        let frame = Frame::new(7, &points, &points, &points);
        let arrows = Arrows {
            step: 7,
            vectors: [
                vec![[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
                vec![[0.0, 0.0, 2.0], [0.0, 0.0, 2.0]],
                vec![[0.5, 0.5, 0.0], [0.0, 0.0, 0.0]],
            ],
        };
        let (tips, lines) = arrow_geometry(&frame, &arrows, [true, true, false], ViewMode::Pca3d);
        assert_eq!(lines.len(), 2 * 4, "two forces, two points, a line each");
        assert_eq!(tips.len(), 4);
        assert_eq!(lines[0].position, frame.points[0]);
        // One scale: the global arrows (length 2) are twice the attraction's (length 1).
        let len = |i: usize| {
            let (a, b) = (lines[2 * i].position, lines[2 * i + 1].position);
            length([b[0] - a[0], b[1] - a[1], b[2] - a[2]])
        };
        assert!(
            (len(2) / len(0) - 2.0).abs() < 1e-4,
            "{} {}",
            len(2),
            len(0)
        );
        assert!(
            (len(2) - ARROW_LENGTH).abs() < 1e-4,
            "the 90th percentile is the longest here"
        );
        let (_, none) = arrow_geometry(&frame, &arrows, [false; 3], ViewMode::Pca3d);
        assert!(none.is_empty());
        // The 2-D view draws them flat; arrows of another step are not drawn.
        let (_, flat) = arrow_geometry(&frame, &arrows, [false, true, false], ViewMode::Pca2d);
        assert!(flat.iter().all(|v| v.position[2] == 0.0));
        let stale = Arrows { step: 6, ..arrows };
        assert!(
            arrow_geometry(&frame, &stale, [true; 3], ViewMode::Pca3d)
                .1
                .is_empty()
        );
    }
}
