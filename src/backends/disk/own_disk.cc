#include "backends/disk/own_disk.h"

#include <sys/stat.h>

namespace agentbox::disk {

Result<OwnDisk> ProvideOwnDisk(DiskMaker* maker, const std::string& backend,
                               const std::string& why_not, const std::string& dir,
                               std::optional<uint64_t> asked, std::optional<uint64_t> applied,
                               uint32_t uid, uint32_t gid) {
  OwnDisk out;
  if (!applied) {
    return out;
  }
  const uint64_t bytes = *applied;
  if (bytes < kMinDiskBytes || bytes > kMaxDiskBytes) {
    return Fail(ErrorCode::kInvalidArgument, "limits.disk_bytes must be between " +
                                                 std::to_string(kMinDiskBytes) + " and " +
                                                 std::to_string(kMaxDiskBytes));
  }
  if (maker == nullptr) {
    if (asked) {
      return Fail(ErrorCode::kInvalidArgument, "limits.disk_bytes cannot be enforced by this " +
                                                   backend + " backend: " + why_not);
    }
    out.note = "disk limit not enforced: " + why_not;
    return out;
  }
  const std::string root = dir + "/disk";
  if (::mkdir(root.c_str(), 0755) != 0) {
    return Fail(ErrnoError(errno, "mkdir " + root));
  }
  if (auto r = maker->Provide(bytes, dir + "/disk.img", root, uid, gid); !r) {
    return Fail(r.error());
  }
  out.root = root;
  return out;
}

std::optional<uint64_t> OwnDiskUsed(const std::string& dir) {
  auto u = UsageOf(dir + "/disk");
  if (!u) {
    return std::nullopt;
  }
  return u->used_bytes;
}

}  // namespace agentbox::disk
