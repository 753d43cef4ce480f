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

// Changes the owner of every entry below and including `root` from sandbox ids to host ids:
// id -> base + id for ids below `count`; ids outside the range become base (the sandbox's root).
// Used for a tarball extracted as the host's root so that the sandbox owns its files.
Result<void> ShiftOwnership(const std::string& root, uint32_t uid_base, uint32_t gid_base,
                            uint32_t count);

}  // namespace agentbox::jail
