#include "backends/docker/sandbox_disk.h"

#include <sys/stat.h>

#include "common/fs_util.h"

namespace agentbox::docker {

Result<DockerDisk> SetUpDockerDisk(disk::DiskMaker* maker, const std::string& why_not,
                                   const std::string& dir, const ResourceLimits& asked,
                                   const ResourceLimits& applied) {
  DockerDisk out;
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
                  "limits.disk_bytes cannot be enforced by this docker backend: " + why_not);
    }
    out.note = "disk limit not enforced: " + why_not;
    return out;
  }
  const std::string root = dir + "/disk";
  if (::mkdir(root.c_str(), 0755) != 0) {
    return Fail(ErrnoError(errno, "mkdir " + root));
  }
  if (auto r = maker->Provide(bytes, dir + "/disk.img", root, 0, 0); !r) {
    return Fail(r.error());
  }
  out.workspace = root + "/workspace";
  if (::mkdir(out.workspace.c_str(), 0755) != 0) {
    return Fail(ErrnoError(errno, "mkdir " + out.workspace));
  }
  return out;
}

std::optional<uint64_t> DockerDiskUsed(const std::string& dir) {
  auto u = disk::UsageOf(dir + "/disk");
  if (!u) {
    return std::nullopt;
  }
  return u->used_bytes;
}

Result<void> RemoveSandboxDir(const std::string& dir) {
  if (auto r = disk::Unmount(dir + "/disk"); !r) {
    return Fail(r.error());
  }
  return RemoveTree(dir);
}

}  // namespace agentbox::docker
