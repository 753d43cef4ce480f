#include "daemon/daemon_api.h"

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

namespace {

using Clock = std::chrono::steady_clock;

// Whether an operation counts as the backend's success: a refusal of the caller's input (a 4xx,
// such as an image that does not exist) is not the backend failing, and must not feed the
// rollout's breaker.
template <class T>
bool BackendOk(const Result<T>& r) {
  return r.has_value() || HttpStatus(r.error().code) < 500;
}

// How long the sandbox still lives: the longest a call to its guest can legitimately wait.
double RemainingSeconds(const SandboxInfo& info) {
  return info.expires_at > 0 ? std::max(0.0, info.expires_at - NowUnix()) : 7 * 86400.0;
}

std::vector<std::string> Split(const std::string& path) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < path.size()) {
    size_t slash = path.find('/', pos);
    if (slash == std::string::npos) {
      slash = path.size();
    }
    if (slash > pos) {
      out.push_back(path.substr(pos, slash - pos));
    }
    pos = slash + 1;
  }
  return out;
}

Result<ResourceLimits> ParseLimits(const Json& body) {
  ResourceLimits l;
  auto it = body.find("limits");
  if (it == body.end() || it->is_null()) {
    return l;
  }
  if (!it->is_object()) {
    return Fail(FieldError("limits", "must be an object"));
  }
  JsonFields f(*it);
  auto mem = f.OptInt("memory_mb", 16, 1 << 20);
  auto cpus = f.OptNumber("cpus", 0.01, 1024);
  auto pids = f.OptInt("pids", 8, 1 << 22);
  auto tmp = f.OptInt("tmp_mb", 1, 1 << 20);
  auto nofile = f.OptInt("open_files", 16, 1 << 20);
  auto disk = f.OptInt("disk_bytes", 16ll << 20, 16ll << 40);
  for (const auto* r : {&mem, &tmp, &pids, &nofile, &disk}) {
    if (!*r) {
      Error e = r->error();
      e.field = "limits." + e.field;
      return Fail(e);
    }
  }
  if (!cpus) {
    return Fail(cpus.error());
  }
  if (*mem) {
    l.memory_bytes = static_cast<uint64_t>(**mem) << 20;
  }
  if (*tmp) {
    l.tmp_bytes = static_cast<uint64_t>(**tmp) << 20;
  }
  if (*pids) {
    l.pids = static_cast<uint32_t>(**pids);
  }
  if (*nofile) {
    l.open_files = static_cast<uint32_t>(**nofile);
  }
  if (*disk) {
    l.disk_bytes = static_cast<uint64_t>(**disk);
  }
  l.cpus = *cpus;
  return l;
}

Result<std::map<std::string, std::string>> ParseStringMap(const Json& body, const char* key,
                                                          size_t max_entries) {
  JsonFields f(body);
  auto kv = f.OptStringMap(key);
  if (!kv) {
    return Fail(kv.error());
  }
  if (kv->size() > max_entries) {
    return Fail(FieldError(key, "has more than " + std::to_string(max_entries) + " entries"));
  }
  std::map<std::string, std::string> out;
  for (auto& [k, v] : *kv) {
    if (k.empty() || k.size() > 256 || v.size() > 65536 || k.find('\0') != std::string::npos ||
        v.find('\0') != std::string::npos) {
      return Fail(FieldError(key, "keys must be 1..256 bytes, values at most 64 KiB, no NUL"));
    }
    out[k] = v;
  }
  return out;
}

// Spools a streamed upload to an unlinked temporary file, then forwards it to the guest as one
// request: the daemon never holds the file in memory and the guest sees an ordinary upload.
class UploadSpool : public http::BodySink {
 public:
  using OnComplete = std::function<void(std::shared_ptr<UniqueFd>, uint64_t, http::Respond)>;
  UploadSpool(UniqueFd fd, OnComplete done)
      : fd_(std::make_shared<UniqueFd>(std::move(fd))), done_(std::move(done)) {}
  Result<void> OnData(std::string_view bytes) override {
    size_t off = 0;
    while (off < bytes.size()) {
      ssize_t n = ::write(fd_->Get(), bytes.data() + off, bytes.size() - off);
      if (n < 0) {
        if (errno == EINTR) {
          continue;
        }
        return Fail(ErrnoError(errno, "spool upload"));
      }
      off += static_cast<size_t>(n);
    }
    size_ += bytes.size();
    return {};
  }
  void OnEnd(http::Respond respond) override { done_(fd_, size_, std::move(respond)); }

 private:
  std::shared_ptr<UniqueFd> fd_;
  uint64_t size_ = 0;
  OnComplete done_;
};

class RejectSink : public http::BodySink {
 public:
  explicit RejectSink(Error e) : e_(std::move(e)) {}
  Result<void> OnData(std::string_view) override { return Fail(e_); }
  void OnEnd(http::Respond respond) override { respond(JsonErr(e_)); }

 private:
  Error e_;
};

}  // namespace

http::Response JsonOk(Json data, int status) {
  return http::OkResponse(std::move(data), "ok", status);
}

http::Response JsonErr(const Error& e) { return http::ErrorResponse(e); }

http::Response JsonErrStatus(int status, const std::string& message) {
  return http::ErrorResponse(status, message);
}

Json SandboxJson(const SandboxEntry& e) {
  const SandboxInfo& i = e.info;
  Json limits = Json::object();
  if (i.spec.limits.memory_bytes) {
    limits["memory_mb"] = *i.spec.limits.memory_bytes >> 20;
  }
  if (i.spec.limits.cpus) {
    limits["cpus"] = *i.spec.limits.cpus;
  }
  if (i.spec.limits.pids) {
    limits["pids"] = *i.spec.limits.pids;
  }
  if (i.spec.limits.tmp_bytes) {
    limits["tmp_mb"] = *i.spec.limits.tmp_bytes >> 20;
  }
  if (i.spec.limits.disk_bytes) {
    limits["disk_bytes"] = *i.spec.limits.disk_bytes;
  }
  return Json{{"id", i.id},
              {"backend", i.backend},
              {"reason", e.reason},
              {"state", SandboxStateName(i.state)},
              {"image", i.spec.image},
              {"labels", i.spec.labels},
              {"limits", limits},
              {"network", i.spec.network == NetworkMode::kHost ? "host" : "none"},
              {"created_at", i.created_at},
              {"expires_at", i.expires_at},
              {"disk", SandboxDiskJson(i)},
              {"detail", i.detail}};
}

DaemonApi::DaemonApi(boost::asio::io_context& io, std::map<std::string, SandboxBackend*> backends,
                     ApiKeys keys, DaemonOptions options)
    : io_(io),
      backends_(std::move(backends)),
      keys_(std::move(keys)),
      opts_(std::move(options)),
      client_(io),
      pool_(4, 8u << 20),
      health_(client_, metrics_, opts_.guest_deadlines),
      watch_(metrics_),
      sessions_(client_, metrics_),
      reaper_(io) {
  health_.SetGate([this](const SandboxInfo& info) { return watch_.Unreachable(info); });
  metrics_.Describe("agentbox_sandbox_recoveries_total", "counter",
                    "Sandboxes brought back after their engine answered again, by backend and "
                    "outcome (running: it was running when the engine answered; restarted: "
                    "agentbox started it again; error).");
  metrics_.Describe("agentbox_operation_total", "counter",
                    "Operations by backend, operation and outcome.");
  metrics_.Describe("agentbox_operation_duration_seconds", "histogram",
                    "Latency of operations by backend and operation.");
  metrics_.Describe("agentbox_sandboxes", "gauge", "Sandboxes by backend and state.");
  metrics_.Describe("agentbox_http_requests_in_flight", "gauge", "Requests being served.");
  metrics_.Describe("agentbox_sandbox_disk_bytes", "gauge",
                    "Bytes in use on the sandboxes' own disks (limits.disk_bytes), by backend.");
  metrics_.Describe("agentbox_state_dir_free_bytes", "gauge",
                    "Free bytes on the state directory's filesystem (AGENTBOX_MIN_FREE_BYTES).");
  selector::Settings settings;
  if (opts_.selection) {
    settings = *opts_.selection;
  } else {
    settings.requested_backend = opts_.default_backend;
    settings.requested_source = "daemon options";
    settings.fallback_chain = {};
    for (const auto& [name, b] : backends_) {
      settings.known_backends.push_back(name);
    }
    settings.hash = "0000000000000000";
  }
  // Runtime flags set through PUT /v1/flags survive a restart.
  if (!opts_.flags_file.empty()) {
    if (auto text = ReadSmallFile(opts_.flags_file)) {
      const Json j = Json::parse(*text, nullptr, false);
      const auto& runtime_keys = selector::Settings::Keys();
      if (!j.is_object()) {
        Log(LogLevel::kError, "flags.unreadable", "file={} error=\"not a JSON object\"",
            opts_.flags_file);
      } else {
        for (const auto& [k, v] : j.items()) {
          if (v.is_string() &&
              std::find(runtime_keys.begin(), runtime_keys.end(), k) != runtime_keys.end()) {
            flags_[k] = v.get<std::string>();
          }
        }
      }
    }
  }
  if (!flags_.empty() && opts_.load_config && opts_.selection) {
    if (auto cfg = opts_.load_config(flags_)) {
      settings = selector::Settings::FromConfig(*cfg, settings.known_backends);
      Log(LogLevel::kInfo, "flags.applied", "file={} count={}", opts_.flags_file, flags_.size());
    } else {
      Log(LogLevel::kError, "flags.unapplied", "error=\"{}\"", cfg.error().message);
    }
  }
  selector_ = std::make_unique<selector::Selector>(backends_, opts_.backend_config_errors,
                                                   std::move(settings), &metrics_);
}

std::map<std::string, std::string> DaemonApi::flags() const {
  std::lock_guard<std::mutex> lock(flags_mu_);
  return flags_;
}

DaemonApi::~DaemonApi() { reaper_.cancel(); }

void DaemonApi::Start() {
  for (const auto& [name, backend] : backends_) {
    auto list = backend->List();
    if (!list) {
      Log(LogLevel::kWarn, "daemon.reattach_failed", "backend={} error=\"{}\"", name,
          list.error().message);
      continue;
    }
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& info : *list) {
      Log(LogLevel::kInfo, "daemon.reattached", "id={} backend={} owner={}", info.id, name,
          info.spec.owner);
      sandboxes_[info.id] = SandboxEntry{info, backend, "REATTACHED"};
    }
  }
  ArmReaper();
}

void DaemonApi::BeginDrain() {
  draining_ = true;
  boost::asio::post(io_, [this] { reaper_.cancel(); });
}

void DaemonApi::ArmReaper() {
  reaper_.expires_after(std::chrono::seconds(2));
  reaper_.async_wait([this](const boost::system::error_code& ec) {
    if (ec || draining_) {
      return;
    }
    Reap();
    ArmReaper();
  });
}

void DaemonApi::Reap() {
  std::vector<SandboxEntry> expired;
  std::vector<SandboxInfo> live;
  const double now = NowUnix();
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = sandboxes_.begin(); it != sandboxes_.end();) {
      if (it->second.info.expires_at > 0 && it->second.info.expires_at <= now) {
        expired.push_back(it->second);
        health_.Forget(it->first);
        sessions_.Forget(it->first);
        it = sandboxes_.erase(it);
      } else {
        live.push_back(it->second.info);
        ++it;
      }
    }
  }
  health_.ProbeUnresponsive(live);  // back to running as soon as a stuck guest answers
  WatchEngines();                   // unreachable while an engine is down, back when it answers
  for (auto& e : expired) {
    pool_.Post([this, e] {
      auto r = e.backend->Destroy(e.info.id);
      Log(LogLevel::kInfo, "sandbox.expired", "id={} backend={} destroyed={}", e.info.id,
          e.info.backend, r ? "true" : r.error().message);
      if (e.info.guest_endpoint.starts_with("unix:")) {
        client_.Forget(e.info.guest_endpoint.substr(5));
      }
    });
  }
}

http::Respond DaemonApi::Track(http::Respond respond) {
  ++in_flight_;
  return [this, respond = std::move(respond)](http::Response r) {
    respond(std::move(r));
    --in_flight_;
  };
}

void DaemonApi::Count(const std::string& backend, const std::string& op, bool ok, double seconds) {
  metrics_.Increment("agentbox_operation_total",
                     {{"backend", backend}, {"op", op}, {"outcome", ok ? "ok" : "error"}});
  metrics_.Observe("agentbox_operation_duration_seconds", {{"backend", backend}, {"op", op}},
                   seconds);
  selector_->Record(backend, ok);  // feeds the rollout's breaker
}

void DaemonApi::CountRelayed(const std::string& backend, const std::string& op,
                             const Result<http::ClientResponse>& r, Clock::time_point start) {
  Count(backend, op, r && r->status < 500,
        std::chrono::duration<double>(Clock::now() - start).count());
}

std::optional<DaemonApi::Caller> DaemonApi::Authenticate(const http::Request& req) const {
  if (req.peer == "unix") {
    return Caller{kLocalOwner, true};  // the socket's file mode is the access control
  }
  auto owner = keys_.Authenticate(req.Header("authorization"));
  if (!owner) {
    return std::nullopt;
  }
  return Caller{*owner, false};
}

std::unique_ptr<http::BodySink> DaemonApi::StreamBody(const http::Request& req) {
  auto parts = Split(req.path);
  // /v1/sandboxes/{id}/api/v1/file/upload
  if (req.method != "POST" || parts.size() != 7 || parts[0] != "v1" || parts[1] != "sandboxes" ||
      parts[3] != "api" || parts[4] != "v1" || parts[5] != "file" || parts[6] != "upload") {
    return nullptr;
  }
  auto caller = Authenticate(req);
  if (!caller) {
    return std::make_unique<RejectSink>(
        Error{ErrorCode::kUnauthorized, "missing or invalid API key (Authorization: Bearer KEY)"});
  }
  const std::string id = parts[2];
  auto entry = Find(id, *caller);
  // A sandbox of a shared backend that another replica created is looked up once the body is
  // spooled (the lookup blocks, and this runs on the I/O thread).
  const bool look_up_later = !entry && HasSharedBackend() && ValidSandboxId(id);
  if (!entry && !look_up_later) {
    return std::make_unique<RejectSink>(
        Error{ErrorCode::kNotFound, "sandbox '" + id + "' not found"});
  }
  auto fd = OpenUnlinkedFile(opts_.spool_dir);
  if (!fd) {
    return std::make_unique<RejectSink>(
        Error{fd.error().code, "spool upload: " + fd.error().message, fd.error().sys_errno});
  }
  const std::string query = req.query;
  const std::string content_type = req.Header("content-type");
  ++in_flight_;
  return std::make_unique<UploadSpool>(
      std::move(*fd), [this, id, entry, look_up_later, caller = *caller, query, content_type](
                          std::shared_ptr<UniqueFd> file, uint64_t size, http::Respond respond) {
        // In flight until answered, however the answer comes.
        http::Respond done = [this, respond](http::Response out) {
          respond(std::move(out));
          --in_flight_;
        };
        if (!look_up_later) {
          return RelayUpload(*entry, query, content_type, std::move(file), size, done);
        }
        pool_.Post([this, id, caller, query, content_type, file, size, done] {
          FindShared(id);
          auto found = Find(id, caller);
          if (!found) {
            return done(JsonErr(Error{ErrorCode::kNotFound, "sandbox '" + id + "' not found"}));
          }
          boost::asio::post(io_, [this, found = *found, query, content_type, file, size, done] {
            RelayUpload(found, query, content_type, file, size, done);
          });
        });
      });
}

void DaemonApi::RelayUpload(const SandboxEntry& entry, const std::string& query,
                            const std::string& content_type, std::shared_ptr<UniqueFd> file,
                            uint64_t size, const http::Respond& done) {
  http::ClientRequest cr;
  cr.method = "POST";
  cr.target = "/api/v1/file/upload" + (query.empty() ? "" : "?" + query);
  cr.headers = {{"Content-Type", content_type}, {"X-Access-Token", entry.info.guest_token}};
  cr.body_file = std::move(file);
  cr.body_file_size = size;
  const auto deadline = UploadDeadline(health_.deadlines(), size);
  health_.BeforeCall(
      entry.info, "file/upload", done,
      [this, entry, deadline, done, cr = std::move(cr)]() mutable {
        client_.Send(entry.info.guest_endpoint.substr(5), std::move(cr), deadline,
                     [this, entry, deadline, done,
                      start = Clock::now()](Result<http::ClientResponse> r) {
                       CountRelayed(entry.info.backend, "file/upload", r, start);
                       if (GuestTimedOut(r)) {
                         return health_.OnTimeout(entry.info, "file/upload", deadline, done);
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

void DaemonApi::Handle(http::Request req, http::Respond respond) {
  if ((req.path == "/healthz" || req.path == "/readyz" || req.path == "/metrics") &&
      req.method != "GET") {
    respond(JsonErrStatus(405, "use GET on " + req.path));
    return;
  }
  if (req.path == "/healthz") {
    respond(JsonOk({{"status", "ok"}}));
    return;
  }
  if (req.path == "/readyz") {
    Ready(std::move(respond));
    return;
  }
  if (req.path == "/metrics") {
    RenderMetrics(std::move(respond));
    return;
  }
  auto caller = Authenticate(req);
  if (!caller) {
    respond(JsonErr(
        {ErrorCode::kUnauthorized, "missing or invalid API key (Authorization: Bearer KEY)"}));
    return;
  }
  if (draining_) {
    respond(JsonErrStatus(503, "agentboxd is shutting down"));
    return;
  }
  Route(req, *caller, Track(std::move(respond)));
}

void DaemonApi::Route(const http::Request& req, const Caller& caller, http::Respond respond,
                      bool looked_up) {
  auto parts = Split(req.path);
  const std::string& m = req.method;
  if (parts.size() == 2 && parts[0] == "v1" && parts[1] == "info" && m == "GET") {
    return Info(std::move(respond));
  }
  if (parts.size() == 2 && parts[0] == "v1" && parts[1] == "flags") {
    if (m == "GET") {
      return GetFlags(caller, std::move(respond));
    }
    if (m == "PUT") {
      return PutFlags(req, caller, std::move(respond));
    }
    return respond(JsonErrStatus(405, "use GET or PUT on /v1/flags"));
  }
  if (parts.size() == 3 && parts[0] == "v1" && parts[1] == "images" && parts[2] == "pull" &&
      m == "POST") {
    return Pull(req, caller, std::move(respond));
  }
  if (parts.size() >= 2 && parts[0] == "v1" && parts[1] == "sandboxes") {
    if (parts.size() == 2) {
      if (m == "POST") {
        return Create(req, caller, std::move(respond));
      }
      if (m == "GET") {
        return List(caller, std::move(respond));
      }
      return respond(JsonErrStatus(405, "use GET or POST on /v1/sandboxes"));
    }
    const std::string& id = parts[2];
    if (!looked_up && !Find(id, Caller{"", true}) && LookUpShared(id, req, caller, respond)) {
      return;
    }
    if (parts.size() == 3) {
      if (m == "GET") {
        return GetOne(id, caller, std::move(respond));
      }
      if (m == "DELETE") {
        return Destroy(id, caller, std::move(respond));
      }
      return respond(JsonErrStatus(405, "use GET or DELETE on /v1/sandboxes/{id}"));
    }
    if (parts.size() == 4 && parts[3] == "timeout" && m == "POST") {
      return ExtendTtl(id, req, caller, std::move(respond));
    }
    if (parts.size() == 4 && parts[3] == "restart-guest") {
      if (m != "POST") {
        return respond(JsonErrStatus(405, "use POST on /v1/sandboxes/{id}/restart-guest"));
      }
      return RestartGuest(id, caller, std::move(respond));
    }
    if (parts.size() == 6 && parts[3] == "shell" && parts[5] == "stream" && m == "GET") {
      return Stream(id, parts[4], req, caller, std::move(respond));
    }
    if (parts.size() == 7 && parts[3] == "api" && parts[4] == "v1" && parts[5] == "shell" &&
        parts[6] == "stream" && m == "GET") {
      // The guest's own form of the event stream: relayed as a stream, never buffered.
      auto session = req.QueryParam("id");
      if (!session || session->empty()) {
        return respond(JsonErr(FieldError("id", "is required as a query parameter")));
      }
      return Stream(id, *session, req, caller, std::move(respond));
    }
    if (parts.size() == 8 && parts[3] == "api" && parts[4] == "v1" && parts[5] == "supervisor" &&
        parts[6] == "timeout") {
      return SupervisorTimeout(id, parts[7], req, caller, std::move(respond));
    }
    if (parts.size() >= 6 && parts[3] == "api" && parts[4] == "v1") {
      std::string rest;
      for (size_t i = 5; i < parts.size(); ++i) {
        rest += (i > 5 ? "/" : "") + parts[i];
      }
      return Forward(id, rest, req, caller, std::move(respond));
    }
  }
  respond(JsonErrStatus(404, "no such endpoint: " + m + " " + req.path));
}

void DaemonApi::Create(const http::Request& req, const Caller& caller, http::Respond respond) {
  auto body = ParseJsonObject(req.body);
  if (!body) {
    return respond(JsonErr(body.error()));
  }
  if (!http::AcceptFields(CheckCreateFields(*body), "POST /v1/sandboxes", respond)) {
    return;
  }
  JsonFields f(*body);
  SandboxSpec spec;
  auto image = f.OptString("image");
  auto ttl = f.OptInt("ttl_s", 10, opts_.max_ttl_s);
  auto backend_name = f.OptString("backend");
  auto subject = f.OptString("subject");
  auto network = f.OptString("network");
  auto limits = ParseLimits(*body);
  auto env = ParseStringMap(*body, "env", 1024);
  auto labels = ParseStringMap(*body, "labels", 64);
  for (const Error* e :
       {image ? nullptr : &image.error(), ttl ? nullptr : &ttl.error(),
        backend_name ? nullptr : &backend_name.error(), subject ? nullptr : &subject.error(),
        network ? nullptr : &network.error(), limits ? nullptr : &limits.error(),
        env ? nullptr : &env.error(), labels ? nullptr : &labels.error()}) {
    if (e) {
      return respond(JsonErr(*e));
    }
  }
  spec.image = image->value_or("");
  spec.ttl_s = ttl->value_or(opts_.default_ttl_s);
  spec.limits = *limits;
  spec.env = *env;
  spec.labels = *labels;
  spec.owner = caller.owner;
  // Who a percentage rollout is sticky for: the caller's user or tenant when given, else the key.
  if (*subject && ((*subject)->empty() || (*subject)->size() > 256)) {
    return respond(JsonErr(FieldError("subject", "must be 1 to 256 bytes")));
  }
  const std::string rollout_subject = subject->value_or(caller.owner);
  if (*network && **network == "host") {
    if (!caller.admin) {
      return respond(
          JsonErr({ErrorCode::kForbidden, "network \"host\" is only allowed on the local socket"}));
    }
    spec.network = NetworkMode::kHost;
  } else if (*network && **network != "none") {
    return respond(JsonErr(FieldError("network", "must be \"none\" or \"host\"")));
  }
  std::string pinned;
  if (*backend_name && !(*backend_name)->empty()) {
    const bool allowed =
        caller.admin || std::find(opts_.pinnable_backends.begin(), opts_.pinnable_backends.end(),
                                  **backend_name) != opts_.pinnable_backends.end();
    if (!backends_.count(**backend_name)) {
      return respond(JsonErr(FieldError("backend", "unknown backend '" + **backend_name + "'")));
    }
    if (!allowed) {
      return respond(JsonErr(
          {ErrorCode::kForbidden, "this key may not pin backend '" + **backend_name + "'"}));
    }
    pinned = **backend_name;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    size_t owned = 0;
    for (const auto& [id, e] : sandboxes_) {
      owned += e.info.spec.owner == caller.owner ? 1 : 0;
    }
    if (owned >= opts_.max_sandboxes_per_owner) {
      return respond(JsonErrStatus(429, "sandbox limit reached (" +
                                            std::to_string(opts_.max_sandboxes_per_owner) +
                                            " per key); delete some first"));
    }
  }
  const std::string id = "sb-" + RandomId(12);
  pool_.Post([this, id, spec, pinned, rollout_subject, respond] {
    // The state directory's own disk comes first: below the floor nothing new is started.
    if (DiskFloor floor = CheckDiskFloor(opts_.state_dir, opts_.min_free_bytes); !floor.ok) {
      Log(LogLevel::kWarn, "sandbox.create_refused", "id={} error=\"{}\"", id, floor.message);
      return respond(JsonErrStatus(507, floor.message));
    }
    // Probes may block briefly (an engine round trip), so the decision is made off the I/O thread.
    selector::Decision d = selector_->Select({pinned, rollout_subject});
    if (d.backend.empty()) {
      http::Response r = JsonErrStatus(503, "no backend can take a new sandbox: " + d.detail);
      return respond(std::move(r));
    }
    SandboxBackend* backend = backends_.at(d.backend);
    const std::string reason = d.reason;
    const auto start = Clock::now();
    // A missing image is fetched first (docker pulls); progress goes to the log here, and to
    // the client through POST /v1/images/pull.
    Result<void> prepared = backend->Prepare(spec, [&](std::string_view line) {
      Log(LogLevel::kDebug, "image.progress", "id={} line=\"{}\"", id, line);
    });
    if (!prepared) {
      Count(std::string(backend->Name()), "create", BackendOk(prepared),
            std::chrono::duration<double>(Clock::now() - start).count());
      Log(LogLevel::kWarn, "sandbox.create_failed", "id={} backend={} error=\"{}\"", id,
          backend->Name(), prepared.error().message);
      return respond(JsonErr(prepared.error()));
    }
    auto info = backend->Create(id, spec);
    const double secs = std::chrono::duration<double>(Clock::now() - start).count();
    Count(std::string(backend->Name()), "create", BackendOk(info), secs);
    if (!info) {
      Log(LogLevel::kWarn, "sandbox.create_failed", "id={} backend={} error=\"{}\"", id,
          backend->Name(), info.error().message);
      return respond(JsonErr(info.error()));
    }
    // A warm pool hands out a sandbox it started earlier under its own id.
    SandboxEntry e{*info, backend, reason};
    {
      std::lock_guard<std::mutex> lock(mu_);
      sandboxes_[info->id] = e;
    }
    Log(LogLevel::kInfo, "sandbox.created", "id={} backend={} reason={} owner={} ms={:.1f}",
        info->id, backend->Name(), reason, spec.owner, secs * 1000);
    Json out = SandboxJson(e);
    out["selection"] = {{"reason", d.reason},
                        {"error_code", d.error_code ? Json(*d.error_code) : Json(nullptr)},
                        {"requested_backend", d.requested_backend},
                        {"config_version", d.config_version},
                        {"detail", d.detail}};
    if (!d.rule_id.empty()) {
      out["selection"]["rule_id"] = d.rule_id;
    }
    if (d.bucket) {
      out["selection"]["bucket"] = *d.bucket;
    }
    respond(JsonOk(std::move(out), 201));
  });
}

std::optional<SandboxEntry> DaemonApi::Find(const std::string& id, const Caller& caller) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sandboxes_.find(id);
  if (it == sandboxes_.end()) {
    return std::nullopt;
  }
  // Another key's sandbox is indistinguishable from a missing one.
  if (!caller.admin && it->second.info.spec.owner != caller.owner) {
    return std::nullopt;
  }
  return it->second;
}

void DaemonApi::List(const Caller& caller, http::Respond respond) {
  // Live state, not what the registry remembered at create time: one List() per backend that
  // holds a visible sandbox (a single engine call for docker), off the I/O thread.
  pool_.Post([this, caller, respond] {
    SyncShared();
    std::vector<SandboxEntry> visible;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& [id, e] : sandboxes_) {
        if (caller.admin || e.info.spec.owner == caller.owner) {
          visible.push_back(e);
        }
      }
    }
    std::map<SandboxBackend*, std::map<std::string, SandboxInfo>> live;
    std::set<SandboxBackend*> failed;
    for (const auto& e : visible) {
      if (live.count(e.backend) || failed.count(e.backend)) {
        continue;
      }
      auto list = e.backend->List();
      if (!list) {
        failed.insert(e.backend);  // keep what we knew; the backend's trouble is its own
        continue;
      }
      auto& m = live[e.backend];
      for (auto& info : *list) {
        m[info.id] = std::move(info);
      }
    }
    Json out = Json::array();
    for (auto& e : visible) {
      if (auto it = live.find(e.backend); it != live.end()) {
        if (auto f = it->second.find(e.info.id); f != it->second.end()) {
          e.info.state = f->second.state;
          e.info.detail = f->second.detail;
          e.info.disk_used_bytes = f->second.disk_used_bytes;
        } else {
          e.info.state = SandboxState::kFailed;
          e.info.detail = "the " + e.info.backend + " backend no longer has this sandbox";
        }
      }
      health_.Overlay(e.info);
      out.push_back(SandboxJson(e));
    }
    respond(JsonOk({{"sandboxes", std::move(out)}}));
  });
}

void DaemonApi::GetOne(const std::string& id, const Caller& caller, http::Respond respond) {
  auto e = Find(id, caller);
  if (!e) {
    return respond(JsonErr({ErrorCode::kNotFound, "sandbox '" + id + "' not found"}));
  }
  pool_.Post([this, e = *e, respond] {
    auto fresh = e.backend->Get(e.info.id);
    SandboxEntry out = e;
    if (fresh) {
      out.info = *fresh;
    } else if (fresh.error().code == ErrorCode::kNotFound &&
               e.backend->GetCapabilities().shared_state) {
      ForgetShared(e.info.id);  // destroyed through another daemon
      return respond(JsonErr({ErrorCode::kNotFound, "sandbox '" + e.info.id + "' not found"}));
    }
    health_.Overlay(out.info);
    respond(JsonOk(SandboxJson(out)));
  });
}

void DaemonApi::Destroy(const std::string& id, const Caller& caller, http::Respond respond) {
  auto e = Find(id, caller);
  if (!e) {
    return respond(JsonErr({ErrorCode::kNotFound, "sandbox '" + id + "' not found"}));
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    sandboxes_.erase(id);
  }
  health_.Forget(id);
  sessions_.Forget(id);
  pool_.Post([this, e = *e, respond] {
    const auto start = Clock::now();
    auto r = e.backend->Destroy(e.info.id);
    Count(e.info.backend, "destroy", BackendOk(r),
          std::chrono::duration<double>(Clock::now() - start).count());
    if (e.info.guest_endpoint.starts_with("unix:")) {
      client_.Forget(e.info.guest_endpoint.substr(5));
    }
    if (!r && r.error().code != ErrorCode::kNotFound) {
      return respond(JsonErr(r.error()));
    }
    Log(LogLevel::kInfo, "sandbox.destroyed", "id={} backend={}", e.info.id, e.info.backend);
    respond(JsonOk({{"id", e.info.id}, {"deleted", true}}));
  });
}

void DaemonApi::ExtendTtl(const std::string& id, const http::Request& req, const Caller& caller,
                          http::Respond respond) {
  auto body = ParseJsonObject(req.body);
  if (!body) {
    return respond(JsonErr(body.error()));
  }
  if (!http::AcceptFields(CheckTimeoutFields(*body), "POST /v1/sandboxes/{id}/timeout", respond)) {
    return;
  }
  auto ttl = JsonFields(*body).OptInt("ttl_s", 1, opts_.max_ttl_s);
  if (!ttl) {
    return respond(JsonErr(ttl.error()));
  }
  auto e = Find(id, caller);
  if (!e) {
    return respond(JsonErr({ErrorCode::kNotFound, "sandbox '" + id + "' not found"}));
  }
  const double expires = NowUnix() + static_cast<double>(ttl->value_or(opts_.default_ttl_s));
  pool_.Post([this, e = *e, expires, respond] {
    if (auto r = e.backend->SetExpiry(e.info.id, expires); !r) {
      return respond(JsonErr(r.error()));
    }
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sandboxes_.find(e.info.id);
    if (it == sandboxes_.end()) {
      return respond(JsonErr({ErrorCode::kNotFound, "sandbox '" + e.info.id + "' not found"}));
    }
    it->second.info.expires_at = expires;
    respond(JsonOk({{"id", e.info.id}, {"expires_at", expires}}));
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

void DaemonApi::Pull(const http::Request& req, const Caller& caller, http::Respond respond) {
  auto body = ParseJsonObject(req.body);
  if (!body) {
    return respond(JsonErr(body.error()));
  }
  if (!http::AcceptFields(CheckPullFields(*body), "POST /v1/images/pull", respond)) {
    return;
  }
  JsonFields f(*body);
  auto image = f.String("image");
  auto backend_name = f.OptString("backend");
  if (!image) {
    return respond(JsonErr(image.error()));
  }
  if (image->empty() || image->size() > 512) {
    return respond(JsonErr(FieldError("image", "must be an image reference of 1 to 512 bytes")));
  }
  if (!backend_name) {
    return respond(JsonErr(backend_name.error()));
  }
  std::string pinned = backend_name->value_or("");
  if (!pinned.empty()) {
    if (!backends_.count(pinned)) {
      return respond(JsonErr(FieldError("backend", "unknown backend '" + pinned + "'")));
    }
    if (!caller.admin && std::find(opts_.pinnable_backends.begin(), opts_.pinnable_backends.end(),
                                   pinned) == opts_.pinnable_backends.end()) {
      return respond(
          JsonErr({ErrorCode::kForbidden, "this key may not pin backend '" + pinned + "'"}));
    }
  }
  SandboxSpec spec;
  spec.image = *image;
  pool_.Post([this, spec, pinned, respond] {
    std::string name = pinned;
    if (name.empty()) {
      selector::Decision d = selector_->Preview();
      if (d.backend.empty()) {
        return respond(JsonErrStatus(503, "no backend can take a new sandbox: " + d.detail));
      }
      name = d.backend;
    }
    SandboxBackend* backend = backends_.at(name);
    // 200 means a stream of JSON lines: {"progress": "..."} then {"done": true} or {"error": ...}.
    // A failure before any progress is an ordinary error response with its status.
    auto source = std::make_shared<http::QueueSource>();
    auto streaming = std::make_shared<std::atomic<bool>>(false);
    auto start_stream = [respond, source, streaming] {
      if (!streaming->exchange(true)) {
        http::Response r;
        r.content_type = "application/x-ndjson";
        r.headers.emplace_back("Cache-Control", "no-cache");
        r.stream = source;
        respond(std::move(r));
      }
    };
    const auto start = Clock::now();
    Result<void> res = backend->Prepare(spec, [&](std::string_view line) {
      start_stream();
      source->Push(DumpJson(Json{{"progress", std::string(line)}}) + "\n");
    });
    Count(name, "prepare", BackendOk(res),
          std::chrono::duration<double>(Clock::now() - start).count());
    Log(res ? LogLevel::kInfo : LogLevel::kWarn, "image.prepare",
        "backend={} image=\"{}\" ok={} error=\"{}\"", name, spec.image, res.has_value(),
        res ? "" : res.error().message);
    if (!res && !streaming->load()) {
      return respond(JsonErr(res.error()));
    }
    start_stream();
    if (res) {
      source->Push(DumpJson(Json{{"done", true}, {"image", spec.image}, {"backend", name}}) + "\n",
                   true);
    } else {
      source->Push(DumpJson(Json{{"error",
                                  {{"code", ErrorCodeName(res.error().code)},
                                   {"status", HttpStatus(res.error().code)},
                                   {"message", res.error().message}}}}) +
                       "\n",
                   true);
    }
  });
}

void DaemonApi::GetFlags(const Caller& caller, http::Respond respond) {
  if (!caller.admin) {
    return respond(JsonErr({ErrorCode::kForbidden, "runtime flags are for the local socket only"}));
  }
  respond(JsonOk({{"flags", flags()},
                  {"keys", selector::Settings::Keys()},
                  {"config_version", selector_->ConfigVersion()}}));
}

void DaemonApi::PutFlags(const http::Request& req, const Caller& caller, http::Respond respond) {
  if (!caller.admin) {
    return respond(JsonErr({ErrorCode::kForbidden, "runtime flags are for the local socket only"}));
  }
  if (!opts_.load_config) {
    return respond(JsonErrStatus(501, "this daemon takes no runtime flags"));
  }
  auto body = ParseJsonObject(req.body);
  if (!body) {
    return respond(JsonErr(body.error()));
  }
  if (!http::AcceptFields(CheckFlagsFields(*body), "PUT /v1/flags", respond)) {
    return;
  }
  if (!body->contains("flags") || !(*body)["flags"].is_object()) {
    return respond(JsonErr(FieldError("flags", "must be an object of KEY: value (null removes)")));
  }
  const auto& keys = selector::Settings::Keys();
  std::map<std::string, std::optional<std::string>> changes;  // nullopt: remove
  for (const auto& [k, v] : (*body)["flags"].items()) {
    const std::string field = "flags." + k;
    if (std::find(keys.begin(), keys.end(), k) == keys.end()) {
      return respond(JsonErr(FieldError(
          field.c_str(), "is not a runtime flag; the selection settings are: " + Join(keys, ", ") +
                             " (anything else needs a restart)")));
    }
    if (v.is_null()) {
      changes[k] = std::nullopt;
    } else if (v.is_string()) {
      changes[k] = v.get<std::string>();
    } else if (v.is_boolean() || v.is_number()) {
      changes[k] = v.dump();
    } else {
      return respond(JsonErr(FieldError(field.c_str(), "must be a string, number, bool or null")));
    }
  }
  pool_.Post([this, changes, respond] {
    // One change at a time: each starts from the flags the previous one left.
    std::lock_guard<std::mutex> lock(flags_mu_);
    std::map<std::string, std::string> next = flags_;
    for (const auto& [k, v] : changes) {
      if (v) {
        next[k] = *v;
      } else {
        next.erase(k);
      }
    }
    auto cfg = opts_.load_config(next);
    if (!cfg) {
      return respond(JsonErrStatus(409, "the configuration sources do not load (" +
                                            cfg.error().message + "); nothing changed"));
    }
    selector::Settings settings =
        selector::Settings::FromConfig(*cfg, selector_->settings()->known_backends);
    for (const auto& [k, v] : changes) {
      if (auto e = settings.errors.find(k); v && e != settings.errors.end()) {
        const std::string field = "flags." + k;
        return respond(JsonErr(FieldError(field.c_str(), e->second + "; nothing changed")));
      }
    }
    if (!opts_.flags_file.empty()) {
      if (auto w = WriteFileAtomic(opts_.flags_file, Json(next).dump(2) + "\n", 0600); !w) {
        return respond(JsonErr(w.error()));
      }
    }
    const std::string before = selector_->ConfigVersion();
    flags_ = next;
    selector_->Reload(std::move(settings));
    std::vector<std::string> changed;
    for (const auto& [k, v] : changes) {
      changed.push_back(k + "=" + v.value_or("(removed)"));
    }
    Log(LogLevel::kInfo, "flags.changed", "changes=\"{}\" from={} to={}", Join(changed, " "),
        before, selector_->ConfigVersion());
    respond(JsonOk({{"flags", flags_},
                    {"config_version", selector_->ConfigVersion()},
                    {"decision", selector::Selector::DecisionJson(selector_->Preview())}}));
  });
}

void DaemonApi::Info(http::Respond respond) {
  // What a new sandbox would get right now, and why; probes may block briefly.
  pool_.Post([this, respond] {
    selector::Decision d = selector_->Preview();
    Json info = selector_->InfoJson(d);
    info["disk"] = DiskFloorJson(CheckDiskFloor(opts_.state_dir, opts_.min_free_bytes));
    respond(JsonOk(std::move(info)));
  });
}

void DaemonApi::Ready(http::Respond respond) {
  pool_.Post([this, respond] {
    // Ready when a new sandbox would land somewhere; every backend's own probe is listed.
    selector::Decision d = selector_->Preview();
    Json probes = Json::object();
    for (const auto& [name, b] : backends_) {
      ProbeResult p = b->Probe();
      probes[name] = {{"usable", p.usable}, {"reason", p.reason}, {"limitations", p.limitations}};
    }
    for (const auto& [name, err] : opts_.backend_config_errors) {
      probes[name] = {{"usable", false}, {"reason", err}, {"limitations", Json::array()}};
    }
    const DiskFloor floor = CheckDiskFloor(opts_.state_dir, opts_.min_free_bytes);
    const bool ready = !d.backend.empty() && floor.ok;
    Json data = {{"ready", ready},
                 {"backend", !d.backend.empty() ? Json(d.backend) : Json(nullptr)},
                 {"reason", d.reason},
                 {"detail", floor.ok ? d.detail : floor.message},
                 {"disk", DiskFloorJson(floor)},
                 {"backends", probes}};
    respond(JsonOk(std::move(data), ready ? 200 : 503));
  });
}

void DaemonApi::RenderMetrics(http::Respond respond) {
  // Disk usage asks every backend (an engine round trip for docker): off the I/O thread.
  pool_.Post([this, respond] { RenderMetricsNow(respond); });
}

void DaemonApi::RenderMetricsNow(http::Respond respond) {
  std::vector<SandboxInfo> all;
  for (const auto& [name, b] : backends_) {
    if (auto list = b->List()) {
      for (auto& i : *list) {
        i.backend = name;
        all.push_back(std::move(i));
      }
    }
  }
  metrics_.ResetGauge("agentbox_sandbox_disk_bytes");
  for (const auto& [backend, bytes] : DiskUsedByBackend(all)) {
    metrics_.Set("agentbox_sandbox_disk_bytes", {{"backend", backend}}, static_cast<double>(bytes));
  }
  const DiskFloor floor = CheckDiskFloor(opts_.state_dir, opts_.min_free_bytes);
  metrics_.Set("agentbox_state_dir_free_bytes", {}, static_cast<double>(floor.free_bytes));
  metrics_.ResetGauge("agentbox_sandboxes");
  {
    std::lock_guard<std::mutex> lock(mu_);
    std::map<std::pair<std::string, std::string>, int> counts;
    for (const auto& [id, e] : sandboxes_) {
      SandboxInfo info = e.info;
      health_.Overlay(info);
      ++counts[{info.backend, SandboxStateName(info.state)}];
    }
    for (const auto& [k, n] : counts) {
      metrics_.Set("agentbox_sandboxes", {{"backend", k.first}, {"state", k.second}}, n);
    }
  }
  metrics_.Set("agentbox_http_requests_in_flight", {}, static_cast<double>(in_flight_.load()));
  if (opts_.collect_metrics) {
    opts_.collect_metrics(metrics_);
  }
  http::Response r;
  r.content_type = "text/plain; version=0.0.4";
  r.body = metrics_.Render();
  respond(std::move(r));
}

}  // namespace agentbox::daemon
