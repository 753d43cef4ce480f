#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "api/sandbox_backend.h"
#include "backends/disk/disk.h"
#include "common/error.h"

namespace agentbox::jail {

// Where one sandbox keeps what it writes: `root` holds workspace/ and, for a tarball image,
// rootfs/. With limits.disk_bytes that is <dir>/disk, the sandbox's own filesystem (its image
// <dir>/disk.img; <dir>/workspace is then a symlink to disk/workspace for the host's tools);
// without one (no limit, or none can be made), <dir> itself.
struct SandboxDisk {
  std::string root;
  std::string note;  // for SandboxInfo::detail, e.g. why the limit is not enforced
};

// `asked`: the limits the client gave (explicit); `applied`: with the backend's defaults.
// `maker` null: no disks can be made (`why_not` says why); then an explicit disk_bytes is
// refused with kInvalidArgument and a default one is noted as not enforced, never silently
// dropped. The disk's root is owned by uid:gid (the sandbox's root on the host).
Result<SandboxDisk> SetUpSandboxDisk(disk::DiskMaker* maker, const std::string& why_not,
                                     const std::string& dir, const ResourceLimits& asked,
                                     const ResourceLimits& applied, uint32_t uid, uint32_t gid);

// Bytes in use on the sandbox's disk; nullopt when it has none mounted.
std::optional<uint64_t> SandboxDiskUsed(const std::string& dir);

}  // namespace agentbox::jail
