#!/usr/bin/env bash
# limits.disk_bytes on docker covers /workspace AND the writable root together, enforced by the
# kernel, on an engine whose data-root is xfs with project quotas (scripts/start-dockerd.sh with
# AGENTBOX_DOCKERD_XFS_BYTES). The engine is the test's own (tests/docker/own_engine.sh), its
# data-root a sparse xfs image in the test's directory; the machine's engine is never touched.
#
#   disk_quota_test.sh AGENTBOXD GUEST_BIN REPO_ROOT
#
# Checks: /v1/info says disk_limit=workspace_and_root; `df /` and `df /workspace` inside show the
# sandbox's own size; writes to /workspace and to the root share one budget and the one past it
# fails with ENOSPC; the engine's filesystem grows by at most the limit; another sandbox keeps
# writing; the usage shows in GET /v1/sandboxes/{id} and /metrics; a restarted guest keeps
# /workspace. Skips (77) where mkfs.xfs is missing, besides what own_engine.sh needs.
set -euo pipefail

agentboxd="$1"
guest="$2"
repo="$3"
live=1
limit=$((64 << 20))
command -v mkfs.xfs >/dev/null ||
  { echo "SKIPPED (not a pass): mkfs.xfs is not installed (xfsprogs)" >&2; exit 77; }
engine_extra_env=("AGENTBOX_DOCKERD_XFS_BYTES=4G")
# shellcheck source=own_engine.sh
source "$(dirname "$0")/own_engine.sh"
engine_env+=("AGENTBOX_DOCKERD_XFS_IMAGE=$d/data.xfs")
start_own_engine
[[ "$(findmnt -n -o FSTYPE --mountpoint "$d/data")" == xfs ]] || fail "data-root is not xfs"
start_daemon

# The backend asks the engine once (a probe container with StorageOpt size) and says so.
[[ "$(status GET /readyz)" == 200 ]] || fail "not ready: $(body GET /readyz)"
caps="$(body GET /v1/info | jq -c .data.backends.docker.capabilities)"
[[ "$(jq -r .disk_limit <<<"$caps")" == workspace_and_root ]] || fail "capabilities: $caps"

mk() {  # -> id of a new sandbox with the limit
  local c
  c="$(body POST /v1/sandboxes "{\"backend\":\"docker\",\"limits\":{\"disk_bytes\":$limit}}")"
  [[ "$(jq -r .data.backend <<<"$c")" == docker ]] || fail "create: $c"
  jq -r .data.id <<<"$c"
}
run() {  # ID COMMAND -> the data object of the answer
  body POST "/v1/sandboxes/$1/api/v1/shell/exec" \
    "$(jq -nc --arg c "$2" '{id:"s",command:$c,wait_seconds:120}')" | jq -c .data
}
a="$(mk)"
b="$(mk)"
echo "== sandboxes $a $b, limit $limit"
for path in / /workspace; do
  r="$(run "$a" "df -B1 --output=size $path | tail -1")"
  size="$(jq -r .output <<<"$r" | tr -d ' \n')"
  ((size <= limit && size > limit * 9 / 10)) || fail "df $path: $r"
done

used_before="$(du -B1 -s "$d/data.xfs" | cut -f1)"
r="$(run "$a" "dd if=/dev/zero of=/workspace/w bs=1M count=40 conv=fsync 2>&1")"
[[ "$(jq -r .returncode <<<"$r")" == 0 ]] || fail "40 MiB in /workspace: $r"
r="$(run "$a" "dd if=/dev/zero of=/var/tmp/r bs=1M count=40 conv=fsync 2>&1")"
[[ "$(jq -r .returncode <<<"$r")" != 0 && "$(jq -r .output <<<"$r")" == *"No space left on device"* ]] ||
  fail "40 more MiB in the root should not fit: $r"
echo "   /workspace + root past the limit: $(jq -r .output <<<"$r" | grep -m1 'No space')"
sync
used_after="$(du -B1 -s "$d/data.xfs" | cut -f1)"
grown=$((used_after - used_before))
((grown <= limit + (16 << 20))) || fail "the engine's filesystem grew by $grown bytes"
echo "   the engine's filesystem grew by $grown bytes"

r="$(run "$b" "dd if=/dev/zero of=/workspace/f bs=1M count=16 conv=fsync 2>&1")"
[[ "$(jq -r .returncode <<<"$r")" == 0 ]] || fail "the other sandbox cannot write: $r"

disk="$(body GET "/v1/sandboxes/$a" | jq -c .data.disk)"
used="$(jq -r .used_bytes <<<"$disk")"
[[ "$(jq -r .limit_bytes <<<"$disk")" == "$limit" ]] || fail "disk: $disk"
((used > limit * 8 / 10 && used <= limit)) || fail "disk used: $disk"
m="$(metric 'agentbox_sandbox_disk_bytes{backend="docker"}')"
awk -v m="$m" -v u="$used" 'BEGIN {exit !(m >= u)}' || fail "metrics: $m < $used"
echo "   usage: $disk; metrics: $m"

# The guest restarted in place keeps /workspace (the writable layer is the container's).
[[ "$(status POST "/v1/sandboxes/$a/restart-guest")" == 200 ]] || fail "restart-guest"
r="$(run "$a" "ls -l /workspace/w | wc -l; rm /workspace/w /var/tmp/r; df -B1 --output=used / | tail -1")"
[[ "$(jq -r .output <<<"$r" | head -1)" == 1 ]] || fail "workspace lost on restart-guest: $r"
[[ "$(status DELETE "/v1/sandboxes/$a")" == 200 && "$(status DELETE "/v1/sandboxes/$b")" == 200 ]] ||
  fail "delete"
echo "PASS"
