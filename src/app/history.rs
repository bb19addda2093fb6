//! The metrics history the plots draw: one bounded [`Series`] per curve.
//!
//! A run can go on for hours, a point a step, so no series keeps every point. Each keeps at
//! most `cap` points however many it is given, in drawing order:
//!
//! - the first point, exactly;
//! - the body: everything older than the tail, as means of `stride` consecutive points. When
//!   the body is full, adjacent pairs merge into their mean and the stride doubles, so the
//!   body covers the older part of the run at one even resolution, halved each time the run
//!   doubles (a pyramid: 1, 2, 4, ... points per stored point);
//! - the bucket: the running mean of the points that left the tail since the last body point
//!   (fewer than `stride`), so there is no gap between the body and the tail;
//! - the tail: the newest `cap / 4` points at full resolution, the last one exact.
//!
//! Every merge averages neighbours of equal weight, so a stored point is the plain mean of a
//! run of consecutive inputs: a straight line stays on its line, a constant stays constant,
//! and the steps stay in order. Memory and the plots' work per frame are O(`cap`), whatever
//! the number of steps. The points live in one vector of egui_plot's [`PlotPoint`] in drawing
//! order, updated in place as points arrive, which the plots borrow every frame without
//! copying or re-deriving them. A push costs at most a move of the tail (`cap / 4` points)
//! and, once every `stride` body points, a pass over the body.

use egui_plot::PlotPoint;

use crate::trainer::MetricsPoint;

/// How many points each series keeps at most.
pub const POINTS_PER_SERIES: usize = 2000;

/// One curve, bounded to `cap` points (see the module docs).
#[derive(Clone, Debug)]
pub struct Series {
    /// The first point, then `body_len` body points, then the bucket's mean (when
    /// `bucket_count > 0`), then the tail.
    points: Vec<PlotPoint>,
    body_len: usize,
    /// The body's size at which its pairs merge (even).
    body_cap: usize,
    /// How many inputs each body point is the mean of.
    stride: usize,
    /// How many inputs the bucket point (at `1 + body_len`) is the mean of.
    bucket_count: usize,
    /// How many of the newest points are kept as given.
    tail_cap: usize,
    /// How many points were pushed (finite ones).
    pushed: u64,
}

impl Series {
    /// The smallest `cap` [`Series::new`] takes (a smaller one is raised to it).
    pub const MIN_CAP: usize = 8;

    /// An empty series that keeps at most `cap` points (at least [`Series::MIN_CAP`]).
    pub fn new(cap: usize) -> Self {
        let cap = cap.max(Self::MIN_CAP);
        let tail_cap = cap / 4;
        // The first point, the bucket and the tail take the rest; the body holds at most
        // `body_cap - 1` between pushes.
        let body_cap = (cap - tail_cap - 1) & !1;
        Self {
            points: Vec::with_capacity(cap),
            body_len: 0,
            body_cap,
            stride: 1,
            bucket_count: 0,
            tail_cap,
            pushed: 0,
        }
    }

    /// The points to draw, oldest first.
    pub fn points(&self) -> &[PlotPoint] {
        &self.points
    }

    /// How many points are stored.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// How many points were pushed (and not skipped as non-finite).
    pub fn pushed(&self) -> u64 {
        self.pushed
    }

    /// Appends `(x, y)`; `x` should not decrease from one push to the next. A point with a
    /// non-finite coordinate is skipped (it would turn every mean it joins into NaN).
    pub fn push(&mut self, x: f64, y: f64) {
        if !(x.is_finite() && y.is_finite()) {
            return;
        }
        self.pushed += 1;
        self.points.push(PlotPoint { x, y });
        let bucket_at = 1 + self.body_len;
        let tail_start = bucket_at + usize::from(self.bucket_count > 0);
        if self.points.len() - tail_start <= self.tail_cap {
            return;
        }
        // The oldest tail point leaves the tail for the bucket.
        if self.bucket_count == 0 {
            // It is already where the bucket goes: it becomes the bucket's mean as it is.
            self.bucket_count = 1;
        } else {
            let leaving = self.points.remove(tail_start);
            self.bucket_count += 1;
            let weight = 1.0 / self.bucket_count as f64;
            let mean = &mut self.points[bucket_at];
            mean.x += (leaving.x - mean.x) * weight;
            mean.y += (leaving.y - mean.y) * weight;
        }
        if self.bucket_count < self.stride {
            return;
        }
        // A full bucket becomes a body point, in place.
        self.bucket_count = 0;
        self.body_len += 1;
        if self.body_len < self.body_cap {
            return;
        }
        // A full body: merge neighbouring pairs, halving it, and double the stride.
        let half = self.body_cap / 2;
        for k in 0..half {
            let a = self.points[1 + 2 * k];
            let b = self.points[2 + 2 * k];
            self.points[1 + k] = midpoint(a, b);
        }
        self.points.drain((1 + half)..=self.body_cap);
        self.body_len = half;
        self.stride *= 2;
    }
}

impl Default for Series {
    fn default() -> Self {
        Self::new(POINTS_PER_SERIES)
    }
}

fn midpoint(a: PlotPoint, b: PlotPoint) -> PlotPoint {
    PlotPoint {
        x: f64::midpoint(a.x, b.x),
        y: f64::midpoint(a.y, b.y),
    }
}

/// Everything plotted, accumulated from the snapshots' metrics; x is the training step.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// The loss terms of each step (from step 1).
    pub loss: Series,
    pub loss_centroid: Series,
    pub loss_sv: Series,
    pub loss_brownian: Series,
    /// VICReg's terms, at the steps that had them on.
    pub loss_variance: Series,
    pub loss_covariance: Series,
    /// The displayed embeddings' effective rank divided by the embedding dimension D.
    pub effective_rank_per_dim: Series,
    pub collapse_level: Series,
    pub uniformity: Series,
    pub alignment: Series,
    /// Weighted kNN accuracy on held-out data, when it was measured.
    pub knn_acc: Series,
    /// Each force's share of the forces on the display set (attraction, global dispersion,
    /// local dispersion).
    pub force_shares: [Series; 3],
}

impl History {
    /// An empty history keeping at most `cap` points per series.
    pub fn new(cap: usize) -> Self {
        let series = || Series::new(cap);
        Self {
            loss: series(),
            loss_centroid: series(),
            loss_sv: series(),
            loss_brownian: series(),
            loss_variance: series(),
            loss_covariance: series(),
            effective_rank_per_dim: series(),
            collapse_level: series(),
            uniformity: series(),
            alignment: series(),
            knn_acc: series(),
            force_shares: [series(), series(), series()],
        }
    }

    /// Appends the metrics of a snapshot of a run whose embeddings have `embed_dim`
    /// dimensions. A point without losses (step 0, or a display refresh between steps)
    /// adds none.
    pub fn extend(&mut self, metrics: &[MetricsPoint], embed_dim: usize) {
        let dim = embed_dim.max(1) as f64;
        for point in metrics {
            let step = point.step as f64;
            if let Some(losses) = point.losses {
                self.loss.push(step, f64::from(losses.loss));
                self.loss_centroid
                    .push(step, f64::from(losses.loss_centroid));
                self.loss_sv.push(step, f64::from(losses.loss_sv));
                self.loss_brownian
                    .push(step, f64::from(losses.loss_brownian));
                if let Some(value) = losses.loss_variance {
                    self.loss_variance.push(step, f64::from(value));
                }
                if let Some(value) = losses.loss_covariance {
                    self.loss_covariance.push(step, f64::from(value));
                }
            }
            if let Some(d) = point.diagnostics {
                self.effective_rank_per_dim
                    .push(step, d.effective_rank / dim);
                self.collapse_level.push(step, d.collapse_level);
                self.uniformity.push(step, d.uniformity);
                self.alignment.push(step, d.alignment);
                for (series, share) in self.force_shares.iter_mut().zip(d.force_shares) {
                    series.push(step, share);
                }
            }
            if let Some(acc) = point.knn_acc {
                self.knn_acc.push(step, acc);
            }
        }
    }

    /// How many points all the series hold together.
    pub fn stored_points(&self) -> usize {
        self.all().into_iter().map(Series::len).sum()
    }

    fn all(&self) -> [&Series; 14] {
        let [a, g, l] = &self.force_shares;
        [
            a,
            g,
            l,
            &self.loss,
            &self.loss_centroid,
            &self.loss_sv,
            &self.loss_brownian,
            &self.loss_variance,
            &self.loss_covariance,
            &self.effective_rank_per_dim,
            &self.collapse_level,
            &self.uniformity,
            &self.alignment,
            &self.knn_acc,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::StepReport;
    use crate::trainer::DisplayDiagnostics;

    fn xs(series: &Series) -> Vec<f64> {
        series.points().iter().map(|p| p.x).collect()
    }

    fn filled(cap: usize, n: u64, y: impl Fn(f64) -> f64) -> Series {
        let mut series = Series::new(cap);
        for step in 0..n {
            let x = step as f64;
            series.push(x, y(x));
        }
        series
    }

    #[test]
    fn a_small_series_decimates_as_worked_by_hand() {
        // cap 8: a tail of 2, a body that merges at 4.
        // 0..=6: first 0, body [1, 2, 3, 4] merges into [1.5, 3.5] (stride 2), tail [5, 6].
        // 7: 5 enters the bucket. 8: 6 joins it, the bucket [5, 6] becomes 5.5.
        // 9: 7 enters the bucket, tail [8, 9].
        let series = filled(8, 10, |x| 10.0 * x);
        assert_eq!(xs(&series), [0.0, 1.5, 3.5, 5.5, 7.0, 8.0, 9.0]);
        // 10: 8 joins the bucket: body [1.5, 3.5, 5.5, 7.5] merges into [2.5, 6.5], the
        // means of 1..=4 and 5..=8 (stride 4); tail [9, 10].
        let series = filled(8, 11, |x| 10.0 * x);
        assert_eq!(xs(&series), [0.0, 2.5, 6.5, 9.0, 10.0]);
        let ys: Vec<f64> = series.points().iter().map(|p| p.y).collect();
        assert_eq!(ys, [0.0, 25.0, 65.0, 90.0, 100.0]);
        assert_eq!(series.pushed(), 11);
    }

    #[test]
    fn a_million_points_stay_within_the_cap() {
        for cap in [8, 9, 100, POINTS_PER_SERIES] {
            let mut series = Series::new(cap);
            for step in 0..1_000_000_u64 {
                series.push(step as f64, (step % 7) as f64);
                assert!(series.len() <= cap, "cap {cap}: {} points", series.len());
            }
            assert!(
                series.len() > cap / 2,
                "cap {cap}: only {} points",
                series.len()
            );
            assert_eq!(series.pushed(), 1_000_000);
        }
    }

    #[test]
    fn the_first_and_the_newest_points_are_kept_exactly() {
        let y = |x: f64| (x * 0.37).sin() + 0.001 * x;
        let n = 1_000_000;
        let series = filled(POINTS_PER_SERIES, n, y);
        let points = series.points();
        assert_eq!(points[0], PlotPoint { x: 0.0, y: y(0.0) });
        // The tail (a quarter of the cap) is the newest inputs as given.
        let tail = &points[points.len() - POINTS_PER_SERIES / 4..];
        for (k, point) in tail.iter().rev().enumerate() {
            let x = (n - 1 - k as u64) as f64;
            assert_eq!(*point, PlotPoint { x, y: y(x) });
        }
    }

    #[test]
    fn a_decimated_ramp_stays_on_the_ramp() {
        // Means of points on y = x lie on y = x, and within the steps given.
        for n in [10, 1000, 123_457, 1_000_000] {
            let series = filled(POINTS_PER_SERIES, n, |x| x);
            for point in series.points() {
                assert_eq!(point.y, point.x);
                assert!((0.0..=(n - 1) as f64).contains(&point.x));
            }
        }
        // A line with another slope and offset, to rounding.
        let series = filled(100, 100_000, |x| 3.0 - 0.5 * x);
        for point in series.points() {
            let line = 3.0 - 0.5 * point.x;
            assert!(
                (point.y - line).abs() <= 1e-12 * line.abs().max(1.0),
                "{point:?}"
            );
        }
    }

    #[test]
    fn steps_stay_strictly_increasing() {
        let series = filled(POINTS_PER_SERIES, 1_000_000, f64::sqrt);
        assert!(series.points().windows(2).all(|w| w[0].x < w[1].x));
        let small = filled(8, 12_345, f64::sqrt);
        assert!(small.points().windows(2).all(|w| w[0].x < w[1].x));
    }

    #[test]
    fn a_constant_series_stays_constant() {
        let series = filled(POINTS_PER_SERIES, 1_000_000, |_| 0.1);
        assert!(series.points().iter().all(|p| p.y == 0.1));
    }

    #[test]
    fn non_finite_values_are_skipped() {
        let mut series = Series::new(8);
        series.push(0.0, 1.0);
        series.push(1.0, f64::NAN);
        series.push(2.0, f64::INFINITY);
        series.push(f64::NAN, 2.0);
        series.push(3.0, 2.0);
        assert_eq!(xs(&series), [0.0, 3.0]);
        assert_eq!(series.pushed(), 2);
    }

    #[test]
    fn a_tiny_cap_is_raised_to_the_minimum() {
        let series = filled(0, 1000, |x| x);
        assert!(series.len() <= Series::MIN_CAP);
        assert_eq!(series.points()[0].x, 0.0);
        assert_eq!(series.points()[series.len() - 1].x, 999.0);
    }

    #[test]
    fn history_routes_each_metric_to_its_series() {
        let losses = StepReport {
            loss: 1.5,
            loss_centroid: 0.5,
            loss_sv: 0.75,
            loss_brownian: 0.25,
            loss_variance: Some(0.125),
            loss_covariance: None,
        };
        let diagnostics = DisplayDiagnostics {
            effective_rank: 6.0,
            collapse_level: 0.2,
            uniformity: -1.0,
            alignment: 0.3,
            force_shares: [0.5, 0.3, 0.2],
        };
        let metrics = [
            // Step 0: diagnostics only (no losses yet).
            MetricsPoint {
                step: 0,
                losses: None,
                diagnostics: Some(diagnostics),
                knn_acc: Some(0.25),
            },
            MetricsPoint {
                step: 1,
                losses: Some(losses),
                diagnostics: None,
                knn_acc: None,
            },
            MetricsPoint {
                step: 2,
                losses: Some(losses),
                diagnostics: Some(diagnostics),
                knn_acc: None,
            },
        ];
        let mut history = History::default();
        history.extend(&metrics, 8);
        assert_eq!(xs(&history.loss), [1.0, 2.0]);
        assert_eq!(history.loss.points()[0].y, 1.5);
        assert_eq!(history.loss_centroid.points()[0].y, 0.5);
        assert_eq!(history.loss_sv.points()[0].y, 0.75);
        assert_eq!(history.loss_brownian.points()[0].y, 0.25);
        assert_eq!(history.loss_variance.points()[0].y, 0.125);
        assert!(
            history.loss_covariance.is_empty(),
            "a term that was off: no point"
        );
        assert_eq!(xs(&history.effective_rank_per_dim), [0.0, 2.0]);
        assert_eq!(history.effective_rank_per_dim.points()[0].y, 0.75);
        assert_eq!(history.collapse_level.points()[1].y, 0.2);
        assert_eq!(history.uniformity.points()[1].y, -1.0);
        assert_eq!(history.alignment.points()[1].y, 0.3);
        assert_eq!(xs(&history.knn_acc), [0.0]);
        assert_eq!(history.force_shares[1].points()[1].y, 0.3);
        assert_eq!(history.stored_points(), (4 + 1) * 2 + 4 * 2 + 3 * 2 + 1);
    }

    #[test]
    fn a_long_history_stays_within_its_caps() {
        let point = |step| MetricsPoint {
            step,
            losses: Some(StepReport {
                loss: 1.0,
                ..StepReport::default()
            }),
            diagnostics: Some(DisplayDiagnostics::default()),
            knn_acc: Some(0.5),
        };
        let mut history = History::new(100);
        for batch in 0..1000 {
            let metrics: Vec<MetricsPoint> = (1..=1000).map(|k| point(batch * 1000 + k)).collect();
            history.extend(&metrics, 4);
        }
        assert!(history.stored_points() <= 12 * 100);
    }
}
