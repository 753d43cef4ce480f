#!/usr/bin/env bash
# Sessions of a docker sandbox come back whenever its guest does, on a real engine of the test's
# own (tests/docker/own_engine.sh; the machine's engine is never touched):
#
#   guest_restart_test.sh AGENTBOXD GUEST_BIN REPO_ROOT SCENARIO
#
# SCENARIO crash: the guest dies (SIGKILL to the container's first process from the host) and the
#   engine's restart policy starts the container again; agentboxd notices from the engine's
#   events, with no request, and restores the sessions into the new guest.
# SCENARIO daemon: agentboxd stops; while it is down the engine stops (no live-restore, so the
#   container stops) and starts again (the restart policy starts the container, its guest empty);
#   agentboxd starts again, reads the snapshots it kept in <state>/sessions and restores them.
# Either way: /workspace, cwd, environment, variables, functions and aliases are kept, the command
# that was running is reported lost in its session's view, and the metrics count it.
set -euo pipefail

agentboxd="$1"
guest="$2"
repo="$3"
scenario="$4"
live=0
# shellcheck source=own_engine.sh
source "$(dirname "$0")/own_engine.sh"
start_own_engine
start_daemon

create_primed_sandbox
echo "== sandbox $id ($scenario)"
container="agentbox-$id"
started_before="$(docker -H "unix://$sock" inspect -f '{{.State.StartedAt}}' "$container")"

case "$scenario" in
crash)
  pid="$(docker -H "unix://$sock" inspect -f '{{.State.Pid}}' "$container")"
  echo "== guest (pid $pid) killed"
  kill -9 "$pid"
  # Noticed from the engine's events and restored, without any request to the sandbox.
  wait_metric 'agentbox_guest_restarts_noticed_total{backend="docker"}' 1 400
  wait_metric 'agentbox_sessions_restored_total{backend="docker",outcome="ok"}' 2 600
  ;;
daemon)
  [[ -f "$d/state/sessions/$id.json" ]] || fail "no session file in $d/state/sessions"
  echo "== agentboxd stopped; engine stopped and started meanwhile"
  stop_daemon
  stop_engine
  start_engine
  for _ in $(seq 300); do
    [[ "$(docker -H "unix://$sock" inspect -f '{{.State.Running}}' "$container")" == true ]] && break
    sleep 0.1
  done
  echo "== agentboxd started"
  start_daemon
  wait_metric 'agentbox_sessions_restored_total{backend="docker",outcome="ok"}' 2 600
  ;;
*)
  fail "unknown scenario $scenario"
  ;;
esac
started_after="$(docker -H "unix://$sock" inspect -f '{{.State.StartedAt}}' "$container")"
[[ "$started_after" != "$started_before" ]] || fail "the container did not restart"
[[ "$(body GET "/v1/sandboxes/$id" | jq -r .data.state)" == running ]] || fail "not running"

r="$(body POST "$exec_path" '{"id":"s","command":"echo \"$PWD|$GREETING|$count|$(f x)|$(cat /workspace/kept.txt)\"; ll"}')"
out="$(jq -r .data.output <<<"$r")"
[[ "$out" == *"/workspace/sub|hi|3|f:x|kept"*"listed"* ]] || fail "session or files not kept: $r"
[[ "$(jq -r .data.notice <<<"$r")" == *"was restored"* ]] || fail "no notice: $r"
view="$(body POST "/v1/sandboxes/$id/api/v1/shell/view" '{"id":"busy"}')"
[[ "$(jq -r .data.notice <<<"$view")" == *"(sleep 600) was lost"* ]] || fail "lost not said: $view"
echo "   notice: $(jq -r .data.notice <<<"$r")"
[[ "$(status DELETE "/v1/sandboxes/$id")" == 200 ]] || fail "delete failed"
[[ ! -e "$d/state/sessions/$id.json" ]] || fail "the session file outlived the sandbox"
echo "PASS"
