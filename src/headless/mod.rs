//! The loops that drive a run to its folder without a window: [`drive`] (what `simulate`
//! and `train` run, fresh or resumed), and the readers [`evaluate_folder`] and
//! [`export_folder`] (what `eval` and `export` run), which never write into the run folder
//! except the export files asked for.

pub mod ablate;
pub mod ablate_file;
mod ablate_table;
mod drive;
mod evaluate;

use std::path::PathBuf;

pub use ablate_table::mean_std;
pub use drive::{DriveOptions, Outcome, Progress, drive, simulate};
pub use evaluate::{EvalReport, evaluate_folder, export_folder, linear_probe};

use crate::session::SessionError;

/// What stops a headless command.
#[derive(Debug, thiserror::Error)]
pub enum HeadlessError {
    #[error(transparent)]
    Session(#[from] SessionError),
    /// A step failed (a non-finite loss, a read-back); what was saved stays.
    #[error("training stopped at step {step}: {reason}. Kept in {}: {kept}", out.display())]
    Stopped {
        step: u64,
        reason: Box<SessionError>,
        out: PathBuf,
        kept: String,
    },
    #[error("evaluation of {what}: {reason}")]
    Evaluate { what: String, reason: String },
}
