#!/bin/sh
# /init of the VM that tests/vm/run-in-vm.sh boots (busybox sh, PID 1).
#
# Stage 1 (in the initramfs): loads the virtio, 9p and overlay modules, mounts the host's root
# read-only over 9p under a tmpfs overlay at /newroot, the command share at /newroot/mnt, and the cgroup2
# filesystem at /newroot/sys/fs/cgroup; then switch_root runs stage 2 there (pivot_root, which
# the jail uses, is refused on the initramfs itself).
# Stage 2 (as PID 1 of the host's tree): moves itself into a service-like child group, as systemd
# would put a daemon, runs /mnt/cmd.sh with its output in /mnt/out and its exit code in /mnt/rc,
# and powers the machine off.
set -u

if [ "${1:-}" = stage2 ]; then
  export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
  # Enable the controllers for child groups, and leave the root group (v2: a group holding
  # processes cannot hand controllers to children, so a daemon lives in a leaf like this one).
  echo "+memory +pids +cpu" >/sys/fs/cgroup/cgroup.subtree_control
  mkdir -p /sys/fs/cgroup/system.slice/agentbox-test.service
  echo $$ >/sys/fs/cgroup/system.slice/agentbox-test.service/cgroup.procs
  echo "vm: kernel $(uname -r), /sys/fs/cgroup: $(stat -f -c %T /sys/fs/cgroup)," \
    "controllers: $(cat /sys/fs/cgroup/cgroup.controllers)" >/dev/console
  (/mnt/cmd.sh; echo $? >/mnt/rc.tmp) 2>&1 </dev/null | tee /mnt/out >/dev/console
  mv /mnt/rc.tmp /mnt/rc
  sync
  echo o >/proc/sysrq-trigger
  sleep 10
  exit 1
fi

/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci netfs fscache \
         9pnet 9pnet_virtio 9p overlay; do
  insmod "/modules/$m.ko" || echo "vm-init: insmod $m failed" >/dev/console
done

fail() {
  echo "vm-init: $*" >/dev/console
  echo o >/proc/sysrq-trigger
  sleep 10
  exit 1
}
# The devices appear asynchronously after the driver loads.
mkdir -p /lower /rw
i=0
until mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=524288,cache=loose hostroot /lower 2>/dev/null; do
  i=$((i + 1))
  [ "$i" -lt 100 ] || fail "cannot mount the host root over 9p"
  sleep 0.1
done
# Writes land in memory above the read-only host tree, so every host path (a build tree under
# /tmp included) stays visible and nothing reaches the host.
mount -t tmpfs -o mode=755 rw /rw
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot ||
  fail "cannot mount the overlay root"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288 share /newroot/mnt || fail "no share"
mount -t tmpfs -o mode=755 run /newroot/run
mount -t proc proc /newroot/proc
mount -t sysfs sys /newroot/sys
mount -t devtmpfs dev /newroot/dev
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /newroot/dev/pts
mount -t tmpfs -o mode=1777 shm /newroot/dev/shm
mount -t cgroup2 cgroup2 /newroot/sys/fs/cgroup || fail "cannot mount cgroup2"
ip link set lo up
hostname agentbox-vm
exec switch_root /newroot /bin/sh /mnt/init.sh stage2
