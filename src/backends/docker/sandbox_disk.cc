#include "backends/docker/sandbox_disk.h"

#include <sys/stat.h>

#include "backends/disk/own_disk.h"
#include "common/fs_util.h"

namespace agentbox::docker {

Result<DockerDisk> SetUpDockerDisk(disk::DiskMaker* maker, const std::string& why_not,
                                   const std::string& dir, const ResourceLimits& asked,
                                   const ResourceLimits& applied) {
  auto own = disk::ProvideOwnDisk(maker, "docker", why_not, dir, asked.disk_bytes,
                                  applied.disk_bytes, 0, 0);
  if (!own) {
    return Fail(own.error());
  }
  DockerDisk out;
  out.note = own->note;
  if (own->root.empty()) {
    return out;
  }
  out.workspace = own->root + "/workspace";
  if (::mkdir(out.workspace.c_str(), 0755) != 0) {
    return Fail(ErrnoError(errno, "mkdir " + out.workspace));
  }
  return out;
}

std::optional<uint64_t> DockerDiskUsed(const std::string& dir) { return disk::OwnDiskUsed(dir); }

Result<void> RemoveSandboxDir(const std::string& dir) {
  if (auto r = disk::Unmount(dir + "/disk"); !r) {
    return Fail(r.error());
  }
  return RemoveTree(dir);
}

}  // namespace agentbox::docker
