#!/usr/bin/env bash
# Quick start on a fresh Debian 12 machine (as root): installs the dependencies, builds agentbox,
# starts agentboxd on the embedded `jail` backend and shows a sandbox working through the
# `agentbox` CLI and plain curl: create; exec with a persistent cd and export; a background
# process and its logs; write, search and read a file; destroy. The daemon is stopped at the
# end; pass --keep to leave it running.
set -euo pipefail
cd "$(dirname "$0")/.."
KEEP=0
[[ "${1:-}" == "--keep" ]] && KEEP=1

scripts/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" \
  --target agentboxd agentbox agentbox-guest agentbox-jail
BIN=build/release/src
AGENTBOX="$BIN/cli/agentbox"

RUN=$(mktemp -d /tmp/agentbox-quickstart.XXXXXX)
export AGENTBOX_SOCKET="$RUN/agentboxd.sock"
"$BIN/daemon/agentboxd" --listen "unix:$AGENTBOX_SOCKET" --state-dir "$RUN/state" \
  --backend jail --env-file /dev/null 2>"$RUN/agentboxd.log" &
DAEMON=$!
cleanup() {
  if [[ $KEEP == 0 ]]; then
    kill "$DAEMON" 2>/dev/null || true
    wait "$DAEMON" 2>/dev/null || true
    # The warm pool's sandboxes outlive agentboxd (the next one takes them over): delete them.
    scripts/delete-all-sandboxes.sh "$RUN/state" "$BIN/daemon/agentboxd" || true
    rm -rf "$RUN"
  fi
}
trap cleanup EXIT
for _ in $(seq 200); do [[ -S "$AGENTBOX_SOCKET" ]] && break; sleep 0.05; done

say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
api() {  # api SANDBOX OP JSON: a guest call forwarded by the daemon
  curl -sS --unix-socket "$AGENTBOX_SOCKET" "http://agentboxd/v1/sandboxes/$1/api/v1/$2" -d "$3"
  echo
}

say agentbox info
"$AGENTBOX" info
say agentbox create --ttl 600
ID=$("$AGENTBOX" create --ttl 600)
echo "$ID"
say "agentbox exec $ID -- 'mkdir -p proj && cd proj && export GREETING=hello'"
"$AGENTBOX" exec "$ID" -- 'mkdir -p proj && cd proj && export GREETING=hello'
say "agentbox exec $ID -- 'echo \$GREETING from \$PWD; hostname; id -u'"
"$AGENTBOX" exec "$ID" -- 'echo $GREETING from $PWD; hostname; id -u'
say "agentbox exec $ID -- 'for i in 1 2 3; do echo tick \$i; sleep 0.2; done &'"
"$AGENTBOX" exec "$ID" -- 'for i in 1 2 3; do echo tick $i; sleep 0.2; done &' 2>"$RUN/bg.txt"
cat "$RUN/bg.txt"
PID=$(grep -o 'process [0-9]*' "$RUN/bg.txt" | grep -o '[0-9]*')
say "agentbox ps $ID"
"$AGENTBOX" ps "$ID"
say "agentbox logs $ID $PID --follow"
"$AGENTBOX" logs "$ID" "$PID" --follow
say "file/write, file/search, file/read"
api "$ID" file/write '{"file":"proj/notes.txt","content":"alpha\nbeta 42\ngamma\n"}'
api "$ID" file/search '{"file":"proj/notes.txt","regex":"[0-9]+"}'
api "$ID" file/read '{"file":"proj/notes.txt","start_line":1,"end_line":3}'
say "agentbox rm $ID"
"$AGENTBOX" rm "$ID"
"$AGENTBOX" ls
echo
if [[ $KEEP == 1 ]]; then
  echo "agentboxd keeps serving on unix:$AGENTBOX_SOCKET (pid $DAEMON); export AGENTBOX_SOCKET=$AGENTBOX_SOCKET"
else
  echo "done. Run it yourself: $BIN/daemon/agentboxd --listen unix:/run/agentbox/agentboxd.sock"
fi
