#!/usr/bin/env bash
# The GPU path measured in one go, for the short window a machine with a hardware GPU is lent:
#   1. build the binary and the test binaries once (release, all cores);
#   2. the tests that run on wgpu (the render, sandbox and app suites);
#   3. msbreg bench train --model resnet18 --backend gpu, against PyTorch on CUDA when a Python
#      with torch is there (TORCH_PYTHON, else python3);
#   4. msbreg bench render --points 1000000;
#   5. the app's frame statistics for 20 s (under Xvfb when there is no display);
# and writes one summary (gpu-check/summary.md, the full logs beside it). Each stage has its
# own time limit so the whole stays under 10 minutes after the build; a stage that fails or
# times out is reported as such and the next one runs.
#
#   scripts/gpu-check.sh            # everything
#   BUILD=0 scripts/gpu-check.sh    # reuse target/ as it is
set -uo pipefail
cd "$(dirname "$0")/.."

OUT="${OUT_DIR:-gpu-check}"
mkdir -p "$OUT"
SUMMARY="$OUT/summary.md"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-$(nproc)}"
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
  export XDG_RUNTIME_DIR="$(mktemp -d)"
  chmod 700 "$XDG_RUNTIME_DIR"
fi
BIN="$CARGO_TARGET_DIR/release/msbreg"
start_all=$(date +%s)

{
  echo "# gpu-check, $(date -u +%FT%TZ)"
  echo
  echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') ($(nproc) cores)"
  if command -v nvidia-smi >/dev/null; then
    echo "- GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)"
  else
    echo "- GPU: no nvidia-smi (another vendor's GPU, or none)"
  fi
  echo
  echo "| stage | result | seconds | figures |"
  echo "|---|---|---|---|"
} > "$SUMMARY"

# stage NAME LIMIT_SECS FIGURE_GREP COMMAND...: runs COMMAND with a time limit, logs it to
# $OUT/NAME.log and adds a row with the lines of the log that match FIGURE_GREP.
stage() {
  local name="$1" limit="$2" grep_for="$3"
  shift 3
  local log="$OUT/$name.log" t0 rc result figures
  t0=$(date +%s)
  echo "== $name (limit ${limit} s): $*"
  timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1
  rc=$?
  case $rc in
    0) result="passed" ;;
    124|137) result="timed out after ${limit} s" ;;
    *) result="failed (exit $rc)" ;;
  esac
  figures=$(grep -E "$grep_for" "$log" | tail -n 6 | tr '\n' ';' | sed 's/|/\\|/g; s/;$//')
  echo "| $name | $result | $(( $(date +%s) - t0 )) | ${figures:-see $name.log} |" >> "$SUMMARY"
  tail -n 3 "$log"
  return 0
}

if [ "${BUILD:-1}" = 1 ]; then
  stage build 900 "Finished|error" cargo build --release --bins --tests
fi

stage gpu-tests 240 "test result|FAILED|panicked" \
  cargo test --release --test render --test sandbox --test app -- --test-threads 2

PYTHON="${TORCH_PYTHON:-python3}"
if "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  stage bench-train-resnet18 240 "images/s|ratio" \
    "$BIN" bench train --model resnet18 --backend gpu --torch "$PYTHON" --torch-device cuda --steps 10
else
  echo "| bench-train-resnet18 (PyTorch) | skipped: $PYTHON has no torch with CUDA (set TORCH_PYTHON) | 0 | |" >> "$SUMMARY"
  stage bench-train-resnet18 180 "images/s" \
    "$BIN" bench train --model resnet18 --backend gpu --steps 10
fi

stage bench-render 120 "^ *[0-9].*frames/s" "$BIN" bench render --points 0,100000,1000000

APP=("$BIN" --backend gpu app --frame-stats 20 --runs-dir "$OUT/runs")
if [ -z "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && command -v xvfb-run >/dev/null; then
  APP=(xvfb-run -a -s "-screen 0 1600x1000x24" "${APP[@]}")
fi
stage app-frame-stats 90 "frame|p50|p95|p99|fps" "${APP[@]}"

echo >> "$SUMMARY"
echo "Total $(( $(date +%s) - start_all )) s. Logs: $OUT/*.log" >> "$SUMMARY"
echo
cat "$SUMMARY"
