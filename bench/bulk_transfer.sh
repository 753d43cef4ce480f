#!/bin/bash
# Bulk data in and out of one sandbox, every path side by side in one run: the `cat | cat` pipe
# (the machine's limit for a copy between two processes), `agentbox upload`/`download` through
# agentboxd, curl straight to the guest's socket (multipart, raw body, download), and a
# 10,000-file tree with `agentbox cp -r` both ways. Starts its own agentboxd (private socket and
# state directory), creates one sandbox, prints the median of RUNS runs per row with its rate,
# agentboxd's CPU seconds per run and its resident memory before and at its peak, then deletes
# the sandbox. Data lives in /dev/shm on the host side, so the figures are not a disk's.
#
#   bench/bulk_transfer.sh [BUILD_DIR] [RUNS]          (as root, from the repo root)
#   BACKEND=docker bench/bulk_transfer.sh ...           (default jail)
#   DEST=/tmp bench/bulk_transfer.sh ...                (sandbox directory; default /workspace)
#   SIZE_MB=256 FILES=10000 ...                         (file size; files in the tree)
#   ROWS="pipe up_daemon up_guest_raw" ...              (only these rows, in this order)
#   COLD=5 ...                                          (seconds between freeing and the clock)
#
# FRESH MEMORY. Every row writes a new 256 MiB file (the sandbox's page cache, or /dev/shm), and
# on VMs with free page reporting (virtio-balloon; the Firecracker VMs these figures come from
# report every free 128 KiB block after ~2 s) memory that has been free for a few seconds is
# handed back to the host, and writing into it again costs a host page fault per page: 256 MiB
# written into a sandbox disk with dd took 0.6-1.4 s when 256 MiB had been freed just before,
# 3.9-5.6 s when it had been freed 4 s before (no agentbox involved). Which rows got recycled
# memory then depended on their order and on how long each `sync` took, not on their path.
# So every run frees what it is about to rewrite (the previous run's file or tree) right before
# its clock starts, after the sync, on every row alike, as the pipe's `> pipe.bin` always did;
# COLD=SECONDS waits that long after freeing instead, to measure the cold case.
set -euo pipefail
BUILD=${1:-build/release}
RUNS=${2:-5}
B=${BACKEND:-jail}
DEST=${DEST:-/workspace}
SIZE_MB=${SIZE_MB:-256}
FILES=${FILES:-10000}
D=$(mktemp -d /tmp/agentbox-bulk-XXXXXX)
H=$(mktemp -d /dev/shm/agentbox-bulk-XXXXXX)
A="$BUILD/src/cli/agentbox"
export AGENTBOX_SOCKET=$D/d.sock

AGENTBOX_WARM_POOL_SIZE=0 "$BUILD/src/daemon/agentboxd" --listen "unix:$D/d.sock" \
  --state-dir "$D/state" --backend "$B" --env-file /dev/null 2>>"$D/d.log" &
DPID=$!
cleanup() {
  [ -n "${ID:-}" ] && "$A" rm "$ID" >/dev/null 2>&1 || true
  kill "$DPID" 2>/dev/null || true
  wait "$DPID" 2>/dev/null || true
  rm -rf "$D" "$H"
}
trap cleanup EXIT
until curl -s -o /dev/null --unix-socket "$D/d.sock" http://d/healthz; do sleep 0.05; done
ID=$("$A" create --backend "$B" --ttl 1800 2>/dev/null)
SOCK=$(find "$D/state" -path "*$ID*" -name guest.sock | head -1)
TOKEN=$(cat "$(dirname "$SOCK")/token")

head -c $((SIZE_MB << 20)) /dev/urandom >"$H/src.bin"
python3 - "$H/tree" "$FILES" <<'EOF'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
random.seed(1)
for i in range(n):  # a source tree: 100 directories of 7 subdirectories, 1-40 KiB files
    d = os.path.join(root, "d%02d" % (i % 100), "s%d" % (i % 7))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%05d.c" % i), "wb") as f:
        f.write(os.urandom(random.randint(1024, 40 * 1024)))
EOF
TREE_BYTES=$(du -sb --apparent-size "$H/tree/" | cut -f1)
BYTES=$((SIZE_MB << 20))

cpu() { awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$DPID/stat"; }
rss() { awk -v k="$1" '$1 == k":" {print $2 / 1024 " MiB"}' "/proc/$DPID/status"; }
now() { date +%s.%N; }
G="curl -sf --unix-socket $SOCK -H X-Access-Token:$TOKEN"

declare -A PREP=(
  [down_daemon]="$A upload $ID $H/src.bin $DEST/bench.bin"
  [down_guest]="$A upload $ID $H/src.bin $DEST/bench.bin"
  [tree_down]="$A exec $ID 'rm -rf $DEST/tree-in' ; $A cp -r $H/tree $ID:$DEST/tree-in"
)
# What each run rewrites, freed right before its clock starts: see FRESH MEMORY above.
declare -A FREE=(
  [pipe]="rm -f $H/pipe.bin"
  [up_daemon]="$A exec $ID 'rm -f $DEST/bench.bin'"
  [up_guest_multipart]="$A exec $ID 'rm -f $DEST/bench.bin'"
  [up_guest_raw]="$A exec $ID 'rm -f $DEST/bench.bin'"
  [down_daemon]="rm -f $H/down.bin"
  [down_guest]="rm -f $H/down.bin"
  [tree_up]="$A exec $ID 'rm -rf $DEST/tree-up'"
  [tree_down]="rm -rf $H/tree-down"
)
declare -A ROW=(
  [pipe]="cat $H/src.bin | cat > $H/pipe.bin"
  [up_daemon]="$A upload $ID $H/src.bin $DEST/bench.bin"
  [down_daemon]="$A download $ID $DEST/bench.bin $H/down.bin"
  [up_guest_multipart]="$G -F file=@$H/src.bin 'http://g/api/v1/file/upload?path=$DEST/bench.bin'"
  [up_guest_raw]="$G -X POST -H Content-Type:application/octet-stream -T $H/src.bin 'http://g/api/v1/file/upload?path=$DEST/bench.bin'"
  [down_guest]="$G -o $H/down.bin 'http://g/api/v1/file/download?path=$DEST/bench.bin'"
  [tree_up]="$A cp -r $H/tree $ID:$DEST/tree-up"
  [tree_down]="$A cp -r $ID:$DEST/tree-in $H/tree-down"
)
ORDER=${ROWS:-"pipe up_daemon down_daemon up_guest_multipart up_guest_raw down_guest tree_up tree_down"}
declare -A LABEL=(
  [pipe]="cat | cat through a pipe (baseline)"
  [up_daemon]="agentbox upload through agentboxd"
  [down_daemon]="agentbox download through agentboxd"
  [up_guest_multipart]="curl multipart upload straight to the guest"
  [up_guest_raw]="curl raw-body upload straight to the guest"
  [down_guest]="curl download straight from the guest"
  [tree_up]="agentbox cp -r, $FILES-file tree into the sandbox"
  [tree_down]="agentbox cp -r, $FILES-file tree out of the sandbox"
)

# Untimed warm-up: a fresh sandbox disk's first large write also initialises its block groups
# (seconds under load), which would otherwise land on whichever row comes first.
"$A" upload "$ID" "$H/src.bin" "$DEST/warm-up.bin" >/dev/null
"$A" exec "$ID" "rm -f $DEST/warm-up.bin" >/dev/null

echo "# $(date -u '+%F %T UTC'), $(nproc) cores, $(uname -r), backend $B, $SIZE_MB MiB file," \
  "tree $FILES files / $((TREE_BYTES >> 20)) MiB, $RUNS runs, COLD=${COLD:-0}," \
  "load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# agentboxd RSS before: $(rss VmRSS)"
printf '%-50s %9s %12s %14s  %s\n' "path" "median s" "rate" "agentboxd cpu" "runs (s)"
for r in $ORDER; do
  times=()
  cpus=()
  for _ in $(seq 1 "$RUNS"); do
    [ -n "${PREP[$r]:-}" ] && eval "${PREP[$r]}" >/dev/null
    sync  # what earlier runs left dirty is written out before the clock starts
    eval "${FREE[$r]}" >/dev/null
    sleep "${COLD:-0}"
    c0=$(cpu)
    t0=$(now)
    eval "${ROW[$r]}" >/dev/null
    t1=$(now)
    c1=$(cpu)
    times+=("$(echo "$t1 - $t0" | bc)")
    cpus+=("$(echo "$c1 - $c0" | bc)")
  done
  med=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  medc=$(printf '%s\n' "${cpus[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  size=$BYTES
  [[ $r == tree_* ]] && size=$TREE_BYTES
  rate=$(echo "$size / $med / 1048576" | bc)
  printf '%-50s %9.3f %8s MiB/s %12s s  %s\n' "${LABEL[$r]}" "$med" "$rate" "$medc" \
    "$(printf '%.2f ' "${times[@]}")"
done
if [ -e "$H/down.bin" ]; then
  cmp -s "$H/src.bin" "$H/down.bin" && echo "# downloads byte-identical: yes" ||
    echo "# downloads byte-identical: NO"
fi
if [ -e "$H/tree-down" ]; then
  diff -r -q "$H/tree" "$H/tree-down" >/dev/null && echo "# tree byte-identical: yes" ||
    echo "# tree byte-identical: NO"
fi
echo "# agentboxd RSS after: $(rss VmRSS), peak $(rss VmHWM)"
