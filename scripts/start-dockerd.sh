#!/usr/bin/env bash
# Makes sure a Docker engine answers on the unix socket the docker backend uses. Idempotent:
# returns at once when the engine already answers; otherwise starts dockerd in the background
# (logging to /var/log/agentbox-dockerd.log), waits until it answers, and fails with the log's
# tail when it does not. Needs root (dockerd does).
#
#   DOCKER_HOST=unix:///path.sock  socket to check/serve (default unix:///var/run/docker.sock)
#   AGENTBOX_DOCKERD_TIMEOUT_S     how long to wait for readiness (default 60)
#   AGENTBOX_DOCKERD_LIVE_RESTORE  1 (default): --live-restore, so containers (sandboxes) keep
#                                  running while dockerd itself restarts; 0: without it
#   AGENTBOX_DOCKERD_PIDFILE, AGENTBOX_DOCKERD_LOG, AGENTBOX_DOCKERD_EXEC_ROOT: dockerd's pid
#                                  file, log and --exec-root (defaults /var/run/agentbox-dockerd.pid,
#                                  /var/log/agentbox-dockerd.log, /var/run/docker)
#   AGENTBOX_DOCKERD_ARGS          more dockerd arguments (e.g. --data-root DIR --bridge=none):
#                                  a second, private engine beside the first (tests/docker)
set -euo pipefail

host="${DOCKER_HOST:-unix:///var/run/docker.sock}"
if [[ "$host" != unix://* ]]; then
  echo "start-dockerd: DOCKER_HOST=$host is not a unix:// socket" >&2
  exit 2
fi
sock="${host#unix://}"
log="${AGENTBOX_DOCKERD_LOG:-/var/log/agentbox-dockerd.log}"
exec_root="${AGENTBOX_DOCKERD_EXEC_ROOT:-/var/run/docker}"
read -r -a extra_args <<<"${AGENTBOX_DOCKERD_ARGS:-}"
if [[ "${AGENTBOX_DOCKERD_LIVE_RESTORE:-1}" == 1 ]]; then
  extra_args+=(--live-restore)
fi
if [[ -n "${AGENTBOX_DOCKERD_EXEC_ROOT:-}" ]]; then
  extra_args+=(--exec-root "$exec_root")
fi
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

# running NAME PID: PID is a live (not zombie) process called NAME. Pid files outlive killed
# engines, and their pids get reused or linger as zombies under a slow init.
running() {
  local stat
  stat="$(cat "/proc/$2/stat" 2>/dev/null)" || return 1
  [[ "$stat" == *"($1) "[!Z]* ]]
}

# alive PID: PID exists and is not a zombie, whatever its name.
alive() {
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  [[ "${stat##*) }" != Z* ]]
}

# A dockerd that is still starting (pid file names a live dockerd) is waited for, not doubled.
pidfile="${AGENTBOX_DOCKERD_PIDFILE:-/var/run/agentbox-dockerd.pid}"
started_pid="$(cat "$pidfile" 2>/dev/null || true)"
if [[ -n "$started_pid" ]] && running dockerd "$started_pid"; then
  echo "start-dockerd: dockerd (pid $started_pid) is starting; waiting"
else
  # A stale pid file would make a healthy start look like a crash until dockerd rewrites it.
  rm -f "$pidfile"
  # dockerd's own containerd outlives a killed dockerd, and a new dockerd waits for it and then
  # gives up; stop it and drop its pid file.
  ctr_pidfile="$exec_root/containerd/containerd.pid"
  ctr_pid="$(cat "$ctr_pidfile" 2>/dev/null || true)"
  if [[ -n "$ctr_pid" ]] && running containerd "$ctr_pid"; then
    echo "start-dockerd: stopping containerd (pid $ctr_pid) left by a dockerd that died"
    kill "$ctr_pid" 2>/dev/null || true
    for _ in $(seq 50); do running containerd "$ctr_pid" || break; sleep 0.1; done
    kill -9 "$ctr_pid" 2>/dev/null || true
  fi
  rm -f "$ctr_pidfile"
  echo "start-dockerd: starting dockerd on $sock (log $log)"
  mkdir -p "$(dirname "$sock")" "$(dirname "$log")"
  touch "$log"
  # setsid: the engine must outlive this script and the CI step that ran it.
  setsid dockerd --host "unix://$sock" --pidfile "$pidfile" "${extra_args[@]}" >>"$log" 2>&1 \
    </dev/null &
  started_pid=$!
fi
log_start=$(wc -l <"$log" 2>/dev/null || echo 0)

deadline=$((SECONDS + timeout_s))
until answers; do
  if ((SECONDS >= deadline)); then
    echo "start-dockerd: the engine did not answer on $sock within ${timeout_s}s; log tail:" >&2
    tail -n 30 "$log" >&2 || true
    exit 1
  fi
  # Our own child cannot be mistaken for another process (its pid is ours until reaped), and
  # until it has exec'd dockerd its name is still the shell's or setsid's: alive is enough.
  if ! alive "$started_pid"; then
    echo "start-dockerd: dockerd (pid $started_pid) exited while starting; its log:" >&2
    tail -n +"$((log_start + 1))" "$log" | tail -n 30 >&2 || true
    exit 1
  fi
  sleep 0.2
done
echo "start-dockerd: engine at $sock answers"
