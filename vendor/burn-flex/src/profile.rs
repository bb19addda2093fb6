//! msbreg patch (PATCHES.md, 3): where flex's time goes, by kind of operation.
//!
//! Off unless [`enable`]d, then each instrumented operation adds its *exclusive* wall time
//! (its own, less that of the instrumented operations it calls) to its [`Kind`]'s total: so a
//! matrix product's output allocation counts as allocation, not as matrix product. Only the
//! calling thread is timed (the operations' rayon workers run inside its wall time).

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::cell::RefCell;
use std::time::Instant;

/// The kinds of work `msbreg bench train --profile` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `matmul`.
    MatMul,
    /// `conv2d` and its backward (the convolution ops of ResNet-18).
    Conv,
    /// `select` and `gather`: the im2col patch gathers.
    Gather,
    /// `select_assign` and `scatter`: the gathers' backward (scatter-add).
    Scatter,
    /// `cat`.
    Cat,
    /// Arithmetic: add, sub, mul, div, their scalar forms, exp, log, sqrt, powers, ...
    Elementwise,
    /// ReLU and its backward, masks, comparisons, clamps.
    Activation,
    /// Sums, means, maxima (the batch norm statistics among them).
    Reduction,
    /// New buffers: zeros, ones, full, and building tensors from data.
    Alloc,
    /// Layout changes that copy: contiguous copies, slices, slice-assign, permutes, expands,
    /// reading tensors back.
    Copy,
}

impl Kind {
    pub const ALL: [Kind; 10] = [
        Kind::MatMul,
        Kind::Conv,
        Kind::Gather,
        Kind::Scatter,
        Kind::Cat,
        Kind::Elementwise,
        Kind::Activation,
        Kind::Reduction,
        Kind::Alloc,
        Kind::Copy,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::MatMul => "matrix products",
            Kind::Conv => "convolutions (conv2d)",
            Kind::Gather => "gathers (select/gather)",
            Kind::Scatter => "scatter-add (select_assign/scatter)",
            Kind::Cat => "cat",
            Kind::Elementwise => "element-wise arithmetic",
            Kind::Activation => "activations, masks, comparisons",
            Kind::Reduction => "reductions (sum, mean, max)",
            Kind::Alloc => "allocation (zeros, full, from data)",
            Kind::Copy => "copies (contiguous, slice, permute, read back)",
        }
    }
}

static ENABLED: AtomicBool = AtomicBool::new(false);
static NANOS: [AtomicU64; 10] = [const { AtomicU64::new(0) }; 10];
static CALLS: [AtomicU64; 10] = [const { AtomicU64::new(0) }; 10];

thread_local! {
    /// The nanoseconds spent in instrumented operations called by each open scope.
    static CHILDREN: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// Starts (or stops) counting; counting is off by default and costs one relaxed load per
/// operation while off.
pub fn enable(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// The totals so far, per kind: (kind, seconds, calls), and resets them.
pub fn take() -> Vec<(Kind, f64, u64)> {
    Kind::ALL
        .iter()
        .map(|&kind| {
            let i = kind as usize;
            let nanos = NANOS[i].swap(0, Ordering::Relaxed);
            let calls = CALLS[i].swap(0, Ordering::Relaxed);
            (kind, nanos as f64 * 1e-9, calls)
        })
        .collect()
}

/// Times from its creation to its drop as `kind`, exclusive of nested scopes.
pub struct Scope {
    kind: Kind,
    start: Option<Instant>,
}

/// A scope for one operation of `kind` (a no-op while counting is off).
#[inline]
pub fn scope(kind: Kind) -> Scope {
    if !ENABLED.load(Ordering::Relaxed) {
        return Scope { kind, start: None };
    }
    CHILDREN.with(|c| c.borrow_mut().push(0));
    Scope {
        kind,
        start: Some(Instant::now()),
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        let Some(start) = self.start else {
            return;
        };
        let elapsed = start.elapsed().as_nanos() as u64;
        let children = CHILDREN.with(|c| {
            let mut c = c.borrow_mut();
            let children = c.pop().unwrap_or(0);
            if let Some(parent) = c.last_mut() {
                *parent += elapsed;
            }
            children
        });
        let i = self.kind as usize;
        NANOS[i].fetch_add(elapsed.saturating_sub(children), Ordering::Relaxed);
        CALLS[i].fetch_add(1, Ordering::Relaxed);
    }
}
