# Sourced by the tests in tests/docker: a Docker engine of the test's OWN
# (scripts/start-dockerd.sh with a private --data-root, --exec-root with its own containerd, pid
# file and socket, --bridge=none --iptables=false) and an agentboxd on it. The machine's engine,
# which others use, is never touched: agentbox/base:latest is copied from it, nothing else.
#
# Before sourcing, set: agentboxd guest repo (paths), live (0/1: --live-restore) and optionally
# engine_extra_env (more VAR=value for start-dockerd.sh).
# Provides: $d $sock $api, skip fail start_engine stop_engine start_daemon stop_daemon call body
# status metric wait_metric create_primed_sandbox; cleans everything up on exit. Exit 77 (CTest: skipped) with the
# reason when dockerd, root, jq or the image is missing.
image=agentbox/base:latest
[[ -v engine_extra_env ]] || engine_extra_env=()

skip() {
  echo "SKIPPED (not a pass): $*" >&2
  exit 77
}
[[ $EUID == 0 ]] || skip "starting a Docker engine needs root"
command -v dockerd >/dev/null || skip "dockerd is not installed (scripts/install-deps.sh)"
command -v docker >/dev/null || skip "the docker CLI is not installed (scripts/install-deps.sh)"
command -v jq >/dev/null || skip "jq is not installed"
docker image inspect "$image" >/dev/null 2>&1 ||
  skip "$image is not in the default engine (scripts/build-base-image.sh builds it)"

d="$(mktemp -d /tmp/abx-engine.XXXXXX)"
sock="$d/docker.sock"
api="$d/agentboxd.sock"
engine_env=(
  "DOCKER_HOST=unix://$sock"
  "AGENTBOX_DOCKERD_PIDFILE=$d/dockerd.pid"
  "AGENTBOX_DOCKERD_LOG=$d/dockerd.log"
  "AGENTBOX_DOCKERD_EXEC_ROOT=$d/exec"
  "AGENTBOX_DOCKERD_LIVE_RESTORE=${live:-0}"
  "AGENTBOX_DOCKERD_ARGS=--data-root $d/data --bridge=none --iptables=false --ip6tables=false --ip-masq=false"
  "${engine_extra_env[@]}"
)
daemon_pid=""

fail() {
  echo "FAIL: $*" >&2
  echo "--- agentboxd log (tail)" >&2
  tail -n 40 "$d/agentboxd.log" >&2 || true
  echo "--- dockerd log (tail)" >&2
  tail -n 20 "$d/dockerd.log" >&2 || true
  exit 1
}

engine_pid() { cat "$d/dockerd.pid" 2>/dev/null || true; }

start_engine() {
  env "${engine_env[@]}" "$repo/scripts/start-dockerd.sh" >/dev/null || fail "engine did not start"
}

# Stops our engine (only ours: its pid file) and waits until it is gone.
stop_engine() {
  local pid
  pid="$(engine_pid)"
  [[ -n "$pid" ]] || return 0
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 300); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
}

stop_daemon() {
  [[ -n "$daemon_pid" ]] || return 0
  kill "$daemon_pid" 2>/dev/null
  wait "$daemon_pid" 2>/dev/null
  daemon_pid=""
}

cleanup() {
  set +e
  stop_daemon
  if [[ -S "$sock" ]]; then
    local ids
    ids="$(docker -H "unix://$sock" ps -aq)"
    [[ -z "$ids" ]] || docker -H "unix://$sock" rm -f $ids >/dev/null 2>&1
  fi
  stop_engine
  # Our engine's containerd, if it outlived the engine.
  local ctr
  ctr="$(cat "$d/exec/containerd/containerd.pid" 2>/dev/null)"
  [[ -z "$ctr" ]] || kill "$ctr" 2>/dev/null
  grep " $d/" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null
  rm -rf "$d"
}
trap cleanup EXIT

call() {  # METHOD PATH [BODY] -> prints "STATUS BODY"
  local out data=()
  [[ $# -lt 3 ]] || data=(--data "$3")
  out="$(curl -sS --max-time 120 --unix-socket "$api" -X "$1" -H 'Content-Type: application/json' \
    "${data[@]}" -w '\n%{http_code}' "http://agentbox$2")" || return 1
  echo "${out##*$'\n'} ${out%$'\n'*}"
}
body() { local r; r="$(call "$@")"; echo "${r#* }"; }
status() { local r; r="$(call "$@")"; echo "${r%% *}"; }
metric() {  # SERIES -> value or 0
  curl -sS --unix-socket "$api" http://agentbox/metrics | awk -v s="$1" '$1 == s {print $2}' |
    tail -n1 | grep . || echo 0
}
wait_metric() {  # SERIES MIN [TRIES of 0.05 s]
  for _ in $(seq "${3:-100}"); do
    awk -v v="$(metric "$1")" -v m="$2" 'BEGIN {exit !(v >= m)}' && return 0
    sleep 0.05
  done
  fail "$1 did not reach $2 (is $(metric "$1"))"
}

# The engine, with the image copied into it.
start_own_engine() {
  echo "== own engine (live-restore=${live:-0}) at $sock"
  start_engine
  docker save "$image" | docker -H "unix://$sock" load >/dev/null || fail "cannot load $image"
}

# agentboxd on our engine only (docker backend, no fallback, no warm pool); `extra` lines are
# added to its configuration. Waits until it answers.
start_daemon() {
  cat >"$d/agentboxd.conf" <<CONF
SANDBOX_BACKEND=docker
AGENTBOX_FALLBACK_CHAIN=docker
DOCKER_HOST=unix://$sock
AGENTBOX_GUEST_BIN=$guest
AGENTBOX_WARM_POOL_SIZE=0
${daemon_extra_conf:-}
CONF
  env -u SANDBOX_BACKEND -u AGENTBOX_FALLBACK_CHAIN -u USE_CLOUDRUN_JOBS_SANDBOX -u DOCKER_HOST \
    -u AGENTBOX_WARM_POOL_SIZE_DOCKER AGENTBOX_WARM_POOL_SIZE=0 \
    "$agentboxd" --config "$d/agentboxd.conf" --env-file /dev/null --listen "unix:$api" \
    --state-dir "$d/state" 2>>"$d/agentboxd.log" &
  daemon_pid=$!
  for _ in $(seq 200); do
    [[ "$(status GET /healthz 2>/dev/null)" == 200 ]] && return 0
    sleep 0.1
  done
  fail "agentboxd did not answer"
}

# Creates a docker sandbox and gives it state to lose: /workspace/kept.txt, a session "s" in
# /workspace/sub with an exported variable, a shell variable, a function and an alias, and a
# session "busy" running `sleep 600`; waits until the daemon has snapshotted both sessions.
# Sets $id and $exec_path.
create_primed_sandbox() {
  local created r
  created="$(body POST /v1/sandboxes '{"backend":"docker"}')"
  id="$(jq -r .data.id <<<"$created")"
  [[ "$(jq -r .data.backend <<<"$created")" == docker ]] || fail "not a docker sandbox: $created"
  exec_path="/v1/sandboxes/$id/api/v1/shell/exec"
  r="$(body POST "$exec_path" '{"id":"s","command":"echo kept > /workspace/kept.txt && mkdir -p /workspace/sub && cd /workspace/sub && export GREETING=hi && count=3 && f() { echo \"f:$1\"; } && alias ll=\"echo listed\""}')"
  [[ "$(jq -r .data.returncode <<<"$r")" == 0 ]] || fail "priming failed: $r"
  r="$(body POST "$exec_path" '{"id":"busy","command":"sleep 600","wait_seconds":0.2}')"
  [[ "$(jq -r .data.status <<<"$r")" == running ]] || fail "busy command not running: $r"
  wait_metric 'agentbox_session_snapshot_seconds_count{backend="docker"}' 2
}
