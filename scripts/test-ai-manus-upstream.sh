#!/usr/bin/env bash
# Runs ai-manus's own HTTP tests of its sandbox API (sandbox/tests/test_api_{file,shell}.py, with
# pytest and requests) against agentbox-guest, then checks the supervisor endpoints its backend
# polls (GET /api/v1/supervisor/status: every entry RUNNING). Nothing is downloaded except
# Debian packages: the ai-manus source comes from a mirror (a session gets it with its `fetch`
# tool, source "github:Simpleyyt/ai-manus").
#
#   scripts/test-ai-manus-upstream.sh MIRROR_GIT_DIR [GUEST_BIN] [REV]
#
# test_file_truncation.py is left out: it imports ai-manus's own service code (FastAPI), it does
# not speak HTTP.
set -euo pipefail
mirror="${1:?give the ai-manus git directory, e.g. /work/.mirror/Simpleyyt+ai-manus/repo}"
guest="${2:-build/release/src/guest/agentbox-guest}"
rev="${3:-HEAD}"
python=/usr/bin/python3

missing=()
for p in python3-pytest python3-requests curl; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

d="$(mktemp -d /tmp/ai-manus-upstream.XXXXXX)"
guest_pid=""
cleanup() {
  [[ -n $guest_pid ]] && kill "$guest_pid" 2>/dev/null && wait "$guest_pid" 2>/dev/null
  rm -rf "$d"
}
trap cleanup EXIT
git --git-dir="$mirror" archive "$rev" sandbox | tar -x -C "$d"
port="$($python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
# Services as ai-manus's image runs them under supervisord (two long-running programs).
"$guest" serve --listen "tcp:127.0.0.1:$port" --workdir "$d/sandbox" \
  --service "xvfb=sleep 100000" --service "chrome=sleep 100000" >"$d/guest.log" 2>&1 &
guest_pid=$!
for _ in $(seq 200); do
  curl -fs -o /dev/null "http://127.0.0.1:$port/api/v1/health" && break
  sleep 0.05
done

status=0
(cd "$d/sandbox" && SANDBOX_API_URL="http://127.0.0.1:$port" \
  $python -m pytest -p no:cacheprovider --color=no -q tests/test_api_file.py tests/test_api_shell.py) ||
  status=$?

# What ai-manus's DockerSandbox.ensure_sandbox() checks before first use.
curl -fs "http://127.0.0.1:$port/api/v1/supervisor/status" | $python -c '
import json, sys
r = json.load(sys.stdin)
names = [(s["name"], s["statename"]) for s in r["data"]]
print("supervisor/status:", names)
assert r["success"] and names and all(state == "RUNNING" for _, state in names), names
' || status=1
exit $status
