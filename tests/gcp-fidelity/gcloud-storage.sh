#!/usr/bin/env bash
# `gcloud storage` against agentbox-gcp-emulator (EMULATOR_PORT): bucket create/describe,
# uploads small (single request) and large (resumable), ls with a delimiter, cat, download with
# the client's hash check, a precondition (--if-generation-match), mv, rm and rm -r.
set -euo pipefail
: "${EMULATOR_PORT:?}"
tmp=$(mktemp -d /tmp/gcloud-fidelity.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
export CLOUDSDK_CONFIG=$tmp/config
export CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE=http://127.0.0.1:$EMULATOR_PORT/
export CLOUDSDK_AUTH_ACCESS_TOKEN=fake
export CLOUDSDK_CORE_PROJECT=fidelity
export CLOUDSDK_CORE_DISABLE_PROMPTS=1
export CLOUDSDK_CORE_DISABLE_USAGE_REPORTING=1
export CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK=1
# Parallel composite uploads (objects.compose) are not emulated.
export CLOUDSDK_STORAGE_PARALLEL_COMPOSITE_UPLOAD_ENABLED=False

ok() { echo "ok   $*"; }
g() { gcloud --quiet storage "$@"; }

g buckets create gs://fid-gcloud >/dev/null 2>"$tmp/err" || { cat "$tmp/err" >&2; exit 1; }
g buckets describe gs://fid-gcloud --format='value(name)' | grep -qx fid-gcloud
ok "buckets create, describe"

echo "small object" >"$tmp/small.txt"
head -c $((20 * 1024 * 1024 + 7)) /dev/urandom >"$tmp/large.bin"
g cp "$tmp/small.txt" gs://fid-gcloud/dir/small.txt 2>"$tmp/err" || { cat "$tmp/err" >&2; exit 1; }
g cp "$tmp/large.bin" gs://fid-gcloud/dir/sub/large.bin 2>"$tmp/err" || { cat "$tmp/err" >&2; exit 1; }
ok "cp up (single request and resumable)"

listing=$(g ls gs://fid-gcloud/dir/)
grep -qx "gs://fid-gcloud/dir/small.txt" <<<"$listing"
grep -qx "gs://fid-gcloud/dir/sub/" <<<"$listing"
[[ $(g ls -r 'gs://fid-gcloud/**' | grep -c '^gs://') -eq 2 ]]
ok "ls with a delimiter, recursive"

[[ "$(g cat gs://fid-gcloud/dir/small.txt)" == "small object" ]]
g cp gs://fid-gcloud/dir/sub/large.bin "$tmp/back.bin" 2>"$tmp/err" || { cat "$tmp/err" >&2; exit 1; }
cmp "$tmp/large.bin" "$tmp/back.bin"
ok "cat, cp down (hash checked by gcloud)"

gen=$(g objects describe gs://fid-gcloud/dir/small.txt --format='value(generation)')
[[ "$gen" =~ ^[0-9]+$ ]]
if g cp --if-generation-match=1 "$tmp/small.txt" gs://fid-gcloud/dir/small.txt 2>"$tmp/err"; then
  echo "a stale --if-generation-match was accepted" >&2
  exit 1
fi
grep -qi "412\|precondition" "$tmp/err" || { cat "$tmp/err" >&2; exit 1; }
g cp --if-generation-match="$gen" "$tmp/small.txt" gs://fid-gcloud/dir/small.txt 2>/dev/null
ok "precondition (--if-generation-match)"

g mv gs://fid-gcloud/dir/small.txt gs://fid-gcloud/moved.txt 2>"$tmp/err" || { cat "$tmp/err" >&2; exit 1; }
[[ "$(g cat gs://fid-gcloud/moved.txt)" == "small object" ]]
ok "mv (rewrite + delete)"

g rm gs://fid-gcloud/moved.txt 2>/dev/null
if g ls gs://fid-gcloud/moved.txt >/dev/null 2>&1; then
  echo "deleted object still listed" >&2
  exit 1
fi
g rm -r gs://fid-gcloud/dir 2>"$tmp/err" || { cat "$tmp/err" >&2; exit 1; }
[[ -z "$(g ls 'gs://fid-gcloud/**' 2>/dev/null)" ]]
ok "rm, rm -r"
echo "gcloud storage fidelity: all steps passed"
