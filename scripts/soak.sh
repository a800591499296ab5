#!/usr/bin/env bash
# Soak test: runs the release connector (RocksDB store, fsync on) under steady load from
# ilp-load for a while and samples its resident memory, open descriptors and CPU time every
# interval. Prints a table and fails when memory or descriptors grow after the warm-up.
#
#   scripts/soak.sh [SECONDS (600)] [PACKETS_PER_SECOND (2000)]
#   SOAK_K          packets in flight (default 50)
#   SOAK_INTERVAL   seconds between samples (default 30)
#   SOAK_RSS_SLACK  allowed growth of the RSS high-water mark from the first to the second half
#                   of the run after warm-up, in KiB (default 16384: RocksDB memtables fill and
#                   flush, so RSS saws up and down by about one 16 MiB memtable)
#   SOAK_FD_SLACK   allowed rise of the open-descriptor high-water mark (default 4: RocksDB opens a
#                   table file per memtable flush and closes them when compaction merges level 0,
#                   which holds up to 4 before it is compacted)
#   SOAK_KEEP=1     keep the work directory (config, logs, data)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${1:-600}
RATE=${2:-2000}
K=${SOAK_K:-50}
INTERVAL=${SOAK_INTERVAL:-30}
RSS_SLACK=${SOAK_RSS_SLACK:-16384}
FD_SLACK=${SOAK_FD_SLACK:-4}
LOG_TAG=soak
KEEP=${SOAK_KEEP:-0}
# shellcheck source=lib/nodes.sh
. scripts/lib/nodes.sh

build_release
{ node_head test.soak "$WORK/data" 127.0.0.1:0; child_account payer payer-token; child_account payee payee-token; } >"$WORK/connector.toml"
start_ours connector
CONNECTOR=$PID_OUT
BTP=$BTP_OUT
log "connector pid $CONNECTOR on $BTP; $DURATION s at $RATE packets/s, $K in flight"

"$BIN/ilp-load" --btp "$BTP" --payer payer:payer-token --payee payee:payee-token \
  --destination test.soak.payee -k "$K" --rate "$RATE" --duration "$DURATION" \
  --connector-pid "$CONNECTOR" --json >"$WORK/load.log" 2>&1 &
LOAD=$!
PIDS+=("$LOAD")

sample() {
  local rss fds ticks
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$CONNECTOR/status")
  fds=$(ls "/proc/$CONNECTOR/fd" | wc -l)
  ticks=$(awk '{print $14 + $15}' "/proc/$CONNECTOR/stat")
  printf '%s %s %s\n' "$rss" "$fds" "$ticks"
}

printf '| elapsed (s) | RSS (KiB) | open fds | CPU (s) |\n|---:|---:|---:|---:|\n' >"$WORK/table.md"
: >"$WORK/samples"
START=$(date +%s)
while kill -0 "$LOAD" 2>/dev/null; do
  read -r rss fds ticks < <(sample)
  elapsed=$(( $(date +%s) - START ))
  cpu=$(awk -v t="$ticks" 'BEGIN { printf "%.1f", t / 100 }')
  printf '| %d | %d | %d | %s |\n' "$elapsed" "$rss" "$fds" "$cpu" | tee -a "$WORK/table.md"
  echo "$elapsed $rss $fds" >>"$WORK/samples"
  sleep "$INTERVAL"
done
wait "$LOAD" || { cat "$WORK/load.log"; exit 1; }
echo
cat "$WORK/table.md"
echo
grep -v '^{' "$WORK/load.log"
# After a minute of warm-up (memtables, pools, caches), split the rest of the run in halves:
# the high-water marks of RSS and descriptors must not rise from the first half to the second.
verdict=$(awk -v slack="$RSS_SLACK" -v fdslack="$FD_SLACK" '
  $1 >= 60 { n++; t[n] = $1; r[n] = $2; f[n] = $3 }
  END {
    if (n < 4) { print "SKIP too short to judge (needs 4 samples after 60 s)"; exit }
    h = int(n / 2)
    for (i = 1; i <= n; i++) {
      if (i <= h) { if (r[i] > r1) r1 = r[i]; if (f[i] > f1) f1 = f[i] }
      else        { if (r[i] > r2) r2 = r[i]; if (f[i] > f2) f2 = f[i] }
    }
    ok = (r2 - r1 <= slack) && (f2 - f1 <= fdslack)
    printf "%s RSS high-water %d KiB then %d KiB (%+d); open fds high-water %d then %d\n",
      ok ? "OK" : "FAIL", r1, r2, r2 - r1, f1, f2
  }' "$WORK/samples")
log "$verdict"
case "$verdict" in FAIL*) exit 1 ;; esac
