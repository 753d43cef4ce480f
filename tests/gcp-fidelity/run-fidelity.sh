#!/usr/bin/env bash
# Starts agentbox-gcp-emulator on a free port with a fresh data directory and checks it with a
# client nobody here wrote:
#   run-fidelity.sh EMULATOR node-storage|node-run|gcloud-storage
# A missing client fails under CI (CI=1/true) and skips (exit 77, a loud reason) elsewhere.
set -euo pipefail
emulator=$1
mode=$2
here=$(cd "$(dirname "$0")" && pwd)

missing() {
  if [[ -n "${CI:-}" && "${CI}" != "0" && "${CI}" != "false" ]]; then
    echo "FAIL: $1 (CI must have it: scripts/install-deps.sh and scripts/install-gcp-fidelity.sh)" >&2
    exit 1
  fi
  echo "SKIP: $1 -- run scripts/install-gcp-fidelity.sh (not CI, so this is a skip, not a pass)" >&2
  exit 77
}

case "$mode" in
  node-*)
    command -v node >/dev/null || missing "node is not installed"
    [[ -d "$here/node_modules/@google-cloud/storage" && -d "$here/node_modules/@google-cloud/run" ]] ||
      missing "Google's npm clients are not installed in $here/node_modules"
    ;;
  gcloud-*)
    command -v gcloud >/dev/null || missing "gcloud is not installed"
    ;;
  *)
    echo "unknown mode $mode" >&2
    exit 2
    ;;
esac

work=$(mktemp -d /tmp/gcp-fidelity.XXXXXX)
pid=""
cleanup() {
  if [[ -n "$pid" ]]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# The files exist before the emulator starts: a background job's redirections happen in the child,
# so without this the first read below can come before the file is there (seen under load in CI).
: >"$work/stdout"
: >"$work/stderr"
"$emulator" --listen tcp:127.0.0.1:0 --data "$work/data" >"$work/stdout" 2>"$work/stderr" &
pid=$!
port=""
for _ in $(seq 1 100); do
  port=$(sed -n 's|^listening on http://127.0.0.1:\([0-9]*\)$|\1|p' "$work/stdout")
  [[ -n "$port" ]] && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/stderr" >&2; exit 1; }
  sleep 0.05
done
[[ -n "$port" ]] || { echo "emulator did not print its port" >&2; exit 1; }
export EMULATOR_PORT=$port

status=0
case "$mode" in
  node-storage)
    GCE_METADATA_HOST=127.0.0.1:$port node "$here/storage.mjs" || status=$?
    ;;
  node-run)
    node "$here/run.mjs" || status=$?
    ;;
  gcloud-storage)
    bash "$here/gcloud-storage.sh" || status=$?
    ;;
esac
if [[ $status -ne 0 ]]; then
  echo "--- emulator log ---" >&2
  tail -50 "$work/stderr" >&2
fi
exit $status
