//! The commands of the `msbreg` binary, one file each: flags laid over the config, a progress
//! bar, the printing. They drive the library's `headless` loops; `main.rs` parses and
//! dispatches, and is the only place errors are printed.

pub mod ablate;
pub mod bench;
pub mod evaluate;
pub mod runs;
pub mod simulate;
pub mod train;

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar over `total` steps, `done` of them done, with steps/s and an ETA.
pub fn progress_bar(total: u64, done: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_position(done);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} step {pos}/{len}  {rate}  eta {eta}  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .with_key(
                "rate",
                |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.1} steps/s", state.per_sec());
                },
            ),
    );
    bar
}

/// `parent/prefix-001`, or the first free number after it; creates `parent` if needed.
pub fn next_free_dir(parent: &Path, prefix: &str) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create the folder {}", parent.display()))?;
    (1..10_000)
        .map(|n| parent.join(format!("{prefix}-{n:03}")))
        .find(|path| !path.exists())
        .with_context(|| format!("no free run folder name left in {}", parent.display()))
}

/// The line about a headless run's recording, after it ends.
pub fn recording_line(out: &Path, frames: u64, bytes: u64) -> Option<String> {
    (frames > 0).then(|| {
        format!(
            "recorded {frames} frames ({}); replay with `msbreg app --open {}`",
            runs::human_bytes(bytes),
            out.display()
        )
    })
}
