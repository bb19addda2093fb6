//! `msbreg eval` and `msbreg export`: read a run folder (never write into it, except the
//! export files) and print what its encoder learned.

use std::path::Path;

use anyhow::Context as _;

use msbreg::backend::Backend;
use msbreg::headless::{evaluate_folder, export_folder};

pub fn eval_command(
    backend: &Backend,
    dir: &Path,
    max_train: usize,
    probe_epochs: usize,
) -> anyhow::Result<()> {
    eprintln!("evaluating the run {} ...", dir.display());
    let result = evaluate_folder(dir, &backend.device, max_train, probe_epochs)?;
    for note in &result.notes {
        eprintln!("note: {note}");
    }
    println!(
        "step {}: kNN (k = {}, T = {}) top-1 {:.4} | linear probe top-1 {:.4} | bank {} images, \
         test {} images",
        result.step,
        result.knn_k,
        result.knn_temperature,
        result.knn_acc,
        result.linear_probe_acc,
        result.bank,
        result.queries
    );
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}

pub fn export_command(
    backend: &Backend,
    dir: &Path,
    limit: usize,
    out: Option<&Path>,
) -> anyhow::Result<()> {
    let out = out.unwrap_or(dir);
    std::fs::create_dir_all(out).with_context(|| format!("cannot write {}", out.display()))?;
    let (written, notes) = export_folder(dir, &backend.device, limit, out)?;
    for note in &notes {
        eprintln!("note: {note}");
    }
    println!(
        "wrote {} rows to {} and {} (load both at projector.tensorflow.org)",
        written,
        out.join("vectors.tsv").display(),
        out.join("metadata.tsv").display()
    );
    Ok(())
}
