#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "backends/cloudrun/cloud.h"
#include "common/error.h"
#include "common/json_util.h"
#include "guest/files/file_ops.h"

namespace agentbox::cloudrun {

// The guest's file operations served from Cloud Storage, without an execution. Each request
// materialises just what the operation needs in a scratch directory (the object's bytes for
// read/search/replace/append, empty sparse files with the objects' sizes and times for
// list/find, a directory for a prefix) and runs the guest's own code there (guest/files), so
// the answers, limits and error messages are the guest's; paths in answers are mapped back to
// /workspace. Changes (write, replace, delete, upload) go back to the objects; replace and
// append are written with ifGenerationMatch of the bytes they read, so a concurrent writer is a
// 409, never a silent overwrite. Only /workspace persists in job mode: other paths are
// kInvalidArgument naming the alternative.
//
// `disk_bytes` (the sandbox's limits.disk_bytes; nullopt: none) bounds what passes through here:
// a write, replace or upload that would take the objects under the sandbox's /workspace past it
// fails like a full disk (kTooLarge, ENOSPC, "No space left on device") and nothing is stored.
// Checked against a listing of the prefix at the time of the write (one list per write). What
// commands write inside an execution is not bounded (docs/cloudrun.md). Thread-safe.
class WorkspaceFiles {
 public:
  WorkspaceFiles(std::shared_ptr<ObjectStore> store, std::string scratch_root,
                 guest::FileConfig limits);

  // op: read, write, exists, delete, list, replace, search, find (sandbox-api.md "Files").
  // kNotFound for an unknown op.
  Result<Json> Op(const std::string& op, const std::string& sandbox_id, const Json& req,
                  std::optional<uint64_t> disk_bytes = std::nullopt);

  // The file at `path` for streaming download (an unlinked local copy).
  Result<guest::DownloadFile> Download(const std::string& sandbox_id, const std::string& path);

  // Uploads a finished local file to `path` -> {file_path, file_size, success}.
  Result<Json> Store(const std::string& sandbox_id, const std::string& path,
                     const std::string& local_file, uint64_t size,
                     std::optional<uint64_t> disk_bytes = std::nullopt);

  // "/workspace/a/b" -> "a/b" ("" for /workspace itself); relative paths are taken from
  // /workspace. kInvalidArgument outside /workspace.
  static Result<std::string> Relative(const std::string& path);

  const guest::FileConfig& limits() const { return limits_; }
  const std::string& scratch_root() const { return scratch_root_; }

 private:
  // Fails like a full disk when replacing the object at `rel` (if any) by `new_size` bytes would
  // take the sandbox's /workspace past `disk_bytes`.
  Result<void> CheckRoom(const std::string& sandbox_id, const std::string& rel, uint64_t new_size,
                         std::optional<uint64_t> disk_bytes);

  std::shared_ptr<ObjectStore> store_;
  std::string scratch_root_;
  guest::FileConfig limits_;
};

}  // namespace agentbox::cloudrun
