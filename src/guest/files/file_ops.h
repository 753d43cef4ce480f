#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/error.h"
#include "common/json_util.h"
#include "common/unique_fd.h"

namespace agentbox::guest {

// Limits and context for file operations. One instance is shared read-only by all requests.
struct FileConfig {
  // Relative paths are resolved against this directory.
  std::string base_dir = "/";
  // Largest `content` accepted by write (bytes) and largest file replace/search will load.
  uint64_t max_file_bytes = 64ull << 20;
  // Largest file accepted by upload (streamed; never held in memory).
  uint64_t max_upload_bytes = 1ull << 30;
  // Entries returned by list/find at most; more is reported as truncated.
  size_t max_entries = 100000;
  // Whether `sudo: true` may be honoured (the guest runs as root). When false, sudo -> 403.
  bool can_escalate = false;
  // Wall-clock budget of one search request's regex matching. std::regex backtracks, so a
  // pathological pattern is cut off here with kInvalidArgument rather than running forever.
  uint32_t search_timeout_ms = 10000;
  // Where an upload whose destination is not yet known is spooled. Empty: $TMPDIR, else /tmp.
  std::string upload_tmp_dir;
};

// Stack size a thread needs to run FileSearch without spawning a helper thread. Threads with a
// smaller stack (and the main thread) still work: search then runs on a temporary thread.
inline constexpr size_t kFileStackBytes = 64u << 20;

// Each operation takes the parsed request object of sandbox-api.md §1 "Files" and returns the
// response `data` object. Validation failures are kValidation naming the field; a missing file
// is kNotFound; a directory where a file is expected (or the reverse) is kInvalidArgument with a
// message saying so; a bad regex is kInvalidArgument. Thread-safe: no shared mutable state.
// `file`/`path` in a response is the resolved absolute path. `sudo: true` (read, write,
// replace, search) is kForbidden unless cfg.can_escalate, and a no-op otherwise.

// Lines are split after '\n' and keep their endings; start_line/end_line slice them like
// Python (0-based, end exclusive, negative counts from the end). Streams: never loads more
// than max_length (default 10000, capped at cfg.max_file_bytes) bytes. A longer result is cut
// to a complete UTF-8 character with `truncated: true`. -> {content, file, truncated}
Result<Json> FileRead(const Json& req, const FileConfig& cfg);
// Replaces the file atomically (temp file + rename; keeps an existing file's mode, else 0644)
// or appends; creates missing parent directories; writes through symlinks to their target.
// -> {file, bytes_written} counting the added newlines. Over cfg.max_file_bytes: kTooLarge.
Result<Json> FileWrite(const Json& req, const FileConfig& cfg);
// lstat: -> {path, exists, type?: "file"|"directory"|"symlink"|"other"}.
Result<Json> FileExists(const Json& req, const FileConfig& cfg);
// -> {path, deleted: true}. A non-empty directory needs `recursive`; symlinks are removed,
// never followed; "/" is refused.
Result<Json> FileDelete(const Json& req, const FileConfig& cfg);
// -> {path, entries: [{name, type, size, mode: "0644", mtime: unix seconds}], truncated},
// sorted by name; recursive names are relative to `path`, symlinked directories are not
// entered; at most cfg.max_entries entries.
Result<Json> FileList(const Json& req, const FileConfig& cfg);
// Literal, all occurrences, atomic rewrite (only when something matched).
// -> {file, replaced_count}
Result<Json> FileReplace(const Json& req, const FileConfig& cfg);
// ECMAScript std::regex against each line (without "\n" or "\r\n").
// -> {file, matches, line_numbers (0-based)}. A pattern that would exhaust the matcher's stack
// on a line or run past cfg.search_timeout_ms is kInvalidArgument.
Result<Json> FileSearch(const Json& req, const FileConfig& cfg);
// Glob relative to `path`: `*`, `?`, `[...]` within a segment, `**` any number of directories.
// As Python's glob: wildcards do not match a leading '.', `**` skips hidden entries; `**`
// never descends through a symlink. A trailing '/' matches directories only.
// -> {path, files: [absolute paths, sorted], truncated}
Result<Json> FileFind(const Json& req, const FileConfig& cfg);

// Resolves a request path: relative paths are joined to cfg.base_dir, then "." and ".." are
// resolved lexically. Empty -> kValidation (field "path"); a NUL byte -> kInvalidArgument.
// No confinement: the sandbox itself is the boundary.
Result<std::string> ResolvePath(const std::string& path, const FileConfig& cfg);

// Opens a regular file for streaming download (O_CLOEXEC). On success the fd is positioned at
// 0. A directory or other non-regular file is kInvalidArgument.
struct DownloadFile {
  UniqueFd fd;
  uint64_t size = 0;
  std::string name;  // base name, for Content-Disposition
};
Result<DownloadFile> OpenForDownload(const std::string& path, const FileConfig& cfg);

// Streams one uploaded file to disk without holding it in memory: bytes go to a temporary file
// in the destination's directory (created with parents), and Commit() renames it into place
// atomically. Destroying an uncommitted sink removes the temporary file. Not thread-safe.
class UploadSink {
 public:
  // `dest` may be empty when the destination is not yet known (multipart field order): bytes
  // then go to a temporary file under cfg.upload_tmp_dir ($TMPDIR, else /tmp, when empty) and
  // Commit(dest) moves them (copying across file systems). A directory at `dest` is
  // kInvalidArgument.
  static Result<UploadSink> Open(const std::string& dest, const FileConfig& cfg);
  UploadSink(UploadSink&&) noexcept;
  UploadSink& operator=(UploadSink&&) noexcept;
  ~UploadSink();

  // Appends bytes; kTooLarge once the total exceeds cfg.max_upload_bytes.
  Result<void> Write(std::string_view bytes);
  // Finishes the upload at `dest` (or the destination given to Open when empty): keeps an
  // existing file's mode (else 0644), creates parents, writes through symlinks. Returns the
  // resolved final path. Neither destination given: kValidation on field "path".
  Result<std::string> Commit(const std::string& dest = {});
  uint64_t bytes_written() const { return written_; }
  // The temporary file, for callers that fill it directly (splice(2) from a socket); they
  // report what they wrote with Wrote().
  int fd() const { return fd_.Get(); }
  // Counts `n` bytes written through fd(); kTooLarge past cfg.max_upload_bytes.
  Result<void> Wrote(uint64_t n);

 private:
  UploadSink() = default;
  FileConfig cfg_;
  std::string dest_;
  std::string temp_path_;
  UniqueFd fd_;
  uint64_t written_ = 0;
  bool committed_ = false;
};

}  // namespace agentbox::guest
