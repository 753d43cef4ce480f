#!/bin/bash
# Deletes every sandbox under an agentboxd state directory, warm-pool sandboxes included, and
# leaves nothing running. The agentboxd that used STATE_DIR must be stopped first. Starts a
# temporary agentboxd with the pool off (so pooled sandboxes are listed like any other), deletes
# everything it lists, and stops it.
#
#   scripts/delete-all-sandboxes.sh STATE_DIR [AGENTBOXD]
set -euo pipefail
STATE=$1
DAEMON=${2:-build/release/src/daemon/agentboxd}
TMP=$(mktemp -d /tmp/agentbox-delete-all.XXXXXX)
AGENTBOX_WARM_POOL_SIZE=0 AGENTBOX_WARM_POOL_SIZE_JAIL=0 AGENTBOX_WARM_POOL_SIZE_DOCKER=0 \
  "$DAEMON" --listen "unix:$TMP/d.sock" --state-dir "$STATE" --env-file /dev/null \
  2>"$TMP/agentboxd.log" &
PID=$!
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -rf "$TMP"' EXIT
for _ in $(seq 200); do
  curl -s -o /dev/null --unix-socket "$TMP/d.sock" http://d/healthz && break
  sleep 0.05
done
curl -s --unix-socket "$TMP/d.sock" http://d/v1/sandboxes |
  python3 -c 'import json,sys; [print(s["id"]) for s in json.load(sys.stdin)["data"]["sandboxes"]]' |
  while read -r id; do
    curl -s -o /dev/null --unix-socket "$TMP/d.sock" -X DELETE "http://d/v1/sandboxes/$id"
  done
