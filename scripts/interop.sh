#!/usr/bin/env bash
# Interop tests: our connector (the real `ilp-connector` binary) against the JS Interledger
# implementations, everything on 127.0.0.1 with ports the OS picks.
#
# usage: scripts/interop.sh [SCENARIO...]      (default: all, in this order)
#   btp    JS ilp-plugin-btp sender -> our connector -> JS ilp-plugin-btp receiver, one
#          ilp-protocol-stream payment of 1000000 units, split into 100+ packets by our
#          max_packet_amount (the JS client reads our F08 rejects); both plugins are children
#          that learn their address from us over IL-DCP.
#   peer   JS ilp-connector 23.0.2 peered with ours over BTP (relation peer, CCP both ways);
#          a STREAM payment crosses both connectors in each direction. Our connector dials
#          the JS one (our btp-client against its ilp-plugin-btp listener).
#   peer-in the same, the JS connector dialling our btp-server.
#   http   JS ilp-plugin-http sender and receiver <-> our connector over sync ILP-over-HTTP;
#          a STREAM payment arrives in full.
#   http2  the same, the plugins POSTing to us over HTTP/2 with prior knowledge (h2c).
#   recv-stream         the JS ilp-protocol-stream client, our BTP child, pays our local account
#                       shop: credentials from our SPSP server (with receipts), 1000000 units in
#                       100+ packets; what its library says was delivered must be what our admin
#                       API says was credited, and its last receipt must pass the library's own
#                       verifyReceipt with that total.
#   recv-pay            @interledger/pay 0.2.2 pays the payment pointer of our node (no path:
#                       /.well-known/pay, the SPSP server's default account shop), with its
#                       asset probe, rate probe and quote; delivered must equal credited.
#   recv-spsp           the ilp-spsp 1.2.0 command line (`ilp-spsp send`) pays shop; credited
#                       must equal the amount sent.
#   recv-psk2           ilp-protocol-psk2 0.5.0 over application/spsp+json credentials: a quote,
#                       ten requests, a refused short one and a legacy chunk; the amounts the
#                       responses report must add up to what was credited.
#   recv-*-via-js       each of the four with the payer a child of the JS ilp-connector 23.0.2,
#                       which is peered with ours over BTP (it dials our btp-server).
#   recv-fx             the STREAM client pays in XRP (scale 9) through a static rate to shop in
#                       USD (scale 2): credited = what the library reports delivered = receipt.
#   recv-limits         shop has a receiver maximum below what the client tries to send: the
#                       payment stops with an error, credited = delivered <= maximum.
#   pay-stream          our node pays: `ilp-connector pay` from its local account wallet to a JS
#                       ilp-protocol-stream server (our BTP child) found over SPSP; the amount
#                       our sender reports delivered must be what the JS server counted, and the
#                       wallet must be debited exactly what was sent.
#   pay-psk2            the same to an ilp-protocol-psk2 0.5.0 receiver (application/spsp+json).
#   pay-stream-receiver the same to @interledger/stream-receiver 0.2.2 (stateless STREAM, the
#                       receiver Rafiki uses) behind the JS plugin's data handler.
#   pay-ours            the same to our own receiver: the local account shop of a second node
#                       of ours, our sender's BTP child (address over IL-DCP, its own SPSP
#                       server); delivered = what that node credited shop.
#   pay-*-via-js        each with the receiver a child of the JS ilp-connector 23.0.2, which is
#                       peered with ours over BTP.
#   circular-via-js     `ilp-connector pay --circular`: out through one of two peer links to the
#                       JS ilp-connector and back through the other; both connectors' books
#                       (ours from our admin API, the JS one's from its /balance) mirror it.
#   paid-fetch          ilp-fetch 1.4.0 (the client of ilp-curl), our BTP child, pays our paid
#                       HTTP proxy ([paid_http]) for an upload to a plain Node upstream: the
#                       upstream sees it once, the token's balance plus what it spent is what
#                       shop was paid, and ilp-fetch's Pay-Balance is that balance.
#   paid-koa            our client (`ilp-connector http` from the local account wallet) uploads
#                       twice to a koa-ilp 1.1.1 server whose PSK2 receiver is our BTP child:
#                       koa-ilp was paid what the wallet was debited and its account credited.
#
# Environment:
#   ILP_CONNECTOR_BIN   our binary; default: `cargo build -p ilp-actors --bin ilp-connector`
#                       and the debug binary of the workspace's target directory
#   INTEROP_TIMEOUT     seconds one scenario may take (default 120)
#   INTEROP_KEEP=1      keep the work directory (configs and logs) after the run
#   INTEROP_LOG_LEVEL   our connector's [log] level (default info)
#
# It installs its npm packages itself (`npm ci` from scripts/interop/package-lock.json, with
# ilp-protocol-stream pinned to 2.7.2-alpha.3 by npm `overrides`: 2.7.1 breaks on Node 20), starts
# every process it needs, waits for each with a time limit, and stops every process it started
# (by PID) when it exits. Exit 0 only when every scenario passed.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
JS="$ROOT/scripts/interop"
SCENARIO_TIMEOUT="${INTEROP_TIMEOUT:-120}"
START_TIMEOUT=30

WORK="$(mktemp -d "${TMPDIR:-/tmp}/ilp-interop.XXXXXX")"
PIDS=()

log() { printf '[interop %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# Stops every process started so far (between scenarios and at exit), by PID: SIGTERM, then
# SIGKILL for one still running 5 s later.
stop_all() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  PIDS=()
}

cleanup() {
  local status=$?
  stop_all
  rmdir "$WORK" 2>/dev/null || true # nothing to keep (usage errors)
  if [[ -d "$WORK" ]]; then
    if [[ "${INTEROP_KEEP:-0}" == 1 || $status -ne 0 ]]; then
      log "logs and configs kept in $WORK"
    else
      rm -rf "$WORK"
    fi
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Prints the tail of every log and stdout file of the scenario (on failure).
dump_logs() {
  local f
  for f in "$WORK"/"$1"*.log "$WORK"/"$1"*.out; do
    [[ -e "$f" ]] || continue
    echo "---- $f (last 60 lines)"
    tail -n 60 "$f"
  done
}

# wait_for_line FILE PATTERN PID: waits (bounded) for a line matching PATTERN in FILE and prints
# the first match; fails when PID exits first or the time runs out.
wait_for_line() {
  local file=$1 pattern=$2 pid=$3
  local deadline=$((SECONDS + START_TIMEOUT))
  while ((SECONDS < deadline)); do
    if grep -m1 -E "$pattern" "$file" 2>/dev/null; then
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "process $pid exited before printing /$pattern/" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "no /$pattern/ in $file after ${START_TIMEOUT}s" >&2
  return 1
}

# free_port [N]: N (default 1) distinct ports, one per line, that were free on 127.0.0.1 a moment
# ago (for the JS listeners, which cannot report the port they bound).
free_port() { node "$JS/free-port.js" "${1:-1}"; }

# Every HTTP request of the script is bounded.
curl() { command curl --max-time 10 "$@"; }

# start_ours NAME: runs our binary on $WORK/NAME.toml; sets OUR_PID. Its stdout, which carries
# only the lifecycle lines waited for here, goes to $WORK/NAME.out and its log (stderr) to
# $WORK/NAME.log: in one file a log line could land inside a lifecycle line.
start_ours() {
  local name=$1
  "$BIN" run --config "$WORK/$name.toml" >"$WORK/$name.out" 2>"$WORK/$name.log" &
  OUR_PID=$!
  PIDS+=("$OUR_PID")
  wait_for_line "$WORK/$name.out" '^ilp-connector running' "$OUR_PID" >/dev/null
}

# listen_addr NAME PREFIX: the HOST:PORT our binary printed after PREFIX on stdout (fails if
# none).
listen_addr() {
  local line
  line="$(grep -m1 -oE "^$2[^ ]+" "$WORK/$1.out")" || return 1
  printf '%s\n' "${line#"$2"}"
}

# run_js NAME SCRIPT: runs a scenario script (bounded), logging to $WORK/NAME-js.log.
run_js() {
  local name=$1 script=$2
  timeout --kill-after=5 "$SCENARIO_TIMEOUT" node "$JS/$script" >"$WORK/$name-js.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  local status=0
  wait "$pid" || status=$?
  grep -E 'ok, sent|PASS|FAIL' "$WORK/$name-js.log" | sed 's/^/    /' || true
  return "$status"
}

# Our node's configuration: the [node], [broadcast] and [listeners] tables (listeners on port
# 0, memory store, no spread so a payment arrives in full), then $3 (accounts). The admin API
# and the SPSP server are on (port 0) when RECEIVE=1, else there is neither.
write_config() {
  local name=$1 address=$2 accounts=$3
  cat >"$WORK/$name.toml" <<EOF
[node]
ilp_address = "$address"
asset_code = "USD"
asset_scale = 9
spread = "0"

[broadcast]
interval_ms = 1000
route_expiry_ms = 10000

[listeners.btp]
bind = "127.0.0.1:0"

[listeners.http]
bind = "127.0.0.1:0"
h2 = ${H2:-false}

$(if [[ ${RECEIVE:-0} == 1 ]]; then
  printf '[listeners.admin]\nbind = "127.0.0.1:0"\n\n[listeners.spsp]\nbind = "127.0.0.1:0"\ndefault_account = "shop"\n'
else
  printf '[listeners.admin]\nenabled = false\n'
fi)

[store]
backend = "memory"

[log]
level = "${INTEROP_LOG_LEVEL:-info}"

$accounts
EOF
}

# btp_child ID TOKEN [KEY = VALUE]: a child account with a btp-server link and generous limits.
btp_child() {
  cat <<EOF
[accounts.$1]
relation = "child"
${3:-}
[accounts.$1.link]
type = "btp-server"
auth_username = "$1"
auth_token = "$2"
[accounts.$1.rate_limit]
refill_count = 1000000
capacity = 1000000
EOF
}

scenario_btp() {
  # The sender's packets are capped at 10000 units: the 1000000-unit payment takes 100 or more
  # packets, and the STREAM client learns the cap from our F08 rejects' data.
  write_config btp test.ours "$(btp_child sender sender-token 'max_packet_amount = 10000')
$(btp_child receiver receiver-token)"
  start_ours btp || return 1
  OUR_BTP="ws://$(listen_addr btp 'BTP listening on ws://')" || return 1
  log "our connector: $OUR_BTP (pid $OUR_PID)"
  OUR_BTP="$OUR_BTP" SENDER_TOKEN=sender-token RECEIVER_TOKEN=receiver-token AMOUNT=1000000 \
    run_js btp stream-btp.js
}

# start_js_connector NAME PEER_OPTIONS CHILD CHILD_PORT: the JS ilp-connector 23.0.2 (test.js)
# with a peer account "ours" (ilp-plugin-btp with PEER_OPTIONS) and a child CHILD whose
# ilp-plugin-btp listens on CHILD_PORT (secret CHILD-token); sets JS_PID.
start_js_connector() {
  local name=$1 peer_options=$2 child=$3 child_port=$4
  # Route broadcast stays on (the default): without it the JS connector installs no routes.
  local accounts
  accounts=$(cat <<EOF
{
  "ours": {
    "relation": "peer", "assetCode": "USD", "assetScale": 9,
    "plugin": "ilp-plugin-btp", "options": $peer_options,
    "rateLimit": { "refillCount": 1000000, "capacity": 1000000 }
  },
  "$child": {
    "relation": "child", "assetCode": "USD", "assetScale": 9,
    "plugin": "ilp-plugin-btp",
    "options": { "listener": { "port": $child_port, "secret": "$child-token",
                               "wsOpts": { "host": "127.0.0.1", "port": $child_port } } },
    "rateLimit": { "refillCount": 1000000, "capacity": 1000000 }
  }
}
EOF
)
  run_js_connector "$name" "$accounts"
}

# run_js_connector NAME ACCOUNTS [VAR=VALUE...]: the JS ilp-connector 23.0.2 (test.js, memory
# store, no spread, route broadcast on) with CONNECTOR_ACCOUNTS=ACCOUNTS and the extra
# environment given; sets JS_PID.
run_js_connector() {
  local name=$1 accounts=$2
  shift 2
  (
    cd "$JS"
    export CONNECTOR_ILP_ADDRESS=test.js CONNECTOR_STORE=memory CONNECTOR_BACKEND=one-to-one \
      CONNECTOR_SPREAD=0 CONNECTOR_ROUTE_BROADCAST_ENABLED=true \
      CONNECTOR_ROUTE_BROADCAST_INTERVAL=1000 CONNECTOR_ACCOUNTS="$accounts" \
      DEBUG='ilp*,connector*'
    for assignment in "$@"; do export "${assignment?}"; done
    exec node node_modules/ilp-connector/dist/index.js
  ) >"$WORK/$name-jsconnector.log" 2>&1 &
  JS_PID=$!
  PIDS+=("$JS_PID")
}

# peer_scenario NAME DIAL: the JS ilp-connector (test.js) peered with ours (test.ours) over BTP.
# DIAL=ours: our js account is a btp-client of the JS connector's listener; DIAL=js: the JS
# connector's ilp-plugin-btp dials our btp-server. Children: alice (ours), bob (the JS one's).
peer_scenario() {
  local name=$1 dial=$2
  local js_peer_port js_child_port js_pid peer_link peer_options
  { read -r js_child_port; read -r js_peer_port; } < <(free_port 2)
  if [[ $dial == ours ]]; then
    peer_link="type = \"btp-client\"
url = \"ws://127.0.0.1:$js_peer_port\"
auth_username = \"ours\"
auth_token = \"peer-token\""
    peer_options="{ \"listener\": { \"port\": $js_peer_port, \"secret\": \"peer-token\",
      \"wsOpts\": { \"host\": \"127.0.0.1\", \"port\": $js_peer_port } } }"
  else
    peer_link="type = \"btp-server\"
auth_username = \"js\"
auth_token = \"peer-token\""
  fi
  write_config "$name" test.ours "$(btp_child alice alice-token)
[accounts.js]
relation = \"peer\"
[accounts.js.link]
$peer_link
[accounts.js.rate_limit]
refill_count = 1000000
capacity = 1000000"
  if [[ $dial == ours ]]; then
    # Ours redials until the JS connector listens.
    start_js_connector "$name" "$peer_options" bob "$js_child_port"
    start_ours "$name" || return 1
    OUR_BTP="ws://$(listen_addr "$name" 'BTP listening on ws://')" || return 1
  else
    start_ours "$name" || return 1
    OUR_BTP="ws://$(listen_addr "$name" 'BTP listening on ws://')" || return 1
    peer_options="{ \"server\": \"btp+ws://js:peer-token@${OUR_BTP#ws://}\" }"
    start_js_connector "$name" "$peer_options" bob "$js_child_port"
  fi
  js_pid=$JS_PID
  log "our connector: $OUR_BTP (pid $OUR_PID); JS connector: pid $js_pid, bob's listener on port $js_child_port; $dial dial(s) the peer link"
  OUR_BTP="$OUR_BTP" ALICE_TOKEN=alice-token JS_BTP="ws://127.0.0.1:$js_child_port" BOB_TOKEN=bob-token \
    AMOUNT=10000 run_js "$name" stream-peer.js
}

scenario_peer() { peer_scenario peer ours; }
scenario_peer_in() { peer_scenario peer-in js; }

# http_scenario NAME H2: our HTTP listener (h2c besides HTTP/1.1 when H2 is true) and two JS
# ilp-plugin-http children; with H2 the plugins POST to us over HTTP/2 with prior knowledge.
http_scenario() {
  local name=$1 h2=$2
  local sender_port receiver_port
  { read -r sender_port; read -r receiver_port; } < <(free_port 2)
  local accounts="" who port
  for who in sender receiver; do
    port=$sender_port
    [[ $who == receiver ]] && port=$receiver_port
    accounts+="
[accounts.$who]
relation = \"child\"
[accounts.$who.link]
type = \"http\"
outgoing_url = \"http://127.0.0.1:$port/ilp\"
outgoing_auth_token = \"to-$who\"
incoming_auth_token = \"from-$who\"
mode = \"sync\"
[accounts.$who.rate_limit]
refill_count = 1000000
capacity = 1000000
"
  done
  H2=$h2 write_config "$name" test.ours "$accounts"
  start_ours "$name" || return 1
  OUR_HTTP="http://$(listen_addr "$name" 'ILP over HTTP listening on http://')" || return 1
  log "our connector: $OUR_HTTP (pid $OUR_PID); JS plugins on ports $sender_port, $receiver_port"
  OUR_HTTP="$OUR_HTTP" SENDER_PORT=$sender_port RECEIVER_PORT=$receiver_port AMOUNT=10000 \
    HTTP2=$h2 run_js "$name" stream-http.js
}

# shop_account [KEY = VALUE lines]: a local account of ours (shop) to be paid, as config lines.
shop_account() {
  printf '[accounts.shop]\nrelation = "child"\n%s\n[accounts.shop.link]\ntype = "local"\n' "${1:-}"
}

# js_peer_account [KEY = VALUE]: our peer account "js" for the JS connector, which dials our
# btp-server (secret peer-token), with generous limits.
js_peer_account() { js_peer js peer-token "${1:-}"; }

# start_receiving NAME: starts our node on $WORK/NAME.toml (written with RECEIVE=1) and sets
# RECV_BTP, RECV_SPSP and RECV_ADMIN to what it listens on.
start_receiving() {
  local name=$1
  start_ours "$name" || return 1
  RECV_BTP="ws://$(listen_addr "$name" 'BTP listening on ws://')" || return 1
  RECV_SPSP="http://$(listen_addr "$name" 'SPSP listening on http://')" || return 1
  RECV_ADMIN="http://$(listen_addr "$name" 'admin API listening on http://')" || return 1
  log "our connector: $RECV_BTP, SPSP $RECV_SPSP, admin $RECV_ADMIN (pid $OUR_PID)"
}

# recv_scenario NAME SCRIPT VIA: a JS sender pays our local account shop through our SPSP
# server; SCRIPT checks what arrived against our admin API. VIA=direct: the sender is our BTP
# child, capped at 10000 units a packet. VIA=js: the sender is a child of the JS connector, which
# dials our btp-server as peer "js" (capped at 10000 units a packet on our side).
recv_scenario() {
  local name=$1 script=$2 via=$3
  local cap='max_packet_amount = 10000'
  if [[ $via == direct ]]; then
    RECEIVE=1 write_config "$name" test.ours "$(btp_child payer payer-token "$cap")
$(shop_account)"
  else
    RECEIVE=1 write_config "$name" test.ours "$(shop_account)
$(js_peer_account "$cap")"
  fi
  start_receiving "$name" || return 1
  local payer_btp=$RECV_BTP payer_port
  if [[ $via == js ]]; then
    payer_port="$(free_port)"
    start_js_connector "$name" "{ \"server\": \"btp+ws://js:peer-token@${RECV_BTP#ws://}\" }" payer "$payer_port"
    payer_btp="ws://127.0.0.1:$payer_port"
    log "the payer connects to the JS connector at $payer_btp"
  fi
  PAYER_BTP="$payer_btp" PAYER_TOKEN=payer-token SPSP_URL="$RECV_SPSP/shop" SPSP_BASE="$RECV_SPSP" \
    ADMIN_URL="$RECV_ADMIN" ACCOUNT=shop AMOUNT=1000000 run_js "$name" "$script"
}

scenario_recv_stream() { recv_scenario recv-stream recv-stream.js direct; }
scenario_recv_stream_via_js() { recv_scenario recv-stream-via-js recv-stream.js js; }
scenario_recv_pay() { recv_scenario recv-pay recv-pay.js direct; }
scenario_recv_pay_via_js() { recv_scenario recv-pay-via-js recv-pay.js js; }
scenario_recv_spsp() { recv_scenario recv-spsp recv-spsp.js direct; }
scenario_recv_spsp_via_js() { recv_scenario recv-spsp-via-js recv-spsp.js js; }
# recv-fx: the payer (our BTP child) pays in XRP, scale 9; shop receives USD, scale 2; static
# rates, 2 XRP to the dollar. The JS STREAM client pays 1000 XRP in packets of at most 100 XRP
# (its rate probe needs a packet that delivers 1000 units, here $10); what it reports delivered
# (in cents) must be what was credited, and its receipt must say so too.
scenario_recv_fx() {
  local name=recv-fx
  RECEIVE=1 write_config "$name" test.ours "[rates]
backend = \"static\"
[rates.static]
USD = \"1\"
XRP = \"2\"
$(btp_child payer payer-token 'max_packet_amount = 100000000000
asset_code = "XRP"
asset_scale = 9')
$(shop_account 'asset_code = "USD"
asset_scale = 2')"
  start_receiving "$name" || return 1
  PAYER_BTP="$RECV_BTP" PAYER_TOKEN=payer-token SPSP_URL="$RECV_SPSP/shop" ADMIN_URL="$RECV_ADMIN" \
    ACCOUNT=shop AMOUNT=1000000000000 FX=1 run_js "$name" recv-stream.js
}

# recv-limits: shop may hold at most 305000 units; the JS STREAM client, our BTP child capped at
# 10000 units a packet, tries to pay 1000000. The payment must stop with an error, and what was
# credited must be what its library says was delivered, at most the maximum.
scenario_recv_limits() {
  local name=recv-limits
  RECEIVE=1 write_config "$name" test.ours "$(btp_child payer payer-token 'max_packet_amount = 10000')
$(shop_account)
[accounts.shop.receiver]
maximum = 305000"
  start_receiving "$name" || return 1
  PAYER_BTP="$RECV_BTP" PAYER_TOKEN=payer-token SPSP_URL="$RECV_SPSP/shop" ADMIN_URL="$RECV_ADMIN" \
    ACCOUNT=shop AMOUNT=1000000 MAXIMUM=305000 run_js "$name" recv-limits.js
}

# wallet_account: our local account that pays (no rate limit), and the [sender] table that lets
# it reach the JS receivers' plain-http SPSP endpoints.
wallet_account() {
  printf '[sender]\nallow_http = true\n\n[accounts.wallet]\nrelation = "child"\n[accounts.wallet.link]\ntype = "local"\n[accounts.wallet.rate_limit]\nenabled = false\n'
}

# json_field FILE PATH...: a field of the JSON object in FILE (node, as the rest of the script).
json_field() {
  node -e 'let v=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));for(const k of process.argv.slice(2))v=v==null?v:v[k];console.log(v==null?"":v)' "$@"
}

# pay_wallet NAME ADMIN TO: `ilp-connector pay` of 1000000 units from the local account wallet
# of the node whose admin API is ADMIN to TO, with --json into $WORK/NAME-pay.out; repeated
# (for at most 45 s) while the receiver is not reachable yet: F02 until CCP brings the route,
# 503 from an SPSP server whose node has no address yet.
pay_wallet() {
  local name=$1 admin=$2 to=$3
  local deadline=$((SECONDS + 45)) status
  while :; do
    status=0
    timeout --kill-after=5 "$SCENARIO_TIMEOUT" "$BIN" pay --from wallet --to "$to" \
      --amount 1000000 --json --admin "$admin" \
      >"$WORK/$name-pay.out" 2>"$WORK/$name-pay.log" || status=$?
    ((status == 0)) && return 0
    if ((SECONDS < deadline)) && grep -qE '"F02"|503' "$WORK/$name-pay.out" "$WORK/$name-pay.log"; then
      sleep 1
      continue
    fi
    echo "    FAIL: pay exited $status: $(head -c 600 "$WORK/$name-pay.out") $(head -c 300 "$WORK/$name-pay.log")"
    return 1
  done
}

# check_paid NAME ADMIN RECEIVED WHAT: the payment in $WORK/NAME-pay.out sent 1000000 and
# delivered RECEIVED (what the receiver says, described by WHAT), and the wallet of ADMIN's node
# (funded with 100000000) was debited exactly what was sent.
check_paid() {
  local name=$1 admin=$2 received=$3 what=$4
  local sent delivered wallet
  sent="$(json_field "$WORK/$name-pay.out" progress sent amount)"
  delivered="$(json_field "$WORK/$name-pay.out" progress delivered amount)"
  curl -sf "$admin/accounts/wallet" >"$WORK/$name-wallet.json" || return 1
  wallet="$(json_field "$WORK/$name-wallet.json" balance)"
  echo "    sent $sent, delivered $delivered (our sender), $what $received, wallet $wallet"
  [[ $sent == 1000000 && $delivered == "$received" && $delivered -gt 0 ]] || { echo "    FAIL: amounts disagree"; return 1; }
  [[ $wallet == $((-100000000 + sent)) ]] || { echo "    FAIL: wallet debited $((wallet + 100000000)), sent $sent"; return 1; }
}

# pay_scenario NAME RECEIVER VIA: our node pays a JS receiver (pay-receiver.js, RECEIVER=stream
# or psk2) 1000000 units from its local account wallet with `ilp-connector pay --json`. VIA=direct:
# the receiver is our BTP child; VIA=js: it is a child of the JS connector, which dials our
# btp-server as peer "js" (until CCP brings the route, pay is retried on F02).
pay_scenario() {
  local name=$1 receiver=$2 via=$3
  local spsp_port receiver_btp receiver_pid
  spsp_port="$(free_port)"
  if [[ $via == direct ]]; then
    RECEIVE=1 write_config "$name" test.ours "$(wallet_account)
$(shop_account)
$(btp_child receiver receiver-token)"
  else
    RECEIVE=1 write_config "$name" test.ours "$(wallet_account)
$(shop_account)
$(js_peer_account)"
  fi
  start_receiving "$name" || return 1
  receiver_btp=$RECV_BTP
  if [[ $via == js ]]; then
    local receiver_port
    receiver_port="$(free_port)"
    start_js_connector "$name" "{ \"server\": \"btp+ws://js:peer-token@${RECV_BTP#ws://}\" }" receiver "$receiver_port"
    receiver_btp="ws://127.0.0.1:$receiver_port"
  fi
  (cd "$JS" && RECEIVER=$receiver CONNECTOR_BTP=$receiver_btp RECEIVER_TOKEN=receiver-token \
    SPSP_PORT=$spsp_port exec node pay-receiver.js) >"$WORK/$name-receiver.log" 2>&1 &
  receiver_pid=$!
  PIDS+=("$receiver_pid")
  wait_for_line "$WORK/$name-receiver.log" 'READY' "$receiver_pid" >/dev/null || return 1
  curl -sf -X POST -H 'content-type: application/json' -d '{"adjust": -100000000}' \
    "$RECV_ADMIN/accounts/wallet/balance" >/dev/null || return 1
  pay_wallet "$name" "$RECV_ADMIN" "http://127.0.0.1:$spsp_port/" || return 1
  curl -sf "http://127.0.0.1:$spsp_port/total" >"$WORK/$name-total.json" || return 1
  check_paid "$name" "$RECV_ADMIN" "$(json_field "$WORK/$name-total.json" total)" \
    "counted ($receiver receiver)" || return 1
  echo "    PASS"
}

# write_child_config NAME URL TOKEN: our node with no address of its own, the child of the
# connector whose BTP listener is at URL (secret TOKEN; its address comes over IL-DCP), with the
# local account shop, the admin API and the SPSP server.
write_child_config() {
  local name=$1 url=$2 token=$3
  cat >"$WORK/$name.toml" <<EOF
[node]
asset_code = "USD"
asset_scale = 9
spread = "0"

[broadcast]
interval_ms = 1000
route_expiry_ms = 10000

[listeners.admin]
bind = "127.0.0.1:0"

[listeners.spsp]
bind = "127.0.0.1:0"
default_account = "shop"

[store]
backend = "memory"

[log]
level = "${INTEROP_LOG_LEVEL:-info}"

$(shop_account)

[accounts.up]
relation = "parent"
[accounts.up.link]
type = "btp-client"
url = "$url"
auth_username = "r"
auth_token = "$token"
[accounts.up.rate_limit]
refill_count = 1000000
capacity = 1000000
EOF
}

# pay_ours NAME VIA: our sender pays our own receiver on another of our nodes (r), which is
# our sender's BTP child (VIA=direct) or the JS ilp-connector's (VIA=js, the JS connector
# peered with the sender's node). Delivered (the sender) = credited (the receiving node's
# shop), the wallet debited what was sent, and each link's two ends mirror each other.
pay_ours() {
  local name=$1 via=$2
  if [[ $via == direct ]]; then
    RECEIVE=1 write_config "$name" test.ours "$(wallet_account)
$(shop_account)
$(btp_child r r-token)"
  else
    RECEIVE=1 write_config "$name" test.ours "$(wallet_account)
$(shop_account)
$(js_peer_account)"
  fi
  start_receiving "$name" || return 1
  local sender_admin=$RECV_ADMIN sender_pid=$OUR_PID parent_url
  if [[ $via == direct ]]; then
    parent_url=$RECV_BTP
  else
    local child_port
    child_port="$(free_port)"
    start_js_connector "$name" "{ \"server\": \"btp+ws://js:peer-token@${RECV_BTP#ws://}\" }" r "$child_port"
    parent_url="ws://127.0.0.1:$child_port"
  fi
  write_child_config "$name-r" "$parent_url" r-token
  start_ours "$name-r" || return 1
  local receiver_admin receiver_spsp
  receiver_admin="http://$(listen_addr "$name-r" 'admin API listening on http://')" || return 1
  receiver_spsp="http://$(listen_addr "$name-r" 'SPSP listening on http://')" || return 1
  log "sender node pid $sender_pid (admin $sender_admin); receiving node pid $OUR_PID (admin $receiver_admin, SPSP $receiver_spsp)"
  curl -sf -X POST -H 'content-type: application/json' -d '{"adjust": -100000000}' \
    "$sender_admin/accounts/wallet/balance" >/dev/null || return 1
  pay_wallet "$name" "$sender_admin" "$receiver_spsp/shop" || return 1
  curl -sf "$receiver_admin/accounts/shop" >"$WORK/$name-shop.json" || return 1
  check_paid "$name" "$sender_admin" "$(( -$(json_field "$WORK/$name-shop.json" balance) ))" \
    "credited (our receiving node's shop)" || return 1
  if [[ $via == direct ]]; then
    local down up
    curl -sf "$sender_admin/accounts/r" >"$WORK/$name-r.json" || return 1
    curl -sf "$receiver_admin/accounts/up" >"$WORK/$name-up.json" || return 1
    down="$(json_field "$WORK/$name-r.json" balance)"
    up="$(json_field "$WORK/$name-up.json" balance)"
    echo "    the link's two ends: $down (sender's r), $up (receiver's up)"
    [[ $down == $((-up)) ]] || { echo "    FAIL: the link's books do not mirror"; return 1; }
  fi
  echo "    PASS"
}

scenario_pay_ours() { pay_ours pay-ours direct; }
scenario_pay_ours_via_js() { pay_ours pay-ours-via-js js; }

scenario_pay_stream() { pay_scenario pay-stream stream direct; }
scenario_pay_stream_via_js() { pay_scenario pay-stream-via-js stream js; }
scenario_pay_psk2() { pay_scenario pay-psk2 psk2 direct; }
scenario_pay_psk2_via_js() { pay_scenario pay-psk2-via-js psk2 js; }
scenario_pay_stream_receiver() { pay_scenario pay-stream-receiver stream-receiver direct; }
scenario_pay_stream_receiver_via_js() { pay_scenario pay-stream-receiver-via-js stream-receiver js; }

# js_peer ID TOKEN [KEY = VALUE]: our peer account ID for the JS connector, which dials our
# btp-server as ID (secret TOKEN), with generous limits.
js_peer() {
  printf '[accounts.%s]\nrelation = "peer"\n%s\n[accounts.%s.link]\ntype = "btp-server"\nauth_username = "%s"\nauth_token = "%s"\n[accounts.%s.rate_limit]\nrefill_count = 1000000\ncapacity = 1000000\n' "$1" "${3:-}" "$1" "$1" "$2" "$1"
}

# our_balance FILE ACCOUNT: our admin API's balance for ACCOUNT, written to FILE first.
our_balance() {
  curl -sf "$RECV_ADMIN/accounts/$2" >"$1" || return 1
  json_field "$1" balance
}

# circular-via-js: our node (test.ours) peers twice with the JS connector (ours1 → our js1,
# ours2 → our js2; the JS connector routes test.ours through ours2). A circular payment leaves
# through js1, crosses the JS connector and comes back through js2: both nodes' books mirror it.
# One refused on return (less than --min-return) moves nothing on either.
scenario_circular_via_js() {
  local name=circular-via-js js_admin_port
  RECEIVE=1 write_config "$name" test.ours "$(shop_account)
$(js_peer js1 js1-token)
$(js_peer js2 js2-token)"
  start_receiving "$name" || return 1
  js_admin_port="$(free_port)"
  local peer accounts="{"
  for peer in 1 2; do
    accounts+="\"ours$peer\": { \"relation\": \"peer\", \"assetCode\": \"USD\", \"assetScale\": 9,
      \"plugin\": \"ilp-plugin-btp\",
      \"options\": { \"server\": \"btp+ws://js$peer:js$peer-token@${RECV_BTP#ws://}\" },
      \"balance\": { \"minimum\": \"-1000000000000\", \"maximum\": \"1000000000000\" },
      \"rateLimit\": { \"refillCount\": 1000000, \"capacity\": 1000000 } }"
    [[ $peer == 1 ]] && accounts+=","
  done
  accounts+="}"
  run_js_connector "$name" "$accounts" CONNECTOR_ADMIN_API=true \
    CONNECTOR_ADMIN_API_PORT="$js_admin_port" \
    'CONNECTOR_ROUTES=[{"targetPrefix":"test.ours","peerId":"ours2"}]'
  log "JS connector: pid $JS_PID, admin API on port $js_admin_port"
  local deadline=$((SECONDS + 45)) status
  while :; do
    status=0
    timeout --kill-after=5 "$SCENARIO_TIMEOUT" "$BIN" pay --circular --via js1 --return-via js2 \
      --amount 1000000 --json --admin "$RECV_ADMIN" \
      >"$WORK/$name-pay.out" 2>"$WORK/$name-pay.log" || status=$?
    ((status == 0)) && break
    # Until the JS connector has dialed both links and installed its routes: T01 or F02.
    if ((SECONDS < deadline)) && grep -qE 'T01|F02' "$WORK/$name-pay.out"; then
      sleep 1
      continue
    fi
    echo "    FAIL: pay --circular exited $status: $(head -c 600 "$WORK/$name-pay.out") $(head -c 300 "$WORK/$name-pay.log")"
    return 1
  done
  local returned via back
  returned="$(json_field "$WORK/$name-pay.out" returned amount amount)"
  via="$(json_field "$WORK/$name-pay.out" sent via)"
  back="$(json_field "$WORK/$name-pay.out" returned via)"
  echo "    sent 1000000 through $via, $returned came back through $back"
  [[ $via == js1 && $back == js2 && $returned == 1000000 ]] || { echo "    FAIL: report $(head -c 600 "$WORK/$name-pay.out")"; return 1; }
  status=0
  "$BIN" pay --circular --via js1 --return-via js2 --amount 1000 --min-return 1001 --json --admin "$RECV_ADMIN" \
    >"$WORK/$name-refused.out" 2>&1 || status=$?
  ((status == 1)) && grep -q 'F04' "$WORK/$name-refused.out" \
    || { echo "    FAIL: a return below --min-return: exit $status, $(head -c 300 "$WORK/$name-refused.out")"; return 1; }
  local js1 js2 theirs1 theirs2
  js1="$(our_balance "$WORK/$name-js1.json" js1)" || return 1
  js2="$(our_balance "$WORK/$name-js2.json" js2)" || return 1
  curl -sf "http://127.0.0.1:$js_admin_port/balance" >"$WORK/$name-jsbalance.json" || return 1
  theirs1="$(json_field "$WORK/$name-jsbalance.json" accounts ours1 balance)"
  theirs2="$(json_field "$WORK/$name-jsbalance.json" accounts ours2 balance)"
  echo "    ours: js1 $js1, js2 $js2; the JS connector's: ours1 $theirs1, ours2 $theirs2"
  [[ $js1 == -1000000 && $js2 == 1000000 ]] || { echo "    FAIL: our books"; return 1; }
  [[ $theirs1 == 1000000 && $theirs2 == -1000000 ]] || { echo "    FAIL: the JS connector's books do not mirror ours"; return 1; }
  echo "    PASS"
}

scenario_recv_psk2() { recv_scenario recv-psk2 recv-psk2.js direct; }
scenario_recv_psk2_via_js() { recv_scenario recv-psk2-via-js recv-psk2.js js; }

# paid_http_section UPSTREAM_PORT PRICE: our [paid_http] proxy in front of 127.0.0.1:UPSTREAM_PORT
# (under /v1), paid to the local account shop, POST /upload costing PRICE.
paid_http_section() {
  printf '[paid_http]\nbind = "127.0.0.1:0"\nupstream = "http://127.0.0.1:%s/v1"\naccount = "shop"\nupstream_timeout_ms = 5000\n[[paid_http.routes]]\nmethod = "POST"\npath_prefix = "/upload"\nprice = %s\n' "$1" "$2"
}

# paid-fetch: ilp-fetch 1.4.0, our BTP child, pays our paid proxy for an upload to a plain Node
# upstream (paid-fetch.js checks the upstream, the token list and Pay-Balance).
scenario_paid_fetch() {
  local name=paid-fetch upstream_port proxy
  upstream_port="$(free_port)"
  RECEIVE=1 write_config "$name" test.ours "$(shop_account)
$(btp_child payer payer-token)
$(paid_http_section "$upstream_port" 1000000)"
  start_receiving "$name" || return 1
  proxy="http://$(listen_addr "$name" 'paid HTTP proxy listening on http://')" || return 1
  log "paid proxy $proxy, upstream port $upstream_port"
  PAYER_BTP="$RECV_BTP" PAYER_TOKEN=payer-token PROXY_URL="$proxy" UPSTREAM_PORT="$upstream_port" \
    ADMIN_URL="$RECV_ADMIN" PRICE=1000000 run_js "$name" paid-fetch.js
}

# paid-koa: our client (`ilp-connector http`, from the local account wallet) pays a koa-ilp 1.1.1
# server whose PSK2 receiver is our BTP child koa: twice, the second upload on the same token.
# koa-ilp was paid what the wallet was debited and what its account with us was credited.
scenario_paid_koa() {
  local name=paid-koa koa_port koa_pid i
  koa_port="$(free_port)"
  RECEIVE=1 write_config "$name" test.ours "$(wallet_account)
$(shop_account)
$(btp_child koa koa-token)"
  start_receiving "$name" || return 1
  (cd "$JS" && KOA_BTP=$RECV_BTP KOA_TOKEN=koa-token PORT=$koa_port PRICE=1000000 \
    exec node koa-server.js) >"$WORK/$name-koa.log" 2>&1 &
  koa_pid=$!
  PIDS+=("$koa_pid")
  wait_for_line "$WORK/$name-koa.log" 'READY' "$koa_pid" >/dev/null || return 1
  curl -sf -X POST -H 'content-type: application/json' -d '{"adjust": -100000000}' \
    "$RECV_ADMIN/accounts/wallet/balance" >/dev/null || return 1
  for i in 1 2; do
    timeout --kill-after=5 "$SCENARIO_TIMEOUT" "$BIN" http POST "http://127.0.0.1:$koa_port/upload" \
      -d "picture $i" --from wallet --max-price 2000000 --admin "$RECV_ADMIN" \
      >"$WORK/$name-http$i.out" 2>"$WORK/$name-http$i.log" \
      || { echo "    FAIL: http exited: $(head -c 300 "$WORK/$name-http$i.out") $(head -c 600 "$WORK/$name-http$i.log")"; return 1; }
    grep -q '^uploaded for 1000000$' "$WORK/$name-http$i.out" || { echo "    FAIL: $(head -c 300 "$WORK/$name-http$i.out")"; return 1; }
    echo "    upload $i: $(cat "$WORK/$name-http$i.log")"
  done
  local wallet koa uploads paid
  curl -sf "http://127.0.0.1:$koa_port/total" >"$WORK/$name-total.json" || return 1
  curl -sf "$RECV_ADMIN/accounts/wallet" >"$WORK/$name-wallet.json" || return 1
  curl -sf "$RECV_ADMIN/accounts/koa" >"$WORK/$name-koa.json" || return 1
  uploads="$(json_field "$WORK/$name-total.json" uploads)"
  paid="$(json_field "$WORK/$name-total.json" paid)"
  wallet="$(json_field "$WORK/$name-wallet.json" balance)"
  koa="$(json_field "$WORK/$name-koa.json" balance)"
  echo "    koa-ilp served $uploads uploads, was paid $paid; wallet debited $((wallet + 100000000)), koa credited $((-koa))"
  [[ $uploads == 2 && $paid -ge 2000000 ]] || { echo "    FAIL: koa-ilp's count"; return 1; }
  [[ $((wallet + 100000000)) == "$paid" && $((-koa)) == "$paid" ]] || { echo "    FAIL: the books disagree"; return 1; }
  echo "    PASS"
}

scenario_http() { http_scenario http false; }
scenario_http2() { http_scenario http2 true; }

main() {
  local scenarios=("$@")
  ((${#scenarios[@]})) || scenarios=(btp peer peer-in http http2 recv-stream recv-stream-via-js recv-pay recv-pay-via-js recv-spsp recv-spsp-via-js recv-psk2 recv-psk2-via-js recv-fx recv-limits pay-stream pay-stream-via-js pay-psk2 pay-psk2-via-js pay-stream-receiver pay-stream-receiver-via-js pay-ours pay-ours-via-js circular-via-js paid-fetch paid-koa)
  local s
  for s in "${scenarios[@]}"; do
    case "$s" in
      btp | peer | peer-in | http | http2 | recv-stream | recv-stream-via-js | recv-pay | recv-pay-via-js | recv-spsp | recv-spsp-via-js | recv-psk2 | recv-psk2-via-js | recv-fx | recv-limits | pay-stream | pay-stream-via-js | pay-psk2 | pay-psk2-via-js | pay-stream-receiver | pay-stream-receiver-via-js | pay-ours | pay-ours-via-js | circular-via-js | paid-fetch | paid-koa) ;;
      -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
      *) echo "unknown scenario $s (btp, peer, peer-in, http, http2, recv-stream, recv-stream-via-js, recv-pay, recv-pay-via-js, recv-spsp, recv-spsp-via-js, recv-psk2, recv-psk2-via-js, recv-fx, recv-limits, pay-stream, pay-stream-via-js, pay-psk2, pay-psk2-via-js, pay-stream-receiver, pay-stream-receiver-via-js, pay-ours, pay-ours-via-js, circular-via-js, paid-fetch, paid-koa)" >&2; exit 2 ;;
    esac
  done

  command -v node >/dev/null || { echo "node (20 or later) is required" >&2; exit 1; }
  log "node $(node --version), npm $(npm --version 2>/dev/null)"
  # npm ci from the committed lock file, skipped when node_modules was installed from this very
  # lock file (the stamp holds its digest).
  local lock_sum stamp="$JS/node_modules/.interop-lock.sha256"
  lock_sum="$(sha256sum "$JS/package-lock.json" | cut -d' ' -f1)"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$lock_sum" ]]; then
    log "JS packages already installed from this package-lock.json"
  else
    log "installing the JS packages (npm ci)"
    (cd "$JS" && timeout 300 npm ci --no-audit --no-fund --loglevel=error) >"$WORK/npm.log" 2>&1 \
      || { cat "$WORK/npm.log"; exit 1; }
    echo "$lock_sum" >"$stamp"
  fi

  if [[ -z "${ILP_CONNECTOR_BIN:-}" ]]; then
    log "building our connector"
    (cd "$ROOT" && cargo build -q -p ilp-actors --bin ilp-connector)
    local target
    target="$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps |
      node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')"
    BIN="$target/debug/ilp-connector"
  else
    BIN="$ILP_CONNECTOR_BIN"
  fi
  [[ -x "$BIN" ]] || { echo "no executable at $BIN" >&2; exit 1; }

  local passed=0 failed=0 started
  for s in "${scenarios[@]}"; do
    log "scenario $s"
    started=$SECONDS
    if "scenario_${s//-/_}"; then
      passed=$((passed + 1))
      log "scenario $s passed ($((SECONDS - started))s)"
    else
      failed=$((failed + 1))
      log "scenario $s FAILED ($((SECONDS - started))s)"
      dump_logs "$s"
    fi
    stop_all
  done
  echo "interop: $passed passed, $failed failed"
  ((failed == 0))
}

main "$@"
