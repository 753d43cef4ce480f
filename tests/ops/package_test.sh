#!/usr/bin/env bash
# The Debian package: built with CPack from this build tree, its contents and maintainer scripts,
# `systemd-analyze verify` on its unit, and a sandbox driven through the packaged binaries started
# the way the unit starts them (systemd is not init on these machines). With CI=true and root, the
# package is also installed with `apt-get install ./agentbox_*.deb`, used, and removed.
#
#   package_test.sh BUILD_DIR
set -euo pipefail
build=$1
for tool in cpack dpkg-deb jq curl; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool is not installed"; exit 77; }
done
work=$(mktemp -d /tmp/agentbox-pkg.XXXXXX)
pid=
cleanup() { [[ -n $pid ]] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; [[ -f $work/log ]] && tail -20 "$work/log"; exit 1; }

(cd "$build" && cpack -G DEB -B "$work/out" >"$work/cpack.log" 2>&1) || { cat "$work/cpack.log"; fail "cpack"; }
deb=$(ls "$work"/out/agentbox_*.deb)
echo "package: $deb ($(stat -c %s "$deb") bytes)"
dpkg-deb -c "$deb" >"$work/contents"
for f in ./usr/bin/agentboxd ./usr/bin/agentbox ./usr/lib/agentbox/agentbox-guest ./usr/lib/agentbox/agentbox-jail \
         ./usr/lib/systemd/system/agentboxd.service ./etc/agentbox/agentbox.conf ./etc/agentbox/agentbox.env \
         ./usr/share/agentbox/agentbox-rules.yml ./usr/share/agentbox/agentbox-dashboard.json; do
  grep -q " $f\$" "$work/contents" || fail "$f is not in the package"
done
dpkg-deb -I "$deb" conffiles | grep -qx /etc/agentbox/agentbox.conf || fail "agentbox.conf is not a conffile"
dpkg-deb -f "$deb" Depends | grep -q libcurl4 || fail "Depends lacks libcurl4"

# Unpack, verify the unit against the unpacked binary, run what its ExecStart runs.
root=$work/root
dpkg-deb -x "$deb" "$root"
file "$root/usr/lib/agentbox/agentbox-guest" | grep -q "statically linked" || fail "the packaged guest is not static"
unit=$root/usr/lib/systemd/system/agentboxd.service
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
[[ $exec_start == "/usr/bin/agentboxd --config /etc/agentbox/agentbox.conf --env-file /etc/agentbox/agentbox.env" ]] ||
  fail "unexpected ExecStart: $exec_start"
if command -v systemd-analyze >/dev/null; then
  sed "s#/usr/bin/agentboxd#$root/usr/bin/agentboxd#; s#/etc/agentbox#$root/etc/agentbox#g" "$unit" >"$work/agentboxd.service"
  systemd-analyze verify "$work/agentboxd.service" 2>&1 | tee "$work/verify.log"
  if grep -v "Failed to connect\|not running\|System has not been booted" "$work/verify.log" | grep -q .; then
    fail "systemd-analyze verify complained"
  fi
  echo "ok: systemd-analyze verify"
else
  echo "note: systemd-analyze is missing; unit not verified"
fi

drive() {  # AGENTBOXD AGENTBOX CONFIG_DIR STATE SOCKET
  local d=$1 cli=$2 etc=$3 state=$4 sock=$5
  # The packaged configuration, with the socket and state directory of this test.
  AGENTBOX_LISTEN="unix:$sock" AGENTBOX_STATE_DIR="$state" AGENTBOX_WARM_POOL_SIZE=0 AGENTBOX_MIN_FREE_BYTES=0 \
    "$d" --config "$etc/agentbox.conf" --env-file "$etc/agentbox.env" >"$work/log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do [[ -S $sock ]] && break; sleep 0.1; done
  "$cli" --socket "$sock" info | jq -e '.backend == "jail"' >/dev/null || fail "packaged daemon: info"
  grep -q "guest_binary\|agentbox-guest" "$work/log" || true
  local id
  id=$("$cli" --socket "$sock" create --json | jq -r .id)
  [[ $id == sb-* ]] || fail "packaged daemon: create"
  [[ $("$cli" --socket "$sock" exec "$id" -- echo packaged) == packaged ]] || fail "packaged daemon: exec"
  "$cli" --socket "$sock" rm "$id" >/dev/null || fail "packaged daemon: rm"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  pid=
  echo "ok: a sandbox through $d"
}
drive "$root/usr/bin/agentboxd" "$root/usr/bin/agentbox" "$root/etc/agentbox" "$work/state" "$work/agentboxd.sock"

if [[ ${CI:-} == true && $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
  if dpkg-query -W agentbox >/dev/null 2>&1; then
    fail "a package named agentbox is already installed; not touching it"
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$deb" >"$work/apt.log" 2>&1 || { cat "$work/apt.log"; fail "apt-get install"; }
  trap 'DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq agentbox >/dev/null 2>&1 || true; cleanup' EXIT
  [[ -x /usr/bin/agentboxd && -f /usr/lib/systemd/system/agentboxd.service ]] || fail "installed files missing"
  drive /usr/bin/agentboxd /usr/bin/agentbox /etc/agentbox "$work/state2" "$work/installed.sock"
  DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq agentbox >/dev/null 2>&1 || fail "apt-get purge"
  [[ ! -e /usr/bin/agentboxd ]] || fail "purge left /usr/bin/agentboxd"
  echo "ok: installed with apt-get, used, purged"
else
  echo "note: not installing the package on this machine (only with CI=true as root)"
fi
echo PASS
