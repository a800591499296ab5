#!/usr/bin/env bash
# A/B of two builds of our connector on this machine, in one run, with this tree's ilp-load:
#  1. BTP -> BTP through one node at K packets in flight (RocksDB, fsync on), the two builds
#     alternating, ROUNDS runs each;
#  2. a restart with a full set of fulfill records: K in flight for 30 s (every packet's record
#     still live), kill -9, restart on the same data directory, then packets per second in the
#     first RESTART_SECONDS;
#  3. (this tree's build only) the memory of paid Prepares at the end of those 30 s, from
#     /metrics, and the node's resident memory.
#
#   scripts/bench/compare.sh BASE_BIN [ROUNDS]
#   BASE_BIN          the other build's ilp-connector binary (e.g. a release build of main)
#   COMPARE_SECONDS   seconds per run of step 1 (default 10); COMPARE_K (default 100)
#   COMPARE_WARMUP    seconds of load before each measured run of step 1 (default 35: longer
#                     than the packets' 30 s expiry, so the memory of paid Prepares has reached
#                     its steady size and is being swept as fast as it fills); 0 measures from
#                     a cold start
#   RESTART_SECONDS   seconds measured after the restart (default 3)
set -euo pipefail
cd "$(dirname "$0")/../.."
BASE_BIN=${1:?usage: scripts/bench/compare.sh BASE_BIN [ROUNDS]}
ROUNDS=${2:-3}
SECONDS_PER_RUN=${COMPARE_SECONDS:-10}
WARMUP=${COMPARE_WARMUP:-35}
K=${COMPARE_K:-100}
RESTART_SECONDS=${RESTART_SECONDS:-3}
LOG_TAG=compare
# shellcheck source=../lib/nodes.sh
. scripts/lib/nodes.sh
build_release
NEW_BIN="$BIN/ilp-connector"

# run_load SECONDS PID URL: one ilp-load run; prints its JSON line.
run_load() {
  "$BIN/ilp-load" --btp "$3" --payer payer:payer-token --payee payee:payee-token \
    --destination test.one.payee -k "$K" --duration "$1" --connector-pid "$2" --json \
    2>>"$WORK/load.log" | grep '^{' || echo '{}'
}

config() { # DATA_DIR ADMIN(0/1)
  if [ "$2" = 1 ]; then
    node_head test.one "$1" 127.0.0.1:0 |
      sed '/^\[listeners.admin\]$/,/^enabled/ s/^enabled = false$/enabled = true\nbind = "127.0.0.1:0"/'
  else
    node_head test.one "$1" 127.0.0.1:0
  fi
  child_account payer payer-token
  child_account payee payee-token
}

field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get(sys.argv[2]))' "$1" "$2"; }

echo "K = $K, $SECONDS_PER_RUN s measured after $WARMUP s of load, per build and round"
echo
echo "| build | round | packets/s | p99 ms | CPU µs/packet |"
echo "|---|---:|---:|---:|---:|"
for round in $(seq 1 "$ROUNDS"); do
  for build in base new; do
    bin=$BASE_BIN; [ "$build" = new ] && bin=$NEW_BIN
    config "$WORK/ab-$build-$round" 0 >"$WORK/ab.toml"
    CONNECTOR=$bin start_ours ab
    if [ "$WARMUP" -gt 0 ]; then run_load "$WARMUP" "$PID_OUT" "$BTP_OUT" >/dev/null; fi
    line=$(run_load "$SECONDS_PER_RUN" "$PID_OUT" "$BTP_OUT")
    stop_all
    printf '| %s | %s | %.0f | %.2f | %.1f |\n' "$build" "$round" "$(field "$line" pps)" \
      "$(field "$line" p99_ms)" "$(field "$line" cpu_us_per_packet)"
  done
done

echo
echo "| build | packets/s before the kill | records then | packets/s in the first ${RESTART_SECONDS} s after the restart | memory of paid Prepares | node RSS |"
echo "|---|---:|---:|---:|---:|---:|"
for build in base new; do
  bin=$BASE_BIN; [ "$build" = new ] && bin=$NEW_BIN
  data="$WORK/restart-$build"
  admin=0; [ "$build" = new ] && admin=1
  config "$data" "$admin" >"$WORK/restart.toml"
  CONNECTOR=$bin start_ours restart
  pid=$PID_OUT url=$BTP_OUT
  before=$(run_load 30 "$pid" "$url")
  remembered="-" memory="-"
  if [ "$admin" = 1 ]; then
    admin_url=$(grep -m1 -oE 'admin API listening on http://[^ ]+' "$WORK/restart.out" | sed 's/^admin API listening on //')
    metrics=$(curl -s "$admin_url/metrics")
    remembered=$(echo "$metrics" | awk '/^ilp_paid_prepares_remembered /{print $2}')
    memory=$(echo "$metrics" | awk '/^ilp_paid_prepares_memory_bytes /{printf "%.1f MiB", $2/1048576}')
  fi
  rss=$(awk '/VmRSS/{printf "%.0f MiB", $2/1024}' "/proc/$pid/status")
  kill -9 "$pid"; wait "$pid" 2>/dev/null || true
  PIDS=()
  # Same data directory; a new port is fine, the load generator connects afresh.
  CONNECTOR=$bin start_ours restart
  after=$(run_load "$RESTART_SECONDS" "$PID_OUT" "$BTP_OUT")
  stop_all
  printf '| %s | %.0f | %s | %.0f | %s | %s |\n' "$build" "$(field "$before" pps)" "$remembered" \
    "$(field "$after" pps)" "$memory" "$rss"
done
