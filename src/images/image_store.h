#pragma once

// The image store: OCI images unpacked once into a content-addressed layer cache that the jail
// stacks with overlayfs. See docs/images.md.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <sys/types.h>

#include "common/error.h"
#include "common/metrics.h"
#include "images/classify.h"
#include "images/manifest.h"

namespace agentbox::images {

struct ImageStoreOptions {
  std::string dir;  // the cache; created (0700) if missing
  // Bound of the unpacked layers' size; layers no lease holds are evicted, least recently used
  // first, when it is passed. 0: unbounded. Layers in use are never evicted, so the cache can
  // exceed the bound while they are.
  uint64_t max_bytes = 10ull << 30;
  std::string docker_socket = "/var/run/docker.sock";
  // Keep the layers' owners and setuid bits (as root). Default: whether this process is root.
  std::optional<bool> keep_owner;
};

// An image ready to mount.
struct ResolvedImage {
  std::string id;                       // the configuration's digest, "sha256:..."
  std::vector<std::string> layer_dirs;  // unpacked layers, bottom first (overlayfs lowers)
  std::vector<std::string> diff_ids;    // parallel to layer_dirs
  ImageConfig config;
};

struct ImageCacheStats {
  uint64_t hits = 0;       // layers found unpacked
  uint64_t misses = 0;     // layers unpacked
  uint64_t evictions = 0;  // layers evicted
  uint64_t evicted_bytes = 0;
  uint64_t engine_exports = 0;  // images exported from the Docker engine
  uint64_t bytes = 0;           // unpacked layers now
  uint64_t layers = 0;
  uint64_t leased_layers = 0;  // in use by a sandbox (not evictable)
  uint64_t max_bytes = 0;
};

// Thread-safe. One store per directory and host (the daemon's); several processes over one
// directory coordinate unpacking through file locks but not eviction.
class ImageStore {
 public:
  using Progress = std::function<void(const std::string& line)>;

  // Creates the directories, removes what an interrupted unpack left (a staging directory
  // nobody holds) and reads the layers and leases there are.
  static Result<std::shared_ptr<ImageStore>> Open(ImageStoreOptions options);

  // The image named by `image` (kLayout, kArchive or kEngine), its layers unpacked. A layer
  // already in the cache is used as it is; a missing one is read from the source and unpacked
  // (once, however many callers ask at the same time). An engine image is exported only when a
  // layer is missing. With a non-empty `lease` the layers are held (never evicted) until
  // Release(lease); a lease names one holder ("jail.<sandbox id>") and Resolve replaces what
  // it held. Errors: kNotFound for an unknown image (with its name), kInvalidArgument for a
  // corrupt one ("corrupt image ..."), kUnavailable when the engine does not answer.
  Result<ResolvedImage> Resolve(const std::string& image, const std::string& lease = "",
                                const Progress& progress = nullptr);
  // Drops a lease (unknown ones are ignored).
  void Release(const std::string& lease);
  std::vector<std::string> Leases() const;
  // Evicts unleased layers, least recently used first, until the cache holds at most `target`
  // bytes; returns how many bytes went.
  uint64_t EvictTo(uint64_t target);
  ImageCacheStats Stats() const;
  const ImageStoreOptions& options() const { return opts_; }

 private:
  explicit ImageStore(ImageStoreOptions o) : opts_(std::move(o)) {}
  struct Layer {
    uint64_t bytes = 0;
    int64_t last_used = 0;  // unix ns
  };
  Result<ResolvedImage> ResolveEngine(const std::string& ref, const std::string& lease,
                                      const Progress& progress);
  Result<ResolvedImage> ResolveFromSource(class BlobSource& source, const std::string& what,
                                          const std::string& lease, const Progress& progress);
  // Makes sure the layer is unpacked; counts a hit or a miss.
  Result<void> EnsureLayer(class BlobSource& source, const LayerRef& layer,
                           const Progress& progress);
  // The pinned layers of one Resolve call are never evicted while it runs.
  void Pin(const std::vector<std::string>& hexes);
  void Unpin(const std::vector<std::string>& hexes);
  Result<ResolvedImage> Finish(const std::string& id, const ImageConfig& config,
                               const std::vector<std::string>& diff_ids, const std::string& lease);
  bool HaveLayer(const std::string& hex);
  void Touch(const std::string& hex);
  std::string LayerDir(const std::string& hex) const { return opts_.dir + "/layers/" + hex; }

  // An archive or layout already read, by path: reused while the file is unchanged (same inode,
  // size and mtime), so a cached image is not classified and read again on every create.
  struct Known {
    dev_t dev = 0;
    ino_t ino = 0;
    off_t size = 0;
    int64_t mtime_ns = 0;
    std::string id;
    ImageConfig config;
    std::vector<std::string> diff_ids;
  };
  std::optional<Result<ResolvedImage>> ResolveKnown(const std::string& path,
                                                    const std::string& lease);
  void Remember(const std::string& path, const std::string& id, const ParsedConfig& config);

  ImageStoreOptions opts_;
  mutable std::mutex mu_;
  std::map<std::string, Known> known_;  // guarded by mu_
  std::map<std::string, Layer> layers_;                   // by diff_id hex; guarded by mu_
  std::multiset<std::string> pinned_;                     // guarded by mu_
  std::map<std::string, std::vector<std::string>> leases_;  // guarded by mu_
  ImageCacheStats counters_;                              // hits .. engine_exports; mu_
};

// Sets the agentbox_image_cache_* series from `stats` (labels: backend="jail").
void ExportImageMetrics(const ImageCacheStats& stats, Metrics& metrics);

}  // namespace agentbox::images
