#!/usr/bin/env bash
# Benchmarks of the whole connector, driven by ilp-load (actors/src/bin/ilp-load.rs) over real
# sockets on this machine, side by side with the JS reference connector (ilp-connector 23.0.2,
# installed from npm with scripts/interop's lock file; memory store, one-to-one rates, raised
# per-account rateLimit). Ours runs with RocksDB and fsync on, as configured by default.
#
#   scripts/bench.sh
#   BENCH_SECONDS   seconds per run (default 10)
#   BENCH_K         packets in flight, a list (default "1 100 1000")
#   BENCH_SKIP_JS=1 leave the JS connector out
#   BENCH_OUT       where results.md and chart.svg go (default scripts/bench)
#   BENCH_SKIP_PAY=1 leave out the sender benchmark (scripts/bench/pay.sh)
#   BENCH_SKIP_PAID=1 leave out the paid HTTP benchmark (scripts/bench/paid.sh)
#
# Scenarios: BTP -> BTP through one of ours; HTTP/2 -> HTTP/2 (h2c) through one of ours, sync
# and async; BTP -> BTP through two of ours in a row (peered over BTP); BTP -> BTP through the JS
# connector; at K = 100 also STREAM packets (1 unit each) paid to a local account of ours (SPSP
# credentials, the Router's own STREAM receiver, credit and payment event durable per packet)
# beside the JS ilp-protocol-stream server behind the JS connector. Every process is started
# and stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

SECONDS_PER_RUN=${BENCH_SECONDS:-10}
KS=${BENCH_K:-"1 100 1000"}
OUT=${BENCH_OUT:-$ROOT/scripts/bench}
LOG_TAG=bench
KEEP=${BENCH_KEEP:-0}
# shellcheck source=lib/nodes.sh
. scripts/lib/nodes.sh

build_release
mkdir -p "$OUT"
RESULTS="$WORK/results.tsv"
: >"$RESULTS"

# load SCENARIO K PIDS DESTINATION TRANSPORT...: one ilp-load run; appends a result row.
# DESTINATION "-": STREAM packets to a receiver, which the remaining arguments name.
load() {
  local scenario=$1 k=$2 pids=$3 dest=$4 line target=()
  shift 4
  [ "$dest" = - ] || target=(--payee payee:payee-token --destination "$dest")
  line=$("$BIN/ilp-load" "$@" --payer payer:payer-token \
    "${target[@]}" -k "$k" --duration "$SECONDS_PER_RUN" \
    --connector-pid "$pids" --json | tee -a "$WORK/load.log" | grep '^{') || {
    log "$scenario K=$k: ilp-load failed"; tail -5 "$WORK/load.log" >&2; return 0; }
  log "$scenario K=$k: $line"
  printf '%s\t%s\t%s\n' "$scenario" "$k" "$line" >>"$RESULTS"
}

ours_single() {
  local k=$1
  { node_head test.one "$WORK/one-$k" 127.0.0.1:0; child_account payer payer-token; child_account payee payee-token; } >"$WORK/one.toml"
  start_ours one
  load "ours, BTP → BTP" "$k" "$PID_OUT" test.one.payee --btp "$BTP_OUT"
  stop_all
}

# STREAM packets to a local account of ours: SPSP credentials from our server, then the Router
# answers every packet itself (decrypt, credit durably, encrypted Fulfill).
ours_receiver() {
  local k=$1 spsp
  { node_head test.r "$WORK/r-$k" 127.0.0.1:0
    printf '[listeners.spsp]\nbind = "127.0.0.1:0"\n'
    child_account payer payer-token
    local_account shop
  } >"$WORK/r.toml"
  start_ours r
  spsp=$(grep -m1 -oE '^SPSP listening on http://[^ ]+' "$WORK/r.out" | sed 's/^SPSP listening on //')
  load "ours, BTP → local STREAM receiver" "$k" "$PID_OUT" - --btp "$BTP_OUT" --spsp "$spsp/shop"
  stop_all
}

free_port() { node scripts/interop/free-port.js "${1:-1}"; }

http_account() { # id mode connector-port load-port
  local callback=""
  [ "$2" = async ] && callback=", callback_url = \"http://127.0.0.1:$3/accounts/$1/callback\""
  cat <<EOF
[accounts.$1]
relation = "child"
max_packet_amount = 1000000000
link = { type = "http", mode = "$2", outgoing_url = "http://127.0.0.1:$4/accounts/$1/ilp", outgoing_auth_token = "$1-token", incoming_auth_token = "$1-token", http2 = true$callback }
EOF
  balance_tail "$1"
}

ours_http() { # K mode
  local k=$1 mode=$2 cport lport extra=()
  { read -r cport; read -r lport; } < <(free_port 2)
  { node_head test.h "$WORK/h-$mode-$k" 127.0.0.1:0 | grep -v -e '^\[listeners.btp\]$' -e '^bind = "127.0.0.1:0"$'
    printf '[listeners.http]\nbind = "127.0.0.1:%s"\nh2 = true\n' "$cport"
    http_account payer "$mode" "$cport" "$lport"; http_account payee "$mode" "$cport" "$lport"
  } >"$WORK/h.toml"
  start_ours h
  [ "$mode" = async ] && extra=(--async)
  load "ours, HTTP/2 → HTTP/2 ($mode)" "$k" "$PID_OUT" test.h.payee \
    --http "http://127.0.0.1:$cport" --listen "127.0.0.1:$lport" --h2 "${extra[@]}"
  stop_all
}

ours_chain() {
  local k=$1 a_pid b_pid b_url
  { node_head test.b "$WORK/b-$k" 127.0.0.1:0; child_account payee payee-token
    cat <<EOF
[accounts.a]
relation = "peer"
[accounts.a.link]
type = "btp-server"
auth_username = "a"
auth_token = "a-token"
EOF
    balance_tail a
  } >"$WORK/b.toml"
  start_ours b
  b_pid=$PID_OUT
  b_url=$BTP_OUT
  { node_head test.a "$WORK/a-$k" 127.0.0.1:0; child_account payer payer-token
    cat <<EOF
[routing]
default_route = "b"
[accounts.b]
relation = "peer"
[accounts.b.link]
type = "btp-client"
url = "$b_url"
auth_username = "a"
auth_token = "a-token"
EOF
    balance_tail b
  } >"$WORK/a.toml"
  start_ours a
  a_pid=$PID_OUT
  sleep 0.5 # a dials b
  load "ours ×2 in a row, BTP → BTP → BTP" "$k" "$a_pid,$b_pid" test.b.payee \
    --btp "$BTP_OUT" --payee-btp "$b_url"
  stop_all
}

# start_js ACCOUNTS LOG PORT: the JS connector (test.js, memory store, one-to-one, no spread)
# with the accounts JSON ACCOUNTS, logging to $WORK/LOG.log; waits (bounded) until PORT, one of
# its listeners, accepts connections. Sets JS_PID.
start_js() {
  (
    cd scripts/interop
    export CONNECTOR_ILP_ADDRESS=test.js CONNECTOR_STORE=memory CONNECTOR_BACKEND=one-to-one \
      CONNECTOR_SPREAD=0 CONNECTOR_ROUTE_BROADCAST_ENABLED=true CONNECTOR_ACCOUNTS="$1"
    exec node node_modules/ilp-connector/dist/index.js
  ) >"$WORK/$2.log" 2>&1 &
  JS_PID=$!
  PIDS+=("$JS_PID")
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$3") 2>/dev/null && break
    sleep 0.05
  done
}

js_single() {
  local k=$1 payer_port payee_port accounts js_pid
  { read -r payer_port; read -r payee_port; } < <(free_port 2)
  accounts=$(cat <<EOF
{
  "payer": { "relation": "child", "assetCode": "USD", "assetScale": 9, "plugin": "ilp-plugin-btp",
    "options": { "listener": { "port": $payer_port, "secret": "payer-token" } },
    "maxPacketAmount": "1000000000",
    "rateLimit": { "refillCount": 100000000, "capacity": 100000000 } },
  "payee": { "relation": "child", "assetCode": "USD", "assetScale": 9, "plugin": "ilp-plugin-btp",
    "options": { "listener": { "port": $payee_port, "secret": "payee-token" } },
    "rateLimit": { "refillCount": 100000000, "capacity": 100000000 } }
}
EOF
)
  start_js "$accounts" js "$payee_port"
  js_pid=$JS_PID
  load "JS ilp-connector 23.0.2, BTP → BTP" "$k" "$js_pid" test.js.payee \
    --btp "ws://127.0.0.1:$payer_port" --payee-btp "ws://127.0.0.1:$payee_port"
  stop_all
}

# The JS side of the receiver row: a JS ilp-protocol-stream server, a BTP child of the JS
# connector, answers the STREAM packets the payer sends through the connector.
js_receiver() {
  local k=$1 payer_port receiver_port accounts js_pid server_pid credentials dest secret
  { read -r payer_port; read -r receiver_port; } < <(free_port 2)
  accounts=$(cat <<EOF
{
  "payer": { "relation": "child", "assetCode": "USD", "assetScale": 9, "plugin": "ilp-plugin-btp",
    "options": { "listener": { "port": $payer_port, "secret": "payer-token" } },
    "maxPacketAmount": "1000000000",
    "rateLimit": { "refillCount": 100000000, "capacity": 100000000 } },
  "receiver": { "relation": "child", "assetCode": "USD", "assetScale": 9, "plugin": "ilp-plugin-btp",
    "options": { "listener": { "port": $receiver_port, "secret": "receiver-token" } },
    "rateLimit": { "refillCount": 100000000, "capacity": 100000000 } }
}
EOF
)
  start_js "$accounts" jsr "$receiver_port"
  js_pid=$JS_PID
  (cd scripts/interop && RECEIVER_BTP="ws://127.0.0.1:$receiver_port" RECEIVER_TOKEN=receiver-token \
    exec node stream-server.js) >"$WORK/jsr-server.out" 2>"$WORK/jsr-server.log" &
  server_pid=$!
  PIDS+=("$server_pid")
  credentials=""
  for _ in $(seq 1 300); do
    credentials=$(grep -m1 '^{' "$WORK/jsr-server.out" 2>/dev/null || true)
    [ -n "$credentials" ] && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.05
  done
  if [ -z "$credentials" ]; then
    log "JS STREAM server did not start"; cat "$WORK/jsr-server.log" >&2; stop_all; return 0
  fi
  dest=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["destination_account"])' "$credentials")
  secret=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["shared_secret"])' "$credentials")
  load "JS ilp-connector 23.0.2 + JS STREAM server, BTP → STREAM receiver" "$k" "$js_pid,$server_pid" - \
    --btp "ws://127.0.0.1:$payer_port" --destination "$dest" --stream-secret "$secret"
  stop_all
}

if [ "${BENCH_SKIP_JS:-0}" != 1 ]; then
  (cd scripts/interop && npm ci --no-audit --no-fund --loglevel=error >&2)
fi
for k in $KS; do
  ours_single "$k"
  ours_http "$k" sync
  ours_http "$k" async
  ours_chain "$k"
  [ "${BENCH_SKIP_JS:-0}" = 1 ] || js_single "$k"
  # The receiver rows run at K = 100 only (what the issue asks of them).
  if [ "$k" = 100 ]; then
    ours_receiver "$k"
    [ "${BENCH_SKIP_JS:-0}" = 1 ] || js_receiver "$k"
  fi
done

MACHINE="$(nproc) cores, $(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | sed 's/^ *//'), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
python3 "$ROOT/scripts/bench/report.py" "$RESULTS" "$OUT" "$SECONDS_PER_RUN" "$MACHINE"
# The sender: one payment of 10^9 units in packets of at most 10^5 (scripts/bench/pay.sh).
if [ "${BENCH_SKIP_PAY:-0}" != 1 ]; then
  { printf '\n## One payment of 10^9 units, at most 10^5 a packet, into our receiver\n\n'
    bash scripts/bench/pay.sh; } >>"$OUT/results.md"
fi
# Paid HTTP: requests/s through the paid proxy, free and paid, and to the upstream directly.
if [ "${BENCH_SKIP_PAID:-0}" != 1 ]; then
  { printf '\n## Paid HTTP: requests through the paid proxy (scripts/bench/paid.sh)\n\n'
    bash scripts/bench/paid.sh; } >>"$OUT/results.md"
fi
cat "$OUT/results.md"
