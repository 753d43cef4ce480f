#include "backends/jail/sandbox_disk.h"

#include <sys/stat.h>
#include <unistd.h>

#include "backends/jail/fs_util.h"

namespace agentbox::jail {

Result<SandboxDisk> SetUpSandboxDisk(disk::DiskMaker* maker, const std::string& why_not,
                                     const std::string& dir, const ResourceLimits& asked,
                                     const ResourceLimits& applied, uint32_t uid, uint32_t gid) {
  SandboxDisk out{dir, ""};
  if (!applied.disk_bytes) {
    return out;
  }
  const uint64_t bytes = *applied.disk_bytes;
  if (bytes < disk::kMinDiskBytes || bytes > disk::kMaxDiskBytes) {
    return Fail(ErrorCode::kInvalidArgument, "limits.disk_bytes must be between " +
                                                 std::to_string(disk::kMinDiskBytes) + " and " +
                                                 std::to_string(disk::kMaxDiskBytes));
  }
  if (maker == nullptr) {
    if (asked.disk_bytes) {
      return Fail(ErrorCode::kInvalidArgument,
                  "limits.disk_bytes cannot be enforced by this jail backend: " + why_not);
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
  // <dir>/workspace names the workspace on the host as it does without a disk of its own.
  if (::symlink("disk/workspace", (dir + "/workspace").c_str()) != 0) {
    return Fail(ErrnoError(errno, "symlink " + dir + "/workspace"));
  }
  out.root = root;
  return out;
}

std::optional<uint64_t> SandboxDiskUsed(const std::string& dir) {
  auto u = disk::UsageOf(dir + "/disk");
  if (!u) {
    return std::nullopt;
  }
  return u->used_bytes;
}

}  // namespace agentbox::jail
