// Uploads of the Storage JSON API: media, multipart and resumable, streamed to disk.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/fs_util.h"
#include "common/strings.h"
#include "storage_api.h"

namespace agentbox::gcpemu {
namespace {

// A file in DIR/tmp receiving a body while it is hashed; removed unless Commit took it.
class TmpFile {
 public:
  explicit TmpFile(const std::string& dir) : path_(dir + "/upload-" + RandomId(16)) {
    fd_.Reset(::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  }
  ~TmpFile() { ::unlink(path_.c_str()); }  // after a commit's rename: ENOENT, harmless
  bool ok() const { return fd_.Valid(); }
  const std::string& path() const { return path_; }
  Result<void> Write(std::string_view bytes) {
    hasher_.Update(bytes);
    while (!bytes.empty()) {
      const ssize_t n = ::write(fd_.Get(), bytes.data(), bytes.size());
      if (n < 0) {
        if (errno == EINTR) {
          continue;
        }
        return Fail(ErrnoError(errno, "write " + path_));
      }
      bytes.remove_prefix(static_cast<size_t>(n));
    }
    return {};
  }
  FileHashes Finish() {
    fd_.Reset();
    return FileHashes{hasher_.size(), hasher_.Crc32cBase64(), hasher_.Md5Base64()};
  }

 private:
  std::string path_;
  UniqueFd fd_;
  ObjectHasher hasher_;
};

// Answers a fixed response (an error, mostly) once the discarded body has arrived.
class FixedSink : public http::BodySink {
 public:
  explicit FixedSink(http::Response r) : r_(std::move(r)) {}
  Result<void> OnData(std::string_view) override { return {}; }
  void OnEnd(http::Respond respond) override { respond(std::move(r_)); }

 private:
  http::Response r_;
};

// Client-supplied checksums must match what arrived, as on the real service.
std::optional<ApiError> VerifyHashes(const Json& meta, const FileHashes& h) {
  if (meta.contains("crc32c") && meta["crc32c"].is_string() && meta["crc32c"] != h.crc32c) {
    return ApiError{400,
                    "Provided CRC32C \"" + meta["crc32c"].get<std::string>() +
                        "\" doesn't match calculated CRC32C \"" + h.crc32c + "\".",
                    "invalid"};
  }
  if (meta.contains("md5Hash") && meta["md5Hash"].is_string() && meta["md5Hash"] != h.md5) {
    return ApiError{400,
                    "Provided MD5 hash \"" + meta["md5Hash"].get<std::string>() +
                        "\" doesn't match calculated MD5 hash \"" + h.md5 + "\".",
                    "invalid"};
  }
  return std::nullopt;
}

// Fills the writable fields of an object resource (name aside) from upload metadata.
void ApplyResource(const Json& meta, NewObject& obj) {
  if (meta.contains("contentType") && meta["contentType"].is_string()) {
    obj.content_type = meta["contentType"].get<std::string>();
  }
  if (meta.contains("metadata") && meta["metadata"].is_object()) {
    for (const auto& [k, v] : meta["metadata"].items()) {
      if (!v.is_null()) {
        obj.metadata[k] = v.is_string() ? v.get<std::string>() : v.dump();
      }
    }
  }
  for (const char* k :
       {"cacheControl", "contentDisposition", "contentEncoding", "contentLanguage"}) {
    if (meta.contains(k) && meta[k].is_string()) {
      obj.extra[k] = meta[k];
    }
  }
}

struct Target {
  std::string bucket;
  std::string name;
  Preconditions pre;
  std::string base;
};

http::Response Committed(StorageApi& api, const Target& t, const std::string& file,
                         const NewObject& obj) {
  auto m = api.store().Commit(t.bucket, t.name, file, obj, t.pre);
  if (!m) {
    return ErrorResponse(m.error());
  }
  return JsonResponse(200, StorageApi::ObjectJson(t.bucket, *m, t.base));
}

class MediaSink : public http::BodySink {
 public:
  MediaSink(StorageApi& api, Target t, NewObject obj)
      : api_(api), t_(std::move(t)), obj_(std::move(obj)), tmp_(api.store().TmpDir()) {}
  Result<void> OnData(std::string_view bytes) override { return tmp_.Write(bytes); }
  void OnEnd(http::Respond respond) override {
    obj_.hashes = tmp_.Finish();
    respond(Committed(api_, t_, tmp_.path(), obj_));
  }
  bool ok() const { return tmp_.ok(); }

 private:
  StorageApi& api_;
  Target t_;
  NewObject obj_;
  TmpFile tmp_;
};

// Index just past the blank line ending the headers that start at `from` ("\r\n\r\n" or, from
// clients that write bare line feeds, "\n\n"), or npos.
size_t HeadersEnd(const std::string& s, size_t from) {
  const size_t crlf = s.find("\r\n\r\n", from);
  const size_t lf = s.find("\n\n", from);
  if (crlf != std::string::npos && (lf == std::string::npos || crlf < lf)) {
    return crlf + 4;
  }
  return lf == std::string::npos ? lf : lf + 2;
}

// Drops the line break before a delimiter ("\r\n" or "\n"), which belongs to the delimiter.
size_t BeforeLineBreak(const std::string& s, size_t pos) {
  if (pos > 0 && s[pos - 1] == '\n') {
    --pos;
    if (pos > 0 && s[pos - 1] == '\r') {
      --pos;
    }
  }
  return pos;
}

// multipart/related: a JSON part with the resource, then the media part. The head (both parts'
// headers and the JSON) is buffered; the media streams to disk, holding back only as many bytes
// as the closing delimiter could take. A preamble and bare line feeds are accepted.
class MultipartSink : public http::BodySink {
 public:
  MultipartSink(StorageApi& api, Target t, std::string boundary)
      : api_(api),
        t_(std::move(t)),
        delim_("--" + std::move(boundary)),
        tmp_(api.store().TmpDir()) {}
  bool ok() const { return tmp_.ok(); }

  Result<void> OnData(std::string_view bytes) override {
    buf_.append(bytes);
    if (!in_media_) {
      if (auto r = ParseHead(); !r) {
        return r;
      }
      if (!in_media_) {
        return {};
      }
    }
    const size_t keep = delim_.size() + 8;
    if (buf_.size() > keep) {
      const size_t n = buf_.size() - keep;
      if (auto r = tmp_.Write(std::string_view(buf_).substr(0, n)); !r) {
        return r;
      }
      buf_.erase(0, n);
    }
    return {};
  }

  void OnEnd(http::Respond respond) override {
    if (!in_media_) {
      return respond(ErrorResponse({400, "multipart upload body is incomplete", ""}));
    }
    const size_t end = buf_.rfind(delim_);
    if (end == std::string::npos) {
      return respond(ErrorResponse({400, "multipart upload lacks its closing delimiter", ""}));
    }
    if (auto r = tmp_.Write(std::string_view(buf_).substr(0, BeforeLineBreak(buf_, end))); !r) {
      return respond(ErrorResponse({500, r.error().message, ""}));
    }
    obj_.hashes = tmp_.Finish();
    if (auto bad = VerifyHashes(resource_, obj_.hashes)) {
      return respond(ErrorResponse(*bad));
    }
    respond(Committed(api_, t_, tmp_.path(), obj_));
  }

 private:
  Result<void> ParseHead() {
    if (buf_.size() > (1u << 20)) {
      return Fail(ErrorCode::kInvalidArgument,
                  "multipart upload: no media part within the first 1 MiB (boundary '" +
                      delim_.substr(2) + "')");
    }
    const size_t d1 = buf_.find(delim_);
    if (d1 == std::string::npos) {
      return {};
    }
    const size_t h1 = HeadersEnd(buf_, d1 + delim_.size());
    if (h1 == std::string::npos) {
      return {};
    }
    const size_t d2 = buf_.find(delim_, h1);
    if (d2 == std::string::npos) {
      return {};
    }
    const size_t h2 = HeadersEnd(buf_, d2 + delim_.size());
    if (h2 == std::string::npos) {
      return {};
    }
    auto meta = ParseJsonObject(std::string_view(buf_).substr(h1, BeforeLineBreak(buf_, d2) - h1));
    if (!meta) {
      return Fail(ErrorCode::kInvalidArgument,
                  "multipart upload: the first part must be the JSON object resource: " +
                      meta.error().message);
    }
    resource_ = *meta;
    // The media part's own Content-Type is the default for the object's.
    const std::string headers = buf_.substr(d2, h2 - d2);
    const std::string lower = AsciiLower(headers);
    if (const size_t ct = lower.find("content-type:"); ct != std::string::npos) {
      size_t v = ct + 13;
      size_t e = lower.find_first_of("\r\n", v);
      std::string value = headers.substr(v, (e == std::string::npos ? headers.size() : e) - v);
      while (!value.empty() && value.front() == ' ') {
        value.erase(0, 1);
      }
      obj_.content_type = value;
    }
    ApplyResource(resource_, obj_);
    if (t_.name.empty() && resource_.contains("name") && resource_["name"].is_string()) {
      t_.name = resource_["name"].get<std::string>();
    }
    if (t_.name.empty()) {
      return Fail(ErrorCode::kInvalidArgument, "multipart upload without an object name");
    }
    if (auto bad = ObjectStore::BadObjectName(t_.name)) {
      return Fail(ErrorCode::kInvalidArgument, "Invalid object name '" + t_.name + "': " + *bad);
    }
    buf_.erase(0, h2);
    in_media_ = true;
    return {};
  }

  StorageApi& api_;
  Target t_;
  std::string delim_;
  TmpFile tmp_;
  std::string buf_;
  bool in_media_ = false;
  Json resource_ = Json::object();
  NewObject obj_;
};

// Starts a resumable session: the (small) body is the object resource.
class ResumableInitSink : public http::BodySink {
 public:
  ResumableInitSink(StorageApi& api, Target t, std::string content_type)
      : api_(api), t_(std::move(t)), content_type_(std::move(content_type)) {}
  Result<void> OnData(std::string_view bytes) override {
    body_.append(bytes);
    if (body_.size() > (1u << 20)) {
      return Fail(ErrorCode::kTooLarge, "resumable upload: object resource over 1 MiB");
    }
    return {};
  }
  void OnEnd(http::Respond respond) override {
    auto meta = ParseJsonObject(body_);
    if (!meta) {
      return respond(ErrorResponse({400, meta.error().message, ""}));
    }
    StorageApi::Session s;
    s.id = RandomId(24);
    s.bucket = t_.bucket;
    s.name = t_.name;
    if (s.name.empty() && meta->contains("name") && (*meta)["name"].is_string()) {
      s.name = (*meta)["name"].get<std::string>();
    }
    if (auto bad = s.name.empty() ? std::optional<std::string>("an object name is required")
                                  : ObjectStore::BadObjectName(s.name)) {
      return respond(ErrorResponse({400, "Invalid object name '" + s.name + "': " + *bad, ""}));
    }
    s.obj.content_type = content_type_;
    ApplyResource(*meta, s.obj);
    s.pre = t_.pre;
    s.hasher = std::make_shared<ObjectHasher>();
    api_.SaveSession(s);
    http::Response r;
    r.content_type.clear();
    const std::string loc = t_.base + "/upload/storage/v1/b/" + s.bucket +
                            "/o?uploadType=resumable&name=" + PercentEncode(s.name) +
                            "&upload_id=" + s.id;
    r.headers = {{"Location", loc}, {"X-GUploader-UploadID", s.id}};
    respond(std::move(r));
  }

 private:
  StorageApi& api_;
  Target t_;
  std::string content_type_;
  std::string body_;
};

struct ContentRange {
  bool present = false;
  std::optional<uint64_t> first;  // nullopt: "*/" (no bytes in this request)
  std::optional<uint64_t> last;
  std::optional<uint64_t> total;  // nullopt: "/*" (not known yet)
};

std::optional<ContentRange> ParseContentRange(const std::string& v) {
  ContentRange cr;
  if (v.empty()) {
    return cr;
  }
  cr.present = true;
  if (!v.starts_with("bytes ")) {
    return std::nullopt;
  }
  const size_t slash = v.find('/');
  if (slash == std::string::npos) {
    return std::nullopt;
  }
  const std::string range = v.substr(6, slash - 6);
  const std::string total = v.substr(slash + 1);
  try {
    if (total != "*") {
      cr.total = std::stoull(total);
    }
    if (range != "*") {
      const size_t dash = range.find('-');
      if (dash == std::string::npos) {
        return std::nullopt;
      }
      cr.first = std::stoull(range.substr(0, dash));
      if (range.substr(dash + 1) != "*") {
        cr.last = std::stoull(range.substr(dash + 1));
      }
    }
  } catch (...) {
    return std::nullopt;
  }
  return cr;
}

http::Response Incomplete(uint64_t received) {
  http::Response r;
  r.status = 308;
  r.content_type.clear();
  if (received > 0) {
    r.headers.push_back({"Range", "bytes=0-" + std::to_string(received - 1)});
  }
  return r;
}

// One PUT of a resumable session: appends the bytes past what the session already holds and
// finishes the object when the total is reached.
class ChunkSink : public http::BodySink {
 public:
  ChunkSink(StorageApi& api, std::shared_ptr<StorageApi::Session> s, ContentRange cr,
            std::string base)
      : api_(api), s_(std::move(s)), cr_(cr), base_(std::move(base)) {
    pos_ = cr_.first.value_or(s_->received);
    fd_.Reset(::open(api_.SessionDataPath(s_->id).c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
  }
  ~ChunkSink() override { Release(); }
  bool ok() const { return fd_.Valid(); }

  Result<void> OnData(std::string_view bytes) override {
    if (pos_ < s_->received) {  // a resent chunk: skip what is already stored
      const uint64_t skip = std::min<uint64_t>(s_->received - pos_, bytes.size());
      bytes.remove_prefix(skip);
      pos_ += skip;
    }
    if (bytes.empty()) {
      return {};
    }
    if (cr_.total && s_->received + bytes.size() > *cr_.total) {
      return Fail(ErrorCode::kInvalidArgument,
                  "resumable upload: more bytes than Content-Range "
                  "announced");
    }
    const char* p = bytes.data();
    size_t left = bytes.size();
    while (left > 0) {
      const ssize_t n = ::pwrite(fd_.Get(), p, left, static_cast<off_t>(s_->received));
      if (n < 0) {
        if (errno == EINTR) {
          continue;
        }
        return Fail(ErrnoError(errno, "write upload data"));
      }
      if (s_->hasher) {
        s_->hasher->Update(std::string_view(p, static_cast<size_t>(n)));
      }
      p += n;
      left -= static_cast<size_t>(n);
      s_->received += static_cast<uint64_t>(n);
      pos_ += static_cast<uint64_t>(n);
    }
    return {};
  }

  void OnEnd(http::Respond done) override {
    fd_.Reset();
    // The session is free again before the client can see the answer and send the next chunk.
    auto respond = [&](http::Response r) {
      Release();
      done(std::move(r));
    };
    // Finished when the total is known and reached, or when the request said it carries the
    // rest of the object: no Content-Range at all, or an open range "bytes A-*/*" (how clients
    // stream an upload of unknown size in one request).
    std::optional<uint64_t> total = cr_.total;
    if (!cr_.present || (cr_.first && !cr_.last && !total)) {
      total = s_->received;
    }
    if (!total || s_->received < *total) {
      return respond(Incomplete(s_->received));
    }
    FileHashes h;
    if (s_->hasher) {
      h = {s_->received, s_->hasher->Crc32cBase64(), s_->hasher->Md5Base64()};
      s_->hasher.reset();
    } else {
      auto fh = HashFile(api_.SessionDataPath(s_->id));
      if (!fh) {
        return respond(ErrorResponse({500, fh.error().message, ""}));
      }
      h = *fh;
    }
    s_->obj.hashes = h;
    Target t{s_->bucket, s_->name, s_->pre, base_};
    http::Response r = Committed(api_, t, api_.SessionDataPath(s_->id), s_->obj);
    s_->finished = true;
    s_->result = r.status == 200 ? Json::parse(r.body, nullptr, false) : Json();
    Release();
    if (r.status != 200) {
      api_.DropSession(s_->id);  // a refused commit (412) ends the session
    }
    respond(std::move(r));
  }

 private:
  void Release() {
    if (!released_) {
      released_ = true;
      api_.SaveSession(*s_);  // persists the session and clears `busy`
    }
  }

  StorageApi& api_;
  std::shared_ptr<StorageApi::Session> s_;
  bool released_ = false;
  ContentRange cr_;
  std::string base_;
  UniqueFd fd_;
  uint64_t pos_ = 0;
};

}  // namespace

std::string StorageApi::SessionDataPath(const std::string& id) const {
  return store_.dir() + "/uploads/" + id + ".data";
}

void StorageApi::SaveSession(const Session& s) {
  Json pre = Json::object();
  if (s.pre.generation_match) {
    pre["ifGenerationMatch"] = *s.pre.generation_match;
  }
  if (s.pre.generation_not_match) {
    pre["ifGenerationNotMatch"] = *s.pre.generation_not_match;
  }
  if (s.pre.metageneration_match) {
    pre["ifMetagenerationMatch"] = *s.pre.metageneration_match;
  }
  if (s.pre.metageneration_not_match) {
    pre["ifMetagenerationNotMatch"] = *s.pre.metageneration_not_match;
  }
  Json j{{"bucket", s.bucket},         {"name", s.name},       {"contentType", s.obj.content_type},
         {"metadata", s.obj.metadata}, {"extra", s.obj.extra}, {"pre", pre},
         {"finished", s.finished},     {"result", s.result}};
  WriteFileAtomic(store_.dir() + "/uploads/" + s.id + ".json", DumpJson(j), 0644);
  std::lock_guard lock(mu_);
  auto it = sessions_.find(s.id);
  if (it == sessions_.end()) {
    sessions_[s.id] = std::make_shared<Session>(s);
  } else {
    it->second->busy = false;
  }
}

std::shared_ptr<StorageApi::Session> StorageApi::FindSession(const std::string& id) {
  std::lock_guard lock(mu_);
  auto it = sessions_.find(id);
  if (it != sessions_.end()) {
    return it->second;
  }
  // After a restart: the session's record and data survive on disk.
  if (id.empty() || id.find_first_not_of("0123456789abcdef") != std::string::npos) {
    return nullptr;
  }
  auto text = ReadSmallFile(store_.dir() + "/uploads/" + id + ".json");
  if (!text) {
    return nullptr;
  }
  auto j = Json::parse(*text, nullptr, false);
  if (!j.is_object()) {
    return nullptr;
  }
  auto s = std::make_shared<Session>();
  s->id = id;
  s->bucket = j.value("bucket", "");
  s->name = j.value("name", "");
  s->obj.content_type = j.value("contentType", "");
  ApplyResource(Json{{"metadata", j.value("metadata", Json::object())}}, s->obj);
  s->obj.extra = j.value("extra", Json::object());
  const Json pre = j.value("pre", Json::object());
  auto opt = [&](const char* k) {
    return pre.contains(k) ? std::optional<int64_t>(pre[k].get<int64_t>()) : std::nullopt;
  };
  s->pre = {opt("ifGenerationMatch"), opt("ifGenerationNotMatch"), opt("ifMetagenerationMatch"),
            opt("ifMetagenerationNotMatch")};
  s->finished = j.value("finished", false);
  s->result = j.value("result", Json());
  struct stat st {};
  if (::stat(SessionDataPath(id).c_str(), &st) == 0) {
    s->received = static_cast<uint64_t>(st.st_size);
  }
  sessions_[id] = s;
  return s;
}

void StorageApi::DropSession(const std::string& id) {
  ::unlink(SessionDataPath(id).c_str());
  std::lock_guard lock(mu_);
  sessions_.erase(id);
  if (!id.empty() && id.find_first_not_of("0123456789abcdef") == std::string::npos) {
    ::unlink((store_.dir() + "/uploads/" + id + ".json").c_str());
  }
}

std::unique_ptr<http::BodySink> StorageApi::OpenUpload(const http::Request& req,
                                                       const FaultDecision& fault) {
  auto reject = [](ApiError e) { return std::make_unique<FixedSink>(ErrorResponse(e)); };
  const auto s = PathSegments(req);
  // upload storage v1 b {bucket} o
  if (s.size() != 6 || s[3] != "b" || s[5] != "o") {
    return reject({404, "uploads go to /upload/storage/v1/b/{bucket}/o", ""});
  }
  Target t{s[4], req.QueryParam("name").value_or(""), {}, BaseUrl(req)};
  auto pre = PreconditionsFromQuery(req);
  if (!pre) {
    return reject(pre.error());
  }
  t.pre = *pre;
  if (auto upload_id = req.QueryParam("upload_id")) {
    auto session = FindSession(*upload_id);
    if (!session) {
      return reject({404, "No such resumable upload session: " + *upload_id, "notFound"});
    }
    {
      std::lock_guard lock(mu_);
      if (session->busy) {
        return reject({503, "another request is writing to this upload session", ""});
      }
      session->busy = true;
    }
    if (session->finished) {
      SaveSession(*session);
      return std::make_unique<FixedSink>(JsonResponse(200, session->result));
    }
    auto cr = ParseContentRange(req.Header("content-range"));
    if (!cr || (cr->first && *cr->first > session->received)) {
      SaveSession(*session);
      return reject({400,
                     !cr ? "invalid Content-Range '" + req.Header("content-range") + "'"
                         : "Content-Range starts at " + std::to_string(*cr->first) +
                               " but the session holds " + std::to_string(session->received) +
                               " bytes",
                     ""});
    }
    if (fault.precondition_race) {
      store_.BumpGeneration(session->bucket, session->name);
    }
    auto sink = std::make_unique<ChunkSink>(*this, session, *cr, t.base);
    if (!sink->ok()) {
      return reject({500, "cannot open the upload's data file", ""});
    }
    return sink;
  }
  if (auto b = store_.GetBucket(t.bucket); !b) {
    return reject(b.error());
  }
  const std::string type = req.QueryParam("uploadType").value_or("media");
  if (!t.name.empty()) {
    if (auto bad = ObjectStore::BadObjectName(t.name)) {
      return reject({400, "Invalid object name '" + t.name + "': " + *bad, ""});
    }
  }
  if (fault.precondition_race && !t.name.empty()) {
    store_.BumpGeneration(t.bucket, t.name);
  }
  if (type == "resumable") {
    return std::make_unique<ResumableInitSink>(*this, t, req.Header("x-upload-content-type"));
  }
  if (type == "multipart") {
    const std::string ct = req.Header("content-type");
    size_t b = ct.find("boundary=");
    if (!AsciiLower(ct).starts_with("multipart/") || b == std::string::npos) {
      return reject(
          {400, "multipart upload needs Content-Type multipart/related; boundary=...", ""});
    }
    std::string boundary = ct.substr(b + 9);
    boundary = boundary.substr(0, boundary.find(';'));
    // Quoted with " or, as Python's email package (gcloud) writes it, with '.
    if (boundary.size() >= 2 && (boundary.front() == '"' || boundary.front() == '\'') &&
        boundary.back() == boundary.front()) {
      boundary = boundary.substr(1, boundary.size() - 2);
    }
    auto sink = std::make_unique<MultipartSink>(*this, t, boundary);
    return sink->ok() ? std::unique_ptr<http::BodySink>(std::move(sink))
                      : reject({500, "cannot create a temporary file", ""});
  }
  if (type != "media") {
    return reject(
        {400, "uploadType must be media, multipart or resumable, not '" + type + "'", ""});
  }
  if (t.name.empty()) {
    return reject({400, "media upload needs the object name in ?name=", "required"});
  }
  NewObject obj;
  obj.content_type = req.Header("content-type");
  auto sink = std::make_unique<MediaSink>(*this, t, obj);
  return sink->ok() ? std::unique_ptr<http::BodySink>(std::move(sink))
                    : reject({500, "cannot create a temporary file", ""});
}

}  // namespace agentbox::gcpemu
