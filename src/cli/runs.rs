//! `msbreg runs [DIR]`: the runs of a runs directory, one line each (`--json`: one object per
//! line).

use std::path::Path;

use msbreg::session::catalog::{RunSummary, list_runs};

pub fn runs_command(dir: &Path, json: bool) -> anyhow::Result<()> {
    let (runs, problems) = list_runs(dir)?;
    if json {
        for run in &runs {
            println!("{}", serde_json::to_string(run)?);
        }
    } else if runs.is_empty() {
        println!("no runs in {}", dir.display());
    } else {
        println!(
            "{:<40} {:<10} {:<24} {:>8} {:>7} {:>7} {:>9}  parent",
            "path", "preset", "dataset", "steps", "frames", "kNN", "size"
        );
        for run in &runs {
            println!("{}", line(run));
        }
    }
    for problem in &problems {
        eprintln!("note: {problem}");
    }
    Ok(())
}

fn line(run: &RunSummary) -> String {
    let knn = run
        .knn_acc
        .map_or_else(|| "-".to_owned(), |k| format!("{:.1}%", 100.0 * k));
    let parent = match (&run.parent, run.parent_step) {
        (Some(parent), Some(step)) => format!("{} @ {step}", parent.display()),
        (Some(parent), None) => parent.display().to_string(),
        _ => "-".to_owned(),
    };
    let pin = if run.pinned { " (pinned)" } else { "" };
    let note = run
        .recording_note
        .as_ref()
        .filter(|_| run.frames == 0)
        .map_or("", |_| " (no recording)");
    format!(
        "{:<40} {:<10} {:<24} {:>8} {:>7} {:>7} {:>9}  {parent}{pin}{note}",
        run.path.display(),
        run.preset,
        run.dataset,
        run.steps,
        run.frames,
        knn,
        human_bytes(run.bytes),
    )
}

/// `1.2 MB`, `340 kB`.
pub fn human_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.1} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.0} kB", b / 1e3)
    } else {
        format!("{bytes} B")
    }
}
