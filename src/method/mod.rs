//! The physics of MSBReg: the three forces as loss terms (`forces`), the delayed-parameter
//! target network (`ema`), one training step over any embedder (`step`), the optimisers
//! (`optim`), the learning-rate and `tau` schedules (`schedule`), and VICReg's two terms for
//! that baseline (`vicreg`).
//!
//! Nothing here knows about data formats, threads or the UI: a step takes a batch of views
//! already on the device, the current [`Dynamics`] and a learning rate, and returns the
//! per-term losses.

pub mod arrows;
pub mod ema;
pub mod forces;
pub mod optim;
pub mod schedule;
pub mod step;
#[cfg(test)]
mod test_support;
pub mod vicreg;

pub use forces::{CentroidMode, Dynamics, Force};
pub use optim::{OptimizerConfig, OptimizerKind};
pub use step::{Learner, StepError, StepReport};
