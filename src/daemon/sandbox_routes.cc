#include "daemon/daemon_api.h"
#include "daemon/api_detail.h"

#include <fcntl.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <set>

#include "common/crash_point.h"
#include "common/fs_util.h"
#include "common/log.h"
#include "common/strings.h"
#include "common/time_util.h"
#include "daemon/create_body.h"
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
  auto run_mode = f.OptString("cloudrun_mode");
  auto read_only_root = f.OptBool("read_only_root");
  auto limits = ParseLimits(*body);
  auto env = ParseStringMap(*body, "env", 1024);
  auto labels = ParseStringMap(*body, "labels", 64);
  for (const Error* e :
       {image ? nullptr : &image.error(), ttl ? nullptr : &ttl.error(),
        backend_name ? nullptr : &backend_name.error(), subject ? nullptr : &subject.error(),
        network ? nullptr : &network.error(), run_mode ? nullptr : &run_mode.error(),
        read_only_root ? nullptr : &read_only_root.error(), limits ? nullptr : &limits.error(),
        env ? nullptr : &env.error(), labels ? nullptr : &labels.error()}) {
    if (e) {
      return respond(JsonErr(*e));
    }
  }
  spec.image = image->value_or("");
  spec.ttl_s = ttl->value_or(opts_.default_ttl_s);
  spec.read_only_root = read_only_root->value_or(false);
  spec.limits = *limits;
  spec.env = *env;
  spec.labels = *labels;
  spec.owner = caller.owner;
  if (spec.labels.count(kMigratedFromLabel) != 0) {
    return respond(JsonErr(FieldError(
        "labels", std::string("label '") + kMigratedFromLabel + "' is reserved to the daemon")));
  }
  if (spec.labels.count(kIdempotencyLabel) != 0) {
    return respond(JsonErr(FieldError(
        "labels", std::string("label '") + kIdempotencyLabel +
                      "' is reserved: send the Idempotency-Key header instead")));
  }
  // cloudrun only: "job" or "session" (docs/cloudrun.md); other backends run every capability
  // anyway and ignore it, so a fallback away from cloudrun does not fail the create.
  spec.run_mode = run_mode->value_or("");
  if (!spec.run_mode.empty() && spec.run_mode != "job" && spec.run_mode != "session") {
    return respond(JsonErr(FieldError("cloudrun_mode", "must be \"job\" or \"session\"")));
  }
  // Who a percentage rollout is sticky for: the caller's user or tenant when given, else the key.
  if (*subject && ((*subject)->empty() || (*subject)->size() > 256)) {
    return respond(JsonErr(FieldError("subject", "must be 1 to 256 bytes")));
  }
  const std::string rollout_subject = subject->value_or(caller.owner);
  if (auto net = ParseNetwork(*body, network->value_or("none"), caller.admin, &spec); !net) {
    return respond(JsonErr(net.error()));
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
  // A retry of a create that made its sandbox already is answered before the per-key limit.
  std::string idempotency_digest;
  if (!BeginIdempotentCreate(req, *body, caller, respond, &idempotency_digest)) {
    return;
  }
  if (!idempotency_digest.empty()) {
    spec.labels[kIdempotencyLabel] = idempotency_digest;
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
  pool_.Post([this, id, spec, pinned, rollout_subject, respond, idempotency_digest] {
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
    CrashPoint("daemon.create.registered");
    if (!idempotency_digest.empty()) {
      idempotency_.Complete(idempotency_digest, info->id);  // and answers concurrent retries
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
  ports_->Forget(id);
  pool_.Post([this, e = *e, respond] {
    CrashPoint("daemon.destroy.unregistered");
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

}  // namespace agentbox::daemon
