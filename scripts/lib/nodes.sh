# Shared by scripts/bench.sh and scripts/soak.sh (sourced, not run): our connector's release
# binaries, configurations made of pieces, processes started and stopped by PID.
# The sourcing script sets LOG_TAG, and KEEP=1 to keep the work directory.

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/ilp-connector/target}
BIN="$CARGO_TARGET_DIR/release"
WORK=$(mktemp -d)
PIDS=()

log() { printf '[%s %s] %s\n' "${LOG_TAG:-nodes}" "$(date +%H:%M:%S)" "$*" >&2; }

build_release() { cargo build --release -p ilp-actors --bins >&2; }

stop_all() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
}

cleanup() {
  stop_all
  if [ "${KEEP:-0}" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# wait_line FILE PATTERN PID [LOG]: waits (bounded, 30 s) for PATTERN in FILE while PID lives;
# on failure shows FILE and LOG.
wait_line() {
  for _ in $(seq 1 600); do
    grep -qE "$2" "$1" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || { cat "$1" ${4:+"$4"} >&2; return 1; }
    sleep 0.05
  done
  cat "$1" ${4:+"$4"} >&2
  return 1
}

# node_head ADDRESS DATA_DIR BTP_BIND: [node] .. [log] of a node with RocksDB in DATA_DIR.
node_head() {
  cat <<EOF
[node]
ilp_address = "$1"
spread = "0"
[broadcast]
enabled = false
[listeners.btp]
bind = "$3"
[listeners.admin]
enabled = false
[store]
backend = "rocksdb"
path = "$2"
[log]
level = "warn"
EOF
}

# balance_tail ID: wide balance limits and no rate limit for account ID.
balance_tail() {
  cat <<EOF
[accounts.$1.balance]
minimum = -9000000000000000000
maximum = 9000000000000000000
[accounts.$1.rate_limit]
enabled = false
EOF
}

# local_account ID [KEY = VALUE lines]: a local account of ours (paid, or paying, on the node)
# without a rate limit.
local_account() {
  printf '[accounts.%s]\nrelation = "child"\n%s\n[accounts.%s.link]\ntype = "local"\n[accounts.%s.rate_limit]\nenabled = false\n' \
    "$1" "${2:-}" "$1" "$1"
}

# child_account ID TOKEN: a child on our BTP listener (username ID, token TOKEN).
child_account() {
  cat <<EOF
[accounts.$1]
relation = "child"
max_packet_amount = 1000000000
[accounts.$1.link]
type = "btp-server"
auth_username = "$1"
auth_token = "$2"
EOF
  balance_tail "$1"
}

# start_ours NAME: runs $WORK/NAME.toml (with $CONNECTOR, default this tree's release binary);
# sets PID_OUT and BTP_OUT. The node's stdout (the
# lifecycle lines waited for here) goes to $WORK/NAME.out, its log (stderr) to $WORK/NAME.log:
# apart, so no log line can land inside a lifecycle line.
start_ours() {
  "${CONNECTOR:-$BIN/ilp-connector}" run --config "$WORK/$1.toml" >"$WORK/$1.out" 2>"$WORK/$1.log" &
  PID_OUT=$!
  PIDS+=("$PID_OUT")
  wait_line "$WORK/$1.out" '^ilp-connector running' "$PID_OUT" "$WORK/$1.log"
  BTP_OUT=$(grep -m1 -oE '^BTP listening on ws://[^ ]+' "$WORK/$1.out" | sed 's/^BTP listening on //' || true)
}
