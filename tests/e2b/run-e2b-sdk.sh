#!/usr/bin/env bash
# Starts agentboxd (the real binary) on a fresh state directory with the given backend and runs
# a program written with E2B's unmodified npm SDK against it:
#   run-e2b-sdk.sh AGENTBOXD BACKEND PROGRAM.mjs [ARGS...]
# BACKEND is jail, docker, cloudrun-session or cloudrun-job: the last two are the cloudrun backend
# (AGENTBOX_CLOUDRUN_MODE=session or job) over a private agentbox-gcp-emulator (its binary in
# AGENTBOX_GCP_EMULATOR) with one bucket, whose executions run AGENTBOX_CLOUDRUN_IMAGE (default
# agentbox/base:latest) on the local Docker engine, as tests/conformance starts it. The SDK is
# pointed at agentboxd with the three variables of docs/e2b.md. A missing node, SDK, emulator or
# Docker engine fails under CI (CI=1/true) and skips (exit 77, a loud reason) elsewhere. Every
# sandbox is deleted and agentboxd and the emulator stopped on the way out.
set -euo pipefail
daemon=$1
backend=$2
program=$3
shift 3
here=$(cd "$(dirname "$0")" && pwd)

# missing REASON [REMEDY]
missing() {
  local remedy=${2:-scripts/install-deps.sh and scripts/install-e2b-sdk.sh}
  if [[ -n "${CI:-}" && "${CI}" != "0" && "${CI}" != "false" ]]; then
    echo "FAIL: $1 (CI must have it: $remedy)" >&2
    exit 1
  fi
  echo "SKIP: $1 -- run $remedy (not CI, so this is a skip, not a pass)" >&2
  exit 77
}
command -v node >/dev/null || missing "node is not installed"
[[ -f "$here/node_modules/e2b/package.json" ]] || missing "the e2b SDK is not installed in $here/node_modules"
if [[ "$backend" == docker || "$backend" == cloudrun-* ]] && ! docker info >/dev/null 2>&1; then
  missing "no Docker engine answers" scripts/start-dockerd.sh
fi
if [[ "$backend" == cloudrun-* ]]; then
  [[ -x "${AGENTBOX_GCP_EMULATOR:-}" ]] ||
    missing "agentbox-gcp-emulator is not built (AGENTBOX_GCP_EMULATOR='${AGENTBOX_GCP_EMULATOR:-}')" \
      "cmake --build --preset release --target agentbox-gcp-emulator, or ctest"
  image=${AGENTBOX_CLOUDRUN_IMAGE:-agentbox/base:latest}
  docker image inspect "$image" >/dev/null 2>&1 ||
    missing "the image $image is not in the Docker engine" scripts/build-base-image.sh
fi

work=$(mktemp -d /tmp/e2b-sdk.XXXXXX)
pid=""
emulator_pid=""
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
  if [[ -n "$emulator_pid" ]]; then
    kill "$emulator_pid" 2>/dev/null || true
    wait "$emulator_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# cloudrun: the emulator on a free port with the bucket, and the daemon's settings for it. In
# session mode the executions' guests dial back to AGENTBOX_PUBLIC_URL, a TCP listener of the
# daemon on a port chosen here (the emulator runs executions in the host's network).
backend_flag=$backend
listen=tcp:127.0.0.1:0
: >"$work/backend.conf"
if [[ "$backend" == cloudrun-* ]]; then
  backend_flag=cloudrun
  "$AGENTBOX_GCP_EMULATOR" --listen tcp:127.0.0.1:0 --data "$work/emulator" --volumes bind \
    >"$work/emulator.out" 2>"$work/emulator.log" &
  emulator_pid=$!
  emulator_url=""
  for _ in $(seq 1 200); do
    emulator_url=$(grep -so 'http://[0-9.:]*' "$work/emulator.out" | head -1 || true)
    [[ -n "$emulator_url" ]] && break
    kill -0 "$emulator_pid" 2>/dev/null || { cat "$work/emulator.log" >&2; exit 1; }
    sleep 0.05
  done
  [[ -n "$emulator_url" ]] || { echo "the emulator did not print its address" >&2; exit 1; }
  curl -sf -o /dev/null -X POST -H 'Authorization: Bearer e2b' -H 'Content-Type: application/json' \
    "$emulator_url/storage/v1/b?project=e2b-project" -d '{"name":"e2b-bucket"}' ||
    { echo "the emulator did not make the bucket" >&2; exit 1; }
  {
    echo SANDBOX_GCP_PROJECT=e2b-project
    echo SANDBOX_GCS_BUCKET=e2b-bucket
    echo "AGENTBOX_CLOUDRUN_ENDPOINT=$emulator_url"
    echo "STORAGE_EMULATOR_HOST=$emulator_url"
    echo GOOGLE_OAUTH_ACCESS_TOKEN=e2b
    echo AGENTBOX_CLOUDRUN_POLL_MS=50
    echo "AGENTBOX_CLOUDRUN_IMAGE=$image"
    echo "AGENTBOX_CLOUDRUN_MODE=${backend#cloudrun-}"
  } >"$work/backend.conf"
  if [[ "$backend" == cloudrun-session ]]; then
    tcp_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    listen=tcp:127.0.0.1:$tcp_port
    echo "AGENTBOX_PUBLIC_URL=http://127.0.0.1:$tcp_port" >>"$work/backend.conf"
  fi
fi

key_a=e2b_$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
key_b=e2b_$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
: >"$work/stdout"
: >"$work/stderr"
AGENTBOX_API_KEYS="alice:$key_a,bob:$key_b" \
  AGENTBOX_WARM_POOL_SIZE=0 AGENTBOX_WARM_POOL_SIZE_JAIL=0 AGENTBOX_WARM_POOL_SIZE_DOCKER=0 \
  AGENTBOX_MIN_FREE_BYTES=0 \
  "$daemon" --listen "$listen" --listen "unix:$work/d.sock" --state-dir "$work/state" \
  --backend "$backend_flag" --env-file /dev/null --config "$work/backend.conf" \
  >"$work/stdout" 2>"$work/stderr" &
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
  if [[ -n "$emulator_pid" ]]; then
    echo "--- emulator log (last 20 lines) ---" >&2
    tail -20 "$work/emulator.log" >&2
  fi
fi
exit $status
