#!/usr/bin/env bash
# Starts agentboxd (the real binary) on a fresh state directory with the given backend and runs
# a program written with E2B's unmodified npm SDK against it:
#   run-e2b-sdk.sh AGENTBOXD BACKEND PROGRAM.mjs [ARGS...]
# The SDK is pointed at agentboxd with the three variables of docs/e2b.md. A missing node or SDK
# fails under CI (CI=1/true) and skips (exit 77, a loud reason) elsewhere. Every sandbox is
# deleted and agentboxd stopped on the way out.
set -euo pipefail
daemon=$1
backend=$2
program=$3
shift 3
here=$(cd "$(dirname "$0")" && pwd)

missing() {
  if [[ -n "${CI:-}" && "${CI}" != "0" && "${CI}" != "false" ]]; then
    echo "FAIL: $1 (CI must have it: scripts/install-deps.sh and scripts/install-e2b-sdk.sh)" >&2
    exit 1
  fi
  echo "SKIP: $1 -- run scripts/install-e2b-sdk.sh (not CI, so this is a skip, not a pass)" >&2
  exit 77
}
command -v node >/dev/null || missing "node is not installed"
[[ -f "$here/node_modules/e2b/package.json" ]] || missing "the e2b SDK is not installed in $here/node_modules"
if [[ "$backend" == docker ]] && ! docker info >/dev/null 2>&1; then
  missing "no Docker engine answers (scripts/start-dockerd.sh)"
fi

work=$(mktemp -d /tmp/e2b-sdk.XXXXXX)
pid=""
cleanup() {
  if [[ -n "$pid" ]]; then
    # Delete what the run left (a failed test may leave sandboxes), then stop agentboxd.
    curl -s --unix-socket "$work/d.sock" http://d/v1/sandboxes 2>/dev/null |
      python3 -c 'import json,sys; [print(s["id"]) for s in json.load(sys.stdin)["data"]["sandboxes"]]' 2>/dev/null |
      while read -r id; do
        curl -s -o /dev/null --unix-socket "$work/d.sock" -X DELETE "http://d/v1/sandboxes/$id" || true
      done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

key_a=e2b_$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
key_b=e2b_$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
: >"$work/stdout"
: >"$work/stderr"
AGENTBOX_API_KEYS="alice:$key_a,bob:$key_b" \
  AGENTBOX_WARM_POOL_SIZE=0 AGENTBOX_WARM_POOL_SIZE_JAIL=0 AGENTBOX_WARM_POOL_SIZE_DOCKER=0 \
  AGENTBOX_MIN_FREE_BYTES=0 \
  "$daemon" --listen tcp:127.0.0.1:0 --listen "unix:$work/d.sock" --state-dir "$work/state" \
  --backend "$backend" --env-file /dev/null >"$work/stdout" 2>"$work/stderr" &
pid=$!
port=""
for _ in $(seq 1 200); do
  port=$(sed -n 's|.*daemon.listening address=tcp:127.0.0.1:\([0-9]*\) .*|\1|p' "$work/stderr" | head -1)
  [[ -n "$port" ]] && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/stderr" >&2; exit 1; }
  sleep 0.05
done
[[ -n "$port" ]] || { echo "agentboxd did not print its port" >&2; exit 1; }

status=0
E2B_API_URL="http://127.0.0.1:$port" E2B_SANDBOX_URL="http://127.0.0.1:$port" \
  E2B_API_KEY="$key_a" E2B_OTHER_API_KEY="$key_b" AGENTBOX_SOCKET="$work/d.sock" \
  AGENTBOX_BACKEND="$backend" \
  node "$([[ "$program" == /* ]] && echo "$program" || echo "$here/$program")" "$@" || status=$?
if [[ $status -ne 0 ]]; then
  echo "--- agentboxd log (last 60 lines) ---" >&2
  tail -60 "$work/stderr" >&2
fi
exit $status
