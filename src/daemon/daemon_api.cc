#include "daemon/daemon_api.h"

#include <fcntl.h>
#include <malloc.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <set>

#include "common/fs_util.h"
#include "common/json_util.h"
#include "common/log.h"
#include "common/strings.h"
#include "common/time_util.h"
#include "daemon/api_detail.h"
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

namespace detail {

std::vector<std::string> SplitPath(const std::string& path) {
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

}  // namespace detail

http::Response JsonOk(Json data, int status) {
  return http::OkResponse(std::move(data), "ok", status);
}

http::Response JsonErr(const Error& e) { return http::ErrorResponse(e); }

http::Response JsonErrStatus(int status, const std::string& message) {
  return http::ErrorResponse(status, message);
}

Json SandboxJson(const SandboxEntry& e) {
  const SandboxInfo& i = e.info;
  Json labels = i.spec.labels;  // the client's own: the Idempotency-Key's label is the daemon's
  labels.erase(kIdempotencyLabel);
  Json migrated_from = nullptr;
  double created_at = i.created_at;
  if (auto it = labels.find(kMigratedFromLabel); it != labels.end()) {
    const Json m = it->is_string() ? ParseUntrustedJson(it->get<std::string>()) : Json();
    if (m.is_object()) {
      migrated_from = {{"backend", ValueOr(m, "backend", "")}, {"at", ValueOr(m, "at", 0.0)}};
      created_at = ValueOr(m, "created_at", created_at);  // when it was first created
    }
    labels.erase(it);
  }
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
              {"labels", std::move(labels)},
              {"limits", limits},
              {"network", NetworkModeName(i.spec.network)},
              {"read_only_root", i.spec.read_only_root},
              {"created_at", created_at},
              {"migrated_from", std::move(migrated_from)},
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
      sessions_(client_, metrics_, opts_.sessions_dir),
      idempotency_(opts_.idempotency_dir, opts_.idempotency_ttl_s),
      reaper_(io),
      gate_(io),
      journal_(opts_.migrations_dir) {
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
  metrics_.Describe(
      "agentbox_backend_usable", "gauge",
      "Whether each built backend passes its probe (1) or not (0), as /v1/info says.");
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
      const Json j = ParseUntrustedJson(*text);
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
  e2b_ = std::make_unique<e2b::E2bApi>(*this, opts_.e2b);
  ports_ = std::make_unique<PortRelay>(*this, opts_.domain, opts_.ports_dir);
  validations_ = std::make_unique<BackendValidations>(
      opts_.state_dir.empty() ? "" : opts_.state_dir + "/validations.json");
}

std::map<std::string, std::string> DaemonApi::flags() const {
  std::lock_guard<std::mutex> lock(flags_mu_);
  return flags_;
}

DaemonApi::~DaemonApi() {
  UnwireBackends();
  reaper_.cancel();
}

void DaemonApi::Start() {
  RecoverBackends();
  WireBackends();
  bool complete = true;  // every backend listed its sandboxes
  for (const auto& [name, backend] : backends_) {
    auto list = backend->List();
    if (!list) {
      Log(LogLevel::kWarn, "daemon.reattach_failed", "backend={} error=\"{}\"", name,
          list.error().message);
      complete = false;
      continue;
    }
    std::vector<SandboxInfo> leftovers;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& info : *list) {
        if (IsPoolLeftover(info)) {
          leftovers.push_back(std::move(info));
          continue;
        }
        Log(LogLevel::kInfo, "daemon.reattached", "id={} backend={} owner={}", info.id, name,
            info.spec.owner);
        sandboxes_[info.id] = SandboxEntry{info, backend, "REATTACHED"};
      }
    }
    DestroyPoolLeftovers(name, *backend, leftovers);  // daemon/crash_recovery.cc
  }
  ResolveMigrations();  // daemon/migrate.cc: a move a crash cut, finished or rolled back
  ResolveIdempotencyKeys();
  RestoreKeptSessions(complete);  // daemon/engine_recovery.cc
  if (complete) {  // public ports of sandboxes that went away while the daemon was down
    std::set<std::string> ids;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& [id, e] : sandboxes_) {
        ids.insert(id);
      }
    }
    ports_->RetainPublic(ids);
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
      if (it->second.info.expires_at > 0 && it->second.info.expires_at <= now &&
          !gate_.Moving(it->first)) {  // a move keeps the expiry: the reaper waits for it
        expired.push_back(it->second);
        health_.Forget(it->first);
        sessions_.Forget(it->first);
        ports_->Forget(it->first);
        it = sandboxes_.erase(it);
      } else {
        live.push_back(it->second.info);
        ++it;
      }
    }
  }
  idempotency_.Purge(now);
  if (++reaps_ % 15 == 0) {
    // Every 30 s, off the I/O thread: glibc's arenas keep the pages that bursts of requests
    // freed, which under a steady load reads as growth (a 5-minute soak: 53.6 MiB resident,
    // 31.3 MiB after one malloc_trim). Trimming gives them back to the kernel.
    pool_.Post([] { ::malloc_trim(0); });
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
  selector_->Record(backend, ok, op, seconds);  // feeds the rollout's breaker
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
  if (e2b::E2bApi::Claims(req)) {  // E2B's control plane and envd: their own auth and shapes
    if (const std::string sid = req.Header("e2b-sandbox-id"); !sid.empty()) {
      // envd calls go straight to a guest: they wait for a move like native ones.
      if (!gate_.TryAdmit(sid)) {
        return AfterMove(sid, Track(std::move(respond)),
                         [this, req](http::Respond r) { e2b_->Handle(req, std::move(r)); });
      }
      return e2b_->Handle(req, Admitted(sid, Track(std::move(respond))));
    }
    e2b_->Handle(req, Track(std::move(respond)));
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
                      bool looked_up, bool gated) {
  auto parts = SplitPath(req.path);
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
  if (parts.size() == 4 && parts[0] == "v1" && parts[1] == "backends" && parts[3] == "validation") {
    return Validation(parts[2], req, caller, std::move(respond));
  }
  if (parts.size() == 3 && parts[0] == "v1" && parts[1] == "admin" && parts[2] == "drain") {
    return Drain(req, caller, std::move(respond));  // daemon/drain.cc
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
    if (parts.size() == 4 && parts[3] == "migrate") {
      return Migrate(id, req, caller, std::move(respond));  // closes the gate itself
    }
    if (!gated) {  // the migration gate (migrate.cc): counted, or held while the sandbox moves
      if (!gate_.TryAdmit(id)) {
        return AfterMove(id, std::move(respond), [this, req, caller, looked_up](http::Respond r) {
          Route(req, caller, std::move(r), looked_up, /*gated=*/true);
        });
      }
      respond = Admitted(id, std::move(respond));
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
    if (parts.size() == 5 && parts[3] == "ports") {  // a port's visibility and access token
      auto e = Find(id, caller);
      return respond(e ? ports_->Control(*e, parts[4], req)
                       : JsonErr({ErrorCode::kNotFound, "sandbox '" + id + "' not found"}));
    }
    if (parts.size() == 4 && parts[3] == "metrics" && m == "GET") {
      return GetMetrics(id, caller, std::move(respond));  // daemon/metrics_routes.cc
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

}  // namespace agentbox::daemon
