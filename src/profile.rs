//! Where a training step's time goes, by phase, for `msbreg bench train --profile`.
//!
//! Off unless [`enable`]d (one relaxed load per phase while off). [`Learner::step`] marks its
//! phases; flex's own counters (the patched `burn_flex::profile`, vendor/burn-flex/PATCHES.md)
//! say which kinds of work fill them.
//!
//! [`Learner::step`]: crate::method::Learner::step

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

/// The phases of one training step, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Encoder, projector and predictor on the views.
    OnlineForward,
    /// The EMA target's encoder and projector.
    TargetForward,
    /// The loss terms and reading them back.
    Losses,
    /// The rollback snapshot of weights and optimiser state (shared tensors, no copies).
    Snapshot,
    /// Autodiff's backward pass.
    Backward,
    /// Gradients to parameters and the optimiser's update.
    Optimizer,
    /// The EMA update of the target.
    Ema,
}

impl Phase {
    pub const ALL: [Phase; 7] = [
        Phase::OnlineForward,
        Phase::TargetForward,
        Phase::Losses,
        Phase::Snapshot,
        Phase::Backward,
        Phase::Optimizer,
        Phase::Ema,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Phase::OnlineForward => "online forward",
            Phase::TargetForward => "target forward",
            Phase::Losses => "losses",
            Phase::Snapshot => "rollback snapshot",
            Phase::Backward => "backward",
            Phase::Optimizer => "optimizer",
            Phase::Ema => "EMA",
        }
    }
}

static ENABLED: AtomicBool = AtomicBool::new(false);
static NANOS: [AtomicU64; 7] = [const { AtomicU64::new(0) }; 7];

/// Starts or stops counting, here and in flex.
pub fn enable(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
    burn_flex::profile::enable(on);
}

/// Seconds per phase since the last call, and resets them.
pub fn take() -> Vec<(Phase, f64)> {
    Phase::ALL
        .iter()
        .map(|&phase| {
            let nanos = NANOS[phase as usize].swap(0, Ordering::Relaxed);
            (phase, nanos as f64 * 1e-9)
        })
        .collect()
}

/// msbreg's own operations on flex, which flex's counters do not see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fused {
    /// `model::batch_norm_relu`
    BatchNormRelu,
    /// `model::conv3x3`
    Conv3x3,
}

impl Fused {
    pub const ALL: [Fused; 2] = [Fused::Conv3x3, Fused::BatchNormRelu];

    pub fn name(self) -> &'static str {
        match self {
            Fused::BatchNormRelu => "batch norm + ReLU (msbreg's fused op)",
            Fused::Conv3x3 => "3x3 convolutions (msbreg's tiled op)",
        }
    }
}

static FUSED_NANOS: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];
static FUSED_CALLS: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];

/// Seconds and calls of each of msbreg's own operations since the last call, and resets them.
pub fn take_fused() -> Vec<(Fused, f64, u64)> {
    Fused::ALL
        .iter()
        .map(|&op| {
            let nanos = FUSED_NANOS[op as usize].swap(0, Ordering::Relaxed);
            let calls = FUSED_CALLS[op as usize].swap(0, Ordering::Relaxed);
            (op, nanos as f64 * 1e-9, calls)
        })
        .collect()
}

/// Counts the time from here to the guard's drop as one call of `op`.
pub fn fused(op: Fused) -> FusedGuard {
    FusedGuard {
        op,
        start: ENABLED.load(Ordering::Relaxed).then(Instant::now),
    }
}

pub struct FusedGuard {
    op: Fused,
    start: Option<Instant>,
}

impl Drop for FusedGuard {
    fn drop(&mut self) {
        if let Some(start) = self.start {
            let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
            FUSED_NANOS[self.op as usize].fetch_add(nanos, Ordering::Relaxed);
            FUSED_CALLS[self.op as usize].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Counts the time from here to the guard's drop as `phase`.
pub fn phase(phase: Phase) -> PhaseGuard {
    PhaseGuard {
        phase,
        start: ENABLED.load(Ordering::Relaxed).then(Instant::now),
    }
}

pub struct PhaseGuard {
    phase: Phase,
    start: Option<Instant>,
}

impl Drop for PhaseGuard {
    fn drop(&mut self) {
        if let Some(start) = self.start {
            let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
            NANOS[self.phase as usize].fetch_add(nanos, Ordering::Relaxed);
        }
    }
}
