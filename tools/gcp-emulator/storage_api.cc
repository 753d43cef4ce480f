#include "storage_api.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

#include "common/strings.h"

namespace agentbox::gcpemu {
namespace {

bool Match(const std::vector<std::string>& s, std::initializer_list<const char*> head) {
  if (s.size() < head.size()) {
    return false;
  }
  size_t i = 0;
  for (const char* h : head) {
    if (s[i++] != h) {
      return false;
    }
  }
  return true;
}

// Where in the segments the storage path starts ("storage","v1","b"): 0 for /storage/v1,
// 1 for /download/storage/v1 and /upload/storage/v1.
size_t ApiStart(const std::vector<std::string>& s) { return Match(s, {"storage", "v1"}) ? 0 : 1; }

std::string JoinFrom(const std::vector<std::string>& s, size_t from, size_t to) {
  std::string out;
  for (size_t i = from; i < to; ++i) {
    if (i > from) {
      out += '/';
    }
    out += s[i];
  }
  return out;
}

// The object name in /storage/v1/b/{b}/o/{name...}: one encoded segment, or several when a
// client left '/' unencoded. `end` excludes a trailing rewriteTo/copyTo suffix.
struct ObjectPath {
  std::string bucket;
  std::string name;
  std::string verb;  // "", "rewriteTo", "copyTo"
  std::string dest_bucket;
  std::string dest_name;
};

std::optional<ObjectPath> ParseObjectPath(const std::vector<std::string>& s, size_t at) {
  // at -> "b", at+1 -> bucket, at+2 -> "o", at+3.. -> name
  if (s.size() < at + 4 || s[at] != "b" || s[at + 2] != "o") {
    return std::nullopt;
  }
  ObjectPath p;
  p.bucket = s[at + 1];
  size_t end = s.size();
  for (size_t i = at + 4; i + 4 < s.size(); ++i) {
    if ((s[i] == "rewriteTo" || s[i] == "copyTo") && s[i + 1] == "b" && s[i + 3] == "o") {
      p.verb = s[i];
      p.dest_bucket = s[i + 2];
      p.dest_name = JoinFrom(s, i + 4, s.size());
      end = i;
      break;
    }
  }
  if (p.verb.empty() && end > at + 4 && s[end - 1] == "compose") {
    p.verb = "compose";
    --end;
  }
  p.name = JoinFrom(s, at + 3, end);
  return p;
}

ApiResult<std::optional<int64_t>> IntParam(const http::Request& req, const char* key) {
  auto v = req.QueryParam(key);
  if (!v) {
    return std::optional<int64_t>();
  }
  int64_t out = 0;
  auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), out);
  if (ec != std::errc() || p != v->data() + v->size()) {
    return ApiFail(400, std::string("Invalid value for ") + key + ": '" + *v + "'");
  }
  return std::optional<int64_t>(out);
}

class RangeSource : public http::BodySource {
 public:
  RangeSource(UniqueFd fd, uint64_t offset, uint64_t length)
      : fd_(std::move(fd)), offset_(offset), left_(length), buf_(1 << 20, '\0') {}
  void Next(Callback cb) override {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(left_, buf_.size()));
    const ssize_t n = ::pread(fd_.Get(), buf_.data(), want, static_cast<off_t>(offset_));
    if (n <= 0 && want > 0) {
      cb(Fail(ErrorCode::kInternal, "object shrank while being read"), true);
      return;
    }
    offset_ += static_cast<uint64_t>(n);
    left_ -= static_cast<uint64_t>(n);
    cb(std::string_view(buf_.data(), static_cast<size_t>(n)), left_ == 0);
  }

 private:
  UniqueFd fd_;
  uint64_t offset_;
  uint64_t left_;
  std::string buf_;
};

}  // namespace

std::vector<std::string> PathSegments(const http::Request& req) {
  std::string_view raw = req.target;
  raw = raw.substr(0, raw.find('?'));
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= raw.size()) {
    size_t slash = raw.find('/', pos);
    if (slash == std::string_view::npos) {
      slash = raw.size();
    }
    if (slash > pos) {
      out.push_back(PercentDecode(raw.substr(pos, slash - pos), false));
    }
    pos = slash + 1;
  }
  // apitools (gcloud) sends resumable uploads to /resumable/upload/storage/v1/...
  if (out.size() > 1 && out[0] == "resumable" && out[1] == "upload") {
    out.erase(out.begin());
  }
  return out;
}

std::string BaseUrl(const http::Request& req) {
  const std::string host = req.Header("host");
  return "http://" + (host.empty() ? std::string("127.0.0.1") : host);
}

ApiResult<Preconditions> PreconditionsFromQuery(const http::Request& req) {
  Preconditions p;
  auto a = IntParam(req, "ifGenerationMatch");
  auto b = IntParam(req, "ifGenerationNotMatch");
  auto c = IntParam(req, "ifMetagenerationMatch");
  auto d = IntParam(req, "ifMetagenerationNotMatch");
  for (auto* r : {&a, &b, &c, &d}) {
    if (!*r) {
      return tl::unexpected(r->error());
    }
  }
  p.generation_match = *a;
  p.generation_not_match = *b;
  p.metageneration_match = *c;
  p.metageneration_not_match = *d;
  return p;
}

bool StorageApi::Owns(const http::Request& req) {
  return req.target.starts_with("/storage/v1/") || req.target.starts_with("/storage/v1?") ||
         req.target.starts_with("/upload/storage/v1/") ||
         req.target.starts_with("/resumable/upload/storage/v1/") ||
         req.target.starts_with("/download/storage/v1/");
}

bool StorageApi::IsUpload(const http::Request& req) {
  return (req.target.starts_with("/upload/storage/v1/") ||
          req.target.starts_with("/resumable/upload/storage/v1/")) &&
         (req.method == "POST" || req.method == "PUT");
}

std::string StorageApi::MethodId(const http::Request& req) {
  const auto s = PathSegments(req);
  if (s.empty()) {
    return "storage.unknown";
  }
  if (s[0] == "upload") {
    return req.method == "DELETE" ? "storage.objects.cancelUpload" : "storage.objects.insert";
  }
  const size_t at = ApiStart(s) + 2;  // index of "b"
  if (s.size() == at + 1) {
    return req.method == "POST" ? "storage.buckets.insert" : "storage.buckets.list";
  }
  if (s.size() == at + 2) {
    return req.method == "DELETE" ? "storage.buckets.delete" : "storage.buckets.get";
  }
  if (s.size() == at + 3) {
    return s[at + 2] == "storageLayout" ? "storage.buckets.getStorageLayout"
                                        : "storage.objects.list";
  }
  auto p = ParseObjectPath(s, at);
  if (p && p->verb == "compose" && req.method == "POST") {
    return "storage.objects.compose";
  }
  if (p && p->verb == "rewriteTo") {
    return "storage.objects.rewrite";
  }
  if (p && p->verb == "copyTo") {
    return "storage.objects.copy";
  }
  if (req.method == "DELETE") {
    return "storage.objects.delete";
  }
  if (req.method == "PATCH") {
    return "storage.objects.patch";
  }
  if (req.method == "PUT") {
    return "storage.objects.update";
  }
  return "storage.objects.get";
}

Json StorageApi::ObjectJson(const std::string& bucket, const ObjectMeta& m,
                            const std::string& base) {
  const std::string enc = PercentEncode(m.name);
  const std::string gen = std::to_string(m.generation);
  Json j{{"kind", "storage#object"},
         {"id", bucket + "/" + m.name + "/" + gen},
         {"selfLink", base + "/storage/v1/b/" + bucket + "/o/" + enc},
         {"mediaLink", base + "/download/storage/v1/b/" + bucket + "/o/" + enc +
                           "?generation=" + gen + "&alt=media"},
         {"name", m.name},
         {"bucket", bucket},
         {"generation", gen},
         {"metageneration", std::to_string(m.metageneration)},
         {"contentType", m.content_type},
         {"storageClass", "STANDARD"},
         {"size", std::to_string(m.size)},
         {"md5Hash", m.md5},
         {"crc32c", m.crc32c},
         {"etag", "CL" + gen.substr(gen.size() > 8 ? gen.size() - 8 : 0) + "EAE="},
         {"timeCreated", Rfc3339(m.created)},
         {"updated", Rfc3339(m.updated)},
         {"timeStorageClassUpdated", Rfc3339(m.created)}};
  if (!m.metadata.empty()) {
    j["metadata"] = m.metadata;
  }
  for (const auto& [k, v] : m.extra.items()) {
    j[k] = v;
  }
  return j;
}

Json StorageApi::BucketJson(const BucketMeta& b, const std::string& base) {
  return Json{{"kind", "storage#bucket"},
              {"id", b.name},
              {"name", b.name},
              {"selfLink", base + "/storage/v1/b/" + b.name},
              {"projectNumber", "0"},
              {"metageneration", std::to_string(b.metageneration)},
              {"location", "US"},
              {"locationType", "multi-region"},
              {"storageClass", "STANDARD"},
              {"etag", "CAE="},
              {"timeCreated", Rfc3339(b.created)},
              {"updated", Rfc3339(b.created)},
              {"iamConfiguration",
               {{"uniformBucketLevelAccess", {{"enabled", true}}},
                {"publicAccessPrevention", "inherited"}}}};
}

void StorageApi::Handle(const http::Request& req, const FaultDecision& fault,
                        http::Respond respond) {
  auto fail = [&](const ApiError& e) { respond(ErrorResponse(e)); };
  const auto s = PathSegments(req);
  const std::string base = BaseUrl(req);
  if (s.empty() || s[0] == "upload") {
    if (req.method == "DELETE" && req.QueryParam("upload_id")) {
      DropSession(*req.QueryParam("upload_id"));
      http::Response r;
      r.status = 499;
      r.content_type.clear();
      respond(std::move(r));
      return;
    }
    return fail({405, "uploads are POST or PUT to /upload/storage/v1/b/{bucket}/o", ""});
  }
  const size_t at = ApiStart(s) + 2;
  if (s.size() <= at || s[at] != "b") {
    return fail({404, "Not Found: " + req.target, ""});
  }
  // Buckets.
  if (s.size() == at + 1) {
    if (req.method == "POST") {
      auto body = ParseJsonObject(req.body);
      if (!body || !body->contains("name") || !(*body)["name"].is_string()) {
        return fail({400, "bucket insert needs a JSON body with a 'name'", "required"});
      }
      auto b = store_.CreateBucket((*body)["name"].get<std::string>(),
                                   req.QueryParam("project").value_or(""));
      return b ? respond(JsonResponse(200, BucketJson(*b, base))) : fail(b.error());
    }
    Json items = Json::array();
    for (const auto& b : store_.ListBuckets()) {
      items.push_back(BucketJson(b, base));
    }
    return respond(JsonResponse(200, {{"kind", "storage#buckets"}, {"items", items}}));
  }
  const std::string bucket = s[at + 1];
  if (s.size() == at + 2) {
    if (req.method == "DELETE") {
      auto r = store_.DeleteBucket(bucket);
      if (!r) {
        return fail(r.error());
      }
      http::Response ok;
      ok.status = 204;
      ok.content_type.clear();
      return respond(std::move(ok));
    }
    auto b = store_.GetBucket(bucket);
    return b ? respond(JsonResponse(200, BucketJson(*b, base))) : fail(b.error());
  }
  if (s.size() == at + 3 && s[at + 2] == "storageLayout") {
    // gcloud asks before rm -r and mv: a flat namespace, as every bucket here.
    auto b = store_.GetBucket(bucket);
    if (!b) {
      return fail(b.error());
    }
    return respond(JsonResponse(200, {{"kind", "storage#storageLayout"},
                                      {"bucket", bucket},
                                      {"location", "US"},
                                      {"locationType", "multi-region"},
                                      {"hierarchicalNamespace", {{"enabled", false}}}}));
  }
  if (s[at + 2] != "o") {
    return fail({404, "Not Found: " + req.target, ""});
  }
  // Objects list.
  if (s.size() == at + 3) {
    ListQuery q;
    q.prefix = req.QueryParam("prefix").value_or("");
    q.delimiter = req.QueryParam("delimiter").value_or("");
    q.page_token = req.QueryParam("pageToken").value_or("");
    q.start_offset = req.QueryParam("startOffset").value_or("");
    q.end_offset = req.QueryParam("endOffset").value_or("");
    q.include_trailing_delimiter = req.QueryParam("includeTrailingDelimiter") == "true";
    auto max = IntParam(req, "maxResults");
    if (!max) {
      return fail(max.error());
    }
    if (*max && **max < 0) {
      return fail({400, "maxResults must not be negative", ""});
    }
    q.max_results = *max ? static_cast<size_t>(**max) : 1000;
    auto r = store_.List(bucket, q);
    if (!r) {
      return fail(r.error());
    }
    Json j{{"kind", "storage#objects"}};
    if (!r->items.empty()) {
      Json items = Json::array();
      for (const auto& m : r->items) {
        items.push_back(ObjectJson(bucket, m, base));
      }
      j["items"] = std::move(items);
    }
    if (!r->prefixes.empty()) {
      j["prefixes"] = r->prefixes;
    }
    if (!r->next_page_token.empty()) {
      j["nextPageToken"] = r->next_page_token;
    }
    return respond(JsonResponse(200, j));
  }
  auto path = ParseObjectPath(s, at);
  if (!path || path->name.empty()) {
    return fail({400, "missing object name", "required"});
  }
  auto pre = PreconditionsFromQuery(req);
  if (!pre) {
    return fail(pre.error());
  }
  auto generation = IntParam(req, "generation");
  if (!generation) {
    return fail(generation.error());
  }
  const bool has_pre = pre->generation_match || pre->metageneration_match ||
                       pre->generation_not_match || pre->metageneration_not_match;
  if (fault.precondition_race && has_pre) {
    const bool copy = path->verb == "rewriteTo" || path->verb == "copyTo";
    store_.BumpGeneration(copy ? path->dest_bucket : bucket, copy ? path->dest_name : path->name);
  }
  if (path->verb == "compose" && req.method == "POST") {
    return Compose(bucket, path->name, req, *pre, std::move(respond));
  }
  if (!path->verb.empty()) {
    // Copy/rewrite: a server-side copy through a temporary file, in one call.
    auto src = store_.OpenObject(bucket, path->name);
    if (!src) {
      return fail(src.error());
    }
    const std::string tmp = store_.TmpDir() + "/copy-" + RandomId(12);
    NewObject obj;
    obj.content_type = src->second.content_type;
    obj.metadata = src->second.metadata;
    obj.extra = src->second.extra;
    obj.hashes = {src->second.size, src->second.crc32c, src->second.md5};
    auto body = ParseJsonObject(req.body);
    if (body && body->contains("contentType") && (*body)["contentType"].is_string()) {
      obj.content_type = (*body)["contentType"].get<std::string>();
    }
    // Copy the bytes (the source may be a container's file: never link it).
    {
      UniqueFd out(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
      if (!out) {
        return fail({500, "cannot create " + tmp + ": " + std::strerror(errno), ""});
      }
      std::string buf(1 << 20, '\0');
      off_t off = 0;
      for (;;) {
        const ssize_t n = ::pread(src->first.Get(), buf.data(), buf.size(), off);
        if (n <= 0) {
          break;
        }
        if (::write(out.Get(), buf.data(), static_cast<size_t>(n)) != n) {
          ::unlink(tmp.c_str());
          return fail({500, "cannot write " + tmp + ": " + std::strerror(errno), ""});
        }
        off += n;
      }
    }
    auto m = store_.Commit(path->dest_bucket, path->dest_name, tmp, obj, *pre);
    if (!m) {
      return fail(m.error());
    }
    Json res = ObjectJson(path->dest_bucket, *m, base);
    if (path->verb == "copyTo") {
      return respond(JsonResponse(200, res));
    }
    return respond(JsonResponse(200, {{"kind", "storage#rewriteResponse"},
                                      {"totalBytesRewritten", std::to_string(m->size)},
                                      {"objectSize", std::to_string(m->size)},
                                      {"done", true},
                                      {"resource", res}}));
  }
  if (req.method == "DELETE") {
    if (*generation) {
      auto cur = store_.Get(bucket, path->name);
      if (cur && cur->generation != **generation) {
        return fail(
            {404,
             "No such object: " + bucket + "/" + path->name + "#" + std::to_string(**generation),
             ""});
      }
    }
    auto r = store_.Delete(bucket, path->name, *pre);
    if (!r) {
      return fail(r.error());
    }
    http::Response ok;
    ok.status = 204;
    ok.content_type.clear();
    return respond(std::move(ok));
  }
  if (req.method == "PATCH" || req.method == "PUT") {
    auto body = ParseJsonObject(req.body);
    if (!body) {
      return fail(FromError(body.error()));
    }
    auto m = store_.Patch(bucket, path->name, *body, *pre);
    return m ? respond(JsonResponse(200, ObjectJson(bucket, *m, base))) : fail(m.error());
  }
  if (req.method != "GET" && req.method != "HEAD") {
    return fail({405, req.method + " is not supported on objects", ""});
  }
  const bool media = req.QueryParam("alt") == "media" || s[0] == "download";
  if (!media) {
    auto m = store_.Get(bucket, path->name);
    if (m && *generation && m->generation != **generation) {
      return fail({404, "No such object: " + bucket + "/" + path->name, ""});
    }
    if (!m) {
      return fail(m.error());
    }
    if (auto ok = ObjectStore::Check(*m, *pre, true); !ok) {
      return fail(ok.error());
    }
    return respond(JsonResponse(200, ObjectJson(bucket, *m, base)));
  }
  auto opened = store_.OpenObject(bucket, path->name);
  if (!opened) {
    return fail(opened.error());
  }
  auto& [fd, m] = *opened;
  if (*generation && m.generation != **generation) {
    return fail({404, "No such object: " + bucket + "/" + path->name, ""});
  }
  if (auto ok = ObjectStore::Check(m, *pre, true); !ok) {
    return fail(ok.error());
  }
  http::Response r;
  r.content_type = m.content_type;
  r.headers = {{"x-goog-generation", std::to_string(m.generation)},
               {"x-goog-metageneration", std::to_string(m.metageneration)},
               {"x-goog-hash", "crc32c=" + m.crc32c + ",md5=" + m.md5},
               {"x-goog-stored-content-length", std::to_string(m.size)},
               {"x-goog-stored-content-encoding", "identity"},
               {"Accept-Ranges", "bytes"},
               {"ETag", "\"" + std::to_string(m.generation) + "\""}};
  const std::string range = req.Header("range");
  if (range.empty() || m.size == 0) {
    r.file = std::make_shared<UniqueFd>(std::move(fd));
    r.file_size = m.size;
    return respond(std::move(r));
  }
  // bytes=A-B, bytes=A-, bytes=-N (one range only, as Cloud Storage serves).
  uint64_t first = 0;
  uint64_t last = m.size - 1;
  bool ok = range.starts_with("bytes=") && range.find(',') == std::string::npos;
  const size_t dash = range.find('-');
  if (ok && dash != std::string::npos) {
    const std::string a = range.substr(6, dash - 6);
    const std::string b = range.substr(dash + 1);
    try {
      if (a.empty()) {
        const uint64_t n = std::stoull(b);
        first = n >= m.size ? 0 : m.size - n;
      } else {
        first = std::stoull(a);
        if (!b.empty()) {
          last = std::min<uint64_t>(std::stoull(b), m.size - 1);
        }
      }
    } catch (...) {
      ok = false;
    }
  } else {
    ok = false;
  }
  if (!ok) {
    return fail({400, "invalid Range header '" + range + "'", ""});
  }
  if (first >= m.size || first > last) {
    http::Response e = ErrorResponse({416, "The requested range cannot be satisfied.", ""});
    e.headers.push_back({"Content-Range", "bytes */" + std::to_string(m.size)});
    return respond(std::move(e));
  }
  const uint64_t len = last - first + 1;
  r.status = 206;
  r.headers.push_back({"Content-Range", "bytes " + std::to_string(first) + "-" +
                                            std::to_string(last) + "/" + std::to_string(m.size)});
  if (len <= (64u << 20)) {
    r.body.resize(len);
    const ssize_t n = ::pread(fd.Get(), r.body.data(), len, static_cast<off_t>(first));
    if (n != static_cast<ssize_t>(len)) {
      return fail({503, "object changed while being read; try again", ""});
    }
    return respond(std::move(r));
  }
  r.stream = std::make_shared<RangeSource>(std::move(fd), first, len);
  respond(std::move(r));
}

void StorageApi::Compose(const std::string& bucket, const std::string& name,
                         const http::Request& req, const Preconditions& pre,
                         http::Respond respond) {
  auto body = ParseJsonObject(req.body);
  if (!body || !body->contains("sourceObjects") || !(*body)["sourceObjects"].is_array() ||
      (*body)["sourceObjects"].empty() || (*body)["sourceObjects"].size() > 32) {
    return respond(
        ErrorResponse({400, "compose needs 1 to 32 sourceObjects in its JSON body", "required"}));
  }
  const std::string tmp = store_.TmpDir() + "/compose-" + RandomId(12);
  UniqueFd out(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (!out) {
    return respond(ErrorResponse({500, "cannot create " + tmp + ": " + std::strerror(errno), ""}));
  }
  ObjectHasher hasher;
  std::string buf(1 << 20, '\0');
  for (const auto& src : (*body)["sourceObjects"]) {
    const std::string n = src.is_object() ? src.value("name", "") : "";
    auto opened = store_.OpenObject(bucket, n);
    if (!opened) {
      ::unlink(tmp.c_str());
      return respond(ErrorResponse(opened.error()));
    }
    const Json gen = src.value("generation", Json());
    const Json want = src.contains("objectPreconditions")
                          ? src["objectPreconditions"].value("ifGenerationMatch", Json())
                          : Json();
    for (const Json& g : {gen, want}) {
      if (!g.is_null() && (g.is_string() ? g.get<std::string>() : g.dump()) !=
                              std::to_string(opened->second.generation)) {
        ::unlink(tmp.c_str());
        return respond(ErrorResponse({412,
                                      "source object " + n + " is not at generation " +
                                          (g.is_string() ? g.get<std::string>() : g.dump()),
                                      "conditionNotMet"}));
      }
    }
    for (off_t off = 0;;) {
      const ssize_t got = ::pread(opened->first.Get(), buf.data(), buf.size(), off);
      if (got <= 0) {
        break;
      }
      hasher.Update(std::string_view(buf.data(), static_cast<size_t>(got)));
      if (::write(out.Get(), buf.data(), static_cast<size_t>(got)) != got) {
        ::unlink(tmp.c_str());
        return respond(ErrorResponse({500, "cannot write " + tmp, ""}));
      }
      off += got;
    }
  }
  out.Reset();
  NewObject obj;
  const Json dest = body->value("destination", Json::object());
  obj.content_type = dest.value("contentType", "application/octet-stream");
  if (dest.contains("metadata") && dest["metadata"].is_object()) {
    for (const auto& [k, v] : dest["metadata"].items()) {
      if (v.is_string()) {
        obj.metadata[k] = v.get<std::string>();
      }
    }
  }
  obj.hashes = {hasher.size(), hasher.Crc32cBase64(), hasher.Md5Base64()};
  auto m = store_.Commit(bucket, name, tmp, obj, pre);
  if (!m) {
    return respond(ErrorResponse(m.error()));
  }
  Json j = ObjectJson(bucket, *m, BaseUrl(req));
  j["componentCount"] = static_cast<int>((*body)["sourceObjects"].size());
  respond(JsonResponse(200, j));
}

}  // namespace agentbox::gcpemu
