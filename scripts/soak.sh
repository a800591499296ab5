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
#   SOAK_KEEP=1     keep the work directory (config, logs, data)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${1:-600}
RATE=${2:-2000}
K=${SOAK_K:-50}
INTERVAL=${SOAK_INTERVAL:-30}
RSS_SLACK=${SOAK_RSS_SLACK:-16384}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/ilp-connector/target}

log() { printf '[soak %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

cargo build --release -p ilp-actors --bins
BIN="$CARGO_TARGET_DIR/release"
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "${SOAK_KEEP:-0}" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

cat >"$WORK/config.toml" <<EOF
[node]
ilp_address = "test.soak"
spread = "0"
[broadcast]
enabled = false
[listeners.btp]
bind = "127.0.0.1:0"
[listeners.admin]
enabled = false
[store]
backend = "rocksdb"
path = "$WORK/data"
[log]
level = "warn"
[accounts.payer]
relation = "child"
[accounts.payer.link]
type = "btp-server"
auth_username = "payer"
auth_token = "payer-token"
[accounts.payer.balance]
maximum = 9000000000000000000
[accounts.payer.rate_limit]
enabled = false
[accounts.payee]
relation = "child"
[accounts.payee.link]
type = "btp-server"
auth_username = "payee"
auth_token = "payee-token"
[accounts.payee.balance]
minimum = -9000000000000000000
maximum = 9000000000000000000
[accounts.payee.rate_limit]
enabled = false
EOF

"$BIN/ilp-connector" run --config "$WORK/config.toml" >"$WORK/connector.log" 2>&1 &
CONNECTOR=$!
PIDS+=("$CONNECTOR")
for _ in $(seq 1 300); do
  grep -q '^ilp-connector running' "$WORK/connector.log" && break
  kill -0 "$CONNECTOR" 2>/dev/null || { cat "$WORK/connector.log"; exit 1; }
  sleep 0.1
done
BTP=$(grep -m1 -oE '^BTP listening on ws://[^ ]+' "$WORK/connector.log" | sed 's/^BTP listening on //')
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
verdict=$(awk -v slack="$RSS_SLACK" '
  $1 >= 60 { n++; t[n] = $1; r[n] = $2; f[n] = $3 }
  END {
    if (n < 4) { print "SKIP too short to judge (needs 4 samples after 60 s)"; exit }
    h = int(n / 2)
    for (i = 1; i <= n; i++) {
      if (i <= h) { if (r[i] > r1) r1 = r[i]; if (f[i] > f1) f1 = f[i] }
      else        { if (r[i] > r2) r2 = r[i]; if (f[i] > f2) f2 = f[i] }
    }
    ok = (r2 - r1 <= slack) && (f2 <= f1)
    printf "%s RSS high-water %d KiB then %d KiB (%+d); open fds high-water %d then %d\n",
      ok ? "OK" : "FAIL", r1, r2, r2 - r1, f1, f2
  }' "$WORK/samples")
log "$verdict"
case "$verdict" in FAIL*) exit 1 ;; esac
