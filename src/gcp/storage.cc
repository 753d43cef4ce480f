#include "gcp/storage.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mutex>
#include <random>
#include <thread>

#include "common/json_util.h"
#include "common/log.h"
#include "common/unique_fd.h"
#include "gcp/errors.h"

namespace agentbox::gcp {
namespace {

constexpr const char* kService = "Cloud Storage";
constexpr int64_t kQuantum = 256 * 1024;  // resumable chunks are multiples of this
constexpr int kMaxResumes = 8;
constexpr size_t kDeleteParallelism = 8;

int64_t Int64Field(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) {
    return 0;
  }
  if (it->is_number_integer()) {
    return it->get<int64_t>();
  }
  if (it->is_string()) {
    return std::strtoll(it->get<std::string>().c_str(), nullptr, 10);
  }
  return 0;
}

std::string StrField(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

Result<nlohmann::json> ParseJson(const HttpResponse& resp, std::string_view what) {
  auto j = ParseUntrustedJson(resp.body);
  if (j.is_discarded() || !j.is_object()) {
    return Fail(ErrorCode::kUnavailable,
                fmt::format("{}: {} answered {} with a body that is not a JSON object", kService,
                            what, resp.status));
  }
  return j;
}

// Sends through the transport; a failure without any answer names the service too.
Result<HttpResponse> Send(HttpTransport& http, const HttpRequest& req) {
  auto resp = http.Send(req);
  if (!resp) {
    Error e = resp.error();
    e.message = std::string(kService) + ": " + e.message;
    return Fail(std::move(e));
  }
  return resp;
}

Result<HttpResponse> Expect2xx(Result<HttpResponse> resp) {
  if (!resp) {
    return Fail(resp.error());
  }
  if (resp->status < 200 || resp->status >= 300) {
    return Fail(ErrorFromResponse(kService, resp->status, resp->body));
  }
  return resp;
}

Result<ObjectMeta> MetaFromResponse(Result<HttpResponse> resp, std::string_view what) {
  auto ok = Expect2xx(std::move(resp));
  if (!ok) {
    return Fail(ok.error());
  }
  auto j = ParseJson(*ok, what);
  if (!j) {
    return Fail(j.error());
  }
  return ObjectMetaFromJson(*j);
}

// Object metadata from download headers; generation 0 when the service sent none.
ObjectMeta MetaFromHeaders(const HttpResponse& resp, const std::string& bucket,
                           const std::string& name) {
  ObjectMeta m;
  m.bucket = bucket;
  m.name = name;
  m.generation = std::strtoll(resp.Header("x-goog-generation").c_str(), nullptr, 10);
  m.metageneration = std::strtoll(resp.Header("x-goog-metageneration").c_str(), nullptr, 10);
  std::string stored = resp.Header("x-goog-stored-content-length");
  m.size = stored.empty() ? -1 : std::strtoll(stored.c_str(), nullptr, 10);
  m.content_type = resp.Header("content-type");
  for (const auto& [k, v] : resp.headers) {
    if (k.rfind("x-goog-meta-", 0) == 0) {
      m.metadata[k.substr(12)] = v;
    }
  }
  return m;
}

std::string RangeHeader(const ByteRange& r) {
  if (r.length) {
    return fmt::format("bytes={}-{}", r.offset, r.offset + *r.length - 1);
  }
  return fmt::format("bytes={}-", r.offset);
}

// The persisted length a 308 reports: "Range: bytes=0-N" -> N+1; no Range -> 0.
int64_t PersistedFromRange(const std::string& range) {
  auto dash = range.find('-');
  if (range.empty() || dash == std::string::npos) {
    return 0;
  }
  return std::strtoll(range.c_str() + dash + 1, nullptr, 10) + 1;
}

nlohmann::json UploadMetadata(const std::string& name, const InsertOptions& opts) {
  nlohmann::json j = {{"name", name}, {"contentType", opts.content_type}};
  if (!opts.metadata.empty()) {
    j["metadata"] = opts.metadata;
  }
  return j;
}

// Base64 of the MD5 of `data`, as Cloud Storage reports md5Hash.
std::string Md5Base64(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), digest, &len, EVP_md5(), nullptr) != 1) {
    return "";
  }
  unsigned char out[64];
  int n = EVP_EncodeBlock(out, digest, static_cast<int>(len));
  return std::string(reinterpret_cast<char*>(out), static_cast<size_t>(n));
}

}  // namespace

ObjectMeta ObjectMetaFromJson(const nlohmann::json& j) {
  ObjectMeta m;
  m.name = StrField(j, "name");
  m.bucket = StrField(j, "bucket");
  m.generation = Int64Field(j, "generation");
  m.metageneration = Int64Field(j, "metageneration");
  m.size = Int64Field(j, "size");
  m.content_type = StrField(j, "contentType");
  m.updated = StrField(j, "updated");
  m.md5_hash = StrField(j, "md5Hash");
  if (auto md = j.find("metadata"); md != j.end() && md->is_object()) {
    for (const auto& [k, v] : md->items()) {
      if (v.is_string()) {
        m.metadata[k] = v.get<std::string>();
      }
    }
  }
  return m;
}

StorageClient::StorageClient(std::shared_ptr<HttpTransport> http, Endpoints endpoints)
    : http_(std::move(http)), endpoints_(std::move(endpoints)) {}

void StorageClient::set_chunk_size(int64_t bytes) {
  chunk_size_ = std::max(kQuantum, bytes / kQuantum * kQuantum);
}

std::string StorageClient::ObjectUrl(const std::string& bucket, const std::string& name) const {
  return fmt::format("{}/storage/v1/b/{}/o/{}", endpoints_.storage, EncodePathSegment(bucket),
                     EncodePathSegment(name));
}

std::string StorageClient::UploadUrl(const std::string& bucket, const std::string& upload_type,
                                     const std::string& name, const InsertOptions& opts) const {
  std::string url =
      fmt::format("{}/upload/storage/v1/b/{}/o?uploadType={}&name={}", endpoints_.storage,
                  EncodePathSegment(bucket), upload_type, EncodeQueryValue(name));
  if (opts.if_generation_match) {
    url += fmt::format("&ifGenerationMatch={}", *opts.if_generation_match);
  }
  return url;
}

Result<nlohmann::json> StorageClient::GetBucket(const std::string& bucket) {
  HttpRequest req;
  req.url = fmt::format("{}/storage/v1/b/{}", endpoints_.storage, EncodePathSegment(bucket));
  auto resp = Expect2xx(Send(*http_, req));
  if (!resp) {
    return Fail(resp.error());
  }
  return ParseJson(*resp, "buckets.get");
}

Result<nlohmann::json> StorageClient::CreateBucket(const std::string& project,
                                                   const std::string& bucket) {
  HttpRequest req;
  req.method = "POST";
  req.url =
      fmt::format("{}/storage/v1/b?project={}", endpoints_.storage, EncodeQueryValue(project));
  req.headers = {{"Content-Type", "application/json"}};
  req.body = nlohmann::json{{"name", bucket}}.dump();
  auto resp = Expect2xx(Send(*http_, req));
  if (!resp) {
    return Fail(resp.error());
  }
  return ParseJson(*resp, "buckets.insert");
}

Result<ObjectMeta> StorageClient::Insert(const std::string& bucket, const std::string& name,
                                         std::string_view data, const InsertOptions& opts) {
  HttpRequest req;
  req.method = "POST";
  req.timeout = std::chrono::milliseconds(0);  // sized by the data: stall detection only
  if (opts.metadata.empty()) {
    req.url = UploadUrl(bucket, "media", name, opts);
    req.headers = {{"Content-Type", opts.content_type}};
    req.body.assign(data);
  } else {
    // multipart/related: a JSON metadata part, then the media. The boundary is random and
    // checked not to occur in the data.
    std::string boundary;
    std::mt19937_64 rng{std::random_device{}()};
    do {
      boundary = fmt::format("agentbox_{:016x}{:016x}", rng(), rng());
    } while (data.find(boundary) != std::string_view::npos);
    req.url = UploadUrl(bucket, "multipart", name, opts);
    req.headers = {{"Content-Type", "multipart/related; boundary=" + boundary}};
    req.body = fmt::format(
        "--{}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{}\r\n"
        "--{}\r\nContent-Type: {}\r\n\r\n",
        boundary, UploadMetadata(name, opts).dump(), boundary, opts.content_type);
    req.body.append(data);
    req.body += fmt::format("\r\n--{}--\r\n", boundary);
  }
  auto resp = Send(*http_, req);
  if (resp && resp->status == 412 && resp->attempts > 1 && opts.if_generation_match) {
    // Did an attempt whose answer was lost write this very object?
    auto live = Stat(bucket, name);
    if (live && !live->md5_hash.empty() && live->md5_hash == Md5Base64(data)) {
      Log(LogLevel::kInfo, "gcp.insert_retry_resolved",
          "bucket={} generation={} attempts={} reason=\"412 after a retry; the live object is "
          "ours\"",
          bucket, live->generation, resp->attempts);
      return live;
    }
  }
  return MetaFromResponse(std::move(resp), "objects.insert");
}

Result<ObjectMeta> StorageClient::Resumable(const std::string& bucket, const std::string& name,
                                            int64_t total, const ChunkReader& read,
                                            const InsertOptions& opts) {
  HttpRequest start;
  start.method = "POST";
  start.url = UploadUrl(bucket, "resumable", name, opts);
  start.headers = {{"Content-Type", "application/json; charset=UTF-8"},
                   {"X-Upload-Content-Type", opts.content_type},
                   {"X-Upload-Content-Length", std::to_string(total)}};
  start.body = UploadMetadata(name, opts).dump();
  auto started = Expect2xx(Send(*http_, start));
  if (!started) {
    return Fail(started.error());
  }
  std::string session = started->Header("location");
  if (session.empty()) {
    return Fail(
        ErrorCode::kUnavailable,
        fmt::format("{}: resumable upload of {} started without a Location", kService, name));
  }

  int64_t offset = 0;
  int resumes = 0;
  for (;;) {
    HttpRequest put;
    put.method = "PUT";
    put.url = session;
    // A chunk is not blindly re-sent: after a failure the session is asked what it has.
    put.idempotent = false;
    put.timeout = std::chrono::milliseconds(0);
    int64_t len = std::min(chunk_size_, total - offset);
    if (total == 0) {
      put.headers = {{"Content-Range", "bytes */0"}};
    } else {
      auto chunk = read(offset, len);
      if (!chunk) {
        return Fail(chunk.error());
      }
      put.body = std::move(*chunk);
      put.headers = {
          {"Content-Range", fmt::format("bytes {}-{}/{}", offset, offset + len - 1, total)}};
    }
    auto resp = Send(*http_, put);
    if (resp && (resp->status == 200 || resp->status == 201)) {
      return MetaFromResponse(std::move(resp), "objects.insert (resumable)");
    }
    if (resp && resp->status == 308) {
      int64_t persisted = PersistedFromRange(resp->Header("range"));
      if (persisted <= offset && ++resumes > kMaxResumes) {
        return Fail(ErrorCode::kUnavailable,
                    fmt::format("{}: resumable upload of {} makes no progress at byte {}", kService,
                                name, offset));
      }
      offset = persisted;
      continue;
    }
    bool transient = !resp || resp->status == 429 || resp->status >= 500;
    if (!transient) {
      return Fail(ErrorFromResponse(kService, resp->status, resp->body));
    }
    if (++resumes > kMaxResumes) {
      return resp ? Fail(ErrorFromResponse(kService, resp->status, resp->body))
                  : Fail(resp.error());
    }
    // Ask the session how much it has persisted, then go on from there.
    HttpRequest query;
    query.method = "PUT";
    query.url = session;
    query.headers = {{"Content-Range", fmt::format("bytes */{}", total)}};
    auto status = Send(*http_, query);
    if (!status) {
      return Fail(status.error());
    }
    if (status->status == 200 || status->status == 201) {
      return MetaFromResponse(std::move(status), "objects.insert (resumable)");
    }
    if (status->status != 308) {
      return Fail(ErrorFromResponse(kService, status->status, status->body));
    }
    offset = PersistedFromRange(status->Header("range"));
    Log(LogLevel::kInfo, "gcp.upload_resume", "bucket={} object_bytes={} resume_at={}", bucket,
        total, offset);
  }
}

Result<ObjectMeta> StorageClient::InsertResumable(const std::string& bucket,
                                                  const std::string& name, std::string_view data,
                                                  const InsertOptions& opts) {
  auto read = [data](int64_t off, int64_t len) -> Result<std::string> {
    return std::string(data.substr(static_cast<size_t>(off), static_cast<size_t>(len)));
  };
  return Resumable(bucket, name, static_cast<int64_t>(data.size()), read, opts);
}

Result<ObjectMeta> StorageClient::UploadFile(const std::string& bucket, const std::string& name,
                                             const std::string& path, const InsertOptions& opts) {
  auto fd = std::make_shared<UniqueFd>(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd->Valid()) {
    return Fail(ErrnoError(errno, "open " + path));
  }
  struct stat st {};
  if (::fstat(fd->Get(), &st) != 0) {
    return Fail(ErrnoError(errno, "stat " + path));
  }
  if (!S_ISREG(st.st_mode)) {
    return Fail(ErrorCode::kInvalidArgument, path + " is not a regular file");
  }
  const int64_t size = st.st_size;
  auto read = [fd, path](int64_t off, int64_t len) -> Result<std::string> {
    std::string buf(static_cast<size_t>(len), '\0');
    int64_t got = 0;
    while (got < len) {
      ssize_t n = ::pread(fd->Get(), buf.data() + got, static_cast<size_t>(len - got), off + got);
      if (n < 0 && errno == EINTR) {
        continue;
      }
      if (n < 0) {
        return Fail(ErrnoError(errno, "read " + path));
      }
      if (n == 0) {
        return Fail(ErrorCode::kConflict, path + " shrank while it was being uploaded");
      }
      got += n;
    }
    return buf;
  };
  if (size <= resumable_threshold_) {
    auto data = read(0, size);
    if (!data) {
      return Fail(data.error());
    }
    return Insert(bucket, name, *data, opts);
  }
  return Resumable(bucket, name, size, read, opts);
}

Result<ObjectMeta> StorageClient::Stat(const std::string& bucket, const std::string& name) {
  HttpRequest req;
  req.url = ObjectUrl(bucket, name);
  return MetaFromResponse(Send(*http_, req), "objects.get");
}

Result<ObjectMeta> StorageClient::ReadTo(const std::string& bucket, const std::string& name,
                                         const std::function<bool(std::string_view)>& sink,
                                         std::optional<ByteRange> range) {
  int64_t generation = 0;
  ObjectMeta meta;
  if (!has_generation_headers_.load()) {
    // This service sends no x-goog-generation: read the metadata first and pin the download to
    // that generation so data and metadata agree.
    auto st = Stat(bucket, name);
    if (!st) {
      return Fail(st.error());
    }
    meta = *st;
    generation = st->generation;
  }
  int64_t delivered = 0;
  bool got_headers = false;
  for (int resumes = 0;; ++resumes) {
    HttpRequest req;
    req.url = ObjectUrl(bucket, name) + "?alt=media";
    req.timeout = std::chrono::milliseconds(0);  // sized by the object: stall detection only
    if (generation != 0) {
      req.url += fmt::format("&generation={}", generation);
    }
    std::optional<ByteRange> want = range;
    if (delivered > 0) {
      ByteRange r{(range ? range->offset : 0) + delivered, std::nullopt};
      if (range && range->length) {
        r.length = *range->length - delivered;
      }
      want = r;
    }
    if (want) {
      req.headers.emplace_back("Range", RangeHeader(*want));
    }
    // A server that ignores Range answers 200 with the whole object: cut the window out.
    int64_t skip = 0;
    std::optional<int64_t> keep;
    req.on_headers = [&](const HttpResponse& r) {
      if (want && r.status == 200) {
        skip = want->offset;
        keep = want->length;
      }
      if (got_headers) {
        return;
      }
      got_headers = true;
      ObjectMeta h = MetaFromHeaders(r, bucket, name);
      if (h.generation != 0) {
        has_generation_headers_.store(true);
        generation = h.generation;
        meta = std::move(h);
        if (meta.size < 0) {
          meta.size = 0;
        }
      }
    };
    int64_t this_attempt = 0;
    req.sink = [&](std::string_view bytes) {
      if (skip > 0) {
        size_t n = std::min(bytes.size(), static_cast<size_t>(skip));
        bytes.remove_prefix(n);
        skip -= static_cast<int64_t>(n);
      }
      if (keep) {
        bytes = bytes.substr(0, static_cast<size_t>(std::max<int64_t>(*keep - this_attempt, 0)));
      }
      if (bytes.empty()) {
        return true;
      }
      this_attempt += static_cast<int64_t>(bytes.size());
      return sink(bytes);
    };
    auto resp = Send(*http_, req);
    delivered += this_attempt;
    if (resp) {
      if (resp->status == 416) {
        // A range starting at or past the end: no bytes (an empty object read from 0 too).
        if (meta.generation == 0) {
          auto st = Stat(bucket, name);
          if (!st) {
            return Fail(st.error());
          }
          meta = *st;
        }
        return meta;
      }
      if (resp->status < 200 || resp->status >= 300) {
        return Fail(ErrorFromResponse(kService, resp->status, resp->body));
      }
      if (!got_headers) {  // an empty body never reached the sink
        ObjectMeta h = MetaFromHeaders(*resp, bucket, name);
        if (h.generation != 0) {
          has_generation_headers_.store(true);
          meta = std::move(h);
          meta.size = std::max<int64_t>(meta.size, 0);
        }
      }
      if (meta.generation == 0) {
        has_generation_headers_.store(false);
        auto st = Stat(bucket, name);
        if (!st) {
          return Fail(st.error());
        }
        meta = *st;
      }
      return meta;
    }
    // A transfer that broke after some bytes: resume from there, same generation.
    if (this_attempt == 0 || generation == 0 || resumes >= kMaxResumes ||
        resp.error().code != ErrorCode::kUnavailable) {
      return Fail(resp.error());
    }
    Log(LogLevel::kInfo, "gcp.download_resume", "bucket={} delivered={} generation={}", bucket,
        delivered, generation);
  }
}

Result<ObjectData> StorageClient::Read(const std::string& bucket, const std::string& name,
                                       std::optional<ByteRange> range) {
  ObjectData out;
  auto meta = ReadTo(
      bucket, name,
      [&out](std::string_view bytes) {
        out.data.append(bytes);
        return true;
      },
      range);
  if (!meta) {
    return Fail(meta.error());
  }
  out.meta = std::move(*meta);
  return out;
}

Result<ListPage> StorageClient::List(const std::string& bucket, const ListOptions& opts) {
  HttpRequest req;
  req.url = fmt::format("{}/storage/v1/b/{}/o", endpoints_.storage, EncodePathSegment(bucket));
  std::vector<std::string> params;
  if (!opts.prefix.empty()) {
    params.push_back("prefix=" + EncodeQueryValue(opts.prefix));
  }
  if (!opts.delimiter.empty()) {
    params.push_back("delimiter=" + EncodeQueryValue(opts.delimiter));
  }
  if (!opts.page_token.empty()) {
    params.push_back("pageToken=" + EncodeQueryValue(opts.page_token));
  }
  if (opts.max_results > 0) {
    params.push_back(fmt::format("maxResults={}", opts.max_results));
  }
  for (size_t i = 0; i < params.size(); ++i) {
    req.url += (i == 0 ? '?' : '&') + params[i];
  }
  auto resp = Expect2xx(Send(*http_, req));
  if (!resp) {
    return Fail(resp.error());
  }
  auto j = ParseJson(*resp, "objects.list");
  if (!j) {
    return Fail(j.error());
  }
  ListPage page;
  if (auto items = j->find("items"); items != j->end() && items->is_array()) {
    for (const auto& item : *items) {
      page.items.push_back(ObjectMetaFromJson(item));
    }
  }
  if (auto prefixes = j->find("prefixes"); prefixes != j->end() && prefixes->is_array()) {
    for (const auto& p : *prefixes) {
      if (p.is_string()) {
        page.prefixes.push_back(p.get<std::string>());
      }
    }
  }
  page.next_page_token = StrField(*j, "nextPageToken");
  return page;
}

Result<ListResult> StorageClient::ListAll(const std::string& bucket, const std::string& prefix,
                                          const std::string& delimiter) {
  ListResult out;
  ListOptions opts{prefix, delimiter, "", 0};
  for (;;) {
    auto page = List(bucket, opts);
    if (!page) {
      return Fail(page.error());
    }
    std::move(page->items.begin(), page->items.end(), std::back_inserter(out.items));
    std::move(page->prefixes.begin(), page->prefixes.end(), std::back_inserter(out.prefixes));
    if (page->next_page_token.empty()) {
      return out;
    }
    if (page->next_page_token == opts.page_token) {
      return Fail(ErrorCode::kUnavailable,
                  fmt::format("{}: objects.list returned the same page token twice", kService));
    }
    opts.page_token = page->next_page_token;
  }
}

Result<void> StorageClient::Delete(const std::string& bucket, const std::string& name,
                                   std::optional<int64_t> if_generation_match) {
  HttpRequest req;
  req.method = "DELETE";
  req.url = ObjectUrl(bucket, name);
  if (if_generation_match) {
    req.url += fmt::format("?ifGenerationMatch={}", *if_generation_match);
  }
  auto sent = Send(*http_, req);
  if (sent && sent->status == 404 && sent->attempts > 1) {
    return {};  // gone after a retry: the attempt whose answer was lost deleted it
  }
  auto resp = Expect2xx(std::move(sent));
  if (!resp) {
    return Fail(resp.error());
  }
  return {};
}

Result<size_t> StorageClient::DeletePrefix(const std::string& bucket, const std::string& prefix) {
  auto all = ListAll(bucket, prefix);
  if (!all) {
    return Fail(all.error());
  }
  // A few deletes in flight at once (the JSON API has no bulk delete outside batch requests).
  const size_t workers = std::min<size_t>(kDeleteParallelism, all->items.size());
  std::atomic<size_t> next{0};
  std::atomic<size_t> deleted{0};
  std::mutex mu;
  std::optional<Error> first_error;
  auto work = [&] {
    for (size_t i = next++; i < all->items.size(); i = next++) {
      auto r = Delete(bucket, all->items[i].name);
      if (r) {
        ++deleted;
      } else if (r.error().code != ErrorCode::kNotFound) {
        std::lock_guard lock(mu);
        if (!first_error) {
          first_error = r.error();
        }
        next = all->items.size();  // stop handing out work
      }
    }
  };
  std::vector<std::thread> threads;
  for (size_t t = 1; t < workers; ++t) {
    threads.emplace_back(work);
  }
  work();
  for (auto& t : threads) {
    t.join();
  }
  if (first_error) {
    return Fail(*first_error);
  }
  return deleted.load();
}

}  // namespace agentbox::gcp
