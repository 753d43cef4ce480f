// envd's file transfer endpoints: GET /files (download, streamed) and POST /files (multipart
// upload, spooled to disk and relayed to the guest's file/upload).
#include <unistd.h>

#include "common/fs_util.h"
#include "common/strings.h"
#include "daemon/daemon_api.h"
#include "daemon/e2b/e2b_api.h"
#include "daemon/e2b/translate.h"
#include "daemon/spool_sink.h"

namespace agentbox::daemon::e2b {

using daemon::AnswerSink;
using daemon::SpoolSink;

namespace {

http::Response RestError(int status, const std::string& message) {
  http::Response r;
  r.status = status;
  r.body = ApiErrorBody(status, message);
  return r;
}

std::string GuestMessage(const std::string& body) {
  const Json env = Json::parse(body, nullptr, false);
  return env.is_object() ? env.value("message", body) : body;
}

}  // namespace

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
  auto path = req.QueryParam("path");
  if (!path || path->empty()) {
    return std::make_unique<AnswerSink>(RestError(
        400, "the path query parameter is required (writing several files in one request is "
             "not supported by agentboxd)"));
  }
  const std::string ctype = req.Header("content-type");
  if (!AsciiLower(ctype).starts_with("multipart/form-data")) {
    return std::make_unique<AnswerSink>(
        RestError(400, "uploads must be multipart/form-data (envd " + std::string(kEnvdVersion) +
                           ")"));
  }
  auto fd = OpenUnlinkedFile(d_.opts_.spool_dir);
  if (!fd) {
    return std::make_unique<AnswerSink>(RestError(507, "spool upload: " + fd.error().message));
  }
  const std::string user = req.QueryParam("username").value_or(t->user);
  const std::string abs = ResolvePath(*path, user);
  ++d_.in_flight_;
  return std::make_unique<SpoolSink>(
      std::move(*fd), [this, t = *t, abs, user, ctype](std::shared_ptr<UniqueFd> file,
                                                       uint64_t size, http::Respond respond) {
        http::Respond done = [this, respond](http::Response out) {
          respond(std::move(out));
          --d_.in_flight_;
        };
        auto e = d_.Find(t.id, DaemonApi::Caller{"", true});
        if (!e) {
          return done(RestError(502, "sandbox '" + t.id + "' is gone"));
        }
        d_.RelayUpload(
            *e, "path=" + PercentEncode(abs), ctype, std::move(file), size,
            [this, t, abs, user, done](http::Response r) {
              if (r.status != 200) {
                return done(RestError(r.status, GuestMessage(r.body)));
              }
              // Written by the guest (root): hand the file to the user who wrote it.
              CallGuest(t, "fs/chown", Json{{"path", abs}, {"owner", user}},
                        [abs, done](Result<Json> c) {
                          if (!c) {
                            const int status = c.error().sys_errno ? c.error().sys_errno : 502;
                            return done(RestError(status, c.error().message));
                          }
                          const size_t slash = abs.find_last_of('/');
                          http::Response out;
                          out.body = DumpJson(Json::array(
                              {{{"path", abs},
                                {"name", abs.substr(slash + 1)},
                                {"type", "file"}}}));
                          done(std::move(out));
                        });
            });
      });
}

}  // namespace agentbox::daemon::e2b
