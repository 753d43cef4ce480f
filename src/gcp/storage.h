#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "gcp/endpoints.h"
#include "gcp/transport.h"

namespace agentbox::gcp {

struct ObjectMeta {
  std::string name;
  std::string bucket;
  int64_t generation = 0;
  int64_t metageneration = 0;
  int64_t size = 0;
  std::string content_type;
  std::string updated;  // RFC 3339 as Google sends it
  std::map<std::string, std::string> metadata;
  std::string md5_hash{};  // base64 MD5 of the data, as Google sends it ("" when absent)
};

// Parses an object resource (int64 fields arrive as strings).
ObjectMeta ObjectMetaFromJson(const nlohmann::json& j);

struct InsertOptions {
  std::string content_type = "application/octet-stream";
  // Precondition: the live generation must be this; 0 = the object must not exist. A mismatch
  // is kConflict whose message contains "precondition".
  std::optional<int64_t> if_generation_match{};
  // Custom metadata; when non-empty the upload is multipart (metadata + media).
  std::map<std::string, std::string> metadata{};
};

struct ByteRange {
  int64_t offset = 0;
  std::optional<int64_t> length;  // absent: to the end
};

struct ObjectData {
  ObjectMeta meta;
  std::string data;
};

struct ListOptions {
  std::string prefix{};
  std::string delimiter{};
  std::string page_token{};
  int max_results = 0;  // 0: the service's default
};

struct ListPage {
  std::vector<ObjectMeta> items;
  std::vector<std::string> prefixes;
  std::string next_page_token;
};

struct ListResult {
  std::vector<ObjectMeta> items;
  std::vector<std::string> prefixes;
};

// Cloud Storage JSON API v1. Object names are sent percent-encoded as one path segment.
// Every call blocks the calling thread; thread-safe.
class StorageClient {
 public:
  StorageClient(std::shared_ptr<HttpTransport> http, Endpoints endpoints);

  // Bucket resource as JSON; kNotFound when the bucket does not exist, kForbidden without access.
  Result<nlohmann::json> GetBucket(const std::string& bucket);
  // POST /storage/v1/b?project=P (emulators and tests; deployments create buckets with gcloud).
  Result<nlohmann::json> CreateBucket(const std::string& project, const std::string& bucket);

  // Uploads `data` in one request: uploadType=media, or multipart when opts.metadata is set.
  // With a generation precondition, a 412 that follows a retried attempt is checked rather than
  // assumed: when the live object holds exactly `data` (same MD5), the lost attempt was ours
  // and its metadata is returned.
  Result<ObjectMeta> Insert(const std::string& bucket, const std::string& name,
                            std::string_view data, const InsertOptions& opts = {});
  // Uploads a local file: like Insert up to `resumable_threshold` bytes, else a resumable
  // session sending chunks of `chunk_size` (a multiple of 256 KiB) and resuming from the
  // server's acknowledged Range after a failed chunk.
  Result<ObjectMeta> UploadFile(const std::string& bucket, const std::string& name,
                                const std::string& path, const InsertOptions& opts = {});
  // Resumable upload of in-memory data (what UploadFile does for large files).
  Result<ObjectMeta> InsertResumable(const std::string& bucket, const std::string& name,
                                     std::string_view data, const InsertOptions& opts = {});

  // Downloads the object (or a byte range of it). meta comes from the x-goog-* response headers
  // (generation, metageneration, stored length, content type); when the service sends none,
  // from a metadata call before the download pinned to that generation.
  Result<ObjectData> Read(const std::string& bucket, const std::string& name,
                          std::optional<ByteRange> range = std::nullopt);
  // Streams the object to `sink` (return false to stop: kInternal "aborted"). A transfer that
  // breaks midway is resumed with a Range request from the last byte delivered, pinned to the
  // same generation. Returns the object's metadata as for Read.
  Result<ObjectMeta> ReadTo(const std::string& bucket, const std::string& name,
                            const std::function<bool(std::string_view)>& sink,
                            std::optional<ByteRange> range = std::nullopt);
  Result<ObjectMeta> Stat(const std::string& bucket, const std::string& name);

  // One page of a listing.
  Result<ListPage> List(const std::string& bucket, const ListOptions& opts);
  // Every page of a listing, in order.
  Result<ListResult> ListAll(const std::string& bucket, const std::string& prefix,
                             const std::string& delimiter = "");

  // Deletes one object; with a generation, only if it is still that one (else kConflict
  // "precondition"). A missing object is kNotFound, except after a retried attempt: then the
  // attempt whose answer was lost deleted it, and that is success.
  Result<void> Delete(const std::string& bucket, const std::string& name,
                      std::optional<int64_t> if_generation_match = std::nullopt);
  // Deletes every object whose name starts with `prefix` (objects that vanish meanwhile are
  // fine), up to 8 at a time. Returns how many were deleted; the first other failure stops it.
  Result<size_t> DeletePrefix(const std::string& bucket, const std::string& prefix);

  // Above this size UploadFile uses a resumable session (default 8 MiB).
  void set_resumable_threshold(int64_t bytes) { resumable_threshold_ = bytes; }
  // Resumable chunk size, rounded down to a multiple of 256 KiB, at least 256 KiB (default 8 MiB).
  void set_chunk_size(int64_t bytes);

 private:
  using ChunkReader = std::function<Result<std::string>(int64_t offset, int64_t length)>;
  Result<ObjectMeta> Resumable(const std::string& bucket, const std::string& name, int64_t total,
                               const ChunkReader& read, const InsertOptions& opts);
  std::string ObjectUrl(const std::string& bucket, const std::string& name) const;
  std::string UploadUrl(const std::string& bucket, const std::string& upload_type,
                        const std::string& name, const InsertOptions& opts) const;

  std::shared_ptr<HttpTransport> http_;
  Endpoints endpoints_;
  int64_t resumable_threshold_ = 8ll << 20;
  int64_t chunk_size_ = 8ll << 20;
  // Real Cloud Storage sends x-goog-generation with downloads; a service seen not to is read
  // with a metadata call first (see Read).
  std::atomic<bool> has_generation_headers_{true};
};

}  // namespace agentbox::gcp
