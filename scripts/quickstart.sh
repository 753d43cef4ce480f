#!/usr/bin/env bash
# Quick start: installs dependencies, builds agentbox, starts agentbox-guest on a unix socket and
# shows it working with plain curl calls (persistent shell state, a background process and its
# logs, file write/search/read). The guest is stopped at the end; pass --keep to leave it running.
set -euo pipefail
cd "$(dirname "$0")/.."
KEEP=0
[[ "${1:-}" == "--keep" ]] && KEEP=1

scripts/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release --target agentbox-guest -j "$(nproc)"
GUEST=build/release/src/guest/agentbox-guest
echo "== agentbox-guest: $(stat -c %s "$GUEST") bytes, ldd: $(ldd "$GUEST" 2>&1 | tr -d "\t")"

RUN=$(mktemp -d /tmp/agentbox-quickstart.XXXXXX)
mkdir -p "$RUN/workspace"
SOCK="$RUN/guest.sock"
"$GUEST" serve --listen "unix:$SOCK" --workdir "$RUN/workspace" 2>"$RUN/guest.log" &
PID=$!
cleanup() { if [[ $KEEP == 0 ]]; then kill "$PID" 2>/dev/null || true; rm -rf "$RUN"; fi; }
trap cleanup EXIT
for _ in $(seq 100); do [[ -S "$SOCK" ]] && break; sleep 0.05; done

call() {  # call PATH JSON
  echo "\$ POST $1 $2"
  curl -sS --unix-socket "$SOCK" -H 'Content-Type: application/json' "http://guest$1" -d "$2"
  echo
}
curl -sS --unix-socket "$SOCK" http://guest/api/v1/health; echo
call /api/v1/shell/exec '{"id":"demo","command":"mkdir -p proj && cd proj && export GREETING=hello"}'
call /api/v1/shell/exec '{"id":"demo","command":"pwd; echo $GREETING from a persistent session"}'
call /api/v1/shell/run '{"session_id":"demo","command":"for i in 1 2 3; do echo tick $i; sleep 0.1; done &"}'
sleep 0.5
call /api/v1/process/list '{"session_id":"demo"}'
PIDBG=$(curl -sS --unix-socket "$SOCK" http://guest/api/v1/process/list -d '{"session_id":"demo"}' |
  sed -n 's/.*"pid":\([0-9]*\).*/\1/p')
call /api/v1/process/logs "{\"pid\":$PIDBG}"
call /api/v1/file/write '{"file":"proj/notes.txt","content":"alpha\nbeta 42\ngamma\n"}'
call /api/v1/file/search '{"file":"proj/notes.txt","regex":"[0-9]+"}'
call /api/v1/file/read '{"file":"proj/notes.txt","start_line":1,"end_line":3}'
echo
if [[ $KEEP == 1 ]]; then
  echo "agentbox-guest keeps serving on unix:$SOCK (pid $PID)"
else
  echo "done; run '$GUEST serve --listen unix:/tmp/agentbox.sock' to serve it yourself"
fi
