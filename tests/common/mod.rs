//! What several test files need: the `msbreg` binary on the CPU backend, running it expecting
//! success, and a folder's files with their bytes. Each test binary uses a part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The binary under test, on the CPU backend.
pub fn msbreg() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_msbreg"));
    command.arg("--backend").arg("cpu");
    command
}

/// Runs `command`, which must succeed (its stderr is the failure message).
pub fn run(command: &mut Command) -> Output {
    let out = command.output().expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `command`, which must succeed; its stdout.
pub fn run_ok(command: &mut Command) -> String {
    String::from_utf8_lossy(&run(command).stdout).into_owned()
}

/// Every file under `dir` with its bytes.
pub fn contents(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).expect("lists") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("reads");
                out.insert(path.strip_prefix(dir).expect("inside").to_owned(), bytes);
            }
        }
    }
    out
}
