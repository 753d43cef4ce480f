#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/error.h"

namespace agentbox::jail {

// Writes `content` to `path` by writing a temporary file next to it and renaming it over
// `path`: readers see the old or the new content, never a mix. Not fsync'd: the state it holds
// describes processes that do not survive a crash of the machine anyway.
Result<void> WriteFileAtomic(const std::string& path, std::string_view content, mode_t mode);

// Reads at most `max_bytes` of `path`. kNotFound if it does not exist.
Result<std::string> ReadSmallFile(const std::string& path, size_t max_bytes = 1 << 20);

// Removes `path` and everything below it. Never follows symlinks and never descends into another
// mount (a mount point below `path` makes it fail with kConflict). Directories a sandbox made
// unwritable or unsearchable are opened up first. A missing `path` is success.
Result<void> RemoveTree(const std::string& path);

// Unmounts (lazily) every mount at or below `dir` in this process's mount namespace, deepest
// first. Returns how many were unmounted.
Result<int> UnmountBelow(const std::string& dir);

// Changes the owner of every entry below and including `root` from sandbox ids to host ids:
// id -> base + id for ids below `count`; ids outside the range become base (the sandbox's root).
// Used for a tarball extracted as the host's root so that the sandbox owns its files.
Result<void> ShiftOwnership(const std::string& root, uint32_t uid_base, uint32_t gid_base,
                            uint32_t count);


}  // namespace agentbox::jail
