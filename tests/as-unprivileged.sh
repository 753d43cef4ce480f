#!/usr/bin/env bash
# Runs a GoogleTest binary as an unprivileged user (nobody, 65534, no groups, no capabilities)
# when called as root, else as the caller: the jail must keep working without root where
# unprivileged user namespaces are enabled, with Probe() naming what is then unavailable.
# Only the tests matching --allow-skip (which need root: cgroup limits, id ranges) may skip;
# any other skip fails the run.
#
#   tests/as-unprivileged.sh [--allow-skip EXTENDED_REGEX] BINARY [ARG...]
set -euo pipefail
allow='^$'
if [[ "${1:-}" == --allow-skip ]]; then
  allow="$2"
  shift 2
fi
out="$(mktemp)"
chmod 644 "$out"
trap 'rm -f "$out"' EXIT
rc=0
if [[ "$(id -u)" == 0 ]]; then
  HOME=/tmp TMPDIR=/tmp setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all \
    --bounding-set=-all -- "$@" 2>&1 | tee "$out" || rc=$?
else
  "$@" 2>&1 | tee "$out" || rc=$?
fi
((rc == 0)) || exit "$rc"
unexpected="$(sed -n 's/^\[  SKIPPED \] \([^ ]*\) (.*/\1/p' "$out" | grep -Ev "$allow" || true)"
if [[ -n "$unexpected" ]]; then
  echo "as-unprivileged: these tests skipped but must run without root:" >&2
  echo "$unexpected" >&2
  exit 1
fi
grep -q '^\[  PASSED  \] [1-9]' "$out" || { echo "as-unprivileged: nothing passed" >&2; exit 1; }
