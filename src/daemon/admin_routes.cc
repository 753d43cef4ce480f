#include <fcntl.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <set>

#include "common/fs_util.h"
#include "common/log.h"
#include "common/strings.h"
#include "common/time_util.h"
#include "daemon/api_detail.h"
#include "daemon/daemon_api.h"
#include "daemon/disk_floor.h"
#include "daemon/flags_body.h"
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

// The share (0..100) of new sandboxes `backend` gets under `s`, before breakers and fallbacks.
int SharePercent(const selector::Settings& s, const std::string& backend) {
  const int candidate =
      !s.rollout.backend.empty() && !s.rollout.kill_switch ? s.rollout.percentage : 0;
  int share = 0;
  if (backend == s.rollout.backend) {
    share += candidate;
  }
  if (backend == s.requested_backend) {
    share += 100 - candidate;
  }
  return std::min(share, 100);
}

// "create, files" from a stored validation: the checks that failed.
std::string FailedChecks(const Json& rec) {
  std::string out;
  for (const auto& c : ValueOr(rec, "checks", Json::array())) {
    if (ValueOr(c, "outcome", "") == "FAIL") {
      out += (out.empty() ? "" : ", ") + ValueOr(c, "name", "?");
    }
  }
  return out.empty() ? "no check named" : "failed: " + out;
}

}  // namespace

void DaemonApi::Validation(const std::string& backend, const http::Request& req,
                           const Caller& caller, http::Respond respond) {
  if (req.method != "GET" && req.method != "PUT") {
    return respond(JsonErrStatus(405, "use GET or PUT on /v1/backends/{name}/validation"));
  }
  if (!backends_.count(backend)) {
    return respond(JsonErrStatus(404, "unknown backend '" + backend + "'"));
  }
  if (req.method == "GET") {
    auto rec = validations_->Get(backend);
    if (!rec) {
      return respond(JsonErrStatus(404, "backend '" + backend + "' was never validated"));
    }
    return respond(JsonOk(*rec));
  }
  if (!caller.admin) {
    return respond(
        JsonErr({ErrorCode::kForbidden, "validations are recorded on the local socket only"}));
  }
  auto body = ParseJsonObject(req.body);
  if (!body) {
    return respond(JsonErr(body.error()));
  }
  if (!http::AcceptFields(CheckValidationFields(*body), "PUT /v1/backends/{name}/validation",
                          respond)) {
    return;
  }
  auto rec = validations_->Put(backend, *body);
  if (!rec) {
    return respond(JsonErr(rec.error()));
  }
  respond(JsonOk(*rec));
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
  auto parsed = ParseFlagChanges(*body);
  if (!parsed) {
    return respond(JsonErr(parsed.error()));
  }
  const auto changes = std::move(parsed->changes);
  const bool force = parsed->force;
  pool_.Post([this, changes, force, respond] {
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
    // The rollout plan's gate: a backend whose last shadow validation failed does not get a
    // larger share of new sandboxes unless the operator insists.
    if (!force) {
      const auto before_settings = selector_->settings();
      for (const auto& [name, unused] : backends_) {
        const int was = SharePercent(*before_settings, name);
        const int will = SharePercent(settings, name);
        if (will > 0 && will > was && validations_->LastFailed(name)) {
          return respond(JsonErrStatus(
              409, "backend '" + name + "' failed its last validation (" +
                       FailedChecks(*validations_->Get(name)) + "); its share of new sandboxes " +
                       "stays at " + std::to_string(was) +
                       "%. Run `agentbox conformance --backend " + name +
                       "` again, or send \"force\": true; nothing changed"));
        }
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
    for (auto& [name, b] : info["backends"].items()) {
      if (auto v = validations_->Get(name)) {
        b["validation"] = *v;
      }
    }
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
  for (const auto& [name, probe] : selector_->ProbeAll()) {
    metrics_.Set("agentbox_backend_usable", {{"backend", name}}, probe.usable ? 1 : 0);
  }
  if (opts_.collect_metrics) {
    opts_.collect_metrics(metrics_);
  }
  http::Response r;
  r.content_type = "text/plain; version=0.0.4";
  r.body = metrics_.Render();
  respond(std::move(r));
}

}  // namespace agentbox::daemon
