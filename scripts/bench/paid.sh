#!/usr/bin/env bash
# The paid HTTP benchmark: requests per second with wrk (HTTP/1.1 keep-alive, one thread,
# PAID_CONNECTIONS connections, PAID_SECONDS each) against a fast local upstream (a Node HTTP
# server answering two bytes), three ways:
#   direct  wrk -> upstream;
#   free    wrk -> our paid proxy ([paid_http]) -> upstream, on a route without a price;
#   paid    the same on a route of price 1, every request with one Pay-Token whose balance was
#           funded beforehand (one STREAM packet of 10^9 units from ilp-load, a BTP child of the
#           node, on the STREAM credentials the proxy's Pay header gives for the token): each
#           request takes its price from the token, durably, before it is forwarded.
# The node runs with RocksDB and fsync on. Checks that the token spent one unit per request
# served (wrk stops counting with requests still in flight: at most PAID_CONNECTIONS more).
# Prints a markdown table. Every process is started and stopped by PID.
#
#   scripts/bench/paid.sh     PAID_SECONDS (default 10), PAID_CONNECTIONS (default 32)
set -euo pipefail
cd "$(dirname "$0")/../.."
LOG_TAG=paid-bench
# shellcheck source=../lib/nodes.sh
. scripts/lib/nodes.sh
SECS=${PAID_SECONDS:-10}
CONNS=${PAID_CONNECTIONS:-32}
FUNDS=1000000000
TOKEN=AAECAwQFBgcICQoLDA0ODw
command -v wrk >/dev/null || { echo "wrk is required (scripts/setup.sh installs it)" >&2; exit 1; }
command -v node >/dev/null || { echo "node is required (the upstream)" >&2; exit 1; }
build_release

upstream_port=$(node scripts/interop/free-port.js 1)
node -e '
  const port = Number(process.argv[1])
  require("http").createServer((req, res) => { req.resume(); req.on("end", () => res.end("ok")) })
    .listen(port, "127.0.0.1", () => console.log("READY"))' "$upstream_port" >"$WORK/upstream.out" 2>&1 &
PIDS+=("$!")
wait_line "$WORK/upstream.out" READY "$!"

{
  node_head test.paid "$WORK/data" 127.0.0.1:0 |
    sed '/^\[listeners.admin\]$/,/^enabled/ s/^enabled = false$/enabled = true\nbind = "127.0.0.1:0"/'
  local_account api
  child_account payer payer-token
  printf '[paid_http]\nbind = "127.0.0.1:0"\nupstream = "http://127.0.0.1:%s"\naccount = "api"\n' "$upstream_port"
  printf '[[paid_http.routes]]\nmethod = "GET"\npath_prefix = "/paid"\nprice = 1\n'
} >"$WORK/paid.toml"
start_ours paid
out() { grep -m1 -oE "^$1[^ ]+" "$WORK/paid.out" | sed "s|^$1||"; }
ADMIN=$(out 'admin API listening on ')
PROXY=$(out 'paid HTTP proxy listening on ')

# Fund the token: the proxy's STREAM credentials for it, one packet of FUNDS.
pay=$(curl -sf -X OPTIONS -H "Pay-Token: $TOKEN" -H 'Pay-Accept: interledger-stream' \
  -D - -o /dev/null "$PROXY/paid" | tr -d '\r' | sed -n 's/^[Pp]ay: //p')
read -r _method destination secret _price <<<"$pay"
"$BIN/ilp-load" --btp "$BTP_OUT" --payer payer:payer-token --destination "$destination" \
  --stream-secret "$secret" --packets 1 --amount "$FUNDS" -k 1 >"$WORK/fund.log" 2>&1 ||
  { cat "$WORK/fund.log" >&2; exit 1; }
tokens() { curl -sf "$ADMIN/accounts/api/tokens"; }
held=$(tokens | python3 -c 'import json,sys; t=json.load(sys.stdin)["tokens"]; print(t[0]["balance"] if t else 0)')
[ "$held" = "$FUNDS" ] || { echo "the token holds $held after funding, not $FUNDS" >&2; cat "$WORK/fund.log" >&2; exit 1; }

# run NAME URL [wrk args]: one wrk run; prints a table row; sets OK (2xx/3xx answers counted).
run() {
  local name=$1 url=$2
  shift 2
  wrk -t1 -c"$CONNS" -d"${SECS}s" --latency "$@" "$url" >"$WORK/$name.wrk" 2>&1 ||
    { cat "$WORK/$name.wrk" >&2; exit 1; }
  read -r OK row < <(python3 - "$WORK/$name.wrk" "$name" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
total = int(re.search(r"(\d+) requests in", text).group(1))
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
bad = int(bad.group(1)) if bad else 0
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p99 = re.search(r"99%\s+([\d.]+\w+)", text).group(1)
print(total - bad, f"| {sys.argv[2]} | {rps:.0f} | {p99} | {bad} |")
PY
)
  echo "$row"
}

echo "| requests | requests/s | p99 latency | refused (non-2xx) |"
echo "|---|---:|---:|---:|"
run "direct to the upstream" "http://127.0.0.1:$upstream_port/free"
run "through the proxy, free route" "$PROXY/free"
run "through the proxy, paid (1 unit from a token each)" "$PROXY/paid" -H "Pay-Token: $TOKEN"
paid_ok=$OK
spent=$(tokens | python3 -c 'import json,sys; print(json.load(sys.stdin)["spent"])')
echo
echo "The token spent $spent for the $paid_ok paid requests wrk counted (at most $CONNS more were in flight when it stopped)."
if [ "$spent" -lt "$paid_ok" ] || [ "$spent" -gt $((paid_ok + CONNS)) ]; then
  echo "the token's spending does not match the requests served" >&2
  exit 1
fi
