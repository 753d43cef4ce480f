#!/usr/bin/env bash
# A real Docker engine stopped and started under a docker sandbox: the sandbox shows
# `unreachable` (with the engine named) while the engine is down and calls fail at once with 503,
# it returns to `running` by itself, /workspace and the session's state are kept, a command that
# was running is reported lost in the session's view, and the metrics count the interruption.
#
# The test starts its OWN engine (tests/docker/own_engine.sh): the machine's engine, which others
# use, is never touched.
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
# shellcheck source=own_engine.sh
source "$(dirname "$0")/own_engine.sh"
start_own_engine
start_daemon

create_primed_sandbox
echo "== sandbox $id"

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
