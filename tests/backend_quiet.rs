//! `--backend auto` probes the adapters quietly, even where `XDG_RUNTIME_DIR` is missing (a
//! container, a CI job), and says what it chose in one line. Without the variable, Mesa's Vulkan
//! device-selection layer (Debian's mesa-vulkan-drivers, installed for the tests) makes
//! libwayland print "error: XDG_RUNTIME_DIR is invalid or not set in the environment." to the
//! process's stderr for every wgpu instance; the binary is run here as a user would run it.

use std::process::{Command, Output};

/// `msbreg ARGS` with `XDG_RUNTIME_DIR` removed from its environment.
fn msbreg_without_runtime_dir(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_msbreg"))
        .args(args)
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "msbreg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn assert_quiet(stderr: &str) {
    assert!(
        !stderr.contains("XDG_RUNTIME_DIR"),
        "the probe is not quiet:\n{stderr}"
    );
}

#[test]
fn backends_probes_quietly_and_reports_auto_once() {
    let out = msbreg_without_runtime_dir(&["backends"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_quiet(&stderr);
    let auto: Vec<&str> = stdout.lines().filter(|l| l.starts_with("auto:")).collect();
    assert_eq!(auto.len(), 1, "{stdout}");
    assert!(
        auto[0].contains(" on ") && auto[0].contains('('),
        "the choice and its reason: {stdout}"
    );
}

#[test]
fn train_with_auto_probes_quietly_and_reports_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = dir.path().join("run");
    let run = run.to_str().expect("a UTF-8 temp path");
    let out = msbreg_without_runtime_dir(&[
        "train",
        "--data",
        "digits",
        "--stop-after",
        "0",
        "--out",
        run,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_quiet(&stderr);
    let backend: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("backend:"))
        .collect();
    assert_eq!(backend.len(), 1, "{stderr}");
}
