#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "api_error.h"
#include "common/error.h"
#include "common/json_util.h"
#include "common/unique_fd.h"
#include "hashes.h"

// Cloud Storage's data model on a plain directory tree:
//
//   DIR/buckets/{bucket}/{object name}   the object's bytes, a regular file (so that a bind mount
//                                        into a container shows the bucket as files)
//   DIR/meta/{bucket}/bucket.json        the bucket resource
//   DIR/meta/{bucket}/objects.jsonl      journal of object metadata (generation, metageneration,
//                                        content type, custom metadata, hashes, and the file's
//                                        identity when that generation was recorded)
//   DIR/tmp/                             uploads in progress (same file system: commit = rename)
//
// Files may also change behind the store's back: a container writes into a read-write volume.
// The store reconciles on read ("scan on read"): every Get, Open and List compares the file's
// identity (inode, size, mtime) with the journal and records a new generation, with fresh
// hashes, when it differs, or forgets the object when its file is gone. Scanning on read is
// always exact at the moment of the read and needs no watcher that could miss events while the
// emulator was down; its cost (one lstat per object listed) is small at an emulator's scale.
// ctime is deliberately not part of the identity: chmod (volumes mounted with file-mode=) must
// not make a new generation.
namespace agentbox::gcpemu {

struct ObjectMeta {
  std::string name;
  int64_t generation = 0;
  int64_t metageneration = 1;
  uint64_t size = 0;
  std::string content_type = "application/octet-stream";
  std::map<std::string, std::string> metadata;
  Json extra =
      Json::object();  // cacheControl, contentDisposition, contentEncoding, contentLanguage
  std::string md5;     // base64
  std::string crc32c;  // base64, big-endian
  double created = 0;
  double updated = 0;
  // The file's identity when this generation was recorded.
  uint64_t ino = 0;
  int64_t mtime_ns = 0;
};

struct BucketMeta {
  std::string name;
  std::string project;
  double created = 0;
  int64_t metageneration = 1;
};

struct Preconditions {
  std::optional<int64_t> generation_match;  // 0 = must not exist
  std::optional<int64_t> generation_not_match;
  std::optional<int64_t> metageneration_match;
  std::optional<int64_t> metageneration_not_match;
};

// What an upload supplies besides its bytes.
struct NewObject {
  std::string content_type;
  std::map<std::string, std::string> metadata;
  Json extra = Json::object();
  FileHashes hashes;
};

struct ListQuery {
  std::string prefix;
  std::string delimiter;
  std::string page_token;
  size_t max_results = 1000;
  std::string start_offset;
  std::string end_offset;
  bool include_trailing_delimiter = false;
};

struct ListResult {
  std::vector<ObjectMeta> items;
  std::vector<std::string> prefixes;
  std::string next_page_token;
};

// Thread-safe: one mutex guards all metadata; file bytes are written outside it (to DIR/tmp) and
// published under it by rename, so preconditions are checked and applied atomically.
class ObjectStore {
 public:
  // Creates DIR's layout if missing and loads every bucket's journal. Buckets also exist as
  // plain directories under DIR/buckets made by hand (adopted on first use).
  static Result<std::unique_ptr<ObjectStore>> Open(const std::string& dir);

  std::string BucketDir(const std::string& bucket) const { return dir_ + "/buckets/" + bucket; }
  std::string TmpDir() const { return dir_ + "/tmp"; }
  const std::string& dir() const { return dir_; }

  // Why a name is not acceptable, or nullopt. Object names are Cloud Storage's rules plus the
  // limits of a file tree: no empty, "." or ".." path segments, no leading '/'.
  static std::optional<std::string> BadBucketName(const std::string& name);
  static std::optional<std::string> BadObjectName(const std::string& name);

  ApiResult<BucketMeta> CreateBucket(const std::string& name, const std::string& project);
  ApiResult<BucketMeta> GetBucket(const std::string& name);
  std::vector<BucketMeta> ListBuckets();
  ApiResult<void> DeleteBucket(const std::string& name);  // 409 unless empty

  ApiResult<ObjectMeta> Get(const std::string& bucket, const std::string& name);
  // Publishes the file at `tmp_path` as the new generation of `name` if `pre` holds (412
  // conditionNotMet otherwise; the temporary file is then removed).
  ApiResult<ObjectMeta> Commit(const std::string& bucket, const std::string& name,
                               const std::string& tmp_path, const NewObject& obj,
                               const Preconditions& pre);
  // Applies writable metadata fields of a JSON object resource (contentType, metadata (null
  // values delete keys), cacheControl, ...): metageneration + 1.
  ApiResult<ObjectMeta> Patch(const std::string& bucket, const std::string& name, const Json& patch,
                              const Preconditions& pre);
  ApiResult<void> Delete(const std::string& bucket, const std::string& name,
                         const Preconditions& pre);
  ApiResult<ListResult> List(const std::string& bucket, const ListQuery& q);
  // Opens the live object's bytes; the metadata describes exactly what was opened.
  ApiResult<std::pair<UniqueFd, ObjectMeta>> OpenObject(const std::string& bucket,
                                                        const std::string& name);
  // Rewrites `name` with its own content as a new generation: a concurrent writer winning a
  // race, for fault injection. Missing objects are left missing.
  void BumpGeneration(const std::string& bucket, const std::string& name);

  // 412 (or, for reads, 304) when `pre` does not hold for `cur`.
  static ApiResult<void> Check(const std::optional<ObjectMeta>& cur, const Preconditions& pre,
                               bool is_read = false);

 private:
  struct Bucket {
    BucketMeta meta;
    std::map<std::string, ObjectMeta> objects;
    UniqueFd journal;
    size_t journal_lines = 0;
  };

  explicit ObjectStore(std::string dir) : dir_(std::move(dir)) {}
  Result<void> LoadBucket(const std::string& name);
  Bucket* FindLocked(const std::string& name);
  std::optional<ObjectMeta> ReconcileLocked(Bucket& b, const std::string& name);
  // Reconciles every object whose name starts with `prefix`.
  void ReconcileTreeLocked(Bucket& b, const std::string& prefix);
  std::optional<ObjectMeta> ReconcileFileLocked(Bucket& b, const std::string& name,
                                                const struct stat& st);
  void RecordLocked(Bucket& b, const ObjectMeta& m);
  void EraseLocked(Bucket& b, const std::string& name);
  void AppendJournalLocked(Bucket& b, const Json& line);
  int64_t NextGenerationLocked();
  void RemoveEmptyParents(const std::string& bucket, const std::string& name);

  std::string dir_;
  std::mutex mu_;
  std::map<std::string, Bucket> buckets_;  // guarded by mu_
  int64_t last_generation_ = 0;            // guarded by mu_
};

Json ObjectToJournal(const ObjectMeta& m);
ObjectMeta ObjectFromJournal(const std::string& name, const Json& j);

}  // namespace agentbox::gcpemu
