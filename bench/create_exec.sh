#!/bin/sh
# create -> first exec through agentboxd on jail, with the warm pool and without: starts two
# agentboxd (AGENTBOX_WARM_POOL_SIZE=2 and =0) on their own sockets and state directories,
# alternates RUNS runs of agentbox-create-exec-bench on each, prints one line per run, and at the
# end deletes every sandbox, the pooled ones included (an agentboxd with the pool off lists them).
#
#   bench/create_exec.sh [BUILD_DIR] [RUNS] [ITERATIONS] [GAP_MS]     (as root, from the repo root)
#   BACKEND=docker bench/create_exec.sh ...                            (another backend; default jail)
#   DISKS=both bench/create_exec.sh ...   also two agentboxd without sandbox disks
#                                         (AGENTBOX_DEFAULT_DISK_BYTES=0: pool0, cold0), runs
#                                         interleaved with the ones with disks (the default limit)
set -eu
BUILD=${1:-build/release}
RUNS=${2:-3}
N=${3:-40}
GAP=${4:-400}
D=$(mktemp -d /tmp/agentbox-create-exec-XXXXXX)
BENCH=$BUILD/bench/agentbox-create-exec-bench
DAEMON=$BUILD/src/daemon/agentboxd

B=${BACKEND:-jail}
UPPER=$(echo "$B" | tr a-z A-Z)
start() {  # name pool_size [disk_bytes]: only the measured backend is pooled
  env AGENTBOX_WARM_POOL_SIZE=0 "AGENTBOX_WARM_POOL_SIZE_$UPPER=$2" \
    ${3:+AGENTBOX_DEFAULT_DISK_BYTES=$3} $DAEMON --listen unix:$D/$1.sock --state-dir $D/state-$1 \
    --backend "$B" --env-file /dev/null 2>>$D/$1.log &
  echo $! > $D/$1.pid
  until curl -s -o /dev/null --unix-socket $D/$1.sock http://d/healthz; do sleep 0.05; done
}
stop() { kill "$(cat $D/$1.pid)"; while kill -0 "$(cat $D/$1.pid)" 2>/dev/null; do sleep 0.05; done; }
cleanup() {  # name: stop it, then delete every sandbox, the pooled ones included
  stop "$1"
  scripts/delete-all-sandboxes.sh "$D/state-$1" "$DAEMON"
}

MODES="pool cold"
start pool 2
start cold 0
if [ "${DISKS:-}" = both ]; then
  start pool0 2 0
  start cold0 0 0
  MODES="pool pool0 cold cold0"
fi
sleep 1  # the pool fills
echo "# $(date -u '+%F %T UTC'), $(nproc) cores, load: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq 1 "$RUNS"); do
  for m in $MODES; do
    $BENCH --socket $D/$m.sock --iterations "$N" --gap-ms "$GAP" --json --label "$m" |
      python3 -c 'import json,sys; j=json.load(sys.stdin); f=lambda k: "%6.2f / %6.2f" % (j[k]["p50"], j[k]["p99"]);
print("%-5s run %s  create %s  first exec %s  create->first exec %s  (p50 / p99 ms, n=%d, gap %d ms)" % (j["label"], sys.argv[1], f("create_ms"), f("first_exec_ms"), f("create_to_first_exec_ms"), j["n"], j["gap_ms"]))' "$r"
  done
  echo "#   load: $(cut -d' ' -f1-3 /proc/loadavg)"
done
echo "# pool: $(grep -c pool.hit $D/pool.log) hits of $(grep -c sandbox.created $D/pool.log) creates"
for m in $MODES; do cleanup $m; done
rm -rf "$D"
