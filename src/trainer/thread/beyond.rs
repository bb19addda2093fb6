//! The displayed points beyond the core, refreshed in rolling chunks, and the clock that
//! keeps the whole display within [`DISPLAY_SHARE`] of the trainer's time.
//!
//! Every display refresh embeds the core (the display set with two views of each point: the
//! diagnostics, the basis, the arrows, the recording) and the next chunk of the points beyond
//! it; those keep their last embedding until their chunk comes round again, and every frame
//! projects all of them with the core's basis. While the run trains, a refresh is due only when
//! the display's credit (earned at [`DISPLAY_SHARE`] / (1 - [`DISPLAY_SHARE`]) of every step's
//! time, spent by every refresh's time) covers what the last refresh cost, so the display
//! takes at most that share of the trainer's time whatever the model costs. A paused run
//! embeds every point at once.

use std::ops::Range;
use std::time::Instant;

/// The most of the trainer's time (display and training together) the display may take
/// while the run trains.
pub const DISPLAY_SHARE: f64 = 0.15;

/// The most display credit kept (seconds): what a refresh may spend at once after a stretch
/// of cheap refreshes.
const MAX_CREDIT: f64 = 0.3;

/// The displayed points beyond the core: their latest unit embeddings, refreshed a chunk at a
/// time in order, wrapping round.
#[derive(Debug, Default)]
pub(super) struct Beyond {
    /// The index (in the display set) of the first point beyond the core.
    first: usize,
    /// How many points there are beyond the core.
    len: usize,
    dim: usize,
    /// `[filled, dim]` row-major: the points embedded at least once (a prefix).
    rows: Vec<f32>,
    /// Where the next chunk starts (relative to `first`).
    next: usize,
    /// Points per chunk while the run trains (adapted by [`Beyond::adapt`]).
    chunk: usize,
    /// The smallest chunk: as many rows as a refresh of the core embeds.
    min_chunk: usize,
    /// When the chunks last came round to the first point, and how long the round before
    /// took: how old the oldest shown embedding gets.
    wrapped_at: Option<Instant>,
    round_secs: Option<f64>,
}

impl Beyond {
    /// The points `core..total` of a display set whose core has `core` points, embedded in
    /// `dim` dimensions.
    pub fn new(core: usize, total: usize, dim: usize) -> Self {
        let min_chunk = (3 * core).max(64);
        Self {
            first: core,
            len: total.saturating_sub(core),
            dim,
            rows: Vec::new(),
            next: 0,
            chunk: min_chunk,
            min_chunk,
            wrapped_at: None,
            round_secs: None,
        }
    }

    /// The display-set indices of the next chunk to embed (all of them when `all`); empty
    /// when there are no points beyond the core.
    pub fn next_range(&self, all: bool) -> Range<usize> {
        if self.len == 0 {
            return 0..0;
        }
        let (start, count) = if all {
            (0, self.len)
        } else {
            (self.next, self.chunk.min(self.len - self.next))
        };
        self.first + start..self.first + start + count
    }

    /// Keeps the embeddings `rows` of the display-set indices `range` (from
    /// [`Beyond::next_range`]; `all` as asked there) and moves on to the chunk after it.
    pub fn store(&mut self, range: Range<usize>, rows: &[f32], all: bool) {
        let (start, end) = (range.start - self.first, range.end - self.first);
        if rows.len() != (end - start) * self.dim || end > self.len || start > self.filled() {
            return;
        }
        let overlap = self.filled().min(end) - start;
        self.rows[start * self.dim..(start + overlap) * self.dim]
            .copy_from_slice(&rows[..overlap * self.dim]);
        self.rows.extend_from_slice(&rows[overlap * self.dim..]);
        self.next = if end >= self.len { 0 } else { end };
        if self.next == 0 {
            // A round is complete: timed when it rolled (not all at once, on a pause).
            if !all && let Some(at) = self.wrapped_at {
                self.round_secs = Some(at.elapsed().as_secs_f64());
            }
            self.wrapped_at = Some(Instant::now());
        }
    }

    /// How long the last complete round of chunks took (`None` before one), in seconds.
    pub fn round_secs(&self) -> Option<f64> {
        self.round_secs
    }

    /// Points embedded at least once (shown): the first of those beyond the core.
    pub fn filled(&self) -> usize {
        self.rows.len() / self.dim.max(1)
    }

    /// The embeddings of the shown points, `[filled, dim]` row-major.
    pub fn rows(&self) -> &[f32] {
        &self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// After a refresh while training that left `credit` seconds: a larger chunk when the
    /// interval, not the budget, held the refreshes back (`credit` above what the refresh
    /// cost), the smallest when the budget did.
    pub fn adapt(&mut self, credit: f64, refresh_secs: f64) {
        if credit > refresh_secs {
            self.chunk = (2 * self.chunk).min(self.len.max(self.min_chunk));
        } else if credit < 0.0 {
            self.chunk = (self.chunk / 2).max(self.min_chunk);
        }
    }
}

/// How much of the trainer's time the display takes, and whether it may refresh now.
#[derive(Debug, Default)]
pub(crate) struct DisplayClock {
    /// Seconds of display the budget allows now (negative: owed).
    credit: f64,
    /// What the last refresh cost (the next is expected to cost as much).
    last_secs: f64,
    train_secs: f64,
    display_secs: f64,
}

impl DisplayClock {
    /// A training step took `secs`.
    pub fn trained(&mut self, secs: f64) {
        self.train_secs += secs;
        self.credit = (self.credit + secs * DISPLAY_SHARE / (1.0 - DISPLAY_SHARE))
            .min(MAX_CREDIT.max(self.last_secs));
    }

    /// Whether the budget allows a refresh now: the credit covers one like the last.
    pub fn may_refresh(&self) -> bool {
        self.credit >= self.last_secs
    }

    /// A refresh while training took `secs`; returns the credit left.
    pub fn displayed(&mut self, secs: f64) -> f64 {
        self.display_secs += secs;
        self.credit -= secs;
        self.last_secs = secs;
        self.credit
    }

    /// The display's share of the time spent training and displaying so far (0 before any).
    pub fn share(&self) -> f64 {
        let total = self.train_secs + self.display_secs;
        if total > 0.0 {
            self.display_secs / total
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_roll_round_and_fill_the_points_in_order() {
        let mut beyond = Beyond::new(4, 4 + 10, 2);
        assert_eq!(beyond.chunk, 64, "at least 64 points a chunk");
        beyond.chunk = 4;
        let mut seen = Vec::new();
        for round in 0..5 {
            let range = beyond.next_range(false);
            seen.push(range.clone());
            let rows: Vec<f32> = range
                .clone()
                .flat_map(|i| [i as f32, round as f32])
                .collect();
            beyond.store(range, &rows, false);
        }
        assert_eq!(seen, vec![4..8, 8..12, 12..14, 4..8, 8..12]);
        assert_eq!(beyond.round_secs(), None, "one wrap: no round timed yet");
        let range = beyond.next_range(false);
        assert_eq!(range, 12..14);
        let again: Vec<f32> = range.clone().flat_map(|i| [i as f32, 2.0]).collect();
        beyond.store(range, &again, false);
        assert!(
            beyond.round_secs().is_some(),
            "a second wrap times the round"
        );
        let range = beyond.next_range(false);
        assert_eq!(range, 4..8);
        let fresh: Vec<f32> = range.clone().flat_map(|i| [i as f32, 3.0]).collect();
        beyond.store(range, &fresh, false);
        let range = beyond.next_range(false);
        let fresh: Vec<f32> = range.clone().flat_map(|i| [i as f32, 4.0]).collect();
        beyond.store(range, &fresh, false);
        assert_eq!(beyond.filled(), 10);
        // Points 4..12 come from rounds 3 and 4, points 12..14 from round 2.
        let rounds: Vec<f32> = beyond.rows().chunks(2).map(|r| r[1]).collect();
        assert_eq!(
            rounds,
            vec![3.0, 3.0, 3.0, 3.0, 4.0, 4.0, 4.0, 4.0, 2.0, 2.0]
        );
        let ids: Vec<f32> = beyond.rows().chunks(2).map(|r| r[0]).collect();
        assert_eq!(ids, (4..14).map(|i| i as f32).collect::<Vec<_>>());
        // All at once (a paused run).
        assert_eq!(beyond.next_range(true), 4..14);
        assert!(Beyond::new(5, 5, 2).next_range(false).is_empty());
        assert!(
            Beyond::new(5, 3, 2).is_empty(),
            "fewer than the core: none beyond"
        );
    }

    #[test]
    fn rows_of_the_wrong_length_are_not_kept() {
        let mut beyond = Beyond::new(2, 6, 3);
        let range = beyond.next_range(false);
        beyond.store(range.clone(), &[0.0; 5], false);
        assert_eq!(beyond.filled(), 0);
        beyond.store(range, &[0.0; 12], false);
        assert_eq!(beyond.filled(), 4);
    }

    #[test]
    fn the_chunk_grows_with_slack_and_shrinks_under_the_budget() {
        let mut beyond = Beyond::new(100, 100 + 5000, 8);
        assert_eq!(beyond.chunk, 300);
        beyond.adapt(0.2, 0.01);
        assert_eq!(beyond.chunk, 600);
        for _ in 0..10 {
            beyond.adapt(0.2, 0.01);
        }
        assert_eq!(beyond.chunk, 5000, "at most every point");
        beyond.adapt(-0.1, 0.2);
        assert_eq!(beyond.chunk, 2500);
        beyond.adapt(0.05, 0.2);
        assert_eq!(
            beyond.chunk, 2500,
            "some credit left but less than a refresh: kept"
        );
        for _ in 0..10 {
            beyond.adapt(-0.1, 0.2);
        }
        assert_eq!(beyond.chunk, 300, "never below the core's rows");
    }

    /// Steps and refreshes as the trainer's loop makes them, with a refresh costing 2x a step
    /// (an image model on a CPU): the display stays within its share.
    #[test]
    fn the_clock_keeps_the_display_within_its_share() {
        let mut clock = DisplayClock::default();
        let (step, refresh) = (0.1, 0.2);
        let mut refreshes = 0;
        for _ in 0..1000 {
            clock.trained(step);
            if clock.may_refresh() {
                clock.displayed(refresh);
                refreshes += 1;
            }
        }
        let share = clock.share();
        assert!(share <= DISPLAY_SHARE, "{share}");
        assert!(share >= DISPLAY_SHARE - 0.03, "the budget is used: {share}");
        assert!(refreshes > 50, "{refreshes}");
        // Refreshes dearer than the most credit kept still come, as the budget allows.
        let mut dear = DisplayClock::default();
        let mut refreshes = 0;
        for _ in 0..1000 {
            dear.trained(0.5);
            if dear.may_refresh() {
                dear.displayed(1.0);
                refreshes += 1;
            }
        }
        assert!(refreshes > 50, "{refreshes}");
        assert!(dear.share() <= DISPLAY_SHARE, "{}", dear.share());
        // Cheap refreshes are not held back (the interval limits them, not the clock).
        let mut cheap = DisplayClock::default();
        let mut held = 0;
        for _ in 0..1000 {
            cheap.trained(0.02);
            if cheap.may_refresh() {
                cheap.displayed(0.001);
            } else {
                held += 1;
            }
        }
        assert_eq!(held, 0);
    }
}
