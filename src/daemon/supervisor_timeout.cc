// /v1/sandboxes/{id}/api/v1/supervisor/timeout/{activate,extend,cancel,status}: the timeout
// endpoints of the ai-manus sandbox API, answered here rather than by the guest, because the
// sandbox's lifetime (its TTL) is the daemon's. Same request and answer shapes as ai-manus's
// supervisor (docs/guest-api.md, "Supervisor"); `shutdown_time` is when agentboxd destroys the
// sandbox.
#include <cmath>
#include <cstdio>
#include <ctime>

#include "common/json_util.h"
#include "common/known_fields.h"
#include "common/time_util.h"
#include "daemon/daemon_api.h"
#include "http/envelope.h"
#include "http/field_check.h"

namespace agentbox::daemon {

namespace {

// ISO 8601 in UTC with microseconds, as Python's datetime.isoformat() of an aware time.
std::string IsoUtc(double unix_seconds) {
  const auto whole = static_cast<std::time_t>(std::floor(unix_seconds));
  const auto micros = static_cast<long>((unix_seconds - static_cast<double>(whole)) * 1e6);
  std::tm tm{};
  ::gmtime_r(&whole, &tm);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%06ld+00:00", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, micros);
  return buf;
}

// ai-manus's SupervisorTimeout: every field present, null unless set.
Json TimeoutJson(const char* status, double expires_at) {
  Json d = {{"status", status ? Json(status) : Json(nullptr)},
            {"active", expires_at > 0},
            {"shutdown_time", nullptr},
            {"timeout_minutes", nullptr},
            {"remaining_seconds", nullptr}};
  if (expires_at > 0) {
    d["shutdown_time"] = IsoUtc(expires_at);
  }
  return d;
}

}  // namespace

void DaemonApi::SupervisorTimeout(const std::string& id, const std::string& op,
                                  const http::Request& req, const Caller& caller,
                                  http::Respond respond) {
  const bool get = op == "status";
  if (!get && op != "activate" && op != "extend" && op != "cancel") {
    return respond(JsonErrStatus(404, "no such endpoint: " + req.method + " " + req.path));
  }
  if ((req.method == "GET") != get || (!get && req.method != "POST")) {
    return respond(JsonErrStatus(405, std::string("use ") + (get ? "GET" : "POST") + " for " +
                                          req.path));
  }
  // Bodies as ai-manus takes them: none, or {minutes?} (null or 0: the default lifetime).
  std::optional<int64_t> minutes;
  if (!get && req.body.find_first_not_of(" \t\r\n") != std::string::npos) {
    auto body = ParseJsonObject(req.body);
    if (!body) {
      return respond(JsonErr(body.error()));
    }
    // Unknown fields are ignored with a Warning, as ai-manus (pydantic) ignores them, except a
    // misspelled `minutes`, which would otherwise silently set the default lifetime.
    static const FieldSchema kMinutes = FieldSchema::Warn({"minutes"}, {"minutes"});
    static const FieldSchema kNone = FieldSchema::Warn({});
    if (!http::AcceptFields(CheckKnownFields(*body, op == "cancel" ? kNone : kMinutes),
                            "/api/v1/supervisor/timeout/" + op, respond)) {
      return;
    }
    if (op != "cancel") {
      auto m = JsonFields(*body).OptInt("minutes", 0, std::max<int64_t>(1, opts_.max_ttl_s / 60));
      if (!m) {
        return respond(JsonErr(m.error()));
      }
      if (*m && **m > 0) {
        minutes = **m;
      }
    }
  }
  auto e = Find(id, caller);
  if (!e) {
    return respond(JsonErr({ErrorCode::kNotFound, "sandbox '" + id + "' not found"}));
  }
  const double now = NowUnix();
  if (get) {
    Json d = TimeoutJson(nullptr, e->info.expires_at);
    if (e->info.expires_at <= 0) {
      return respond(http::OkResponse(std::move(d), "No active timeout"));
    }
    const double remaining = std::max(0.0, e->info.expires_at - now);
    d["remaining_seconds"] = remaining;
    return respond(http::OkResponse(
        std::move(d),
        "Remaining time: " + std::to_string(static_cast<int64_t>(remaining / 60)) + " minutes"));
  }
  // activate and extend both set the lifetime to `minutes` from now, as ai-manus's do; cancel
  // cannot leave a sandbox without a lifetime here, so it sets the longest one allowed.
  const int64_t ttl_s = op == "cancel" ? opts_.max_ttl_s
                                       : (minutes ? *minutes * 60 : opts_.default_ttl_s);
  const double expires = now + static_cast<double>(ttl_s);
  pool_.Post([this, e = *e, op, expires, ttl_s, respond] {
    if (auto r = e.backend->SetExpiry(e.info.id, expires); !r) {
      return respond(JsonErr(r.error()));
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = sandboxes_.find(e.info.id);
      if (it == sandboxes_.end()) {
        return respond(JsonErr({ErrorCode::kNotFound, "sandbox '" + e.info.id + "' not found"}));
      }
      it->second.info.expires_at = expires;
    }
    const double mins = static_cast<double>(ttl_s) / 60.0;
    const std::string mins_text = std::to_string(static_cast<int64_t>(mins));
    if (op == "cancel") {
      Json d = TimeoutJson("timeout_cancelled", expires);
      d["remaining_seconds"] = static_cast<double>(ttl_s);
      return respond(http::OkResponse(
          std::move(d), "Timeout cancelled: agentboxd keeps a lifetime for every sandbox, now "
                        "the longest allowed (" + mins_text + " minutes)"));
    }
    Json d = TimeoutJson(op == "activate" ? "timeout_activated" : "timeout_extended", expires);
    d["timeout_minutes"] = mins;
    respond(http::OkResponse(std::move(d), std::string(op == "activate" ? "Timeout reset"
                                                                          : "Timeout extended") +
                                               ", the sandbox will be destroyed after " +
                                               mins_text + " minutes"));
  });
}

}  // namespace agentbox::daemon
