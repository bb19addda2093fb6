//! Runs: the state of one sandbox run and its step/evaluate cycle (`sandbox`), the headless
//! `simulate` loop that writes a run folder (`simulate`), image pretraining with checkpoints
//! and resume (`train`), and the metrics records (`metrics`).
//!
//! A run is a value plus whoever drives it: the CLI drives it in a loop now; the app's trainer
//! thread will drive the same [`SandboxRun`] between commands.

pub mod evaluate;
pub mod live;
pub mod metrics;
pub mod sandbox;
pub mod simulate;
pub mod train;

pub use metrics::MetricsRecord;
pub use sandbox::{Evaluation, SandboxRun};
pub use simulate::{RunError, SimulateOutcome, simulate};
