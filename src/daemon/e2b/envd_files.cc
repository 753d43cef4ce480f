// envd's file transfer endpoints: GET /files (download, streamed) and POST /files (multipart
// upload, spooled to disk and relayed to the guest's file/upload).
#include <unistd.h>

#include "common/fs_util.h"
#include "common/json_util.h"
#include "common/strings.h"
#include "daemon/daemon_api.h"
#include "daemon/e2b/e2b_api.h"
#include "daemon/e2b/translate.h"
#include "daemon/spool_sink.h"
#include "guest/files/multipart.h"

namespace agentbox::daemon::e2b {

using daemon::AnswerSink;
using daemon::SpoolSink;

// One file of a several-file write: where it goes and its bytes in a spool file of its own.
struct Part {
  std::string path;
  std::shared_ptr<UniqueFd> file;
  uint64_t size = 0;
};

namespace {

http::Response RestError(int status, const std::string& message) {
  http::Response r;
  r.status = status;
  r.body = ApiErrorBody(status, message);
  return r;
}

std::string GuestMessage(const std::string& body) {
  const Json env = ParseUntrustedJson(body);
  return ValueOr(env, "message", body);
}

constexpr size_t kMaxParts = 1000;

// Splits a spooled multipart/form-data body (envd's several-file write: one `file` part per
// file, its filename the destination) into one spool file per part. kInvalidArgument for a
// malformed body or a part without a filename; other parts are ignored.
Result<std::vector<Part>> SplitUpload(const UniqueFd& body, const std::string& ctype,
                                      const std::string& spool_dir, const std::string& user) {
  auto boundary = guest::MultipartParser::BoundaryFromContentType(ctype);
  if (!boundary) {
    return Fail(boundary.error());
  }
  guest::MultipartParser parser(*boundary);
  std::vector<Part> parts;
  bool in_file = false;
  parser.on_part_begin = [&](const guest::PartHeaders& h) -> Result<void> {
    in_file = h.name == "file";
    if (!in_file) {
      return {};
    }
    if (h.filename.empty()) {
      return Fail(ErrorCode::kInvalidArgument,
                  "each file part needs its destination path as filename");
    }
    if (parts.size() == kMaxParts) {
      return Fail(ErrorCode::kInvalidArgument,
                  "at most " + std::to_string(kMaxParts) + " files per write");
    }
    auto fd = OpenUnlinkedFile(spool_dir);
    if (!fd) {
      return Fail(fd.error());
    }
    parts.push_back({ResolvePath(h.filename, user), std::make_shared<UniqueFd>(std::move(*fd)), 0});
    return {};
  };
  parser.on_part_data = [&](std::string_view data) -> Result<void> {
    if (!in_file) {
      return {};
    }
    Part& p = parts.back();
    for (size_t off = 0; off < data.size();) {
      const ssize_t n = ::write(p.file->Get(), data.data() + off, data.size() - off);
      if (n < 0) {
        if (errno == EINTR) {
          continue;
        }
        return Fail(ErrnoError(errno, "spool upload part"));
      }
      off += static_cast<size_t>(n);
    }
    p.size += data.size();
    return {};
  };
  parser.on_part_end = [&]() -> Result<void> {
    in_file = false;
    return {};
  };
  std::string buf(64 * 1024, '\0');
  for (off_t at = 0;;) {
    const ssize_t n = ::pread(body.Get(), buf.data(), buf.size(), at);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return Fail(ErrnoError(errno, "read spooled upload"));
    }
    if (n == 0) {
      break;
    }
    at += n;
    if (auto r = parser.Feed(std::string_view(buf.data(), static_cast<size_t>(n))); !r) {
      return Fail(r.error());
    }
  }
  if (auto r = parser.Finish(); !r) {
    return Fail(r.error());
  }
  if (parts.empty()) {
    return Fail(ErrorCode::kInvalidArgument, "the upload has no file part");
  }
  return parts;
}

Json WriteInfo(const std::string& abs) {
  const size_t slash = abs.find_last_of('/');
  return Json{{"path", abs}, {"name", abs.substr(slash + 1)}, {"type", "file"}};
}

}  // namespace

void E2bApi::UploadParts(const Target& t, std::shared_ptr<std::vector<Part>> parts, size_t next,
                         std::shared_ptr<Json> written, http::Respond done) {
  if (next == parts->size()) {
    http::Response out;
    out.body = DumpJson(*written);
    return done(std::move(out));
  }
  auto e = d_.Find(t.id, DaemonApi::Caller{"", true});
  if (!e) {
    return done(RestError(502, "sandbox '" + t.id + "' is gone"));
  }
  const std::string& dest = (*parts)[next].path;
  const std::string parent = dest.substr(0, std::max<size_t>(1, dest.find_last_of('/')));
  // The directories the write creates belong to its user, as with envd.
  CallGuest(t, "fs/mkdir", Json{{"path", parent}, {"owner", t.user}},
            [this, t, parts, next, written, done, e = *e](Result<Json> m) {
              if (!m) {
                const int status = m.error().sys_errno ? m.error().sys_errno : 502;
                return done(RestError(status, (*parts)[next].path + ": " + m.error().message));
              }
              const Part& p = (*parts)[next];
              d_.RelayUpload(
                  e, "path=" + PercentEncode(p.path), "application/octet-stream", p.file, p.size,
                  [this, t, parts, next, written, done](http::Response r) {
                    const std::string abs = (*parts)[next].path;
                    if (r.status != 200) {
                      return done(RestError(r.status, abs + ": " + GuestMessage(r.body)));
                    }
                    // Written by the guest (root): hand the file to the user who wrote it.
                    CallGuest(t, "fs/chown", Json{{"path", abs}, {"owner", t.user}},
                              [this, t, parts, next, written, done, abs](Result<Json> c) {
                                if (!c) {
                                  const int status =
                                      c.error().sys_errno ? c.error().sys_errno : 502;
                                  return done(RestError(status, c.error().message));
                                }
                                written->push_back(WriteInfo(abs));
                                (*parts)[next].file.reset();  // frees its spool space now
                                UploadParts(t, parts, next + 1, written, done);
                              });
                  });
            });
}

void E2bApi::Download(const Target& t, const http::Request& req, http::Respond respond) {
  auto path = req.QueryParam("path");
  if (!path || path->empty()) {
    return respond(RestError(400, "the path query parameter is required"));
  }
  const std::string user = req.QueryParam("username").value_or(t.user);
  http::ClientRequest cr;
  cr.method = "GET";
  cr.target = "/api/v1/file/download?path=" + PercentEncode(ResolvePath(*path, user));
  cr.headers = {{"X-Access-Token", t.guest_token}};
  d_.client_.SendStreaming(
      t.socket, std::move(cr), d_.health_.deadlines().stream_idle,
      [respond](Result<http::ClientResponse> r) {
        if (!r) {
          return respond(RestError(502, "sandbox guest: " + r.error().message));
        }
        if (r->status != 200) {
          const int status = r->status;
          auto src = r->stream;
          auto acc = std::make_shared<std::string>();
          auto step = std::make_shared<std::function<void()>>();
          *step = [src, acc, respond, status, step] {
            src->Next([src, acc, respond, status, step](Result<std::string_view> b, bool last) {
              if (b) {
                acc->append(*b);
              }
              if (!b || last || acc->size() > (1 << 20)) {
                respond(RestError(status, GuestMessage(*acc)));
                *step = nullptr;
                return;
              }
              (*step)();
            });
          };
          return (*step)();
        }
        http::Response out;
        out.content_type = "application/octet-stream";
        out.stream = r->stream;
        respond(std::move(out));
      });
}

std::unique_ptr<http::BodySink> E2bApi::StreamBody(const http::Request& req) {
  if (req.method != "POST" || req.path != "/files" || !req.headers.count("e2b-sandbox-id")) {
    return nullptr;
  }
  std::optional<http::Response> refusal;
  auto t = EnvdTarget(req, false, [&refusal](http::Response r) { refusal = std::move(r); });
  if (!t) {
    return std::make_unique<AnswerSink>(std::move(*refusal));
  }
  // Without `path`, several files: each part's filename is its destination (SDK write([...])).
  const std::string path = req.QueryParam("path").value_or("");
  const std::string ctype = req.Header("content-type");
  if (!AsciiLower(ctype).starts_with("multipart/form-data")) {
    return std::make_unique<AnswerSink>(RestError(
        400, "uploads must be multipart/form-data (envd " + std::string(kEnvdVersion) + ")"));
  }
  auto fd = OpenUnlinkedFile(d_.opts_.spool_dir);
  if (!fd) {
    return std::make_unique<AnswerSink>(RestError(507, "spool upload: " + fd.error().message));
  }
  const std::string user = req.QueryParam("username").value_or(t->user);
  t->user = user;
  const std::string abs = path.empty() ? std::string() : ResolvePath(path, user);
  ++d_.in_flight_;
  return std::make_unique<SpoolSink>(std::move(*fd), [this, t = *t, abs, user, ctype](
                                                         std::shared_ptr<UniqueFd> file,
                                                         uint64_t size, http::Respond respond) {
    http::Respond done = [this, respond](http::Response out) {
      respond(std::move(out));
      --d_.in_flight_;
    };
    if (abs.empty()) {
      auto parts = SplitUpload(*file, ctype, d_.opts_.spool_dir, user);
      file.reset();
      if (!parts) {
        return done(RestError(HttpStatus(parts.error().code), parts.error().message));
      }
      return UploadParts(t, std::make_shared<std::vector<Part>>(std::move(*parts)), 0,
                         std::make_shared<Json>(Json::array()), done);
    }
    // One file: relayed as it came, after its directory is made (as its user's, as envd
    // makes it).
    auto e = d_.Find(t.id, DaemonApi::Caller{"", true});
    if (!e) {
      return done(RestError(502, "sandbox '" + t.id + "' is gone"));
    }
    const std::string parent = abs.substr(0, std::max<size_t>(1, abs.find_last_of('/')));
    CallGuest(t, "fs/mkdir", Json{{"path", parent}, {"owner", user}},
              [this, t, abs, user, ctype, file, size, done, e = *e](Result<Json> m) mutable {
                if (!m) {
                  const int status = m.error().sys_errno ? m.error().sys_errno : 502;
                  return done(RestError(status, m.error().message));
                }
                d_.RelayUpload(e, "path=" + PercentEncode(abs), ctype, std::move(file), size,
                               [this, t, abs, user, done](http::Response r) {
                                 if (r.status != 200) {
                                   return done(RestError(r.status, GuestMessage(r.body)));
                                 }
                                 // Written by the guest (root): hand the file to the user who wrote
                                 // it.
                                 CallGuest(t, "fs/chown", Json{{"path", abs}, {"owner", user}},
                                           [abs, done](Result<Json> c) {
                                             if (!c) {
                                               const int status =
                                                   c.error().sys_errno ? c.error().sys_errno : 502;
                                               return done(RestError(status, c.error().message));
                                             }
                                             http::Response out;
                                             out.body = DumpJson(Json::array({WriteInfo(abs)}));
                                             done(std::move(out));
                                           });
                               });
              });
  });
}

}  // namespace agentbox::daemon::e2b
