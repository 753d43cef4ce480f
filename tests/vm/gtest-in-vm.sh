#!/usr/bin/env bash
# Runs a GoogleTest binary inside the cgroup v2 VM (run-in-vm.sh) and fails when the binary
# fails, when no test ran, or when any test skipped: this run exists to cover cgroup v2, so a
# test that skips there (for lack of root, a controller or a kernel feature) is a failure, not a
# pass. AGENTBOX_REQUIRE_CGROUP=v2 is set for the binary, which its cgroup tests check.
#
#   tests/vm/gtest-in-vm.sh BINARY [GTEST_ARG...]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
rc=0
AGENTBOX_REQUIRE_CGROUP=v2 "$here/run-in-vm.sh" -- "$@" 2>&1 | tee "$out" || rc=$?
if ((rc != 0)); then
  exit "$rc"
fi
if grep -q '^\[  SKIPPED \]' "$out"; then
  echo "gtest-in-vm: tests skipped inside the VM (listed above); they must run there" >&2
  exit 1
fi
if ! grep -q '^\[  PASSED  \] [1-9]' "$out"; then
  echo "gtest-in-vm: no test passed inside the VM" >&2
  exit 1
fi
