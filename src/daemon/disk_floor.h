#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "api/sandbox_backend.h"
#include "common/json_util.h"

namespace agentbox::daemon {

// The daemon's guard of its own state directory (issue 16): below `floor_bytes` of free space
// new sandboxes are refused with 507, so the disk that holds sandbox records, logs and (jail)
// sandbox images never fills up because of new work. Existing sandboxes keep running; each is
// bounded by its own limits.disk_bytes.
struct DiskFloor {
  std::string path;          // the state directory
  uint64_t floor_bytes = 0;  // AGENTBOX_MIN_FREE_BYTES; 0 disables the check
  bool ok = true;
  uint64_t free_bytes = 0;  // for an unprivileged user (f_bavail)
  std::string message;      // why new sandboxes are refused; empty when ok
};

// statvfs(path) against floor_bytes. A path that cannot be examined counts as below the floor
// (refusing is the safe side), with the reason in `message`.
DiskFloor CheckDiskFloor(const std::string& path, uint64_t floor_bytes);

// {"path", "free_bytes", "min_free_bytes", "ok", "detail"}: for /readyz and /v1/info.
Json DiskFloorJson(const DiskFloor& f);

// Sum of SandboxInfo::disk_used_bytes per backend (backends whose sandboxes have no disk are
// listed with 0): agentbox_sandbox_disk_bytes{backend}.
std::map<std::string, uint64_t> DiskUsedByBackend(const std::vector<SandboxInfo>& sandboxes);

// The "disk" object of a sandbox in the API: {"used_bytes", "limit_bytes"}, null values where
// unknown (no disk of its own, or no limit).
Json SandboxDiskJson(const SandboxInfo& info);

}  // namespace agentbox::daemon
