#!/usr/bin/env bash
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
# Runs each cargo-fuzz target (tests/fuzz/fuzz_targets) for a bounded time, one after another,
# and prints a summary line per target (runs executed, corpus size, crash or not).
# Installs cargo-fuzz if it is missing. Works on the stable toolchain via RUSTC_BOOTSTRAP=1
# (cargo-fuzz passes -Z flags for sanitizer coverage).
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
shift || true
fuzz_dir=tests/fuzz
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/ilp-connector/fuzz-target}"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list --fuzz-dir "$fuzz_dir")
fi
status=0
for t in "${targets[@]}"; do
  log="$(mktemp)"
  mkdir -p "$fuzz_dir/corpus/$t"
  if cargo fuzz run --fuzz-dir "$fuzz_dir" "$t" "$fuzz_dir/corpus/$t" -- \
      -max_total_time="$secs" -max_len=4096 -print_final_stats=1 >"$log" 2>&1; then
    result=ok
  else
    result=CRASH
    status=1
  fi
  runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo '?')
  corpus=$(find "$fuzz_dir/corpus/$t" -type f | wc -l)
  echo "fuzz target $t: $result, ${secs}s, $runs runs, corpus $corpus"
  [ "$result" = ok ] || tail -n 40 "$log"
  rm -f "$log"
done
exit "$status"
