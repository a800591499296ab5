#!/usr/bin/env bash
# The sender benchmark: one STREAM payment of PAY_AMOUNT (default 10^9) units, at most 10^5 a
# packet, through one node of ours (RocksDB, fsync on) into its local STREAM receiver `shop`:
#   ours  `ilp-connector pay` from the node's local account `wallet` (the node's own sender);
#   JS    @interledger/pay 0.2.2, a BTP child of the same node (max_packet_amount 10^5), paying
#         the same receiver over the same SPSP server (skipped with BENCH_SKIP_JS=1).
# Prints a markdown table: seconds from the start of the payment to its end (quote included),
# packets answered, packets/s, and what arrived.
#
#   scripts/bench/pay.sh        PAY_AMOUNT (default 1000000000), PAY_TIMEOUT seconds (default 600)
set -euo pipefail
cd "$(dirname "$0")/../.."
LOG_TAG=pay-bench
# shellcheck source=../lib/nodes.sh
. scripts/lib/nodes.sh
AMOUNT=${PAY_AMOUNT:-1000000000}
TIMEOUT=${PAY_TIMEOUT:-600}
build_release

config() { # DATA_DIR
  node_head test.pay "$1" 127.0.0.1:0 |
    sed '/^\[listeners.admin\]$/,/^enabled/ s/^enabled = false$/enabled = true\nbind = "127.0.0.1:0"/'
  printf '[listeners.spsp]\nbind = "127.0.0.1:0"\ndefault_account = "shop"\n[sender]\nallow_http = true\n'
  local_account wallet 'max_packet_amount = 100000'
  child_account payer payer-token | sed 's/^max_packet_amount = .*/max_packet_amount = 100000/'
  local_account shop
}

# start NAME: our node on $WORK/NAME.toml; sets PID, ADMIN, SPSP, BTP.
start() {
  "$BIN/ilp-connector" run --config "$WORK/$1.toml" >"$WORK/$1.out" 2>"$WORK/$1.log" &
  PID=$!
  PIDS+=("$PID")
  wait_line "$WORK/$1.out" '^ilp-connector running' "$PID" "$WORK/$1.log"
  ADMIN=$(grep -m1 -oE '^admin API listening on http://[^ ]+' "$WORK/$1.out" | sed 's/^admin API listening on //')
  SPSP=$(grep -m1 -oE '^SPSP listening on http://[^ ]+' "$WORK/$1.out" | sed 's/^SPSP listening on //')
  BTP=$(grep -m1 -oE '^BTP listening on ws://[^ ]+' "$WORK/$1.out" | sed 's/^BTP listening on //')
}

now() { date +%s.%N; }
row() { # WHO START END PACKETS DELIVERED
  python3 -c 'import sys; w,s,e,n,d=sys.argv[1:]; t=float(e)-float(s); print(f"| {w} | {t:.2f} | {n} | {float(n)/t:.0f} | {d} |")' "$@"
}

echo "| sender | seconds | packets | packets/s | delivered |"
echo "|---|---:|---:|---:|---:|"

config "$WORK/ours-data" >"$WORK/ours.toml"
start ours
curl -sf -X POST -d "{\"adjust\": -$AMOUNT}" "$ADMIN/accounts/wallet/balance" >/dev/null
t0=$(now)
timeout "$TIMEOUT" "$BIN/ilp-connector" pay --from wallet --to "$SPSP/shop" --amount "$AMOUNT" \
  --json --admin "$ADMIN" >"$WORK/ours-pay.json" 2>"$WORK/ours-pay.err" || { cat "$WORK/ours-pay.json" "$WORK/ours-pay.err" >&2; exit 1; }
t1=$(now)
packets=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["progress"]["packets"]["sent"])' "$WORK/ours-pay.json")
delivered=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["progress"]["delivered"]["amount"])' "$WORK/ours-pay.json")
row "ours (ilp-connector pay)" "$t0" "$t1" "$packets" "$delivered"
stop_all

if [ "${BENCH_SKIP_JS:-0}" != 1 ]; then
  (cd scripts/interop && npm ci --no-audit --no-fund --loglevel=error >&2)
  config "$WORK/js-data" >"$WORK/js.toml"
  start js
  t0=$(now)
  (cd scripts/interop && PAYER_BTP="$BTP" PAYER_TOKEN=payer-token SPSP_BASE="$SPSP" \
    ADMIN_URL="$ADMIN" ACCOUNT=shop AMOUNT="$AMOUNT" PAY_MS=$((TIMEOUT * 1000)) \
    timeout "$TIMEOUT" node recv-pay.js) >"$WORK/js-pay.log" 2>&1 || { cat "$WORK/js-pay.log" >&2; exit 1; }
  t1=$(now)
  # Every packet the node answered for the payer: fulfilled and rejected, probes included.
  packets=$(curl -sf "$ADMIN/stats" | python3 -c 'import json,sys; s=json.load(sys.stdin); print(sum(v for k,v in s.get("packets",{}).get("incoming",{}).items() if isinstance(v,int)))' 2>/dev/null || echo 0)
  delivered=$(grep -oE 'delivered [0-9]+' "$WORK/js-pay.log" | tail -1 | cut -d' ' -f2)
  row "@interledger/pay 0.2.2" "$t0" "$t1" "$packets" "$delivered"
  stop_all
fi
