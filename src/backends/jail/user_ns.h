#pragma once

#include <sys/types.h>

#include <cstdint>

#include "common/error.h"

namespace agentbox::jail {

// How the ids of a sandbox map to host ids: sandbox ids [0, count) are host ids
// [host_uid, host_uid + count) (and likewise for groups).
//
// Chosen mapping (see JailBackendOptions): as root, every sandbox gets a private range of 65536
// unprivileged host ids (base + slot * 65536), so its root is nobody on the host and two
// sandboxes never share an id. Unprivileged, the kernel only allows mapping the caller's own
// uid/gid, so count is 1 and only root exists inside.
struct UserNsConfig {
  uint32_t host_uid = 0;
  uint32_t host_gid = 0;
  uint32_t count = 1;
  // The mapping is written by a process without CAP_SETUID/CAP_SETGID on the host: then
  // setgroups(2) must be denied before gid_map can be written.
  bool unprivileged = false;
};

// Parent side. Writes uid_map, setgroups and gid_map of `pid`, a child just cloned with
// CLONE_NEWUSER that waits for them before doing anything else.
Result<void> WriteIdMaps(pid_t pid, const UserNsConfig& cfg);

// Child side, after WriteIdMaps: becomes uid 0 / gid 0 of the new user namespace with no
// supplementary groups. From here on, host file access is as host id cfg.host_uid.
Result<void> BecomeNamespaceRoot(const UserNsConfig& cfg);

}  // namespace agentbox::jail
