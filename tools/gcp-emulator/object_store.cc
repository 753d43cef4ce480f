#include "object_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "common/fs_util.h"
#include "common/log.h"
#include "common/time_util.h"
#include "common/utf8.h"

namespace agentbox::gcpemu {
namespace {

int64_t MtimeNs(const struct stat& st) {
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

bool IsDir(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// mkdir -p of the directories above `rel` (relative to `root`). Fails when a component exists
// as a file: in Cloud Storage "a" and "a/b" can both be objects, in a file tree they cannot.
ApiResult<void> MakeParents(const std::string& root, const std::string& rel) {
  size_t pos = 0;
  while ((pos = rel.find('/', pos)) != std::string::npos) {
    const std::string dir = root + "/" + rel.substr(0, pos);
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
      return ApiFail(500, "cannot create " + dir + ": " + std::strerror(errno));
    }
    if (!IsDir(dir)) {
      return ApiFail(409, "object '" + rel + "' cannot be stored: object '" + rel.substr(0, pos) +
                              "' exists, and this emulator keeps objects as files (a name cannot "
                              "be both an object and a prefix of one)");
    }
    ++pos;
  }
  return {};
}

constexpr char kJournal[] = "/objects.jsonl";

}  // namespace

Json ObjectToJournal(const ObjectMeta& m) {
  return Json{{"g", m.generation}, {"mg", m.metageneration}, {"s", m.size},  {"ct", m.content_type},
              {"md", m.metadata},  {"x", m.extra},           {"md5", m.md5}, {"crc", m.crc32c},
              {"c", m.created},    {"u", m.updated},         {"ino", m.ino}, {"mt", m.mtime_ns}};
}

ObjectMeta ObjectFromJournal(const std::string& name, const Json& j) {
  ObjectMeta m;
  m.name = name;
  m.generation = j.value("g", int64_t{0});
  m.metageneration = j.value("mg", int64_t{1});
  m.size = j.value("s", uint64_t{0});
  m.content_type = j.value("ct", std::string("application/octet-stream"));
  if (j.contains("md") && j["md"].is_object()) {
    for (const auto& [k, v] : j["md"].items()) {
      if (v.is_string()) {
        m.metadata[k] = v.get<std::string>();
      }
    }
  }
  if (j.contains("x") && j["x"].is_object()) {
    m.extra = j["x"];
  }
  m.md5 = j.value("md5", std::string());
  m.crc32c = j.value("crc", std::string());
  m.created = j.value("c", 0.0);
  m.updated = j.value("u", 0.0);
  m.ino = j.value("ino", uint64_t{0});
  m.mtime_ns = j.value("mt", int64_t{0});
  return m;
}

std::optional<std::string> ObjectStore::BadBucketName(const std::string& name) {
  if (name.size() < 3 || name.size() > 63) {
    return "bucket names must be 3 to 63 characters long";
  }
  for (const char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.')) {
      return "bucket names contain only lower-case letters, digits, '-', '_' and '.'";
    }
  }
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!alnum(name.front()) || !alnum(name.back())) {
    return "bucket names start and end with a letter or digit";
  }
  return std::nullopt;
}

std::optional<std::string> ObjectStore::BadObjectName(const std::string& name) {
  if (name.empty() || name.size() > 1024) {
    return "object names are 1 to 1024 bytes long";
  }
  if (!IsValidUtf8(name)) {
    return "object names must be valid UTF-8";
  }
  if (name.find_first_of("\r\n") != std::string::npos || name.find('\0') != std::string::npos) {
    return "object names cannot contain carriage returns, line feeds or NUL";
  }
  if (name.front() == '/') {
    return "this emulator keeps objects as files: names cannot start with '/'";
  }
  size_t start = 0;
  while (start < name.size()) {
    size_t end = name.find('/', start);
    const bool last = end == std::string::npos;
    if (last) {
      end = name.size();
    }
    const std::string_view seg = std::string_view(name).substr(start, end - start);
    if (seg == "." || seg == ".." || (seg.empty() && !last)) {
      return "this emulator keeps objects as files: names cannot contain empty, '.' or '..' "
             "path segments";
    }
    if (seg.size() > 255) {
      return "this emulator keeps objects as files: a path segment is at most 255 bytes";
    }
    start = end + 1;
  }
  return std::nullopt;
}

Result<std::unique_ptr<ObjectStore>> ObjectStore::Open(const std::string& dir) {
  for (const auto& d : {dir, dir + "/buckets", dir + "/meta", dir + "/tmp", dir + "/uploads"}) {
    if (auto r = EnsureDir(d, 0755); !r) {
      return Fail(r.error());
    }
  }
  std::unique_ptr<ObjectStore> s(new ObjectStore(dir));
  for (const auto* sub : {"/meta", "/buckets"}) {
    DIR* dp = ::opendir((dir + sub).c_str());
    if (dp == nullptr) {
      return Fail(ErrnoError(errno, "open " + dir + sub));
    }
    while (auto* e = ::readdir(dp)) {
      const std::string name = e->d_name;
      if (name != "." && name != ".." && !BadBucketName(name) && !s->buckets_.count(name)) {
        if (auto r = s->LoadBucket(name); !r) {
          ::closedir(dp);
          return Fail(r.error());
        }
      }
    }
    ::closedir(dp);
  }
  return s;
}

Result<void> ObjectStore::LoadBucket(const std::string& name) {
  const std::string meta_dir = dir_ + "/meta/" + name;
  if (auto r = EnsureDir(meta_dir, 0755); !r) {
    return r;
  }
  if (auto r = EnsureDir(BucketDir(name), 0755); !r) {
    return r;
  }
  Bucket b;
  b.meta.name = name;
  b.meta.project = "emulator";
  b.meta.created = NowUnix();
  if (auto text = ReadSmallFile(meta_dir + "/bucket.json")) {
    auto j = Json::parse(*text, nullptr, false);
    if (j.is_object()) {
      b.meta.project = j.value("project", b.meta.project);
      b.meta.created = j.value("created", b.meta.created);
      b.meta.metageneration = j.value("metageneration", int64_t{1});
    }
  } else {
    Json j{{"project", b.meta.project}, {"created", b.meta.created}, {"metageneration", 1}};
    if (auto w = WriteFileAtomic(meta_dir + "/bucket.json", DumpJson(j), 0644); !w) {
      return w;
    }
  }
  // Replay the journal: the last line for a name wins; a torn last line (crash) is ignored.
  if (auto text = ReadSmallFile(meta_dir + kJournal, size_t{1} << 34)) {
    size_t pos = 0;
    while (pos < text->size()) {
      size_t nl = text->find('\n', pos);
      if (nl == std::string::npos) {
        nl = text->size();
      }
      auto j = Json::parse(std::string_view(*text).substr(pos, nl - pos), nullptr, false);
      pos = nl + 1;
      ++b.journal_lines;
      if (!j.is_object() || !j.contains("n") || !j["n"].is_string()) {
        continue;
      }
      const std::string n = j["n"].get<std::string>();
      if (j.contains("m")) {
        ObjectMeta m = ObjectFromJournal(n, j["m"]);
        last_generation_ = std::max(last_generation_, m.generation);
        b.objects[n] = std::move(m);
      } else {
        b.objects.erase(n);
      }
    }
  }
  b.journal.Reset(
      ::open((meta_dir + kJournal).c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644));
  if (!b.journal) {
    return Fail(ErrnoError(errno, "open " + meta_dir + kJournal));
  }
  buckets_.emplace(name, std::move(b));
  return {};
}

ObjectStore::Bucket* ObjectStore::FindLocked(const std::string& name) {
  auto it = buckets_.find(name);
  if (it != buckets_.end()) {
    return &it->second;
  }
  // A directory made by hand under DIR/buckets is a bucket too.
  if (!BadBucketName(name) && IsDir(BucketDir(name)) && LoadBucket(name)) {
    return &buckets_.at(name);
  }
  return nullptr;
}

int64_t ObjectStore::NextGenerationLocked() {
  // Microseconds since the epoch, like Cloud Storage's, and strictly increasing.
  const int64_t now_us = std::chrono::duration_cast<std::chrono::microseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  last_generation_ = std::max(now_us, last_generation_ + 1);
  return last_generation_;
}

void ObjectStore::AppendJournalLocked(Bucket& b, const Json& line) {
  const std::string text = DumpJson(line) + "\n";
  if (::write(b.journal.Get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    Log(LogLevel::kError, "gcpemu.journal_write_failed", "bucket={} errno={}", b.meta.name, errno);
  }
  ++b.journal_lines;
  if (b.journal_lines < 2 * b.objects.size() + 256) {
    return;
  }
  // Compact: rewrite the live entries and swap the file in.
  const std::string path = dir_ + "/meta/" + b.meta.name + kJournal;
  std::string all;
  for (const auto& [n, m] : b.objects) {
    all += DumpJson(Json{{"n", n}, {"m", ObjectToJournal(m)}}) + "\n";
  }
  if (WriteFileAtomic(path, all, 0644)) {
    b.journal.Reset(::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC));
    b.journal_lines = b.objects.size();
  }
}

void ObjectStore::RecordLocked(Bucket& b, const ObjectMeta& m) {
  b.objects[m.name] = m;
  AppendJournalLocked(b, Json{{"n", m.name}, {"m", ObjectToJournal(m)}});
}

void ObjectStore::EraseLocked(Bucket& b, const std::string& name) {
  if (b.objects.erase(name) > 0) {
    AppendJournalLocked(b, Json{{"n", name}, {"x", 1}});
  }
}

std::optional<ObjectMeta> ObjectStore::ReconcileFileLocked(Bucket& b, const std::string& name,
                                                           const struct stat& st) {
  auto it = b.objects.find(name);
  if (it != b.objects.end() && it->second.ino == st.st_ino && it->second.mtime_ns == MtimeNs(st) &&
      it->second.size == static_cast<uint64_t>(st.st_size)) {
    return it->second;
  }
  // New or rewritten behind our back (a container's write through a volume).
  auto h = HashFile(BucketDir(b.meta.name) + "/" + name);
  if (!h) {
    EraseLocked(b, name);
    return std::nullopt;
  }
  ObjectMeta m;
  if (it != b.objects.end()) {
    m = it->second;
  } else {
    m.name = name;
  }
  m.generation = NextGenerationLocked();
  m.metageneration = 1;
  m.size = h->size;
  m.md5 = h->md5;
  m.crc32c = h->crc32c;
  m.created = m.updated = NowUnix();
  m.ino = st.st_ino;
  m.mtime_ns = MtimeNs(st);
  RecordLocked(b, m);
  return m;
}

std::optional<ObjectMeta> ObjectStore::ReconcileLocked(Bucket& b, const std::string& name) {
  const std::string path = BucketDir(b.meta.name) + "/" + name;
  struct stat st {};
  const bool exists = ::lstat(path.c_str(), &st) == 0;
  if (!name.empty() && name.back() == '/') {
    // A "folder placeholder" object: a directory whose existence the journal vouches for.
    auto it = b.objects.find(name);
    if (exists && S_ISDIR(st.st_mode) && it != b.objects.end()) {
      return it->second;
    }
    if (it != b.objects.end()) {
      EraseLocked(b, name);
    }
    return std::nullopt;
  }
  if (!exists || !S_ISREG(st.st_mode)) {
    EraseLocked(b, name);
    return std::nullopt;
  }
  return ReconcileFileLocked(b, name, st);
}

void ObjectStore::ReconcileTreeLocked(Bucket& b, const std::string& prefix) {
  // Walk from the directory the prefix names; in it, only the entries the prefix's last,
  // partial segment allows ("sandboxes/ab" walks sandboxes/ab*, not all of sandboxes/).
  const size_t slash = prefix.rfind('/');
  const std::string dir_prefix = slash == std::string::npos ? "" : prefix.substr(0, slash + 1);
  const std::string first_filter = prefix.substr(dir_prefix.size());
  const std::string root = BucketDir(b.meta.name);
  std::map<std::string, bool> seen;
  // Iterative walk that never follows symlinks (lstat) and skips names that cannot be objects.
  std::vector<std::string> todo{dir_prefix};
  while (!todo.empty()) {
    const std::string rel = todo.back();
    todo.pop_back();
    DIR* dp = ::opendir((root + "/" + rel).c_str());
    if (dp == nullptr) {
      continue;
    }
    while (auto* e = ::readdir(dp)) {
      const std::string n = e->d_name;
      if (n == "." || n == "..") {
        continue;
      }
      const std::string child = rel + n;
      if (rel == dir_prefix && !n.starts_with(first_filter)) {
        continue;
      }
      struct stat st {};
      if (::lstat((root + "/" + child).c_str(), &st) != 0) {
        continue;
      }
      if (S_ISDIR(st.st_mode)) {
        if (b.objects.count(child + "/")) {
          seen[child + "/"] = true;
        }
        todo.push_back(child + "/");
      } else if (S_ISREG(st.st_mode) && !BadObjectName(child)) {
        seen[child] = true;
        ReconcileFileLocked(b, child, st);
      }
    }
    ::closedir(dp);
  }
  for (auto it = b.objects.lower_bound(prefix);
       it != b.objects.end() && it->first.compare(0, prefix.size(), prefix) == 0;) {
    const std::string n = it->first;
    ++it;
    if (!seen.count(n)) {
      EraseLocked(b, n);
    }
  }
}

ApiResult<void> ObjectStore::Check(const std::optional<ObjectMeta>& cur, const Preconditions& p,
                                   bool is_read) {
  const int64_t gen = cur ? cur->generation : 0;
  const std::string what = "At least one of the pre-conditions you specified did not hold.";
  if (p.generation_match && *p.generation_match != gen) {
    return ApiFail(412, what + " (ifGenerationMatch=" + std::to_string(*p.generation_match) +
                            ", live generation " + std::to_string(gen) + ")");
  }
  if (p.metageneration_match && (!cur || cur->metageneration != *p.metageneration_match)) {
    return ApiFail(
        412, what + " (ifMetagenerationMatch=" + std::to_string(*p.metageneration_match) + ")");
  }
  if (p.generation_not_match && cur && *p.generation_not_match == gen) {
    return is_read ? ApiFail(304, "Not Modified", "notModified")
                   : ApiFail(412, what + " (ifGenerationNotMatch)");
  }
  if (p.metageneration_not_match && cur && *p.metageneration_not_match == cur->metageneration) {
    return is_read ? ApiFail(304, "Not Modified", "notModified")
                   : ApiFail(412, what + " (ifMetagenerationNotMatch)");
  }
  return {};
}

ApiResult<BucketMeta> ObjectStore::CreateBucket(const std::string& name,
                                                const std::string& project) {
  if (auto bad = BadBucketName(name)) {
    return ApiFail(400, "Invalid bucket name: '" + name + "': " + *bad);
  }
  std::lock_guard lock(mu_);
  if (FindLocked(name) != nullptr) {
    return ApiFail(409,
                   "Your previous request to create the named bucket succeeded and you already "
                   "own it.",
                   "conflict");
  }
  const std::string meta_dir = dir_ + "/meta/" + name;
  if (auto r = EnsureDir(meta_dir, 0755); !r) {
    return tl::unexpected(FromError(r.error()));
  }
  Json j{{"project", project}, {"created", NowUnix()}, {"metageneration", 1}};
  if (auto w = WriteFileAtomic(meta_dir + "/bucket.json", DumpJson(j), 0644); !w) {
    return tl::unexpected(FromError(w.error()));
  }
  if (auto r = LoadBucket(name); !r) {
    return tl::unexpected(FromError(r.error()));
  }
  return buckets_.at(name).meta;
}

ApiResult<BucketMeta> ObjectStore::GetBucket(const std::string& name) {
  std::lock_guard lock(mu_);
  Bucket* b = FindLocked(name);
  if (b == nullptr) {
    return ApiFail(404, "The specified bucket does not exist.");
  }
  return b->meta;
}

std::vector<BucketMeta> ObjectStore::ListBuckets() {
  std::lock_guard lock(mu_);
  std::vector<BucketMeta> out;
  for (const auto& [n, b] : buckets_) {
    out.push_back(b.meta);
  }
  return out;
}

ApiResult<void> ObjectStore::DeleteBucket(const std::string& name) {
  std::lock_guard lock(mu_);
  Bucket* b = FindLocked(name);
  if (b == nullptr) {
    return ApiFail(404, "The specified bucket does not exist.");
  }
  ReconcileTreeLocked(*b, "");
  if (!b->objects.empty()) {
    return ApiFail(409, "The bucket you tried to delete is not empty.", "conflict");
  }
  RemoveTree(BucketDir(name));
  RemoveTree(dir_ + "/meta/" + name);
  buckets_.erase(name);
  return {};
}

ApiResult<ObjectMeta> ObjectStore::Get(const std::string& bucket, const std::string& name) {
  std::lock_guard lock(mu_);
  Bucket* b = FindLocked(bucket);
  if (b == nullptr) {
    return ApiFail(404, "The specified bucket does not exist.");
  }
  auto m = ReconcileLocked(*b, name);
  if (!m) {
    return ApiFail(404, "No such object: " + bucket + "/" + name);
  }
  return *m;
}

ApiResult<ObjectMeta> ObjectStore::Commit(const std::string& bucket, const std::string& name,
                                          const std::string& tmp_path, const NewObject& obj,
                                          const Preconditions& pre) {
  auto drop = [&] { ::unlink(tmp_path.c_str()); };
  std::lock_guard lock(mu_);
  Bucket* b = FindLocked(bucket);
  if (b == nullptr) {
    drop();
    return ApiFail(404, "The specified bucket does not exist.");
  }
  auto cur = ReconcileLocked(*b, name);
  if (auto ok = Check(cur, pre); !ok) {
    drop();
    return tl::unexpected(ok.error());
  }
  const std::string root = BucketDir(bucket);
  const std::string path = root + "/" + name;
  if (auto r = MakeParents(root, name); !r) {
    drop();
    return tl::unexpected(r.error());
  }
  struct stat st {};
  if (name.back() == '/') {
    drop();
    if (obj.hashes.size != 0) {
      return ApiFail(400,
                     "this emulator keeps objects as files: an object whose name ends in "
                     "'/' is a directory and must be empty");
    }
    if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
      return ApiFail(500, "cannot create " + path + ": " + std::strerror(errno));
    }
  } else {
    if (IsDir(path)) {
      drop();
      return ApiFail(409, "object '" + name + "' cannot be stored: other objects are named '" +
                              name + "/...', and this emulator keeps objects as files");
    }
    if (::rename(tmp_path.c_str(), path.c_str()) != 0) {
      const int err = errno;
      drop();
      return ApiFail(500, "cannot store " + path + ": " + std::strerror(err));
    }
  }
  ::lstat(path.c_str(), &st);
  ObjectMeta m;
  m.name = name;
  m.generation = NextGenerationLocked();
  m.metageneration = 1;
  m.size = obj.hashes.size;
  if (!obj.content_type.empty()) {
    m.content_type = obj.content_type;
  }
  m.metadata = obj.metadata;
  m.extra = obj.extra;
  m.md5 = obj.hashes.md5;
  m.crc32c = obj.hashes.crc32c;
  m.created = m.updated = NowUnix();
  m.ino = st.st_ino;
  m.mtime_ns = MtimeNs(st);
  RecordLocked(*b, m);
  return m;
}

ApiResult<ObjectMeta> ObjectStore::Patch(const std::string& bucket, const std::string& name,
                                         const Json& patch, const Preconditions& pre) {
  std::lock_guard lock(mu_);
  Bucket* b = FindLocked(bucket);
  if (b == nullptr) {
    return ApiFail(404, "The specified bucket does not exist.");
  }
  auto cur = ReconcileLocked(*b, name);
  if (!cur) {
    return ApiFail(404, "No such object: " + bucket + "/" + name);
  }
  if (auto ok = Check(cur, pre); !ok) {
    return tl::unexpected(ok.error());
  }
  ObjectMeta m = *cur;
  if (patch.contains("contentType") && patch["contentType"].is_string()) {
    m.content_type = patch["contentType"].get<std::string>();
  }
  for (const char* k :
       {"cacheControl", "contentDisposition", "contentEncoding", "contentLanguage"}) {
    if (patch.contains(k)) {
      if (patch[k].is_null()) {
        m.extra.erase(k);
      } else if (patch[k].is_string()) {
        m.extra[k] = patch[k];
      }
    }
  }
  if (patch.contains("metadata")) {
    if (patch["metadata"].is_null()) {
      m.metadata.clear();
    } else if (patch["metadata"].is_object()) {
      for (const auto& [k, v] : patch["metadata"].items()) {
        if (v.is_null()) {
          m.metadata.erase(k);
        } else {
          m.metadata[k] = v.is_string() ? v.get<std::string>() : v.dump();
        }
      }
    }
  }
  ++m.metageneration;
  m.updated = NowUnix();
  RecordLocked(*b, m);
  return m;
}

void ObjectStore::RemoveEmptyParents(const std::string& bucket, const std::string& name) {
  std::string rel = name;
  if (!rel.empty() && rel.back() == '/') {
    rel.pop_back();
  }
  for (size_t slash; (slash = rel.rfind('/')) != std::string::npos;) {
    rel.resize(slash);
    if (::rmdir((BucketDir(bucket) + "/" + rel).c_str()) != 0) {
      break;  // not empty (or a placeholder's own directory with content): stop
    }
  }
}

ApiResult<void> ObjectStore::Delete(const std::string& bucket, const std::string& name,
                                    const Preconditions& pre) {
  std::lock_guard lock(mu_);
  Bucket* b = FindLocked(bucket);
  if (b == nullptr) {
    return ApiFail(404, "The specified bucket does not exist.");
  }
  auto cur = ReconcileLocked(*b, name);
  if (!cur) {
    return ApiFail(404, "No such object: " + bucket + "/" + name);
  }
  if (auto ok = Check(cur, pre); !ok) {
    return tl::unexpected(ok.error());
  }
  const std::string path = BucketDir(bucket) + "/" + name;
  if (name.back() == '/') {
    ::rmdir(path.c_str());  // stays as a plain directory when other objects live below it
  } else if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return ApiFail(500, "cannot delete " + path + ": " + std::strerror(errno));
  }
  EraseLocked(*b, name);
  RemoveEmptyParents(bucket, name);
  return {};
}

ApiResult<ListResult> ObjectStore::List(const std::string& bucket, const ListQuery& q) {
  std::lock_guard lock(mu_);
  Bucket* b = FindLocked(bucket);
  if (b == nullptr) {
    return ApiFail(404, "The specified bucket does not exist.");
  }
  ReconcileTreeLocked(*b, q.prefix);

  // Page tokens: 'i' + name resumes after that item, 'p' + prefix after everything under it.
  std::string after;
  bool after_prefix = false;
  if (!q.page_token.empty()) {
    auto t = Base64Decode(q.page_token);
    if (!t || t->size() < 2 || ((*t)[0] != 'i' && (*t)[0] != 'p')) {
      return ApiFail(400, "Invalid pageToken '" + q.page_token + "'");
    }
    after_prefix = (*t)[0] == 'p';
    after = t->substr(1);
  }
  std::string start = std::max(q.prefix, q.start_offset);
  if (!after.empty()) {
    start = std::max(start, after);
  }
  ListResult out;
  std::string last_prefix;
  std::string last_emitted;  // 'i' or 'p' + name: what a page token resumes after
  const size_t max = q.max_results == 0 ? 1000 : std::min<size_t>(q.max_results, 5000);
  for (auto it = b->objects.lower_bound(start); it != b->objects.end(); ++it) {
    const std::string& n = it->first;
    if (n.compare(0, q.prefix.size(), q.prefix) != 0) {
      break;
    }
    if (!q.end_offset.empty() && n >= q.end_offset) {
      break;
    }
    if (!after.empty() && (n == after || (after_prefix && n.starts_with(after)))) {
      continue;
    }
    std::string group;
    if (!q.delimiter.empty()) {
      const size_t d = n.find(q.delimiter, q.prefix.size());
      if (d != std::string::npos) {
        group = n.substr(0, d + q.delimiter.size());
      }
    }
    if (!group.empty() && group == last_prefix) {
      continue;
    }
    if (out.items.size() + out.prefixes.size() >= max) {
      out.next_page_token = Base64Encode(last_emitted);
      break;
    }
    if (!group.empty()) {
      last_prefix = group;
      last_emitted = "p" + group;
      out.prefixes.push_back(group);
      if (q.include_trailing_delimiter && n == group) {
        out.items.push_back(it->second);
      }
      continue;
    }
    last_emitted = "i" + n;
    out.items.push_back(it->second);
  }
  return out;
}

ApiResult<std::pair<UniqueFd, ObjectMeta>> ObjectStore::OpenObject(const std::string& bucket,
                                                                   const std::string& name) {
  std::lock_guard lock(mu_);
  Bucket* b = FindLocked(bucket);
  if (b == nullptr) {
    return ApiFail(404, "The specified bucket does not exist.");
  }
  const std::string path = BucketDir(bucket) + "/" + name;
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto m = ReconcileLocked(*b, name);
    if (!m) {
      return ApiFail(404, "No such object: " + bucket + "/" + name);
    }
    if (name.back() == '/') {
      UniqueFd empty(::open("/dev/null", O_RDONLY | O_CLOEXEC));
      return std::make_pair(std::move(empty), *m);
    }
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    struct stat st {};
    if (fd && ::fstat(fd.Get(), &st) == 0 && st.st_ino == m->ino && MtimeNs(st) == m->mtime_ns &&
        static_cast<uint64_t>(st.st_size) == m->size) {
      return std::make_pair(std::move(fd), *m);
    }
    // Rewritten between the reconcile and the open: look again.
  }
  return ApiFail(503, "object " + bucket + "/" + name + " is being rewritten; try again");
}

void ObjectStore::BumpGeneration(const std::string& bucket, const std::string& name) {
  std::lock_guard lock(mu_);
  Bucket* b = FindLocked(bucket);
  if (b == nullptr) {
    return;
  }
  auto m = ReconcileLocked(*b, name);
  if (!m) {
    return;
  }
  m->generation = NextGenerationLocked();
  m->metageneration = 1;
  m->updated = NowUnix();
  RecordLocked(*b, *m);
}

}  // namespace agentbox::gcpemu
