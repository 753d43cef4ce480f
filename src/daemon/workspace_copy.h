#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "api/sandbox_backend.h"
#include "common/error.h"

namespace agentbox::daemon {

struct ArchiveCopy {
  uint64_t entries = 0;  // as the receiving guest counted them
  uint64_t bytes = 0;    // of regular-file content
};

// Streams the tree under `from_dir` of the guest of `src` (GET /api/v1/file/archive) into
// `into_dir` of the guest of `dst` (POST /api/v1/file/archive), chunk by chunk through the
// calling thread: nothing is spooled, and memory stays at one block. `into_dir` must be missing
// or empty. The receiving guest unpacks into a temporary directory and renames it into place only
// when the whole archive arrived, so a failure on either side leaves nothing under `into_dir`.
// `idle` bounds each read and write. Blocks: worker threads only.
Result<ArchiveCopy> CopyArchive(const SandboxInfo& src, const std::string& from_dir,
                                const SandboxInfo& dst, const std::string& into_dir,
                                std::chrono::milliseconds idle);

}  // namespace agentbox::daemon
