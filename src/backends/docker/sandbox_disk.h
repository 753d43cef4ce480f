#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "api/sandbox_backend.h"
#include "backends/disk/disk.h"
#include "common/error.h"

namespace agentbox::docker {

// A container's /workspace on the sandbox's own disk (limits.disk_bytes): the disk is mounted
// at <dir>/disk on the host and <dir>/disk/workspace is bind-mounted at /workspace.
struct DockerDisk {
  std::string workspace;  // host directory for /workspace; empty: an anonymous volume as before
  std::string note;       // why a default limit is not enforced
};

// `asked`: the client's limits; `applied`: with defaults. `maker` null: an explicit disk_bytes
// is refused (kInvalidArgument, `why_not`), a default one noted.
Result<DockerDisk> SetUpDockerDisk(disk::DiskMaker* maker, const std::string& why_not,
                                   const std::string& dir, const ResourceLimits& asked,
                                   const ResourceLimits& applied);

// Bytes in use on the sandbox's disk; nullopt when it has none.
std::optional<uint64_t> DockerDiskUsed(const std::string& dir);

// Unmounts the sandbox's disk (if any), then removes `dir` with its image.
Result<void> RemoveSandboxDir(const std::string& dir);

}  // namespace agentbox::docker
