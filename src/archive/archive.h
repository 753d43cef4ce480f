#pragma once

// Directories as tar streams (POSIX pax/ustar; GNU long names are read too), optionally
// compressed with gzip or zstd. Used by the guest's /api/v1/file/archive and by `agentbox cp -r`
// on the client side, so both ends apply the same checks to what they unpack.

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "common/error.h"

namespace agentbox::archive {

// Receives output in blocks of up to ~1 MiB.
using Sink = std::function<Result<void>(std::string_view bytes)>;
// Fills up to `n` bytes of `buf`; returns 0 at the end of the input.
using Source = std::function<Result<size_t>(char* buf, size_t n)>;
// Called now and then with the bytes of file content moved so far.
using Progress = std::function<void(uint64_t bytes)>;

enum class Compression { kNone, kGzip, kZstd };
// "", "none", "tar" -> kNone; "gzip", "gz" -> kGzip; "zstd", "zst" -> kZstd; else kInvalidArgument.
Result<Compression> ParseCompression(std::string_view name);
// "application/x-tar", "application/gzip", "application/zstd".
const char* ContentType(Compression c);

struct Stats {
  uint64_t entries = 0;  // files, directories and links
  uint64_t bytes = 0;    // bytes of regular-file content
};

// Sum of the sizes of the regular files under `dir` (not following symlinks), for progress.
Result<Stats> Measure(const std::string& dir);

// Writes a tar of everything under `dir` to `sink`; entry names are relative to `dir` (the
// directory itself is not an entry). Regular files, directories, symlinks (stored, never
// followed) and hard links (files with several names inside the tree) are stored with their
// mode, owner and mtime; sockets, fifos and device nodes are skipped. `dir` not a directory is
// kInvalidArgument; missing is kNotFound. An error after output began leaves the stream
// incomplete: the caller must not present it as whole.
Result<Stats> Pack(const std::string& dir, Compression compression, const Sink& sink,
                   const Progress& progress = nullptr);

struct UnpackOptions {
  // Restore owner and group from the archive (only meaningful as root); else files belong to
  // the caller.
  bool keep_owner = false;
  // Replace an existing non-empty `dir`. Without it, `dir` must be missing or empty
  // (kConflict otherwise).
  bool overwrite = false;
  uint64_t max_entries = 1000000;
};

// Unpacks a tar (compression detected from its first bytes) into `dir`. Everything goes to a
// temporary directory beside `dir` first, which is renamed to `dir` only when the whole archive
// was read and checked: an error or an interrupted input leaves nothing under `dir` (and removes
// the temporary directory). Refused, with kInvalidArgument naming the entry: absolute names,
// ".." components, names longer than PATH_MAX or with a component over NAME_MAX, symlinks whose
// target is absolute or resolves outside `dir`, hard links to anything but an earlier entry,
// device nodes, and unknown entry types. Entries are created without ever following a symlink.
// Modes (setuid/setgid only with keep_owner) and mtimes are kept.
Result<Stats> Unpack(const Source& source, const std::string& dir, const UnpackOptions& options,
                     const Progress& progress = nullptr);

}  // namespace agentbox::archive
