#pragma once

#include <string>
#include <vector>

#include "backends/jail/user_ns.h"
#include "common/error.h"
#include "common/unique_fd.h"

namespace agentbox::jail {

// A sandbox's writable root filesystem: overlayfs with the image's directories as its lower
// layers and the sandbox's own upper directory (on its disk, so writes to the root count against
// limits.disk_bytes) above them. Installing into /usr/local/bin or writing /etc works as in a
// Docker container, and nothing reaches the image or another sandbox of the same image.
//
// The combination that works on a user-namespaced jail (measured on 6.18, see README.md):
//   - the overlay is mounted by the jail's own user namespace (overlayfs is FS_USERNS_MOUNT), so
//     the mount exists only in the jail's mount namespace: nothing to unmount on the host, and
//     copy-ups run with the sandbox root's credentials, not the host's;
//   - with `userxattr`: overlayfs keeps its whiteout/opaque/origin markers in user.overlay.*,
//     since trusted.* xattrs need CAP_SYS_ADMIN on the host (without it `rm -r` of a lower
//     directory fails with EIO);
//   - as root, every layer is an idmapped mount (image id n -> the sandbox's host id base + n),
//     made by the helper before clone(2) through a throw-away user namespace with the sandbox's
//     mapping and attached by the jail inside its own mount namespace (a detached mount owned by
//     the host's namespace is refused as a layer: EPERM/EINVAL). Without it the image's files
//     belong to ids the sandbox does not map, and the first copy-up fails with EPERM;
//   - unprivileged (one mapped id) no idmapping is possible: the layers are used as they are,
//     so only the caller's own files are the sandbox root's (an extracted tarball is).
struct OverlayRootConfig {
  // The image's directories, bottom first. Files are owned by the image's ids (0 = root).
  std::vector<std::string> lower_dirs;
  std::string upper_dir;  // owned by the sandbox's root; kept across restarts of the guest
  std::string work_dir;   // overlayfs' scratch directory, on upper_dir's filesystem
  bool enabled() const { return !lower_dirs.empty(); }
};

struct OverlayLayer {
  std::string host_path;
  UniqueFd idmapped;  // a detached idmapped mount, made by the parent (as root)
  UniqueFd path;      // otherwise an O_PATH descriptor, opened by the child
};

// Every source of the overlay root. The descriptors of the upper and work directories must be
// opened inside the jail's mount namespace: overlayfs refuses a layer whose mount belongs to
// another namespace ("failed to clone upperpath").
struct OverlayPlan {
  std::vector<OverlayLayer> layers;  // bottom first
  UniqueFd upper;
  UniqueFd work;
};

// Parent side, before clone(2): checks that every directory exists and, when `ids` maps a
// range (running as root), makes the idmapped mount of each layer.
Result<OverlayPlan> PrepareOverlay(const OverlayRootConfig& cfg, const UserNsConfig& ids);

// Child side, with the helper's host identity (it can traverse the state directory): opens the
// upper and work directories and the layers that are not idmapped.
Result<void> OpenOverlaySources(const OverlayRootConfig& cfg, OverlayPlan& plan);

// Child side, as root of the jail's user namespace, with a private staging tmpfs as the current
// directory: attaches each layer at layers/<i>, mounts the overlay (nosuid, nodev) on merged/
// and changes into it.
Result<void> MountOverlayRoot(const OverlayPlan& plan);

// Whether this kernel and process can build an overlay root as Create would (idmapped layers
// when root), tried in a throw-away jail under `scratch_dir` (a fresh directory the caller
// removes): a copy-up, a new file and a whiteout. Empty when it works; otherwise why not.
std::string ProbeOverlayRoot(const std::string& scratch_dir);

// The combination ProbeOverlayRoot tried, in words (for /readyz and logs).
std::string OverlayRootDescription(bool privileged);

}  // namespace agentbox::jail
