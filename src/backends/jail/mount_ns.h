#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "backends/jail/rootfs.h"
#include "common/error.h"
#include "common/unique_fd.h"

namespace agentbox::jail {

// The jail's filesystem. Its root is either a size-limited tmpfs that holds only mount points and
// the host's system directories, or (with an image) a writable overlayfs of the image's
// directories (rootfs.h); what a sandbox sees is:
//   /usr /bin /sbin /lib* /etc  read-only (nosuid, nodev) from the host, or the image's files
//                               in the overlay root (writable, copy-on-write)
//   /workspace                  writable, the sandbox's host directory
//   /tmp                        tmpfs of tmp_bytes
//   /proc                       fresh, for the jail's pid namespace
//   /dev                        null zero full random urandom tty (host nodes), pts, ptmx,
//                               shm (tmpfs), fd stdin stdout stderr (links into /proc/self/fd)
//   /.agentbox/guest            the guest binary, read-only
//   /run/agentbox               writable, the sandbox's host run directory (socket, token)
//   /root                       empty home directory on the root tmpfs
//   extra mounts                host files or directories over given paths (below)
struct MountNsConfig {
  // An empty host directory. The root tmpfs is mounted over it inside the jail's own mount
  // namespace, so the host never sees that mount.
  std::string root_dir;
  uint64_t root_bytes = 16ull << 20;
  // Where the system directories come from: "/" (the host) or an image directory.
  std::string system_source = "/";
  // Names under system_source exposed at the jail's root (absent ones are skipped). Empty means
  // every entry of system_source except the ones the jail provides itself (ReservedEntries()).
  std::vector<std::string> system_entries;
  // Whether the system entries stay writable: only for a private copy (an extracted tarball).
  bool system_writable = false;
  // An image's writable root. When enabled, system_source and system_entries are not used.
  OverlayRootConfig overlay;
  // The root (tmpfs or overlay) is made read-only once every mount point exists: writes outside
  // /workspace, /tmp, /dev/shm and /run/agentbox fail with EROFS (SandboxSpec::read_only_root).
  bool read_only_root = false;
  std::string workspace_dir;  // host directory mounted writable at /workspace
  std::string run_dir;        // host directory mounted writable at /run/agentbox
  std::string guest_binary;   // host file mounted read-only at /.agentbox/guest
  uint64_t tmp_bytes = 256ull << 20;
  uint64_t shm_bytes = 64ull << 20;
  // A read-only sysfs at /sys. Only possible in the jail's own network namespace.
  bool sysfs = true;
  // A host file bound read-only over /etc/resolv.conf (network egress: the resolvers the
  // sandbox may reach). Empty: /etc/resolv.conf is what the system source has. The system source
  // must then have /etc/resolv.conf as a regular file (a symlink would lead out of the jail).
  std::string resolv_conf;
  // Host files or directories mounted at `target` (absolute) after everything above, e.g. the
  // generated /etc/passwd and /etc/group of the `user` account and its home (sandbox_user.h).
  // A missing target and its missing parents are made on the root tmpfs; an existing one (a
  // file of a read-only /etc) is mounted over.
  struct Extra {
    std::string host_path;
    std::string target;
    bool writable = false;
  };
  std::vector<Extra> extra;
};

// The host system directories exposed by default.
std::vector<std::string> DefaultSystemEntries();
// Top-level names the jail provides itself and never takes from an image.
const std::vector<std::string>& ReservedEntries();

// One thing to expose at the jail's root.
struct MountSource {
  enum class Kind { kDir, kFile, kSymlink };
  std::string name;  // path relative to the jail's root, e.g. "usr" or "dev/null"
  Kind kind = Kind::kDir;
  std::string host_path;    // kDir, kFile: where it comes from
  std::string link_target;  // kSymlink
  bool follow = false;      // whether a symlink at host_path may be followed (the guest binary)
  UniqueFd fd;              // O_PATH descriptor, opened by the child (EnterMountNamespace)
};

// Every mount of the jail, listed by the helper before clone(2) and completed by the child.
struct MountPlan {
  MountNsConfig config;
  std::vector<MountSource> system;
  std::vector<MountSource> dev_nodes;
  MountSource workspace;
  MountSource run;
  MountSource guest;
  OverlayPlan overlay;  // completed by the helper (Contain) when config.overlay is enabled
  MountSource resolv_conf;  // host_path empty when unused
  std::vector<MountSource> extra;  // config.extra, in order
};

// Parent side: lists the system entries and checks that every source named by `cfg` exists
// with the expected type (so that most mistakes are reported before any namespace exists).
Result<MountPlan> PrepareMounts(MountNsConfig cfg);

// Child side, first step, while the child still has the helper's host identity (which can
// traverse the state directory, unlike the sandbox's ids):
//   - opens every source by its host path: a bind mount's source must belong to the caller's
//     mount namespace, so descriptors opened by the parent before clone(2) would not do;
//   - makes every mount private (no events to or from the host);
//   - mounts the root tmpfs over root_dir and changes into it.
Result<void> EnterMountNamespace(MountPlan& plan);

// Child side, after BecomeNamespaceRoot: populates the root (the current directory) as listed
// above from the descriptors opened by EnterMountNamespace, pivots into it and detaches the
// host's tree. On success "/" is the jail's root.
Result<void> BuildRootAndPivot(const MountPlan& plan);

}  // namespace agentbox::jail
