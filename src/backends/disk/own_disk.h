#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "backends/disk/disk.h"
#include "common/error.h"

namespace agentbox::disk {

// What the jail and docker backends do alike for limits.disk_bytes: a sandbox's own disk mounted
// at <dir>/disk (its image <dir>/disk.img).
struct OwnDisk {
  std::string root;  // <dir>/disk when a disk was made; empty when none (no limit, or noted)
  std::string note;  // why a default limit is not enforced
};

// `asked`: disk_bytes as the client gave it (explicit); `applied`: with the backend's default.
// Refuses a size outside kMinDiskBytes..kMaxDiskBytes (kInvalidArgument). `maker` null: no disks
// can be made (`why_not` says why); then an explicit disk_bytes is refused with kInvalidArgument
// ("... by this <backend> backend: <why_not>") and a default one noted as not enforced, never
// silently dropped. The disk's root is owned by uid:gid.
Result<OwnDisk> ProvideOwnDisk(DiskMaker* maker, const std::string& backend,
                               const std::string& why_not, const std::string& dir,
                               std::optional<uint64_t> asked, std::optional<uint64_t> applied,
                               uint32_t uid, uint32_t gid);

// Bytes in use on the disk at <dir>/disk; nullopt when none is mounted there.
std::optional<uint64_t> OwnDiskUsed(const std::string& dir);

}  // namespace agentbox::disk
