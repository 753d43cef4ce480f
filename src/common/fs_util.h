#pragma once

#include <sys/types.h>

#include <cstddef>
#include <string>
#include <string_view>

#include "common/error.h"
#include "common/unique_fd.h"

// Host file system helpers shared by the backends' state directories.
namespace agentbox {

// Whether anything (even a dangling symlink) exists at `path`.
bool PathExists(const std::string& path);

// Creates the directory `path` with `mode` unless something exists there already (which is then
// success, whatever it is). Errors: ErrnoError of "create <path>".
Result<void> EnsureDir(const std::string& path, mode_t mode);

// Creates a sandbox's state directory <state_dir>/<id> (mode 0700), creating <state_dir> (0700)
// first if missing, and returns its path. kConflict "sandbox '<id>' already exists" when
// <state_dir>/<id> exists: the directory is what reserves an id on disk.
Result<std::string> CreateSandboxDir(const std::string& state_dir, const std::string& id);

// Writes `content` to `path` by writing a temporary file next to it and renaming it over
// `path`: readers see the old or the new content, never a mix. Not fsync'd: the state it holds
// describes processes that do not survive a crash of the machine anyway.
Result<void> WriteFileAtomic(const std::string& path, std::string_view content, mode_t mode);

// WriteFileAtomic, and durable: the temporary file is fsync'd before the rename and the directory
// after it, so that after a crash of the machine `path` holds the old or the new content (never
// an empty or partial file) and the new one once this returned. For journals and records.
Result<void> WriteFileDurable(const std::string& path, std::string_view content, mode_t mode);

// fsyncs the directory that holds `path`, making a rename or unlink of `path` durable.
Result<void> SyncParentDir(const std::string& path);

// Reads at most `max_bytes` of `path`. kNotFound if it does not exist.
Result<std::string> ReadSmallFile(const std::string& path, size_t max_bytes = 1 << 20);

// Removes `path` and everything below it. Never follows symlinks and never descends into another
// mount (a mount point below `path` makes it fail with kConflict). Directories a sandbox made
// unwritable or unsearchable are opened up first. A missing `path` is success.
Result<void> RemoveTree(const std::string& path);

// Opens a new, nameless read-write file (mode 0600) in `dir`: it vanishes when the descriptor
// closes. Uses O_TMPFILE, or, where the file system lacks it (overlayfs before Linux 6.6, as under
// Docker, and several network file systems), a randomly named file unlinked at once.
Result<UniqueFd> OpenUnlinkedFile(const std::string& dir);

}  // namespace agentbox
