#include "common/page_cache_write.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace agentbox {

Result<void> WriteInBlocks(int fd, std::string_view bytes, const std::string& what) {
  while (!bytes.empty()) {
    const ssize_t w = ::write(fd, bytes.data(), std::min(bytes.size(), kPageCacheWriteBlock));
    if (w < 0) {
      if (errno == EINTR) {
        continue;
      }
      return Fail(ErrnoError(errno, what));
    }
    bytes.remove_prefix(static_cast<size_t>(w));
  }
  return {};
}

}  // namespace agentbox
