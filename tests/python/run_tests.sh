#!/usr/bin/env bash
# Runs the Python client's tests (clients/python/tests, unittest, Debian's python3) against a real
# agentboxd whose sandboxes all go to BACKEND: a unix socket (admin) and TCP with two API keys.
# With --install, first installs the package into a venv (pip install ./clients/python, offline)
# and runs the tests against the installed copy.
#
#   run_tests.sh AGENTBOXD REPO_ROOT BACKEND [--install]
#
# Exit 77 (CTest: skipped) with the reason when python3, or for docker the engine or its image,
# is missing; CI has them (scripts/install-deps.sh, scripts/build-base-image.sh). Every sandbox is
# deleted and the daemon stopped before it exits.
set -euo pipefail

agentboxd="$1"
repo="$2"
backend="$3"
install="${4:-}"
python=/usr/bin/python3  # Debian's (a pyenv python3 earlier on PATH lacks python3-httpx)

skip() {
  echo "SKIPPED (not a pass): $*" >&2
  exit 77
}
[[ -x $python ]] || skip "$python is missing (scripts/install-deps.sh installs python3)"
if [[ $backend == docker ]]; then
  [[ -S /var/run/docker.sock ]] || skip "no Docker engine at /var/run/docker.sock"
  docker image inspect agentbox/base:latest >/dev/null 2>&1 ||
    skip "agentbox/base:latest is missing (scripts/build-base-image.sh builds it)"
fi

d="$(mktemp -d /tmp/abx-python.XXXXXX)"
sock="$d/agentboxd.sock"
port="$($python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
daemon_pid=""

cleanup() {
  if [[ -n $daemon_pid ]]; then
    kill -TERM "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
  fi
  # Sandboxes a failed test left behind (the daemon leaves sandboxes running when it stops).
  "$repo/scripts/delete-all-sandboxes.sh" "$d/state" "$agentboxd" >/dev/null 2>&1 || true
  rm -rf "$d"
}
trap cleanup EXIT

key_a="key-alice-$RANDOM$RANDOM$RANDOM"
key_b="key-bob-$RANDOM$RANDOM$RANDOM"
env -i PATH="$PATH" HOME="${HOME:-/root}" \
  SANDBOX_BACKEND="$backend" AGENTBOX_FALLBACK_CHAIN="" \
  AGENTBOX_API_KEYS="alice:$key_a,bob:$key_b" \
  AGENTBOX_WARM_POOL_SIZE=0 AGENTBOX_MIN_FREE_BYTES=0 AGENTBOX_DEFAULT_DISK_BYTES=0 \
  "$agentboxd" --listen "unix:$sock" --listen "tcp:127.0.0.1:$port" --state-dir "$d/state" \
  --env-file /dev/null >"$d/agentboxd.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 300); do
  curl -fs -o /dev/null --unix-socket "$sock" http://d/healthz && break
  kill -0 "$daemon_pid" 2>/dev/null || { cat "$d/agentboxd.log" >&2; exit 1; }
  sleep 0.05
done
curl -fs -o /dev/null --unix-socket "$sock" http://d/healthz || {
  cat "$d/agentboxd.log" >&2
  echo "agentboxd did not answer on $sock" >&2
  exit 1
}

export AGENTBOX_TEST_UNIX="unix:$sock" AGENTBOX_TEST_TCP="http://127.0.0.1:$port"
export AGENTBOX_TEST_KEYS="$key_a,$key_b" AGENTBOX_TEST_BACKEND="$backend"
runner=("$python")
if [[ $install == --install ]]; then
  # Offline: Debian's setuptools builds it, nothing is fetched from an index.
  # From a copy: an in-place build would write agentbox.egg-info into the source tree.
  $python -m venv --system-site-packages "$d/venv"
  cp -r "$repo/clients/python" "$d/pkg"
  "$d/venv/bin/pip" install --quiet --no-index --no-build-isolation "$d/pkg"
  runner=("$d/venv/bin/python")
  export AGENTBOX_TEST_INSTALLED=1
  (cd "$d" && "${runner[@]}" -c 'import agentbox, os, sys; assert "site-packages" in agentbox.__file__, agentbox.__file__; print("installed:", agentbox.__file__)')
fi
status=0
(cd "$repo/clients/python/tests" && "${runner[@]}" -m unittest -v test_client test_aimanus \
  test_async test_tls) || status=$?
if [[ $status != 0 ]]; then
  echo "--- agentboxd log (tail)" >&2
  tail -n 40 "$d/agentboxd.log" >&2
fi
exit $status
