#!/usr/bin/env bash
# Runs a command as root inside a throwaway virtual machine whose /sys/fs/cgroup is a pure
# cgroup v2 hierarchy, and exits with the command's exit code.
#
# Why: CI machines here are cgroup v1 (every controller bound to a v1 hierarchy that dockerd
# uses), while most distributions today are cgroup v2. The jail's v2 path must be exercised on a
# real v2 kernel, so this boots Debian's own kernel under QEMU (software emulation; no KVM is
# needed) with the host's root filesystem shared read-only over virtio-9p under an in-memory
# overlay (writes stay in the VM), and the cgroup2 filesystem on /sys/fs/cgroup with the memory,
# pids and cpu controllers. The build tree and the test binaries are therefore the host's own.
#
#   tests/vm/run-in-vm.sh [--mem MIB] [--cpus N] [--timeout S] -- COMMAND [ARG...]
#
# Environment: AGENTBOX_VM_CACHE (default /var/cache/agentbox/vm) holds the kernel and initramfs,
# rebuilt only when the kernel package changes. The guest's console goes to stderr when
# AGENTBOX_VM_VERBOSE=1, else to $cache/console.log (its tail is printed when something fails).
# Needs root, qemu-system-x86 and cpio (scripts/install-deps.sh installs them) and Debian's
# package archive on first use (apt-get download of the kernel package).
set -euo pipefail

mem=2048
cpus=2
timeout_s=1200
while (($#)); do
  case "$1" in
    --mem) mem="$2"; shift 2 ;;
    --cpus) cpus="$2"; shift 2 ;;
    --timeout) timeout_s="$2"; shift 2 ;;
    --) shift; break ;;
    *) echo "run-in-vm: unknown option $1" >&2; exit 2 ;;
  esac
done
if (($# == 0)); then
  echo "usage: run-in-vm.sh [--mem MIB] [--cpus N] [--timeout S] -- COMMAND [ARG...]" >&2
  exit 2
fi
for tool in qemu-system-x86_64 cpio busybox; do
  if ! command -v "$tool" >/dev/null; then
    echo "run-in-vm: $tool is missing (scripts/install-deps.sh installs it)" >&2
    exit 2
  fi
done

cache="${AGENTBOX_VM_CACHE:-/var/cache/agentbox/vm}"
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9  # one kernel download/initramfs build at a time; VMs themselves run in parallel

# --- kernel: Debian's current linux-image-*-amd64, extracted (not installed) -------------------
kernel_package() {
  apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[^ ]*\)$/\1/p' | head -n1
}
kpkg="$(kernel_package)"
if [[ -z "$kpkg" && -z "$(ls -d "$cache"/kernel-* 2>/dev/null)" ]]; then
  apt-get update -qq >/dev/null 2>&1 || true  # a fresh machine may have no package lists yet
  kpkg="$(kernel_package)"
fi
if [[ -z "$kpkg" ]]; then
  kpkg="$(cd "$cache" && ls -d kernel-* 2>/dev/null | sed 's/^kernel-//' | tail -n1 || true)"
fi
if [[ -z "$kpkg" ]]; then
  echo "run-in-vm: cannot tell which kernel package to use (apt-get update first)" >&2
  exit 2
fi
kdir="$cache/kernel-$kpkg"
if [[ ! -f "$kdir/.complete" ]]; then
  echo "run-in-vm: fetching $kpkg from Debian's archive" >&2
  rm -rf "$kdir" "$cache"/*.deb
  (cd "$cache" && apt-get download "$kpkg" >/dev/null 2>&1) || {
    echo "run-in-vm: apt-get download $kpkg failed" >&2
    exit 2
  }
  mkdir -p "$kdir"
  dpkg-deb -x "$cache"/"$kpkg"_*.deb "$kdir"
  rm -f "$cache"/*.deb
  touch "$kdir/.complete"
fi
vmlinuz="$(ls "$kdir"/boot/vmlinuz-* | head -n1)"
kver="${vmlinuz##*/vmlinuz-}"
moddir="$kdir/lib/modules/$kver/kernel"

# --- initramfs: busybox, the virtio and 9p modules, and /init ----------------------------------
initrd="$cache/initrd-$kver.cpio"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
stamp="$(sha256sum "$here/vm-init.sh" "$here/run-in-vm.sh" "$(command -v busybox)" | sha256sum | cut -c1-16)"
if [[ ! -f "$initrd" || "$(cat "$initrd.stamp" 2>/dev/null)" != "$stamp" ]]; then
  root="$(mktemp -d)"
  mkdir -p "$root"/{bin,dev,proc,sys,newroot,modules}
  cp "$(command -v busybox)" "$root/bin/busybox"
  ln -s busybox "$root/bin/sh"
  for m in drivers/virtio/virtio drivers/virtio/virtio_ring \
           drivers/virtio/virtio_pci_legacy_dev drivers/virtio/virtio_pci_modern_dev \
           drivers/virtio/virtio_pci fs/fscache/fscache fs/netfs/netfs \
           net/9p/9pnet net/9p/9pnet_virtio fs/9p/9p fs/overlayfs/overlay; do
    src="$(ls "$moddir/$m".ko* 2>/dev/null | head -n1)"
    [[ -n "$src" ]] || { echo "run-in-vm: module $m missing from $kpkg" >&2; exit 2; }
    case "$src" in
      *.xz) xz -dc "$src" >"$root/modules/${m##*/}.ko" ;;
      *.zst) zstd -qdc "$src" >"$root/modules/${m##*/}.ko" ;;
      *) cp "$src" "$root/modules/" ;;
    esac
  done
  cp "$here/vm-init.sh" "$root/init"
  chmod 755 "$root/init"
  (cd "$root" && find . | cpio -o -H newc --quiet) >"$initrd.tmp"
  mv "$initrd.tmp" "$initrd"
  echo "$stamp" >"$initrd.stamp"
  rm -rf "$root"
fi
exec 9>&-

# --- the run: the command in a script on a writable share, its exit code written back ----------
share="$(mktemp -d)"
trap 'rm -rf "$share"' EXIT
{
  echo '#!/bin/sh'
  echo "cd $(printf '%q' "$PWD") 2>/dev/null || cd /"
  # Forward the variables the tests read (build paths, test filters, requirements).
  while IFS='=' read -r k v; do
    printf 'export %s=%q\n' "$k" "$v"
  done < <(env | grep -E '^(AGENTBOX_|GTEST_)' || true)
  printf '%q ' "$@"
  echo
} >"$share/cmd.sh"
chmod 755 "$share/cmd.sh"
cp "$here/vm-init.sh" "$share/init.sh"

console="$cache/console.$$.log"
qemu_args=(
  -machine q35 -cpu max -accel tcg,thread=multi -smp "$cpus" -m "$mem"
  -nographic -no-reboot -nodefaults -serial stdio
  -kernel "$vmlinuz" -initrd "$initrd"
  -append "console=ttyS0 panic=-1 loglevel=4 rdinit=/init"
  -virtfs "local,path=/,mount_tag=hostroot,security_model=passthrough,readonly=on,multidevs=remap"
  -virtfs "local,path=$share,mount_tag=share,security_model=passthrough"
)
rc=0
if [[ "${AGENTBOX_VM_VERBOSE:-0}" == 1 ]]; then
  timeout --kill-after=10 "$timeout_s" qemu-system-x86_64 "${qemu_args[@]}" </dev/null | tee "$console" >&2 || rc=$?
else
  timeout --kill-after=10 "$timeout_s" qemu-system-x86_64 "${qemu_args[@]}" </dev/null >"$console" 2>&1 || rc=$?
fi
if [[ ! -f "$share/rc" ]]; then
  if ((rc == 124)); then
    echo "run-in-vm: the VM did not finish within ${timeout_s}s" >&2
  else
    echo "run-in-vm: the VM stopped without running the command (qemu exit $rc)" >&2
  fi
  tail -n 40 "$console" >&2
  exit 1
fi
# The command's own output, as the guest wrote it (a verbose run has shown it already).
if [[ "${AGENTBOX_VM_VERBOSE:-0}" != 1 ]]; then
  cat "$share/out" 2>/dev/null || true
fi
code="$(cat "$share/rc")"
if [[ "$code" != 0 ]]; then
  echo "run-in-vm: the command exited $code (console: $console)" >&2
else
  rm -f "$console"
fi
exit "$code"
