#!/usr/bin/env bash
# What CI checks, plus formatting and lints: run before committing.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/msbreg-target}"
cargo fmt --check
cargo clippy --release --all-targets -- -D warnings
cargo test --release
