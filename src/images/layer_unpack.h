#pragma once

// Unpacking one image layer (a tar, optionally gzip or zstd) into a directory that overlayfs can
// stack: whiteouts become overlayfs whiteouts, opaque markers overlayfs opaque directories.

#include <cstdint>
#include <string>
#include <string_view>

#include "archive/archive.h"
#include "common/error.h"

namespace agentbox::images {

struct LayerUnpackOptions {
  // Restore owner and group (and setuid/setgid bits) from the tar: only as root. Ownership is
  // kept as the image has it (ids 0..65535 of the image); the jail maps it into each sandbox's
  // range when it mounts the layer (an idmapped mount), so one copy serves every sandbox.
  bool keep_owner = false;
  uint64_t max_entries = 2'000'000;
  // The blob's digest (of the bytes as read, compressed or not) and the layer's diff_id (of the
  // uncompressed tar); either may be empty (not checked). Both are computed while unpacking.
  std::string want_blob_digest;
  std::string want_diff_id;
};

struct LayerUnpackResult {
  uint64_t entries = 0;
  uint64_t disk_bytes = 0;  // file sizes rounded up to 4 KiB, plus 4 KiB per other entry
  uint64_t skipped_devices = 0;
  std::string blob_digest;
  std::string diff_id;
};

// Unpacks the layer read from `source` into `dirfd`, an empty directory. The OCI layer rules
// (image-spec layer.md):
//   - ".wh.NAME" removes NAME of the layers below: a character device 0/0 named NAME here
//     (overlayfs's whiteout);
//   - ".wh..wh..opq" hides everything the layers below have in its directory: the directory gets
//     the xattrs trusted.overlay.opaque=y (read by an overlay mounted by the host's root) and
//     user.overlay.opaque=y (read by one mounted in a user namespace with "userxattr");
//   - other ".wh..wh.*" names (aufs bookkeeping) are skipped; device nodes are skipped (the jail
//     has its own /dev) and counted.
// Refused with kInvalidArgument naming the entry: absolute names, ".." components, entries that
// would be written through a symlink or a file of the layer, hard links to anything but an
// earlier file of the layer, a truncated or corrupt stream, and a digest that does not match.
// Symlinks are stored as they are (an absolute target is read inside the sandbox's root) and
// never followed while unpacking. On error the directory holds a partial tree: the caller
// unpacks into a staging directory and discards it.
Result<LayerUnpackResult> UnpackLayer(const archive::Source& source, int dirfd,
                                      const LayerUnpackOptions& options);

}  // namespace agentbox::images
