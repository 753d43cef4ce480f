#!/usr/bin/env bash
# A real Docker engine stopped and started under a docker sandbox: the sandbox shows
# `unreachable` (with the engine named) while the engine is down and calls fail at once with 503,
# it returns to `running` by itself, /workspace and the session's state are kept, a command that
# was running is reported lost in the session's view, and the metrics count the interruption.
#
# The test starts its OWN engine (scripts/start-dockerd.sh with a private --data-root,
# --exec-root with its own containerd, pid file and socket, --bridge=none --iptables=false): the
# machine's engine, which others use, is never touched. It copies agentbox/base:latest into it.
#
#   engine_restart_test.sh AGENTBOXD GUEST_BIN REPO_ROOT LIVE_RESTORE
#
# LIVE_RESTORE=0: the engine runs without --live-restore, so stopping it stops the container and
# the guest comes back empty (started again by the restart policy or by agentbox): sessions are
# restored from the daemon's snapshots. LIVE_RESTORE=1: the container keeps running; the
# sessions are simply still there. Exit 77 (CTest: skipped) with the reason when dockerd, root
# or the image is missing.
set -euo pipefail

agentboxd="$1"
guest="$2"
repo="$3"
live="${4:-0}"
image=agentbox/base:latest

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
  "AGENTBOX_DOCKERD_LIVE_RESTORE=$live"
  "AGENTBOX_DOCKERD_ARGS=--data-root $d/data --bridge=none --iptables=false --ip6tables=false --ip-masq=false"
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

cleanup() {
  set +e
  if [[ -n "$daemon_pid" ]]; then
    kill "$daemon_pid" 2>/dev/null
    wait "$daemon_pid" 2>/dev/null
  fi
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
  out="$(curl -sS --max-time 60 --unix-socket "$api" -X "$1" -H 'Content-Type: application/json' \
    "${data[@]}" -w '\n%{http_code}' "http://agentbox$2")" || return 1
  echo "${out##*$'\n'} ${out%$'\n'*}"
}
body() { local r; r="$(call "$@")"; echo "${r#* }"; }
status() { local r; r="$(call "$@")"; echo "${r%% *}"; }
metric() {  # SERIES -> value or 0
  curl -sS --unix-socket "$api" http://agentbox/metrics | awk -v s="$1" '$1 == s {print $2}' |
    tail -n1 | grep . || echo 0
}
wait_metric() {  # SERIES MIN
  for _ in $(seq 100); do
    awk -v v="$(metric "$1")" -v m="$2" 'BEGIN {exit !(v >= m)}' && return 0
    sleep 0.05
  done
  fail "$1 did not reach $2"
}

echo "== own engine (live-restore=$live) at $sock"
start_engine
docker save "$image" | docker -H "unix://$sock" load >/dev/null || fail "cannot load $image"

cat >"$d/agentboxd.conf" <<EOF
SANDBOX_BACKEND=docker
AGENTBOX_FALLBACK_CHAIN=docker
DOCKER_HOST=unix://$sock
AGENTBOX_GUEST_BIN=$guest
AGENTBOX_WARM_POOL_SIZE=0
EOF
env -u SANDBOX_BACKEND -u AGENTBOX_FALLBACK_CHAIN -u USE_CLOUDRUN_JOBS_SANDBOX -u DOCKER_HOST \
  -u AGENTBOX_WARM_POOL_SIZE_DOCKER AGENTBOX_WARM_POOL_SIZE=0 \
  "$agentboxd" --config "$d/agentboxd.conf" --env-file /dev/null --listen "unix:$api" \
  --state-dir "$d/state" 2>"$d/agentboxd.log" &
daemon_pid=$!
for _ in $(seq 200); do
  [[ "$(status GET /healthz 2>/dev/null)" == 200 ]] && break
  sleep 0.1
done

created="$(body POST /v1/sandboxes '{"backend":"docker"}')"
id="$(jq -r .data.id <<<"$created")"
[[ "$(jq -r .data.backend <<<"$created")" == docker ]] || fail "not a docker sandbox: $created"
echo "== sandbox $id"
exec_path="/v1/sandboxes/$id/api/v1/shell/exec"
r="$(body POST "$exec_path" '{"id":"s","command":"echo kept > /workspace/kept.txt && mkdir -p /workspace/sub && cd /workspace/sub && export GREETING=hi && count=3 && f() { echo \"f:$1\"; } && alias ll=\"echo listed\""}')"
[[ "$(jq -r .data.returncode <<<"$r")" == 0 ]] || fail "priming failed: $r"
r="$(body POST "$exec_path" '{"id":"busy","command":"sleep 600","wait_seconds":0.2}')"
[[ "$(jq -r .data.status <<<"$r")" == running ]] || fail "busy command not running: $r"
wait_metric 'agentbox_session_snapshot_seconds_count{backend="docker"}' 2

echo "== engine stopped"
stop_engine
states=("running")
seen() {  # records the state when it changed; the last one is ${states[-1]}
  local s
  s="$(body GET "/v1/sandboxes/$id" | jq -r .data.state)"
  [[ "$s" == "${states[-1]}" ]] || states+=("$s")
}
for _ in $(seq 200); do
  seen
  [[ "${states[-1]}" == unreachable ]] && break
  sleep 0.1
done
[[ "${states[-1]}" == unreachable ]] || fail "state never became unreachable: ${states[*]}"
detail="$(body GET "/v1/sandboxes/$id" | jq -r .data.detail)"
[[ "$detail" == "unreachable: the Docker engine at $sock"* ]] || fail "detail: $detail"
t0=$(date +%s.%N)
r="$(call POST "$exec_path" '{"id":"s","command":"true"}')"
t1=$(date +%s.%N)
[[ "${r%% *}" == 503 && "$r" == *"is unreachable: the Docker engine"* ]] || fail "exec while down: $r"
awk -v a="$t0" -v b="$t1" 'BEGIN {exit !(b - a < 1)}' || fail "503 took $(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}') s"
echo "   detail: $detail"

echo "== engine started"
start_engine
for _ in $(seq 900); do
  seen
  [[ "${states[-1]}" == running ]] && break
  sleep 0.1
done
echo "   states seen: ${states[*]}"
[[ "${states[*]}" == "running unreachable running" ]] || fail "state sequence: ${states[*]}"

r="$(body POST "$exec_path" '{"id":"s","command":"echo \"$PWD|$GREETING|$count|$(f x)|$(cat /workspace/kept.txt)\"; ll"}')"
out="$(jq -r .data.output <<<"$r")"
[[ "$out" == *"/workspace/sub|hi|3|f:x|kept"*"listed"* ]] || fail "session or files not kept: $r"
view="$(body POST "/v1/sandboxes/$id/api/v1/shell/view" '{"id":"busy"}')"
if [[ "$live" == 0 ]]; then
  [[ "$(jq -r .data.notice <<<"$r")" == *"was restored"* ]] || fail "no notice: $r"
  [[ "$(jq -r .data.notice <<<"$view")" == *"(sleep 600) was lost"* ]] || fail "lost not said: $view"
  [[ "$(metric 'agentbox_sessions_restored_total{backend="docker",outcome="ok"}')" == 2 ]] ||
    fail "sessions restored: $(metric 'agentbox_sessions_restored_total{backend="docker",outcome="ok"}')"
else
  [[ "$(jq -r '.data.notice // ""' <<<"$r")" == "" ]] || fail "a kept guest got a notice: $r"
  r="$(body POST "/v1/sandboxes/$id/api/v1/shell/view" '{"id":"busy"}')"
  [[ "$(jq -r .data.status <<<"$r")" == running ]] ||
    fail "the busy command did not survive a live-restore engine restart: $r"
fi
[[ "$(metric 'agentbox_engine_unreachable_total{backend="docker"}')" == 1 ]] ||
  fail "agentbox_engine_unreachable_total: $(metric 'agentbox_engine_unreachable_total{backend="docker"}')"
recovered="$(curl -sS --unix-socket "$api" http://agentbox/metrics | grep '^agentbox_sandbox_recoveries_total' || true)"
[[ "$recovered" == *'outcome="running"} 1'* || "$recovered" == *'outcome="restarted"} 1'* ]] ||
  fail "recoveries: $recovered"
echo "   metrics: $(metric 'agentbox_engine_unreachable_seconds_total{backend="docker"}') s down; $recovered"
snap_sum="$(metric 'agentbox_session_snapshot_seconds_sum{backend="docker"}')"
snap_n="$(metric 'agentbox_session_snapshot_seconds_count{backend="docker"}')"
echo "   session snapshots: $snap_n, $(awk -v s="$snap_sum" -v n="$snap_n" 'BEGIN {printf "%.3f", s / n * 1000}') ms mean"
[[ "$(status DELETE "/v1/sandboxes/$id")" == 200 ]] || fail "delete failed"
echo "PASS"
