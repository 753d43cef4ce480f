#!/usr/bin/env bash
# Makes sure a Docker engine answers on the unix socket the docker backend uses. Idempotent:
# returns at once when the engine already answers; otherwise starts dockerd in the background
# (logging to /var/log/agentbox-dockerd.log), waits until it answers, and fails with the log's
# tail when it does not. Needs root (dockerd does).
#
#   DOCKER_HOST=unix:///path.sock  socket to check/serve (default unix:///var/run/docker.sock)
#   AGENTBOX_DOCKERD_TIMEOUT_S     how long to wait for readiness (default 60)
set -euo pipefail

host="${DOCKER_HOST:-unix:///var/run/docker.sock}"
if [[ "$host" != unix://* ]]; then
  echo "start-dockerd: DOCKER_HOST=$host is not a unix:// socket" >&2
  exit 2
fi
sock="${host#unix://}"
log=/var/log/agentbox-dockerd.log
timeout_s="${AGENTBOX_DOCKERD_TIMEOUT_S:-60}"

answers() {
  [[ -S "$sock" ]] && curl -fsS --max-time 2 --unix-socket "$sock" http://docker/_ping >/dev/null 2>&1
}

if answers; then
  echo "start-dockerd: engine at $sock answers"
  exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
  echo "start-dockerd: dockerd is not installed (scripts/install-deps.sh installs docker.io)" >&2
  exit 1
fi

# A dockerd that is still starting (pid file present, process alive) is waited for, not doubled.
pidfile=/var/run/agentbox-dockerd.pid
if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  echo "start-dockerd: dockerd (pid $(cat "$pidfile")) is starting; waiting"
else
  echo "start-dockerd: starting dockerd on $sock (log $log)"
  mkdir -p "$(dirname "$sock")"
  # setsid: the engine must outlive this script and the CI step that ran it.
  setsid dockerd --host "unix://$sock" --pidfile "$pidfile" >>"$log" 2>&1 </dev/null &
fi

deadline=$((SECONDS + timeout_s))
until answers; do
  if ((SECONDS >= deadline)); then
    echo "start-dockerd: the engine did not answer on $sock within ${timeout_s}s; log tail:" >&2
    tail -n 30 "$log" >&2 || true
    exit 1
  fi
  if [[ -f "$pidfile" ]] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "start-dockerd: dockerd exited while starting; log tail:" >&2
    tail -n 30 "$log" >&2 || true
    exit 1
  fi
  sleep 0.2
done
echo "start-dockerd: engine at $sock answers"
