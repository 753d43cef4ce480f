#pragma once

#include "common/error.h"
#include "common/json_util.h"
#include "guest/files/file_ops.h"

namespace agentbox::guest {

// Entry-level filesystem calls (`fs/*`, docs/guest-api.md) with everything a directory entry
// has: the calls E2B's envd Filesystem service makes, in agentbox's envelope. An entry is
//   {name, path, type: "file"|"directory"|"symlink"|"other", size, mode (permission bits),
//    permissions ("drwxr-xr-x"), owner, group, mtime (unix seconds), symlink_target?}
// Paths must be absolute or are resolved against cfg.base_dir. Thread-safe.

// {path} -> {entry} (lstat). kNotFound when missing.
Result<Json> FsStat(const Json& req, const FileConfig& cfg);
// {path, depth?=1} -> {entries} down to `depth` levels, sorted; kInvalidArgument for a file.
Result<Json> FsList(const Json& req, const FileConfig& cfg);
// {path, owner?} -> {entry, created}: like mkdir -p; the directories it creates are given to
// `owner` (a user in /etc/passwd, and that user's group; an unknown user changes nothing).
// created=false when it existed.
Result<Json> FsMakeDir(const Json& req, const FileConfig& cfg);
// {path, owner} -> {entry}: gives a file to a user of /etc/passwd and that user's group (an
// unknown user changes nothing). kNotFound for a missing path.
Result<Json> FsChown(const Json& req, const FileConfig& cfg);
// {source, destination} -> {entry} of the destination (rename(2); kNotFound when missing).
Result<Json> FsMove(const Json& req, const FileConfig& cfg);

}  // namespace agentbox::guest
