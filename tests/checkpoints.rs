//! Damaged and mismatched checkpoints: an older intact checkpoint is taken (and named) when
//! newer ones are damaged, evaluation needs only the weights, a checkpoint past the run's
//! end is refused, and a config.toml edited to another network says so.

mod common;

use common::msbreg;

use std::path::Path;
use std::process::{Command, Output};

fn output(command: &mut Command) -> (bool, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().expect("runs");
    (
        status.success(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// A small digits run with checkpoints at steps 2, 4 and 6.
fn run_with_three_checkpoints(out: &Path) {
    let (ok, _, stderr) = output(
        msbreg()
            .args([
                "train",
                "--data",
                "digits",
                "--epochs",
                "1",
                "--max-steps",
                "6",
                "--batch-size",
                "64",
                "--views",
                "2",
                "--set",
                "checkpoint.every_steps=2",
                "--out",
            ])
            .arg(out),
    );
    assert!(ok, "{stderr}");
}

fn eval(run: &Path) -> (bool, String, String) {
    output(
        msbreg()
            .args(["eval", "--probe-epochs", "1", "--max-train", "300", "--run"])
            .arg(run),
    )
}

fn checkpoint(run: &Path, step: u64) -> std::path::PathBuf {
    run.join("checkpoints").join(format!("step-{step:08}"))
}

#[test]
fn damaged_checkpoints_fall_back_to_an_intact_one_and_say_so() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = dir.path().join("run");
    run_with_three_checkpoints(&run);

    // Only the optimiser state of the newest is damaged: evaluation does not need it.
    let optimizer = checkpoint(&run, 6).join("optimizer.bpk");
    let saved = std::fs::read(&optimizer).expect("reads");
    std::fs::write(&optimizer, b"garbage").expect("writes");
    let (ok, stdout, stderr) = eval(&run);
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("step 6:"), "{stdout}");
    assert!(!stderr.contains("note:"), "{stderr}");
    // Resuming needs it: the checkpoint at step 4 is taken, and named.
    let (ok, _, stderr) = output(msbreg().args(["train", "--resume"]).arg(&run));
    assert!(ok, "{stderr}");
    assert!(stderr.contains("step 4"), "{stderr}");
    std::fs::write(&optimizer, saved).expect("restores");

    // The weights of the newest are damaged: evaluation takes step 4 and says why.
    std::fs::write(checkpoint(&run, 6).join("online.bpk"), b"garbage").expect("writes");
    let (ok, stdout, stderr) = eval(&run);
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("step 4:"), "{stdout}");
    assert!(
        stderr.contains("note:") && stderr.contains("online.bpk"),
        "{stderr}"
    );
}

#[test]
fn a_checkpoint_past_the_end_and_an_edited_config_are_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = dir.path().join("run");
    run_with_three_checkpoints(&run);
    let state = checkpoint(&run, 6).join("state.json");
    std::fs::write(&state, r#"{"step":1000000,"total_steps":6}"#).expect("writes");
    let (ok, stdout, stderr) = eval(&run);
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("step 4:"), "{stdout}");
    assert!(stderr.contains("past the run's 6 steps"), "{stderr}");

    std::fs::write(&state, r#"{"step":6,"total_steps":6}"#).expect("restores");
    let config = run.join("config.toml");
    let text = std::fs::read_to_string(&config).expect("reads");
    let edited = text.replacen("embed_dim = 128", "embed_dim = 64", 1);
    assert_ne!(text, edited, "the config names embed_dim");
    std::fs::write(&config, edited).expect("writes");
    let (ok, _, stderr) = eval(&run);
    assert!(!ok);
    assert!(
        stderr.contains("config.toml") && stderr.contains("edited"),
        "{stderr}"
    );
}
