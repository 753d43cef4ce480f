// One image layer into a directory: the archive library's TreeWriter with the OCI whiteouts as
// its hook, and the layer's digests computed on the way.
#include "images/layer_unpack.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include <cerrno>
#include <memory>
#include <vector>

#include "archive/codec.h"
#include "archive/tar_reader.h"
#include "archive/tree_writer.h"
#include "images/digest.h"

namespace agentbox::images {
namespace {

constexpr std::string_view kWhiteout = ".wh.";
constexpr std::string_view kOpaque = ".wh..wh..opq";
constexpr std::string_view kMeta = ".wh..wh.";

// Counts and hashes what passes through.
struct Hashing {
  archive::Source inner;
  Sha256 hash;
  uint64_t bytes = 0;
  Result<size_t> Read(char* buf, size_t n) {
    auto got = inner(buf, n);
    if (got && *got > 0) {
      hash.Update(std::string_view(buf, *got));
      bytes += *got;
    }
    return got;
  }
};

// The OCI whiteouts of a layer (layer_unpack.h), seen before the writer writes an entry.
Result<bool> Whiteout(archive::TreeWriter& w, int parent, const std::vector<std::string>& parts,
                      const archive::Entry& e) {
  const std::string& leaf = parts.back();
  if (!leaf.starts_with(kWhiteout)) {
    return false;
  }
  if (leaf == kOpaque) {
    bool any = false;  // both: which one overlayfs reads depends on who mounts it
    for (const char* key : {"trusted.overlay.opaque", "user.overlay.opaque"}) {
      any |= ::fsetxattr(parent, key, "y", 1, 0) == 0;
    }
    if (any) {
      return true;
    }
    std::string dir;
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      dir += "/" + parts[i];
    }
    return Fail(ErrnoError(errno, "mark " + (dir.empty() ? "/" : dir) + " opaque (xattr)"));
  }
  if (leaf.starts_with(kMeta)) {
    return true;  // aufs hard-link bookkeeping: not part of the tree
  }
  const std::string hidden = leaf.substr(kWhiteout.size());
  if (hidden.empty() || hidden == "." || hidden == "..") {
    return Fail(w.Refused(e.name, "is a whiteout without a name"));
  }
  w.Remove(parent, hidden);
  if (::mknodat(parent, hidden.c_str(), S_IFCHR | 0000, makedev(0, 0)) != 0) {
    return Fail(ErrnoError(errno, "create the whiteout for " + e.name));
  }
  w.AddDiskBytes(4096);
  return true;
}

}  // namespace

Result<LayerUnpackResult> UnpackLayer(const archive::Source& source, int dirfd,
                                      const LayerUnpackOptions& options) {
  auto raw = std::make_shared<Hashing>();
  raw->inner = source;
  auto plain = std::make_shared<Hashing>();
  plain->inner = archive::MakeDecoder([raw](char* b, size_t n) { return raw->Read(b, n); });
  archive::TarReader reader([plain](char* b, size_t n) { return plain->Read(b, n); });
  archive::TreeWriterOptions wo;
  wo.noun = "image layer";
  wo.keep_owner = options.keep_owner;
  wo.max_entries = options.max_entries;
  wo.confine_symlinks = false;
  wo.replace_directories = true;
  wo.skip_devices = true;
  wo.hook = Whiteout;
  archive::TreeWriter writer(dirfd, wo);
  auto written = writer.Run(reader);
  if (!written) {
    return Fail(written.error());
  }
  // The digests cover every byte: read what follows the end marker (tar pads to a record).
  char sink[65536];
  for (;;) {
    auto n = plain->Read(sink, sizeof(sink));
    if (!n) {
      return Fail(n.error());
    }
    if (*n == 0) {
      break;
    }
  }
  for (;;) {
    auto n = raw->Read(sink, sizeof(sink));
    if (!n) {
      return Fail(n.error());
    }
    if (*n == 0) {
      break;
    }
  }
  LayerUnpackResult out;
  out.entries = written->entries;
  out.disk_bytes = written->disk_bytes;
  out.skipped_devices = written->skipped_devices;
  out.blob_digest = raw->hash.Finish();
  out.diff_id = plain->hash.Finish();
  if (!options.want_blob_digest.empty() && out.blob_digest != options.want_blob_digest) {
    return Fail(ErrorCode::kInvalidArgument, "corrupt image: layer blob " +
                                                 options.want_blob_digest + " has the digest " +
                                                 out.blob_digest);
  }
  if (!options.want_diff_id.empty() && out.diff_id != options.want_diff_id) {
    return Fail(ErrorCode::kInvalidArgument, "corrupt image: layer " + options.want_diff_id +
                                                 " unpacks to content with the digest " +
                                                 out.diff_id);
  }
  return out;
}

}  // namespace agentbox::images
