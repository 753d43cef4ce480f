#pragma once

// Bulk data written into files goes in writes of at most 64 KiB. The page cache sizes a new
// folio after the write that creates it, so one 1 MiB write(2) asks the page allocator for
// 128 KiB-1 MiB blocks, and on VMs with free page reporting (virtio-balloon, as on the
// Firecracker VMs agentbox is measured on: every free block of 128 KiB and more is reported to
// the host after ~2 s) those blocks have been handed back to the host, and writing into them
// faults every page in again on the host: 256 MiB written into a sandbox disk took 3.1-4.4 s in
// writes of 128 KiB-1 MiB and 0.15-0.33 s in writes of 32-64 KiB, on the same machine a second
// apart (docs/benchmarks.md). Blocks smaller than the reporting order are never reported.
// Elsewhere 64 KiB writes cost no more than larger ones.

#include <cstddef>
#include <string>
#include <string_view>

#include "common/error.h"

namespace agentbox {

inline constexpr size_t kPageCacheWriteBlock = 64u << 10;

// Writes all of `bytes` to `fd` in write(2) calls of at most kPageCacheWriteBlock bytes
// (EINTR retried). Errors: ErrnoError(errno, what).
Result<void> WriteInBlocks(int fd, std::string_view bytes, const std::string& what);

}  // namespace agentbox
