// envd's Connect-RPC services (process.Process, filesystem.Filesystem) and /health, translated
// onto the guest's exec/*, fs/* and file/* endpoints.
#include <boost/asio/steady_timer.hpp>
#include <mutex>

#include "common/json_util.h"
#include "common/log.h"
#include "common/strings.h"
#include "daemon/daemon_api.h"
#include "daemon/e2b/e2b_api.h"
#include "daemon/e2b/translate.h"

namespace agentbox::daemon::e2b {

namespace {

constexpr const char* kConnectJson = "application/connect+json";

http::Response RestError(int status, const std::string& message) {
  http::Response r;
  r.status = status;
  r.body = ApiErrorBody(status, message);
  return r;
}

http::Response ConnectUnaryError(int http_status, const std::string& message) {
  const std::string code = ConnectCode(http_status);
  http::Response r;
  r.status = ConnectHttpStatus(code);
  r.body = DumpJson(Json{{"code", code}, {"message", message}});
  return r;
}

http::Response ConnectUnaryErrorCode(const std::string& code, const std::string& message) {
  http::Response r;
  r.status = ConnectHttpStatus(code);
  r.body = DumpJson(Json{{"code", code}, {"message", message}});
  return r;
}

// A server-streaming answer that is only its end: errors of a stream travel in the end-of-stream
// envelope with HTTP 200 (Connect protocol).
http::Response StreamError(const std::string& code, const std::string& message) {
  http::Response r;
  r.content_type = kConnectJson;
  r.body = EndStream(std::make_pair(code, message));
  return r;
}

// Reads a whole (small) streamed body, then calls `done` with it.
void ReadAll(std::shared_ptr<http::BodySource> src, std::function<void(std::string)> done) {
  auto acc = std::make_shared<std::string>();
  auto step = std::make_shared<std::function<void()>>();
  *step = [src, acc, done, step] {
    src->Next([src, acc, done, step](Result<std::string_view> bytes, bool last) {
      if (bytes) {
        acc->append(*bytes);
      }
      if (!bytes || last || acc->size() > (1 << 20)) {
        done(std::move(*acc));
        *step = nullptr;  // breaks the cycle
        return;
      }
      (*step)();
    });
  };
  (*step)();
}

std::string GuestMessage(const std::string& body) {
  const Json env = ParseUntrustedJson(body);
  return ValueOr(env, "message", body);
}

// Turns the guest's NDJSON process events into Connect envelopes of StartResponse /
// ConnectResponse, and ends with the end-of-stream envelope: `{}` after the process's end
// event, deadline_exceeded when Connect-Timeout-Ms passed first (the process is killed, as
// envd does), unavailable when the guest connection broke.
class ProcessRelay : public http::BodySource, public std::enable_shared_from_this<ProcessRelay> {
 public:
  using Kill = std::function<void(int64_t pid)>;
  // Turns one guest line into the message of one envelope (nullopt: nothing to send).
  using Translate = std::optional<Json> (*)(const Json&);
  ProcessRelay(std::shared_ptr<http::BodySource> inner, Kill kill,
               Translate translate = &ProcessEventFromGuest)
      : inner_(std::move(inner)), kill_(std::move(kill)), translate_(translate) {}

  // Arms the Connect-Timeout-Ms deadline on `io`.
  void Deadline(boost::asio::io_context& io, std::chrono::milliseconds after) {
    timer_ = std::make_unique<boost::asio::steady_timer>(io);
    timer_->expires_after(after);
    std::weak_ptr<ProcessRelay> weak = shared_from_this();
    timer_->async_wait([weak](const boost::system::error_code& ec) {
      auto self = weak.lock();
      if (ec || !self) {
        return;
      }
      int64_t pid = 0;
      {
        std::lock_guard<std::mutex> lock(self->mu_);
        if (self->ended_) {
          return;
        }
        self->timed_out_ = true;
        pid = self->pid_;
      }
      if (pid > 0 && self->kill_) {
        self->kill_(pid);  // its end event then closes the stream
      }
    });
  }
  ~ProcessRelay() override {
    if (timer_) {
      timer_->cancel();
    }
  }

  void Next(Callback cb) override {
    if (done_) {
      cb(std::string_view(), true);
      return;
    }
    std::weak_ptr<ProcessRelay> weak = shared_from_this();
    inner_->Next([weak, cb](Result<std::string_view> bytes, bool last) {
      auto self = weak.lock();
      if (!self) {
        return;
      }
      self->OnInner(std::move(bytes), last, cb);
    });
  }

 private:
  void OnInner(Result<std::string_view> bytes, bool last, const Callback& cb) {
    out_.clear();
    if (!bytes) {
      Finish(std::make_pair(std::string("unavailable"),
                            "sandbox stream ended: " + bytes.error().message));
      return cb(std::string_view(out_), true);
    }
    pending_.append(*bytes);
    size_t nl;
    while ((nl = pending_.find('\n')) != std::string::npos) {
      const Json line = ParseUntrustedJson(pending_.substr(0, nl));
      pending_.erase(0, nl + 1);
      if (line.is_object() && ValueOr(line, "event", "") == "start") {
        std::lock_guard<std::mutex> lock(mu_);
        pid_ = ValueOr(line, "pid", int64_t{0});
      }
      if (line.is_object() && ValueOr(line, "event", "") == "end") {
        saw_end_ = true;
      }
      if (auto ev = translate_(line)) {
        out_ += Envelope(0, DumpJson(*ev));
      }
    }
    if (last) {
      bool timed_out;
      {
        std::lock_guard<std::mutex> lock(mu_);
        timed_out = timed_out_;
      }
      if (timed_out) {
        Finish(std::make_pair(std::string("deadline_exceeded"),
                              std::string("the command ran longer than its timeout "
                                          "(Connect-Timeout-Ms) and was killed")));
      } else if (!saw_end_) {
        Finish(std::make_pair(std::string("unavailable"),
                              std::string("the process stream ended without an end event")));
      } else {
        Finish(std::nullopt);
      }
      return cb(std::string_view(out_), true);
    }
    if (out_.empty()) {  // half a line so far
      return Next(cb);
    }
    cb(std::string_view(out_), false);
  }

  void Finish(const std::optional<std::pair<std::string, std::string>>& error) {
    out_ += EndStream(error);
    done_ = true;
    std::lock_guard<std::mutex> lock(mu_);
    ended_ = true;
  }

  std::shared_ptr<http::BodySource> inner_;
  Kill kill_;
  Translate translate_;
  std::unique_ptr<boost::asio::steady_timer> timer_;
  std::string pending_;  // bytes of an incomplete line
  std::string out_;      // what the last callback points at
  bool saw_end_ = false;
  bool done_ = false;
  std::mutex mu_;  // the timer's view of the stream
  int64_t pid_ = 0;
  bool timed_out_ = false;
  bool ended_ = false;
};

}  // namespace

std::optional<E2bApi::Target> E2bApi::EnvdTarget(const http::Request& req, bool connect_shaped,
                                                 const http::Respond& respond) const {
  const std::string id = req.Header("e2b-sandbox-id");
  auto e = d_.Find(id, DaemonApi::Caller{"", true});
  if (!e || !e->info.guest_endpoint.starts_with("unix:")) {
    // What E2B's edge answers for a sandbox that is gone: the SDK reports it as ended.
    const std::string msg = "sandbox '" + id + "' not found or not running";
    if (connect_shaped) {
      http::Response r = ConnectUnaryErrorCode("unavailable", msg);
      r.status = 502;
      respond(std::move(r));
    } else {
      respond(RestError(502, msg));
    }
    return std::nullopt;
  }
  if (!SecretEquals(req.Header("x-access-token"), EnvdAccessToken(e->info.guest_token))) {
    const std::string msg = "missing or wrong X-Access-Token (the sandbox's envdAccessToken)";
    respond(connect_shaped ? ConnectUnaryError(401, msg) : RestError(401, msg));
    return std::nullopt;
  }
  if (const std::string why = EnvdUnsupported(e->info.backend, e->info.spec.run_mode);
      !why.empty() && req.path != "/health") {
    // Streams carry their error in the end-of-stream envelope (the SDK reads no other).
    const bool stream = req.path == "/process.Process/Start" ||
                        req.path == "/process.Process/Connect" ||
                        req.path == "/filesystem.Filesystem/WatchDir";
    respond(!connect_shaped ? RestError(501, why)
            : stream        ? StreamError("unimplemented", why)
                            : ConnectUnaryError(501, why));
    return std::nullopt;
  }
  Target t;
  t.id = id;
  t.socket = e->info.guest_endpoint.substr(5);
  t.guest_token = e->info.guest_token;
  t.backend = e->info.backend;
  t.user = BasicUser(req.Header("authorization")).value_or(kDefaultUser);
  return t;
}

void E2bApi::Envd(const http::Request& req, http::Respond respond) {
  const std::string& p = req.path;
  if (p == "/health") {
    auto t = EnvdTarget(req, false, respond);
    return t ? Health(*t, std::move(respond)) : void();
  }
  if (p == "/files") {
    if (req.method != "GET") {
      return respond(RestError(405, "use GET or POST on /files"));
    }
    auto t = EnvdTarget(req, false, respond);
    return t ? Download(*t, req, std::move(respond)) : void();
  }
  const bool process = p.starts_with("/process.Process/");
  const bool fs = p.starts_with("/filesystem.Filesystem/");
  if (!process && !fs) {
    return respond(RestError(404, "no such envd endpoint: " + p));
  }
  if (req.method != "POST") {
    return respond(ConnectUnaryError(405, "Connect calls use POST"));
  }
  auto t = EnvdTarget(req, true, respond);
  if (!t) {
    return;
  }
  const std::string method = p.substr(1);
  const std::string op = method.substr(method.find('/') + 1);
  const std::string ctype = AsciiLower(req.Header("content-type"));
  const bool streaming = process && (op == "Start" || op == "Connect");
  if (streaming || (fs && op == "WatchDir")) {
    if (!ctype.starts_with(kConnectJson)) {
      http::Response r = ConnectUnaryError(400, "use Content-Type: application/connect+json");
      r.status = 415;
      return respond(std::move(r));
    }
    if (!streaming) {
      return WatchStream(*t, req, std::move(respond));
    }
    return ProcessStream(*t, req, op, std::move(respond));
  }
  if (!ctype.starts_with("application/json")) {
    http::Response r = ConnectUnaryError(400, "use Content-Type: application/json");
    r.status = 415;
    return respond(std::move(r));
  }
  const Json msg = ParseUntrustedJson(req.body.empty() ? "{}" : req.body);
  if (!msg.is_object()) {
    return respond(ConnectUnaryError(400, "the request message must be a JSON object"));
  }
  Unary(*t, method, msg, std::move(respond));
}

void E2bApi::CallGuest(const Target& t, const std::string& op, const Json& body, GuestDone done) {
  http::ClientRequest cr;
  cr.method = "POST";
  cr.target = "/api/v1/" + op;
  cr.headers = {{"X-Access-Token", t.guest_token}, {"Content-Type", "application/json"}};
  cr.body = DumpJson(body);
  d_.client_.Send(t.socket, std::move(cr), d_.health_.deadlines().call,
                  [this, backend = t.backend, op, done = std::move(done),
                   start = std::chrono::steady_clock::now()](Result<http::ClientResponse> r) {
                    d_.CountRelayed(backend, "e2b/" + op, r, start);  // metrics and breaker
                    if (!r) {
                      return done(Fail(r.error()));
                    }
                    const Json env = ParseUntrustedJson(r->body);
                    if (r->status == 200 && env.is_object() && ValueOr(env, "success", false)) {
                      return done(ValueOr(env, "data", Json::object()));
                    }
                    Error e{ErrorCode::kInternal, GuestMessage(r->body)};
                    e.sys_errno = r->status;  // carried as the guest's HTTP status
                    done(Fail(std::move(e)));
                  });
}

void E2bApi::ProcessStream(const Target& t, const http::Request& req, const std::string& op,
                           http::Respond respond) {
  auto payload = FirstEnvelope(req.body);
  if (!payload) {
    return respond(StreamError("invalid_argument", payload.error().message));
  }
  const Json msg = ParseUntrustedJson(*payload);
  Result<Json> guest_body =
      op == "Start" ? ExecStartFromStartRequest(msg, t.user) : GuestSelector(msg);
  if (!guest_body) {
    return respond(StreamError("invalid_argument", guest_body.error().message));
  }
  http::ClientRequest cr;
  cr.method = "POST";
  cr.target = op == "Start" ? "/api/v1/exec/start" : "/api/v1/exec/connect";
  cr.headers = {{"X-Access-Token", t.guest_token}, {"Content-Type", "application/json"}};
  cr.body = DumpJson(*guest_body);
  std::optional<std::chrono::milliseconds> deadline;
  if (auto ms = req.Header("connect-timeout-ms"); !ms.empty()) {
    char* end = nullptr;
    const long long v = std::strtoll(ms.c_str(), &end, 10);
    if (end && *end == '\0' && v > 0) {
      deadline = std::chrono::milliseconds(v);
    }
  }
  const bool kill_on_deadline = op == "Start";
  d_.client_.SendStreaming(
      t.socket, std::move(cr), d_.health_.deadlines().stream_idle,
      [this, t, respond, deadline, kill_on_deadline,
       start = std::chrono::steady_clock::now()](Result<http::ClientResponse> r) {
        // Counted when the stream opens (or fails to), as the native event stream is.
        d_.CountRelayed(t.backend, kill_on_deadline ? "e2b/exec/start" : "e2b/exec/connect", r,
                        start);
        if (!r) {
          return respond(StreamError("unavailable", "sandbox guest: " + r.error().message));
        }
        if (r->status != 200) {
          const int status = r->status;
          return ReadAll(r->stream, [respond, status](std::string body) {
            respond(StreamError(ConnectCode(status), GuestMessage(body)));
          });
        }
        ProcessRelay::Kill kill;
        if (kill_on_deadline) {
          kill = [this, t](int64_t pid) {
            CallGuest(t, "exec/signal", Json{{"pid", pid}, {"signal", 9}}, [](Result<Json>) {});
          };
        }
        auto relay = std::make_shared<ProcessRelay>(r->stream, std::move(kill));
        if (deadline) {
          relay->Deadline(d_.io_, *deadline);
        }
        http::Response out;
        out.content_type = kConnectJson;
        out.headers.emplace_back("Cache-Control", "no-cache");
        out.stream = std::move(relay);
        respond(std::move(out));
      });
}

void E2bApi::WatchStream(const Target& t, const http::Request& req, http::Respond respond) {
  auto payload = FirstEnvelope(req.body);
  if (!payload) {
    return respond(StreamError("invalid_argument", payload.error().message));
  }
  const Json msg = ParseUntrustedJson(*payload);
  if (!msg.is_object() || !msg.contains("path") || !msg["path"].is_string() ||
      msg["path"].get<std::string>().empty()) {
    return respond(StreamError("invalid_argument", "WatchDirRequest.path is required"));
  }
  if (msg.contains("recursive") && !msg["recursive"].is_boolean()) {
    return respond(StreamError("invalid_argument", "WatchDirRequest.recursive must be a boolean"));
  }
  if (ValueOr(msg, "includeEntry", ValueOr(msg, "include_entry", false))) {
    return respond(StreamError("unimplemented", "includeEntry is not supported by agentboxd"));
  }
  http::ClientRequest cr;
  cr.method = "POST";
  cr.target = "/api/v1/fs/watch";
  cr.headers = {{"X-Access-Token", t.guest_token}, {"Content-Type", "application/json"}};
  cr.body = DumpJson(Json{{"path", ResolvePath(msg["path"].get<std::string>(), t.user)},
                          {"recursive", ValueOr(msg, "recursive", false)}});
  d_.client_.SendStreaming(
      t.socket, std::move(cr), d_.health_.deadlines().stream_idle,
      [this, t, respond, start = std::chrono::steady_clock::now()](Result<http::ClientResponse> r) {
        d_.CountRelayed(t.backend, "e2b/fs/watch", r, start);
        if (!r) {
          return respond(StreamError("unavailable", "sandbox guest: " + r.error().message));
        }
        if (r->status != 200) {
          const int status = r->status;
          return ReadAll(r->stream, [respond, status](std::string body) {
            respond(StreamError(ConnectCode(status), GuestMessage(body)));
          });
        }
        http::Response out;
        out.content_type = kConnectJson;
        out.headers.emplace_back("Cache-Control", "no-cache");
        out.stream = std::make_shared<ProcessRelay>(r->stream, nullptr, &WatchEventFromGuest);
        respond(std::move(out));
      });
}

void E2bApi::Unary(const Target& t, const std::string& method, const Json& msg,
                   http::Respond respond) {
  // Answers a guest result: `shape` turns its data into the response message.
  auto relay = [respond](std::function<Json(const Json&)> shape) {
    return [respond, shape = std::move(shape)](Result<Json> r) {
      if (!r) {
        const int status = r.error().sys_errno ? r.error().sys_errno : 503;
        return respond(ConnectUnaryError(status, r.error().message));
      }
      http::Response out;
      out.body = DumpJson(shape(*r));
      respond(std::move(out));
    };
  };
  auto empty = [](const Json&) { return Json::object(); };
  auto bad = [&](const Error& e) { respond(ConnectUnaryError(400, e.message)); };
  auto path_of = [&](const char* key) -> std::optional<std::string> {
    if (!msg.contains(key) || !msg[key].is_string() || msg[key].get<std::string>().empty()) {
      return std::nullopt;
    }
    return ResolvePath(msg[key].get<std::string>(), t.user);
  };

  if (method == "process.Process/List") {
    return CallGuest(t, "exec/list", Json::object(), relay(&ListResponseFromGuest));
  }
  if (method == "process.Process/SendInput" || method == "process.Process/CloseStdin" ||
      method == "process.Process/SendSignal") {
    auto sel = GuestSelector(msg);
    if (!sel) {
      return bad(sel.error());
    }
    Json body = *sel;
    std::string op = "exec/close-stdin";
    if (method == "process.Process/SendInput") {
      const Json input = ValueOr(msg, "input", Json::object());
      // The guest writes to the process's pty when it has one, else to its stdin pipe.
      const char* key = input.is_object() && input.contains("pty") ? "pty" : "stdin";
      if (!input.is_object() || !input.contains(key) || !input[key].is_string()) {
        return respond(
            ConnectUnaryError(400, "input.stdin or input.pty (base64 bytes) is required"));
      }
      body["data"] = input[key];
      op = "exec/input";
    } else if (method == "process.Process/SendSignal") {
      auto sig = SignalNumber(ValueOr(msg, "signal", Json()));
      if (!sig) {
        return bad(sig.error());
      }
      body["signal"] = *sig;
      op = "exec/signal";
    }
    return CallGuest(t, op, body, relay(empty));
  }
  if (method == "process.Process/Update") {
    auto sel = GuestSelector(msg);
    if (!sel) {
      return bad(sel.error());
    }
    if (!msg.contains("pty")) {
      return respond(ConnectUnaryError(400, "pty {size: {cols, rows}} is required"));
    }
    auto size = GuestPtySize(msg["pty"]);
    if (!size) {
      return bad(size.error());
    }
    Json body = *sel;
    body["cols"] = (*size)["cols"];
    body["rows"] = (*size)["rows"];
    return CallGuest(t, "exec/resize", body, relay(empty));
  }
  if (method == "filesystem.Filesystem/Stat") {
    auto path = path_of("path");
    if (!path) {
      return respond(ConnectUnaryError(400, "path is required"));
    }
    return CallGuest(t, "fs/stat", Json{{"path", *path}}, relay([](const Json& d) {
                       return Json{{"entry", EntryInfoFromGuest(ValueOr(d, "entry", Json()))}};
                     }));
  }
  if (method == "filesystem.Filesystem/ListDir") {
    auto path = path_of("path");
    if (!path) {
      return respond(ConnectUnaryError(400, "path is required"));
    }
    int64_t depth = 1;
    if (msg.contains("depth") && msg["depth"].is_number_integer()) {
      depth = std::clamp<int64_t>(msg["depth"].get<int64_t>(), 1, 64);
    }
    return CallGuest(t, "fs/list", Json{{"path", *path}, {"depth", depth}},
                     relay([](const Json& d) {
                       Json entries = Json::array();
                       for (const auto& e : ValueOr(d, "entries", Json::array())) {
                         entries.push_back(EntryInfoFromGuest(e));
                       }
                       return Json{{"entries", std::move(entries)}};
                     }));
  }
  if (method == "filesystem.Filesystem/MakeDir") {
    auto path = path_of("path");
    if (!path) {
      return respond(ConnectUnaryError(400, "path is required"));
    }
    return CallGuest(
        t, "fs/mkdir", Json{{"path", *path}, {"owner", t.user}}, [respond, path](Result<Json> r) {
          if (!r) {
            const int status = r.error().sys_errno ? r.error().sys_errno : 503;
            return respond(ConnectUnaryError(status, r.error().message));
          }
          if (!ValueOr(*r, "created", false)) {
            return respond(
                ConnectUnaryErrorCode("already_exists", "directory " + *path + " already exists"));
          }
          http::Response out;
          out.body = DumpJson(Json{{"entry", EntryInfoFromGuest(ValueOr(*r, "entry", Json()))}});
          respond(std::move(out));
        });
  }
  if (method == "filesystem.Filesystem/Move") {
    auto from = path_of("source");
    auto to = path_of("destination");
    if (!from || !to) {
      return respond(ConnectUnaryError(400, "source and destination are required"));
    }
    return CallGuest(t, "fs/move", Json{{"source", *from}, {"destination", *to}},
                     relay([](const Json& d) {
                       return Json{{"entry", EntryInfoFromGuest(ValueOr(d, "entry", Json()))}};
                     }));
  }
  if (method == "filesystem.Filesystem/Remove") {
    auto path = path_of("path");
    if (!path) {
      return respond(ConnectUnaryError(400, "path is required"));
    }
    return CallGuest(t, "file/delete", Json{{"path", *path}, {"recursive", true}}, relay(empty));
  }
  if (method == "filesystem.Filesystem/CreateWatcher" ||
      method == "filesystem.Filesystem/GetWatcherEvents" ||
      method == "filesystem.Filesystem/RemoveWatcher") {
    return Watchers(t, method, msg, std::move(respond));
  }
  respond(ConnectUnaryErrorCode("unimplemented", method + " is not supported by agentboxd"));
}

void E2bApi::Health(const Target& t, http::Respond respond) {
  http::ClientRequest cr;
  cr.method = "GET";
  cr.target = "/api/v1/health";
  cr.headers = {{"X-Access-Token", t.guest_token}};
  d_.client_.Send(t.socket, std::move(cr), std::chrono::seconds(5),
                  [respond](Result<http::ClientResponse> r) {
                    http::Response out;
                    if (r && r->status == 200) {
                      out.status = 204;
                      out.content_type.clear();
                    } else {
                      out.status = 502;
                      out.body = ApiErrorBody(502, "the sandbox's guest does not answer");
                    }
                    respond(std::move(out));
                  });
}

}  // namespace agentbox::daemon::e2b
