#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/error.h"
#include "common/fs_util.h"  // WriteFileAtomic, ReadSmallFile, RemoveTree

namespace agentbox::jail {

// Unmounts (lazily) every mount at or below `dir` in this process's mount namespace, deepest
// first. Returns how many were unmounted.
Result<int> UnmountBelow(const std::string& dir);

}  // namespace agentbox::jail
