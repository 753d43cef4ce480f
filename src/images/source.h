#pragma once

// Where an image's blobs come from: an OCI image-layout directory, or a tar file holding either
// `docker save`'s layout (manifest.json) or an OCI layout (index.json, blobs/). Reading a
// source gives the image's id, configuration and layers (LoadImage); layers are then read one
// by one as streams.

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "archive/archive.h"
#include "common/error.h"
#include "common/unique_fd.h"
#include "images/manifest.h"

namespace agentbox::images {

class BlobSource {
 public:
  virtual ~BlobSource() = default;
  // The whole blob at `path` (relative to the source), at most `max_bytes`: kNotFound when
  // missing, kTooLarge when bigger.
  virtual Result<std::string> ReadSmall(const std::string& path, size_t max_bytes) = 0;
  // The blob as a stream.
  virtual Result<archive::Source> Open(const std::string& path) = 0;
  virtual bool Exists(const std::string& path) = 0;
};

// A tar member: where its data is in the file. Symlinks are kept by name (docker save links
// duplicate layers to the first copy).
struct TarMember {
  uint64_t offset = 0;
  uint64_t size = 0;
  std::string link;  // symlink or hard link target ("" for a regular file)
  bool symlink = false;
};

// Reads up to n bytes at `offset`; fewer only at the end of the input.
using ReadAt = std::function<Result<size_t>(uint64_t offset, char* buf, size_t n)>;

// Lists the members of an uncompressed tar by reading only its headers (data is skipped by
// offset). Names are normalised ("./a//b" -> "a/b"). kInvalidArgument for a malformed or
// truncated header. At most `max_members` entries.
Result<std::map<std::string, TarMember>> ScanTar(const ReadAt& read_at, uint64_t size,
                                                 size_t max_members = 1000000);

// An uncompressed tar file opened once; blobs are read with pread.
class TarFileSource final : public BlobSource {
 public:
  static Result<std::unique_ptr<TarFileSource>> OpenFile(const std::string& path);
  Result<std::string> ReadSmall(const std::string& path, size_t max_bytes) override;
  Result<archive::Source> Open(const std::string& path) override;
  bool Exists(const std::string& path) override;

 private:
  TarFileSource(std::shared_ptr<UniqueFd> fd, std::map<std::string, TarMember> members)
      : fd_(std::move(fd)), members_(std::move(members)) {}
  Result<TarMember> Find(const std::string& path) const;
  std::shared_ptr<UniqueFd> fd_;
  std::map<std::string, TarMember> members_;
};

// An OCI image-layout directory. Paths never leave it (openat2 RESOLVE_BENEATH).
class DirSource final : public BlobSource {
 public:
  static Result<std::unique_ptr<DirSource>> OpenDir(const std::string& dir);
  Result<std::string> ReadSmall(const std::string& path, size_t max_bytes) override;
  Result<archive::Source> Open(const std::string& path) override;
  bool Exists(const std::string& path) override;

 private:
  explicit DirSource(UniqueFd dir) : dir_(std::move(dir)) {}
  Result<UniqueFd> OpenFile(const std::string& path);
  UniqueFd dir_;
};

// An image as a source describes it, its configuration checked against its digest.
struct LoadedImage {
  std::string id;  // the configuration's digest, "sha256:..."
  ParsedConfig config;
  std::string config_json;
  std::vector<LayerRef> layers;  // bottom first
  std::vector<std::string> tags;
};

// Reads the image of `source`: manifest.json (docker save) if present, else index.json (OCI;
// a nested index is followed once). A source with several images must hold exactly one for
// this machine's platform (linux/amd64 on x86_64). `what` names the source in errors.
// Malformed documents, a configuration whose digest does not match, or layer counts that
// disagree are kInvalidArgument ("corrupt image: ..."); a source with neither document too.
Result<LoadedImage> LoadImage(BlobSource& source, const std::string& what);

}  // namespace agentbox::images
