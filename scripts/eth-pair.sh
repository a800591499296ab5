#!/usr/bin/env bash
# Usage: scripts/eth-pair.sh [PAYMENTS]
# A pair of our nodes settling on a local Ethereum chain, end to end, as the README's how-to
# describes: starts ganache (scripts/ganache), nodes test.a and test.b peered over BTP, each with
# a local account (alice on a, bob on b) and an ilp-eth-engine; alice pays bob PAYMENTS times
# (default 3) 5 000 000 units (0.005 ETH at scale 9), then bob pays alice 4 000 000; the
# balance between the nodes crosses its settle threshold (-1 000 000) again and again, each
# crossing an on-chain transfer (a to b, then b to a). Prints both nodes' settlement ledgers and the engines' ETH balances, then stops
# everything it started (by PID). Files stay in $WORK (default: a fresh temporary directory).
set -euo pipefail
cd "$(dirname "$0")/.."
PAYMENTS=${1:-3}
WORK=${WORK:-$(mktemp -d)}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ilp-connector/target}"
bash scripts/setup.sh
cargo build -q --bin ilp-connector --bin ilp-eth-engine
BIN_DIR="$CARGO_TARGET_DIR/debug"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

# wait_for FILE TEXT: until FILE has a line containing TEXT (at most 30 s).
wait_for() {
  local deadline=$((SECONDS + 30))
  until grep -q "$2" "$1" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      echo "timed out waiting for '$2' in $1:" >&2
      tail -20 "$1" >&2
      exit 1
    fi
    sleep 0.1
  done
}

node scripts/ganache/start.js >"$WORK/ganache.log" 2>&1 &
PIDS+=($!)
wait_for "$WORK/ganache.log" LISTENING
CHAIN="http://127.0.0.1:$(awk '/LISTENING/ {print $2}' "$WORK/ganache.log")"
read -r A_ADMIN A_SETTLE A_ENGINE A_SPSP B_ADMIN B_SETTLE B_ENGINE B_BTP B_SPSP < <(node scripts/interop/free-port.js 9 | paste -sd' ')
echo "chain $CHAIN; files in $WORK"

# node NAME ADMIN SETTLEMENT_API ENGINE PEER LOCAL PEER_LINK [EXTRA]: a node's configuration.
node_config() {
  cat <<TOML
[node]
ilp_address = "test.$1"
[broadcast]
enabled = false
[sender]
allow_http = true
[listeners.admin]
bind = "127.0.0.1:$2"
[listeners.settlement]
bind = "127.0.0.1:$3"
[store]
path = "$WORK/$1-data"
[log]
level = "info"
[[routing.static_routes]]
prefix = "test.$5"
account = "$5"
$8
[accounts.$6]
relation = "child"
[accounts.$6.link]
type = "local"
[accounts.$6.rate_limit]
enabled = false

[accounts.$5]
relation = "peer"
settlement_engine_url = "http://127.0.0.1:$4"
[accounts.$5.link]
$7
[accounts.$5.balance]
minimum = -3000000
maximum = 3000000
settle_threshold = -1000000
settle_to = 0
[accounts.$5.rate_limit]
enabled = false
TOML
}

# engine NAME API CONNECTOR_SETTLEMENT_API KEY: an engine's configuration.
engine_config() {
  cat <<TOML
[engine]
bind = "127.0.0.1:$2"
connector_url = "http://127.0.0.1:$3"
[ethereum]
rpc_url = "$CHAIN"
private_key = "$4"
poll_interval_ms = 200
[store]
path = "$WORK/$1-engine-data"
[log]
level = "info"
TOML
}

node_config b "$B_ADMIN" "$B_SETTLE" "$B_ENGINE" a bob \
  "$(printf 'type = "btp-server"\nauth_username = "a"\nauth_token = "a-token"')" \
  "$(printf '[listeners.btp]\nbind = "127.0.0.1:%s"\n[listeners.spsp]\nbind = "127.0.0.1:%s"\n' "$B_BTP" "$B_SPSP")" \
  >"$WORK/b.toml"
node_config a "$A_ADMIN" "$A_SETTLE" "$A_ENGINE" b alice \
  "$(printf 'type = "btp-client"\nurl = "ws://127.0.0.1:%s"\nauth_username = "a"\nauth_token = "a-token"' "$B_BTP")" \
  "$(printf '[listeners.spsp]\nbind = "127.0.0.1:%s"\n' "$A_SPSP")" >"$WORK/a.toml"
# ganache's deterministic accounts 0 and 1.
engine_config a "$A_ENGINE" "$A_SETTLE" 0x4f3edf983ac636a65a842ce7c78d9aa706d3b113bce9c46f30d7d21715b23b1d >"$WORK/a-engine.toml"
engine_config b "$B_ENGINE" "$B_SETTLE" 0x6cbed15c793ce57650b9877cf6fa156fbef513c4e6134f022a85b1ffdd59b2a1 >"$WORK/b-engine.toml"

for n in b a; do
  "$BIN_DIR/ilp-connector" run --config "$WORK/$n.toml" >"$WORK/$n.log" 2>&1 &
  PIDS+=($!)
  wait_for "$WORK/$n.log" "ilp-connector running"
  "$BIN_DIR/ilp-eth-engine" --config "$WORK/$n-engine.toml" >"$WORK/$n-engine.log" 2>&1 &
  PIDS+=($!)
  wait_for "$WORK/$n-engine.log" "engine API listening"
done
A_ADDR=$(awk '/^address/ {print $2}' "$WORK/a-engine.log")
B_ADDR=$(awk '/^address/ {print $2}' "$WORK/b-engine.log")
echo "engine a pays from $A_ADDR, engine b from $B_ADDR"

eth_balance() {
  curl -s -X POST -H 'content-type: application/json' \
    --data "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"eth_getBalance\",\"params\":[\"$1\",\"latest\"]}" "$CHAIN" |
    node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log((BigInt(JSON.parse(s).result)).toString()))'
}
# The local accounts hold money on their nodes: an operator's correction gives each 0.02 ETH.
for fund in "$A_ADMIN alice" "$B_ADMIN bob"; do
  set -- $fund
  curl -sf -X POST -d '{"adjust": -20000000}' "http://127.0.0.1:$1/accounts/$2/balance" >/dev/null
done
A_START=$(eth_balance "$A_ADDR")
B_START=$(eth_balance "$B_ADDR")

pay() { # pay ADMIN FROM TO AMOUNT
  local deadline=$((SECONDS + 45))
  until "$BIN_DIR/ilp-connector" pay --from "$2" --to "$3" --amount "$4" --admin "http://127.0.0.1:$1" >"$WORK/pay.out" 2>&1; do
    if ((SECONDS >= deadline)); then cat "$WORK/pay.out" >&2; exit 1; fi
    sleep 1 # the peers' engines may still be exchanging addresses
  done
  echo "  $2 → $3: $(grep -E '^(sent|delivered)' "$WORK/pay.out" | tr -s ' ' | paste -sd',')"
}
for _ in $(seq "$PAYMENTS"); do
  pay "$A_ADMIN" alice "http://127.0.0.1:$B_SPSP/bob" 5000000
done
pay "$B_ADMIN" bob "http://127.0.0.1:$A_SPSP/alice" 4000000
sleep 2
echo "a's ledger with b: $(curl -s "http://127.0.0.1:$A_ADMIN/accounts/b/settlement")"
echo "b's ledger with a: $(curl -s "http://127.0.0.1:$B_ADMIN/accounts/a/settlement")"
echo "balances: a with b $(curl -s "http://127.0.0.1:$A_ADMIN/accounts/b" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).balance))'), b with a $(curl -s "http://127.0.0.1:$B_ADMIN/accounts/a" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).balance))')"
echo "engine a: $A_START → $(eth_balance "$A_ADDR") wei (transfers and gas); engine b: $B_START → $(eth_balance "$B_ADDR") wei"
