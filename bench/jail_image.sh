#!/usr/bin/env bash
# OCI images on the jail (docs/images.md, docs/benchmarks.md "jail: OCI images"):
#   1. first create from a new ~100 MiB image of the local Docker engine (export, unpack,
#      create; a fresh image and a fresh cache each run), RUNS times;
#   2. create -> first exec from the cached image against the host-directories jail, in turns.
# Prints the figures and the machine; needs root, dockerd and agentbox/base:latest.
#
#   bench/jail_image.sh BUILD_DIR [RUNS] [CREATES]
set -euo pipefail
build=${1:?usage: bench/jail_image.sh BUILD_DIR [RUNS] [CREATES]}
runs=${2:-3}
creates=${3:-20}
bench="$build/src/backends/jail/agentbox_jail_bench"
[ -x "$bench" ] || { echo "missing $bench (cmake --build ... --target agentbox_jail_bench)" >&2; exit 1; }
echo "# $(date -u '+%F %T') UTC, $(nproc) cores, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
ctx=$(mktemp -d)
tags=()
cleanup() {
  rm -rf "$ctx"
  for t in "${tags[@]}"; do docker rmi -f "$t" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT
cat > "$ctx/Dockerfile" <<'DOCKERFILE'
FROM agentbox/base:latest
COPY blob /opt/blob
DOCKERFILE
for i in $(seq 1 "$runs"); do
  tag="agentbox/bench-image:$$-$i"
  tags+=("$tag")
  head -c $((68 << 20)) /dev/urandom > "$ctx/blob"  # + the 32 MiB base: ~100 MiB
  docker build -q -t "$tag" "$ctx" >/dev/null
  size=$(docker image inspect -f '{{.Size}}' "$tag")
  echo "## run $i: new image $tag, $((size >> 20)) MiB"
  "$bench" --creates 0 --idle 0 --image "$tag" | grep '^first create'
done
tag=${tags[-1]}
for i in $(seq 1 "$runs"); do
  echo "## cached image $tag, round $i"
  "$bench" --creates "$creates" --idle 0 --image "$tag" | grep -E 'create|exec'
  echo "## host directories (today's jail), round $i"
  "$bench" --creates "$creates" --idle 0 | grep -E 'create|exec'
done
