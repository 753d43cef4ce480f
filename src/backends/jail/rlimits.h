#pragma once

#include <cstdint>
#include <optional>

#include "common/error.h"

namespace agentbox::jail {

// Per-process limits of the jail's processes (inherited by every descendant).
struct RlimitsConfig {
  uint64_t core_bytes = 0;                  // no core dumps
  std::optional<uint64_t> open_files;       // RLIMIT_NOFILE; unset: inherited
  std::optional<uint64_t> file_size_bytes;  // RLIMIT_FSIZE; unset: unlimited
};

// Child side: sets soft = hard = the configured value. A value above the current hard limit is
// clamped to it (raising a hard limit needs privileges on the host).
Result<void> ApplyRlimits(const RlimitsConfig& cfg);

}  // namespace agentbox::jail
