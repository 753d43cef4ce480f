#!/bin/bash
# HTTP through the port relay (docs/ports.md): a request to a server inside a sandbox, by path
# through agentboxd's TCP listener with an API key, beside the same server on the host without a
# relay. Starts its own agentboxd (private socket, TCP port and state directory), creates one
# sandbox (network: none), uploads tests/ports' port_test_server into it and starts it, then runs
# wrk: one connection (latency p50) and 32 connections (requests per second), each RUNS times,
# and prints the medians. Deletes the sandbox at the end.
#
#   bench/ports_bench.sh [BUILD_DIR] [RUNS]        (as root, from the repo root; needs wrk)
#   BACKEND=docker bench/ports_bench.sh ...         (default jail)
#   SECONDS_PER_RUN=10 PATH_REQ=/big?n=1024 ...     (run length; what each request fetches)
set -euo pipefail
BUILD=${1:-build/release}
RUNS=${2:-5}
B=${BACKEND:-jail}
T=${SECONDS_PER_RUN:-10}
REQ=${PATH_REQ:-/hello}
SERVER="$BUILD/tests/ports/agentbox_port_test_server"
command -v wrk >/dev/null || { echo "ports_bench: wrk is not installed (apt-get install wrk)" >&2; exit 1; }
[ -x "$SERVER" ] || { echo "ports_bench: build agentbox_port_test_server first" >&2; exit 1; }
D=$(mktemp -d /tmp/agentbox-ports-bench-XXXXXX)
KEY=bench-key
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
PORT=$(free_port)
HOSTPORT=$(free_port)
printf 'AGENTBOX_API_KEYS=bench:%s\nAGENTBOX_WARM_POOL_SIZE=0\n' "$KEY" >"$D/conf"
"$BUILD/src/daemon/agentboxd" --listen "unix:$D/d.sock" --listen "tcp:127.0.0.1:$PORT" \
  --state-dir "$D/state" --backend "$B" --env-file /dev/null --config "$D/conf" 2>>"$D/d.log" &
DPID=$!
BASE="http://127.0.0.1:$PORT"
# The API over TCP with the key, so the sandbox belongs to the key the relay is called with.
api() { curl -s -H "Authorization: Bearer $KEY" "$@"; }
"$SERVER" "$HOSTPORT" 2>/dev/null &
SPID=$!
cleanup() {
  if [ -n "${ID:-}" ]; then
    api -o /dev/null -X DELETE "$BASE/v1/sandboxes/$ID" || true
    # The destroy finishes in the background: wait until the sandbox is gone.
    for _ in $(seq 200); do
      [ "$(api -o /dev/null -w '%{http_code}' "$BASE/v1/sandboxes/$ID")" = 404 ] && break
      sleep 0.05
    done
  fi
  kill "$DPID" "$SPID" 2>/dev/null || true
  wait "$DPID" "$SPID" 2>/dev/null || true
  rm -rf "$D"
}
trap cleanup EXIT
until curl -s -o /dev/null --unix-socket "$D/d.sock" http://d/healthz; do sleep 0.05; done
ID=$(api -H 'Content-Type: application/json' -X POST "$BASE/v1/sandboxes" -d '{"ttl_s":1800}' | python3 -c 'import json,sys;print(json.load(sys.stdin)["data"]["id"])')
api -o /dev/null -F path=/workspace/.srv -F "file=@$SERVER" "$BASE/v1/sandboxes/$ID/api/v1/file/upload"
api -o /dev/null -H 'Content-Type: application/json' -X POST "$BASE/v1/sandboxes/$ID/api/v1/shell/exec" -d '{"id":"s","command":"chmod 755 /workspace/.srv","wait_seconds":30}'
api -o /dev/null -H 'Content-Type: application/json' -X POST "$BASE/v1/sandboxes/$ID/api/v1/process/start" -d '{"command":"/workspace/.srv 18080"}'
URL="http://127.0.0.1:$PORT/v1/sandboxes/$ID/ports/18080$REQ"
until [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY" "$URL")" = 200 ]; do sleep 0.05; done

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
# wrk's latency in ms from its "50%" line (units us/ms/s).
p50() { awk '$1=="50%" { v=$2; if (v ~ /us$/) { sub(/us/,"",v); v/=1000 } else if (v ~ /ms$/) { sub(/ms/,"",v) } else { sub(/s/,"",v); v*=1000 } print v }'; }
rps() { awk '/^Requests\/sec:/ { print $2 }'; }
run() {  # label url header
  local lat=() tput=()
  for _ in $(seq "$RUNS"); do
    lat+=("$(wrk -t1 -c1 -d"${T}s" --latency -H "$3" "$2" | p50)")
    tput+=("$(wrk -t4 -c32 -d"${T}s" -H "$3" "$2" | rps)")
  done
  printf '%-34s p50 %6.3f ms   32 connections %9.0f req/s\n' "$1" \
    "$(printf '%s\n' "${lat[@]}" | median)" "$(printf '%s\n' "${tput[@]}" | median)"
}
echo "backend=$B request=GET $REQ runs=$RUNS x ${T}s  $(nproc) CPUs  $(date -u +%F)"
run "host, no relay" "http://127.0.0.1:$HOSTPORT$REQ" "X-None: 1"
run "through agentboxd, by path ($B)" "$URL" "Authorization: Bearer $KEY"
