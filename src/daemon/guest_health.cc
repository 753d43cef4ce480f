#include "daemon/guest_health.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "common/json_util.h"
#include "common/log.h"
#include "http/envelope.h"

namespace agentbox::daemon {

namespace {

using std::chrono::milliseconds;

milliseconds Seconds(double s) {
  return milliseconds(static_cast<int64_t>(std::ceil(std::max(0.0, s) * 1000.0)));
}

// The number at `key` of a JSON object, when it is one.
std::optional<double> NumberField(const Json& body, const char* key) {
  if (!body.is_object()) {
    return std::nullopt;
  }
  auto it = body.find(key);
  if (it == body.end() || !it->is_number()) {
    return std::nullopt;
  }
  return it->get<double>();
}

}  // namespace

Result<GuestDeadlines> GuestDeadlines::FromConfig(const Config& cfg) {
  GuestDeadlines d;
  auto margin = cfg.GetInt("AGENTBOX_GUEST_CALL_MARGIN_S", 10, 1, 3600);
  auto call = cfg.GetInt("AGENTBOX_GUEST_CALL_TIMEOUT_S", 60, 1, 86400);
  // Above the guest's 15 s keep-alive, so an idle but healthy stream is never cut.
  auto idle = cfg.GetInt("AGENTBOX_GUEST_STREAM_IDLE_S", 60, 20, 86400);
  auto rate = cfg.GetInt("AGENTBOX_GUEST_UPLOAD_MIN_RATE", 1 << 20, 1024, int64_t{1} << 40);
  for (const auto* r : {&margin, &call, &idle, &rate}) {
    if (!*r) {
      return Fail(r->error());
    }
  }
  d.margin = std::chrono::seconds(*margin);
  d.call = std::chrono::seconds(*call);
  d.stream_idle = std::chrono::seconds(*idle);
  d.upload_min_bytes_per_s = static_cast<double>(*rate);
  return d;
}

milliseconds CallDeadline(const GuestDeadlines& d, const std::string& op, const std::string& body,
                          double max_wait_s) {
  // Parsed only for the calls whose deadline depends on it: file/write bodies can be large.
  const bool waits = op == "shell/exec" || op == "shell/wait" || op == "shell/run";
  const Json j = waits ? ParseUntrustedJson(body) : Json();
  std::optional<double> wait;
  if (op == "shell/exec") {
    wait = NumberField(j, "wait_seconds").value_or(5);
  } else if (op == "shell/wait") {
    wait = NumberField(j, "seconds").value_or(60);
  } else if (op == "shell/run") {
    // A background command (`cmd &`) answers at once; the limit is still the command's timeout.
    const double t = NumberField(j, "timeout").value_or(120);
    wait = t > 0 ? t : max_wait_s;
  } else if (op == "shell/kill") {
    wait = 10;  // the guest waits up to 10 s for the killed command to end
  }
  if (!wait) {
    return d.call;
  }
  const double capped = std::min(*wait, std::max(0.0, max_wait_s));
  return Seconds(capped) + d.margin;
}

milliseconds UploadDeadline(const GuestDeadlines& d, uint64_t bytes) {
  return d.call + Seconds(static_cast<double>(bytes) / d.upload_min_bytes_per_s);
}

std::string DeadlineText(milliseconds d) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f s", static_cast<double>(d.count()) / 1000.0);
  return buf;
}

GuestHealth::GuestHealth(http::UnixHttpClient& client, Metrics& metrics, GuestDeadlines deadlines)
    : client_(client), metrics_(metrics), deadlines_(deadlines) {
  metrics_.Describe("agentbox_guest_unresponsive_total", "counter",
                    "Guests that stopped answering within a call's deadline, by backend.");
}

void GuestHealth::OnTimeout(const SandboxInfo& info, const std::string& what, milliseconds deadline,
                            http::Respond respond) {
  Probe(info, [this, info, what, deadline, respond = std::move(respond)](bool answered) {
    if (!answered) {
      auto r = MarkUnresponsive(info, what, deadline);
      if (respond) {
        respond(std::move(r));
      }
      return;
    }
    Log(LogLevel::kInfo, "guest.call_too_slow", "id={} call={} deadline_ms={}", info.id, what,
        deadline.count());
    if (respond) {
      respond(http::ErrorResponse(504,
                                  "sandbox '" + info.id + "' did not finish " + what + " within " +
                                      DeadlineText(deadline) +
                                      " (its guest still answers: the call itself took too long)"));
    }
  });
}

http::Response GuestHealth::MarkUnresponsive(const SandboxInfo& info, const std::string& what,
                                             milliseconds deadline) {
  const std::string detail = "Its guest did not answer " + what + " within " +
                             DeadlineText(deadline) +
                             " (stopped, deadlocked or starved); POST /v1/sandboxes/" + info.id +
                             "/restart-guest replaces it.";
  bool first = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto [it, inserted] = unresponsive_.try_emplace(info.id, Mark{detail, info.backend});
    first = inserted;
  }
  if (first) {
    metrics_.Increment("agentbox_guest_unresponsive_total", {{"backend", info.backend}});
    Log(LogLevel::kWarn, "guest.unresponsive", "id={} backend={} call={} deadline_ms={}", info.id,
        info.backend, what, deadline.count());
  }
  return http::ErrorResponse(504, "sandbox '" + info.id + "' did not answer " + what + " within " +
                                      DeadlineText(deadline) +
                                      ": its guest is unresponsive (POST /v1/sandboxes/" + info.id +
                                      "/restart-guest replaces it; DELETE removes it)");
}

void GuestHealth::Answered(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (unresponsive_.erase(id) > 0) {
    Log(LogLevel::kInfo, "guest.responsive", "id={}", id);
  }
}

std::optional<std::string> GuestHealth::Unresponsive(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = unresponsive_.find(id);
  if (it == unresponsive_.end()) {
    return std::nullopt;
  }
  return it->second.detail;
}

void GuestHealth::Overlay(SandboxInfo& info) const {
  if (gate_) {
    if (auto why = gate_(info)) {
      info.state = SandboxState::kUnreachable;
      info.detail = *why;
      return;
    }
  }
  if (info.state != SandboxState::kRunning) {
    return;
  }
  if (auto detail = Unresponsive(info.id)) {
    info.state = SandboxState::kUnresponsive;
    info.detail = *detail;
  }
}

void GuestHealth::Forget(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  unresponsive_.erase(id);
}

void GuestHealth::Probe(const SandboxInfo& info, std::function<void(bool)> done) {
  if (!info.guest_endpoint.starts_with("unix:")) {
    done(false);
    return;
  }
  http::ClientRequest cr;
  cr.method = "GET";
  cr.target = "/api/v1/health";
  cr.headers.emplace_back("X-Access-Token", info.guest_token);
  client_.Send(info.guest_endpoint.substr(5), std::move(cr), deadlines_.probe,
               [this, id = info.id, done = std::move(done)](Result<http::ClientResponse> r) {
                 const bool answered = r.has_value() && r->status < 500;
                 if (answered) {
                   Answered(id);
                 }
                 done(answered);
               });
}

void GuestHealth::ProbeUnresponsive(const std::vector<SandboxInfo>& sandboxes) {
  for (const auto& info : sandboxes) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!unresponsive_.count(info.id) || !probing_.insert(info.id).second) {
        continue;
      }
    }
    Probe(info, [this, id = info.id](bool) {
      std::lock_guard<std::mutex> lock(mu_);
      probing_.erase(id);
    });
  }
}

void GuestHealth::BeforeCall(const SandboxInfo& info, const std::string& what,
                             http::Respond respond, std::function<void()> go) {
  if (gate_) {
    if (auto why = gate_(info)) {
      respond(http::ErrorResponse(503, "sandbox '" + info.id + "' is " + *why));
      return;
    }
  }
  if (!Unresponsive(info.id)) {
    go();
    return;
  }
  Probe(info, [this, info, what, respond = std::move(respond), go = std::move(go)](bool answered) {
    if (answered) {
      go();
      return;
    }
    respond(MarkUnresponsive(info, "its health check before " + what, deadlines_.probe));
  });
}

}  // namespace agentbox::daemon
