#pragma once
// Test helper shared by the jail and docker disk-limit suites.

#include <sys/stat.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <system_error>

namespace agentbox::disk::testing {

// Host disk space taken by the sandboxes under the state directory `path` (allocated blocks, as
// du counts them: their sparse images included). Unlike the filesystem's free space, other tests
// writing to the same disk at the same time do not move it; nor do the templates and ready disks
// the backend makes in the background (.disks), which hold no sandbox's data. Mounted sandbox
// disks are not descended into: their files are already in their images' blocks.
inline uint64_t AllocatedBytes(const std::string& path) {
  struct stat top {};
  ::lstat(path.c_str(), &top);
  uint64_t total = 0;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(
           path, std::filesystem::directory_options::skip_permission_denied, ec);
       it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (it->path().filename() == ".disks") {
      it.disable_recursion_pending();
      continue;
    }
    struct stat st {};
    if (::lstat(it->path().c_str(), &st) != 0) {
      continue;
    }
    if (st.st_dev != top.st_dev) {
      it.disable_recursion_pending();
      continue;
    }
    if (!S_ISDIR(st.st_mode)) {
      total += static_cast<uint64_t>(st.st_blocks) * 512;
    }
  }
  return total;
}

}  // namespace agentbox::disk::testing
