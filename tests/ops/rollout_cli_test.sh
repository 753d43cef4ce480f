#!/usr/bin/env bash
# `agentbox conformance` and `agentbox rollout` against a real agentboxd on its local socket:
# the shadow validation passes on jail and is recorded; it fails on a docker backend whose engine
# does not answer, and then `rollout set docker N` is refused until forced; `rollout stop` is the
# kill switch; `rollout status` shows all of it.
#
#   rollout_cli_test.sh AGENTBOXD AGENTBOX GUEST
set -euo pipefail
agentboxd=$1 cli=$2 guest=$3
work=$(mktemp -d /tmp/agentbox-rollout.XXXXXX)
pid=
cleanup() { [[ -n $pid ]] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; echo "--- agentboxd log"; tail -30 "$work/log" || true; exit 1; }
sock=$work/agentboxd.sock
start() {
  SANDBOX_BACKEND=jail AGENTBOX_GUEST_BIN="$guest" DOCKER_HOST=unix://$work/no-docker.sock \
    AGENTBOX_WARM_POOL_SIZE=0 AGENTBOX_MIN_FREE_BYTES=0 AGENTBOX_DEFAULT_DISK_BYTES=0 \
    "$agentboxd" --env-file /dev/null --listen "unix:$sock" --state-dir "$work/state" >>"$work/log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do [[ -S $sock ]] && "$cli" --socket "$sock" info >/dev/null 2>&1 && return; sleep 0.1; done
  fail "agentboxd did not start"
}
ab() { "$cli" --socket "$sock" "$@"; }
start

# jail passes every check, and the verdict is recorded.
ab conformance --backend jail >"$work/jail.out" 2>&1 || { cat "$work/jail.out"; fail "conformance on jail failed"; }
cat "$work/jail.out"
grep -q "jail: PASSED (recorded with the daemon)" "$work/jail.out" || fail "no PASSED line"
for check in "exec" "session state" "exit status" "timeout" "files" "upload and download" "background process" "destroy"; do
  grep -Eq "^$check +pass" "$work/jail.out" || fail "check '$check' did not pass"
done
ab conformance --backend jail --json --no-record | jq -e '.passed == true and (.checks | length) == 9' >/dev/null ||
  fail "--json"
[[ $(ab ls --json | jq length) == 0 ]] || fail "conformance left sandboxes behind"

# docker's engine does not answer: the validation fails (exit 1) and is recorded as failed.
set +e
ab conformance --backend docker >"$work/docker.out" 2>&1
rc=$?
set -e
cat "$work/docker.out"
[[ $rc == 1 ]] || fail "conformance on a dead docker exited $rc, expected 1"
grep -q "docker: FAILED (recorded with the daemon)" "$work/docker.out" || fail "no FAILED line"

# Raising docker's share is refused (409, exit 2) and changes nothing; 0% is allowed; --force works.
set +e
ab rollout set docker 10 >"$work/set.out" 2>&1
rc=$?
set -e
cat "$work/set.out"
[[ $rc == 2 ]] || fail "rollout set after a failed validation exited $rc"
grep -q "failed its last validation (failed: create" "$work/set.out" || fail "refusal does not say why"
ab flags | grep -q AGENTBOX_ROLLOUT_PERCENTAGE && fail "the refused change was applied"
ab rollout set docker 0 | grep -q "rollout of docker at 0%" || fail "0% refused"
ab rollout set docker 10 --force | grep -q "rollout of docker at 10%" || fail "--force refused"
ab rollout status >"$work/status.out"
cat "$work/status.out"
grep -q "rollout: docker at 10%" "$work/status.out" || fail "status: rollout"
grep -Eq "^docker +.* FAILED " "$work/status.out" || fail "status: docker's validation"
grep -Eq "^jail +.* passed " "$work/status.out" || fail "status: jail's validation"

# The kill switch, and the verdicts survive a daemon restart.
ab rollout stop | grep -q "kill switch on" || fail "rollout stop"
ab rollout status | grep -q "KILL SWITCH ON" || fail "status after stop"
kill "$pid"; wait "$pid" 2>/dev/null || true
start
ab rollout status --json | jq -e '.backends.docker.validation.passed == false and .backends.jail.validation.passed == true and .rollout.kill_switch == true' >/dev/null ||
  fail "validations or flags lost across a restart"
# Bad input: a malformed verdict is a 4xx, an unknown backend 404.
[[ $(curl -s --unix-socket "$sock" -o /dev/null -w '%{http_code}' -X PUT http://d/v1/backends/jail/validation -d '{"passed":"yes"}') == 422 ]] ||
  fail "malformed verdict not 422"
[[ $(curl -s --unix-socket "$sock" -o /dev/null -w '%{http_code}' http://d/v1/backends/nope/validation) == 404 ]] ||
  fail "unknown backend not 404"
[[ $(curl -s --unix-socket "$sock" -o /dev/null -w '%{http_code}' -X PUT http://d/v1/flags -d '{"flags":{},"force":"x"}') == 422 ]] ||
  fail "non-boolean force not 422"
echo PASS
