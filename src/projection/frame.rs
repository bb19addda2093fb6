//! [`Frame`]: the displayed points projected to 3-D, on a fixed 16-bit grid.
//!
//! Every coordinate the view draws is a multiple of `1 / GRID` (`GRID` = 4095) in `[-1, 1]`:
//! a step of 0.1 px where the unit ball is 400 px across, below a pixel up to 10x zoom. Quantising when the frame is made, not
//! when it is recorded, is what lets a replay show the frames the live view showed bit for
//! bit while the recording stores 2 bytes per coordinate (see `session::recording`).

use super::{Projector, on_sphere};

/// Grid steps per unit: coordinates are `q / GRID` for an integer `q` in `[-GRID, GRID]`.
pub const GRID: f32 = 4095.0;

/// A coordinate in `[-1, 1]` to its grid index (values outside are clamped, NaN goes to 0).
pub fn quantize(x: f32) -> i16 {
    if x.is_nan() {
        return 0;
    }
    (x.clamp(-1.0, 1.0) * GRID).round() as i16
}

/// A grid index to its coordinate.
pub fn dequantize(q: i16) -> f32 {
    f32::from(q) / GRID
}

/// The displayed points, projected to 3-D by the aligned PCA basis (see the module above).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Frame {
    pub step: u64,
    /// Every point's grid index is a multiple of this (1: full precision; see [`Coarsener`]).
    pub grid_step: u16,
    /// Every view's grid index differs from its point's by a multiple of this (a multiple
    /// of `grid_step`).
    pub view_step: u16,
    /// One per displayed point: the projected unit embedding (inside the unit ball).
    pub points: Vec<[f32; 3]>,
    /// The same on the unit sphere (normalised top-3 PCA).
    pub sphere: Vec<[f32; 3]>,
    /// Two fixed augmented views of every displayed point, projected the same way.
    pub views: Vec<[[f32; 3]; 2]>,
    pub views_sphere: Vec<[[f32; 3]; 2]>,
    /// The displayed points beyond the core (no views), projected with the same basis from
    /// embeddings refreshed a chunk at a time (so some are older than `step`); not recorded.
    pub more: Vec<[f32; 3]>,
    pub more_sphere: Vec<[f32; 3]>,
}

impl Frame {
    /// The frame of projected `points` and their two views (`view_a[i]`, `view_b[i]` belong
    /// to `points[i]`), snapped to the grid; the sphere coordinates follow from them.
    pub fn new(step: u64, points: &[[f32; 3]], view_a: &[[f32; 3]], view_b: &[[f32; 3]]) -> Self {
        let snap = |p: &[f32; 3]| p.map(|x| dequantize(quantize(x)));
        let points: Vec<[f32; 3]> = points.iter().map(snap).collect();
        let views: Vec<[[f32; 3]; 2]> = view_a
            .iter()
            .zip(view_b)
            .map(|(a, b)| [snap(a), snap(b)])
            .collect();
        Self::from_grid(step, points, views)
    }

    fn from_grid(step: u64, points: Vec<[f32; 3]>, views: Vec<[[f32; 3]; 2]>) -> Self {
        Self {
            step,
            grid_step: 1,
            view_step: 1,
            sphere: points.iter().copied().map(on_sphere).collect(),
            views_sphere: views
                .iter()
                .map(|[a, b]| [on_sphere(*a), on_sphere(*b)])
                .collect(),
            points,
            views,
            more: Vec::new(),
            more_sphere: Vec::new(),
        }
    }

    /// The frame with `more` points beyond the core (snapped to the grid, not coarsened).
    #[must_use]
    pub fn with_more(mut self, more: &[[f32; 3]]) -> Self {
        self.more = more
            .iter()
            .map(|p| p.map(|x| dequantize(quantize(x))))
            .collect();
        self.more_sphere = self.more.iter().copied().map(on_sphere).collect();
        self
    }

    /// The grid indices of every coordinate: the points (`3n`), then the first views (`3n`),
    /// then the second views (`3n`).
    pub fn grid(&self) -> Vec<i16> {
        let mut out = Vec::with_capacity(9 * self.points.len());
        out.extend(self.points.iter().flatten().map(|&x| quantize(x)));
        out.extend(self.views.iter().flat_map(|v| v[0]).map(quantize));
        out.extend(self.views.iter().flat_map(|v| v[1]).map(quantize));
        out
    }

    /// The frame whose [`Frame::grid`] is `grid`; `None` unless its length is a multiple of 9.
    pub fn from_grid_indices(step: u64, grid: &[i16]) -> Option<Self> {
        if !grid.len().is_multiple_of(9) {
            return None;
        }
        let n = grid.len() / 9;
        let triple = |chunk: &[i16]| [0, 1, 2].map(|c| dequantize(chunk[c]));
        let points: Vec<[f32; 3]> = grid[..3 * n].chunks_exact(3).map(triple).collect();
        let views = grid[3 * n..6 * n]
            .chunks_exact(3)
            .zip(grid[6 * n..].chunks_exact(3))
            .map(|(a, b)| [triple(a), triple(b)])
            .collect();
        Some(Self::from_grid(step, points, views))
    }
}

/// The largest grid step [`Coarsener`] takes for the points (64 / 4095: 1.6 % of the ball's
/// radius); the views' offsets go to 4x that.
pub const MAX_GRID_STEP: u16 = 64;

/// The coarsest precision level of [`Coarsener::set_level`].
pub const MAX_PRECISION_LEVEL: u8 = 4;

/// Precision that follows the motion. While the points move `m` grid steps from one frame to
/// the next (the median), a frame is snapped to a coarser grid of step `s` (a power of two,
/// at most `m / 4`, at most [`MAX_GRID_STEP`]): an error under a quarter of the motion in a
/// frame, which nobody sees at a few frames a second, while a still or slow cloud keeps full
/// precision. The app shows the snapped frame, so a replay of the recording is bit for bit;
/// the recording stores `q / s`, about `log2 s` bits less per coordinate.
///
/// The precision level (0 to [`MAX_PRECISION_LEVEL`], set by a recording that keeps to a
/// byte budget: see `session::Recorder`) trades precision for bytes where it shows least,
/// the views (the tethers' far ends, two thirds of the coordinates) first. Level 0 is the
/// above; level 1 snaps each view's offset from its point to 4x the point's step, level 2 to
/// 8x (at most 4x [`MAX_GRID_STEP`] either way); level 3 also takes the points to `m / 2`,
/// level 4 to `m`.
#[derive(Debug, Default)]
pub struct Coarsener {
    previous: Option<Vec<i16>>,
    level: u8,
}

impl Coarsener {
    /// Forget the previous frame (a new run); the level is kept.
    pub fn reset(&mut self) {
        self.previous = None;
    }

    /// The precision level of the frames from now on (clamped to [`MAX_PRECISION_LEVEL`]).
    pub fn set_level(&mut self, level: u8) {
        self.level = level.min(MAX_PRECISION_LEVEL);
    }

    pub fn level(&self) -> u8 {
        self.level
    }

    /// `frame` snapped to the grid step its motion allows.
    pub fn apply(&mut self, frame: &Frame) -> Frame {
        let grid = frame.grid();
        let n3 = grid.len() / 3;
        let motion = match &self.previous {
            Some(previous) if previous.len() == grid.len() && n3 > 0 => {
                let mut moved: Vec<i32> = grid[..n3]
                    .iter()
                    .zip(&previous[..n3])
                    .map(|(&a, &b)| (i32::from(a) - i32::from(b)).abs())
                    .collect();
                let middle = moved.len() / 2;
                *moved.select_nth_unstable(middle).1
            }
            _ => 0,
        };
        // The step is at most `motion / divisor`.
        let (divisor, view_factor) = match self.level {
            0 => (4, 1),
            1 => (4, 4),
            2 => (4, 8),
            3 => (2, 8),
            _ => (1, 8),
        };
        let mut step = 1u16;
        while step < MAX_GRID_STEP && i32::from(step) * 2 * divisor <= motion {
            step *= 2;
        }
        let view_step = (view_factor * step).min(4 * MAX_GRID_STEP).max(step);
        let frame = frame.coarsened(step, view_step);
        self.previous = Some(frame.grid());
        frame
    }
}

impl Frame {
    /// The frame with every point's grid index truncated toward zero to a multiple of
    /// `step`, and every view's offset from its (snapped) point to a multiple of `view_step`
    /// (so no coordinate leaves `[-1, 1]`: a view moves toward its point).
    #[must_use]
    pub fn coarsened(&self, step: u16, view_step: u16) -> Self {
        let (s, vs) = (step.max(1).cast_signed(), view_step.max(1).cast_signed());
        let mut grid = self.grid();
        let n3 = grid.len() / 3;
        let (points, views) = grid.split_at_mut(n3);
        for q in points.iter_mut() {
            *q = (*q / s) * s;
        }
        for (i, v) in views.iter_mut().enumerate() {
            let p = points[i % n3];
            *v = p + ((*v - p) / vs) * vs;
        }
        let mut frame = Self::from_grid_indices(self.step, &grid).unwrap_or_default();
        frame.grid_step = step.max(1);
        frame.view_step = view_step.max(1);
        frame
    }
}

/// The display embeddings of one run to its frames: the aligned projection ([`Projector`])
/// and the precision that follows the motion ([`Coarsener`]), one of each per run. What the
/// app's trainer, the headless recorder and `msbreg bench record` all make their frames with.
#[derive(Debug, Default)]
pub struct Framer {
    projector: Projector,
    coarsener: Coarsener,
}

impl Framer {
    /// Forget the previous basis and frame (a new run).
    pub fn reset(&mut self) {
        self.projector.reset();
        self.coarsener.reset();
    }

    /// The display embeddings (`[points, view_a, view_b]`, unit rows of `d` each) projected
    /// with the next aligned basis (fitted to the points) into a [`Frame`], snapped as its
    /// motion allows; also returns the singular values of the points.
    pub fn frame(&mut self, step: u64, rows: &[Vec<f32>; 3], d: usize) -> (Frame, Vec<f64>) {
        let [points, view_a, view_b] = rows;
        let (projected, spectrum) =
            self.projector
                .fit_project_spectrum(points, d, &[points, view_a, view_b]);
        let frame = Frame::new(step, &projected[0], &projected[1], &projected[2]);
        (self.coarsener.apply(&frame), spectrum)
    }

    /// Directions (`[n, d]` row-major, e.g. forces) in the basis of the last frame, without
    /// centring: how they point in the view. Empty before the first frame.
    pub fn project_directions(&self, rows: &[f32], d: usize) -> Vec<[f32; 3]> {
        self.projector.project(rows, d)
    }

    /// The precision level of the next frames (see [`Coarsener::set_level`]).
    pub fn set_level(&mut self, level: u8) {
        self.coarsener.set_level(level);
    }

    pub fn level(&self) -> u8 {
        self.coarsener.level()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grid_round_trips_bit_for_bit() {
        let points = [[0.1f32, -0.5, 0.99999], [1.2, -3.0, f32::NAN]];
        let a = [[0.3f32, 0.3, 0.3], [-0.7, 0.0, 0.25]];
        let b = [[-1.0f32, 1.0, 0.0], [0.123_456, 0.654_321, -0.5]];
        let frame = Frame::new(7, &points, &a, &b);
        assert_eq!(frame.points[1], [1.0, -1.0, 0.0], "clamped, NaN to 0");
        let again = Frame::from_grid_indices(7, &frame.grid()).expect("9n values");
        let bits = |f: &Frame| -> Vec<u32> {
            f.points
                .iter()
                .chain(&f.sphere)
                .flatten()
                .chain(f.views.iter().chain(&f.views_sphere).flatten().flatten())
                .map(|x| x.to_bits())
                .collect()
        };
        assert_eq!(bits(&frame), bits(&again));
        assert!(Frame::from_grid_indices(0, &[1, 2, 3]).is_none());
        // Coarser grids follow the motion and keep the ball.
        let mut coarsener = Coarsener::default();
        let still = coarsener.apply(&frame);
        assert_eq!(
            still.grid_step, 1,
            "nothing to compare with: full precision"
        );
        let again = coarsener.apply(&frame);
        assert_eq!(again.grid_step, 1, "a still cloud keeps full precision");
        let moved: Vec<[f32; 3]> = points.iter().map(|p| p.map(|x| x * 0.5)).collect();
        let fast = coarsener.apply(&Frame::new(8, &moved, &a, &b));
        assert!(fast.grid_step > 1, "{}", fast.grid_step);
        assert!(
            fast.grid()
                .iter()
                .all(|&q| q % fast.grid_step.cast_signed() == 0)
        );
        assert!(fast.points.iter().flatten().all(|x| x.abs() <= 1.0));
        for q in [-4095i16, -1, 0, 1, 1234, 4095] {
            assert_eq!(quantize(dequantize(q)), q);
        }
    }

    #[test]
    fn precision_levels_coarsen_the_views_first_and_keep_the_ball() {
        let n = 200;
        let cloud = |t: f32| -> Vec<[f32; 3]> {
            (0..n)
                .map(|i| {
                    let a = i as f32 * 0.37 + t;
                    [0.8 * a.sin(), 0.8 * a.cos(), 0.5 * (a * 0.3).sin()]
                })
                .collect()
        };
        let near = |p: &[[f32; 3]], d: f32| -> Vec<[f32; 3]> {
            p.iter()
                .map(|q| q.map(|x| (x + d).clamp(-1.0, 1.0)))
                .collect()
        };
        let mut previous_step = 0;
        for level in 0..=MAX_PRECISION_LEVEL {
            let mut coarsener = Coarsener::default();
            coarsener.set_level(level);
            let first = cloud(0.0);
            coarsener.apply(&Frame::new(
                0,
                &first,
                &near(&first, 0.05),
                &near(&first, -0.07),
            ));
            let moved = cloud(0.05);
            let original = Frame::new(1, &moved, &near(&moved, 0.05), &near(&moved, -0.07));
            let frame = coarsener.apply(&original);
            let (s, vs) = (frame.grid_step, frame.view_step);
            assert!(vs >= s && vs.is_multiple_of(s), "level {level}: {s} {vs}");
            assert!(s >= previous_step, "coarser or equal with the level");
            previous_step = s;
            match level {
                0 => assert_eq!(vs, s),
                1 => assert_eq!(vs, (4 * s).min(4 * MAX_GRID_STEP)),
                _ => assert_eq!(vs, (8 * s).min(4 * MAX_GRID_STEP)),
            }
            let grid = frame.grid();
            let (points, views) = grid.split_at(3 * n);
            assert!(points.iter().all(|&q| q % s.cast_signed() == 0));
            for (i, &v) in views.iter().enumerate() {
                let p = points[i % (3 * n)];
                assert_eq!((v - p) % vs.cast_signed(), 0, "level {level}");
            }
            // Every view lies between its snapped point and where it was, within a view step.
            let exact = original.grid();
            for (i, (&v, &x)) in views.iter().zip(&exact[3 * n..]).enumerate() {
                let p = points[i % (3 * n)];
                assert!((p.min(x)..=p.max(x)).contains(&v), "{p} {v} {x}");
                assert!((x - v).abs() < vs.cast_signed(), "{x} {v} {vs}");
            }
            assert!(
                frame
                    .views
                    .iter()
                    .flatten()
                    .flatten()
                    .all(|x| x.abs() <= 1.0)
            );
        }
        assert!(
            previous_step > 1,
            "the coarsest level took the points coarser"
        );
    }
}
