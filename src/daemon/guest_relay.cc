#include "daemon/daemon_api.h"
#include "daemon/spool_sink.h"
#include "daemon/api_detail.h"

#include <fcntl.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <set>

#include "common/fs_util.h"
#include "common/log.h"
#include "common/strings.h"
#include "common/time_util.h"
#include "daemon/disk_floor.h"
#include "daemon/request_fields.h"
#include "http/envelope.h"
#include "http/field_check.h"
#include "http/queue_source.h"

namespace agentbox::daemon {

using detail::BackendOk;
using detail::Clock;
using detail::RemainingSeconds;
using detail::SplitPath;

namespace {

// Passes a guest's event stream through, and turns a broken guest connection (the sandbox died)
// into a final `error` event instead of a silently cut stream.
class StreamRelay : public http::BodySource {
 public:
  // `on_error` learns why the stream broke (kTimeout: the guest fell silent).
  StreamRelay(std::shared_ptr<http::BodySource> inner, std::function<void(const Error&)> on_error)
      : inner_(std::move(inner)), on_error_(std::move(on_error)) {}
  void Next(Callback cb) override {
    if (ended_) {
      cb(std::string_view(), true);
      return;
    }
    inner_->Next([this, cb](Result<std::string_view> bytes, bool last) {
      if (!bytes) {
        ended_ = true;
        if (on_error_) {
          on_error_(bytes.error());
        }
        error_ = "event: error\ndata: " +
                 DumpJson(Json{{"message", "sandbox stream ended: " + bytes.error().message}}) +
                 "\n\n";
        cb(std::string_view(error_), true);
        return;
      }
      if (last) {
        ended_ = true;
      }
      cb(bytes, last);
    });
  }

 private:
  std::shared_ptr<http::BodySource> inner_;
  std::function<void(const Error&)> on_error_;
  bool ended_ = false;
  std::string error_;
};

}  // namespace

std::unique_ptr<http::BodySink> DaemonApi::StreamBody(const http::Request& req) {
  if (auto e2b = e2b_->StreamBody(req)) {
    return e2b;
  }
  // Uploads and archives under /v1/sandboxes/{id}/api/v1/file/ are relayed on raw connections
  // (bulk_relay.cc) and never get here, except on TLS connections, where the bytes are not the
  // socket's: those are spooled to disk and relayed as one request.
  auto parts = SplitPath(req.path);
  if (req.method != "POST" || parts.size() != 7 || parts[0] != "v1" || parts[1] != "sandboxes" ||
      parts[3] != "api" || parts[4] != "v1" || parts[5] != "file" ||
      (parts[6] != "upload" && parts[6] != "archive")) {
    return nullptr;
  }
  auto caller = Authenticate(req);
  if (!caller) {
    return std::make_unique<AnswerSink>(JsonErr(
        Error{ErrorCode::kUnauthorized, "missing or invalid API key (Authorization: Bearer KEY)"}));
  }
  const std::string id = parts[2];
  const std::string op = "file/" + parts[6];
  auto entry = Find(id, *caller);
  // A sandbox of a shared backend that another replica created is looked up once the body is
  // spooled (the lookup blocks, and this runs on the I/O thread).
  const bool look_up_later = !entry && HasSharedBackend() && ValidSandboxId(id);
  if (!entry && !look_up_later) {
    return std::make_unique<AnswerSink>(
        JsonErr(Error{ErrorCode::kNotFound, "sandbox '" + id + "' not found"}));
  }
  auto fd = OpenUnlinkedFile(opts_.spool_dir);
  if (!fd) {
    return std::make_unique<AnswerSink>(JsonErr(
        Error{fd.error().code, "spool upload: " + fd.error().message, fd.error().sys_errno}));
  }
  const std::string query = req.query;
  const std::string content_type = req.Header("content-type");
  ++in_flight_;
  return std::make_unique<SpoolSink>(
      std::move(*fd), [this, id, op, entry, look_up_later, caller = *caller, query, content_type](
                          std::shared_ptr<UniqueFd> file, uint64_t size, http::Respond respond) {
        // In flight until answered, however the answer comes.
        http::Respond done = [this, respond](http::Response out) {
          respond(std::move(out));
          --in_flight_;
        };
        if (!look_up_later) {
          // Through the migration gate (migrate.cc): the sandbox may have moved meanwhile.
          return AfterMove(id, done, [this, id, op, caller, query, content_type,
                                      file, size](http::Respond r) {
            auto found = Find(id, caller);
            if (!found) {
              return r(JsonErr(Error{ErrorCode::kNotFound, "sandbox '" + id + "' not found"}));
            }
            RelayUpload(*found, query, content_type, file, size, r, op);
          });
        }
        pool_.Post([this, id, op, caller, query, content_type, file, size, done] {
          FindShared(id);
          auto found = Find(id, caller);
          if (!found) {
            return done(JsonErr(Error{ErrorCode::kNotFound, "sandbox '" + id + "' not found"}));
          }
          boost::asio::post(io_, [this, found = *found, op, query, content_type, file, size, done] {
            RelayUpload(found, query, content_type, file, size, done, op);
          });
        });
      });
}

void DaemonApi::RelayUpload(const SandboxEntry& entry, const std::string& query,
                            const std::string& content_type, std::shared_ptr<UniqueFd> file,
                            uint64_t size, const http::Respond& done, const std::string& op) {
  http::ClientRequest cr;
  cr.method = "POST";
  cr.target = "/api/v1/" + op + (query.empty() ? "" : "?" + query);
  cr.headers = {{"Content-Type", content_type}, {"X-Access-Token", entry.info.guest_token}};
  cr.body_file = std::move(file);
  cr.body_file_size = size;
  const auto deadline = UploadDeadline(health_.deadlines(), size);
  health_.BeforeCall(
      entry.info, op, done,
      [this, entry, op, deadline, done, cr = std::move(cr)]() mutable {
        client_.Send(entry.info.guest_endpoint.substr(5), std::move(cr), deadline,
                     [this, entry, op, deadline, done,
                      start = Clock::now()](Result<http::ClientResponse> r) {
                       CountRelayed(entry.info.backend, op, r, start);
                       if (GuestTimedOut(r)) {
                         return health_.OnTimeout(entry.info, op, deadline, done);
                       }
                       if (!r) {
                         return done(JsonErr(r.error()));
                       }
                       health_.Answered(entry.info.id);
                       http::Response out;
                       out.status = r->status;
                       http::RelayWarnings(*r, out);
                       out.body = std::move(r->body);
                       done(std::move(out));
                     });
      });
}

void DaemonApi::Forward(const std::string& id, const std::string& rest, const http::Request& req,
                        const Caller& caller, http::Respond respond) {
  auto e = Find(id, caller);
  if (!e) {
    return respond(JsonErr({ErrorCode::kNotFound, "sandbox '" + id + "' not found"}));
  }
  if (!e->info.guest_endpoint.starts_with("unix:")) {
    return respond(
        JsonErr({ErrorCode::kUnavailable, "sandbox '" + id + "' has no reachable guest endpoint"}));
  }
  http::ClientRequest cr;
  cr.method = req.method;
  cr.target = "/api/v1/" + rest + (req.query.empty() ? "" : "?" + req.query);
  cr.headers.emplace_back("X-Access-Token", e->info.guest_token);
  if (auto ct = req.Header("content-type"); !ct.empty()) {
    cr.headers.emplace_back("Content-Type", ct);
  }
  cr.body = req.body;
  const std::string path = e->info.guest_endpoint.substr(5);
  // Shell calls may block for as long as the caller asked (wait_seconds, timeout): their
  // deadline follows the request; a download's is an idle limit.
  const bool download = rest == "file/download";
  auto timeout =
      download ? health_.deadlines().stream_idle
               : CallDeadline(health_.deadlines(), rest, req.body, RemainingSeconds(e->info));
  if (rest == "shell/run") {
    // It waits for the whole command, which on a job backend first waits for its start.
    timeout += std::chrono::milliseconds(static_cast<int64_t>(
        e->backend->GetCapabilities().command_start_allowance_s * 1000.0));
  }
  auto relay = [this, info = e->info, rest, timeout, respond,
                request = SessionKeeper::Watches(rest) ? req.body : std::string(),
                start = Clock::now()](Result<http::ClientResponse> r) {
    CountRelayed(info.backend, rest, r, start);
    if (GuestTimedOut(r)) {
      return health_.OnTimeout(info, rest, timeout, respond);
    }
    if (!r) {
      return respond(JsonErr(r.error()));
    }
    health_.Answered(info.id);
    http::Response out;
    out.status = r->status;
    out.content_type = r->Header("content-type");
    if (auto cd = r->Header("content-disposition"); !cd.empty()) {
      out.headers.emplace_back("Content-Disposition", cd);
    }
    http::RelayWarnings(*r, out);
    out.body = std::move(r->body);
    if (out.status == 200 && SessionKeeper::Watches(rest)) {
      out.body = sessions_.Relayed(info, rest, request, std::move(out.body));
    }
    out.stream = std::move(r->stream);
    respond(std::move(out));
  };
  health_.BeforeCall(
      e->info, rest, respond,
      [this, download, path, cr = std::move(cr), timeout, relay = std::move(relay)]() mutable {
        if (download) {  // streamed: files may be far larger than memory
          client_.SendStreaming(path, std::move(cr), timeout, std::move(relay));
        } else {
          client_.Send(path, std::move(cr), timeout, std::move(relay));
        }
      });
}

void DaemonApi::Stream(const std::string& id, const std::string& session, const http::Request& req,
                       const Caller& caller, http::Respond respond) {
  auto e = Find(id, caller);
  if (!e) {
    return respond(JsonErr({ErrorCode::kNotFound, "sandbox '" + id + "' not found"}));
  }
  http::ClientRequest cr;
  cr.method = "GET";
  cr.target = "/api/v1/shell/stream?id=" + PercentEncode(session);
  if (auto off = req.QueryParam("offset"); off) {
    cr.target += "&offset=" + PercentEncode(*off);
  }
  cr.headers.emplace_back("X-Access-Token", e->info.guest_token);
  // An event stream is idle for long stretches; the guest sends a keep-alive every 15 s, so
  // a longer silence means the guest stopped answering.
  const auto idle = health_.deadlines().stream_idle;
  auto open = [this, info = e->info, idle, respond](Result<http::ClientResponse> r,
                                                    Clock::time_point start) {
    // Counted when the stream opens (or fails to).
    CountRelayed(info.backend, "shell/stream", r, start);
    if (GuestTimedOut(r)) {
      return health_.OnTimeout(info, "shell/stream", idle, respond);
    }
    if (!r) {
      return respond(JsonErr(r.error()));
    }
    health_.Answered(info.id);
    http::Response out;
    out.status = r->status;
    out.content_type = r->Header("content-type");
    if (r->status == 200) {
      out.headers.emplace_back("Cache-Control", "no-cache");
      out.stream = std::make_shared<StreamRelay>(r->stream, [this, info, idle](const Error& err) {
        if (err.code == ErrorCode::kTimeout) {
          health_.OnTimeout(info, "shell/stream", idle, nullptr);
        }
      });
    } else {
      out.stream = r->stream;
    }
    respond(std::move(out));
  };
  health_.BeforeCall(e->info, "shell/stream", respond,
                     [this, path = e->info.guest_endpoint.substr(5), cr = std::move(cr), idle,
                      open = std::move(open)]() mutable {
                       client_.SendStreaming(
                           path, std::move(cr), idle,
                           [open, start = Clock::now()](Result<http::ClientResponse> r) {
                             open(std::move(r), start);
                           });
                     });
}

}  // namespace agentbox::daemon
