#include "backends/jail/sandbox_disk.h"

#include <sys/stat.h>
#include <unistd.h>

#include "backends/disk/own_disk.h"
#include "backends/jail/fs_util.h"

namespace agentbox::jail {

Result<SandboxDisk> SetUpSandboxDisk(disk::DiskMaker* maker, const std::string& why_not,
                                     const std::string& dir, const ResourceLimits& asked,
                                     const ResourceLimits& applied, uint32_t uid, uint32_t gid) {
  auto own = disk::ProvideOwnDisk(maker, "jail", why_not, dir, asked.disk_bytes, applied.disk_bytes,
                                  uid, gid);
  if (!own) {
    return Fail(own.error());
  }
  SandboxDisk out{dir, own->note};
  if (own->root.empty()) {
    return out;
  }
  // <dir>/workspace names the workspace on the host as it does without a disk of its own.
  if (::symlink("disk/workspace", (dir + "/workspace").c_str()) != 0) {
    return Fail(ErrnoError(errno, "symlink " + dir + "/workspace"));
  }
  out.root = own->root;
  return out;
}

std::optional<uint64_t> SandboxDiskUsed(const std::string& dir) { return disk::OwnDiskUsed(dir); }

}  // namespace agentbox::jail
