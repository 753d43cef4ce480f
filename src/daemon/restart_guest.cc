// POST /v1/sandboxes/{id}/restart-guest: the way out for a sandbox whose guest is stuck.
#include <chrono>

#include "common/log.h"
#include "daemon/daemon_api.h"

namespace agentbox::daemon {

void DaemonApi::RestartGuest(const std::string& id, const Caller& caller, http::Respond respond) {
  auto e = Find(id, caller);
  if (!e) {
    return respond(JsonErr({ErrorCode::kNotFound, "sandbox '" + id + "' not found"}));
  }
  // Off the I/O thread: the backend kills the old guest and waits for the new one's health.
  pool_.Post([this, e = *e, respond] {
    using Clock = std::chrono::steady_clock;
    const auto start = Clock::now();
    auto r = e.backend->RestartGuest(e.info.id);
    // A backend that cannot restart guests refuses (a 4xx): that is not the backend failing.
    const bool ok = r.has_value() || HttpStatus(r.error().code) < 500;
    Count(e.info.backend, "restart-guest", ok,
          std::chrono::duration<double>(Clock::now() - start).count());
    if (!r) {
      Log(LogLevel::kWarn, "sandbox.restart_guest_failed", "id={} backend={} error=\"{}\"",
          e.info.id, e.info.backend, r.error().message);
      return respond(JsonErr(r.error()));
    }
    // Connections kept to the old guest lead nowhere now.
    if (e.info.guest_endpoint.starts_with("unix:")) {
      client_.Forget(e.info.guest_endpoint.substr(5));
    }
    health_.Forget(e.info.id);
    SandboxEntry out = e;
    out.info = *r;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = sandboxes_.find(e.info.id);
      if (it == sandboxes_.end()) {  // deleted meanwhile
        return respond(JsonErr({ErrorCode::kNotFound, "sandbox '" + e.info.id + "' not found"}));
      }
      it->second.info = *r;
    }
    // The new guest has no sessions: give back the ones the daemon kept snapshots of.
    const int restored =
        sessions_.Restore(*r, "POST /v1/sandboxes/" + e.info.id + "/restart-guest");
    Log(LogLevel::kInfo, "sandbox.guest_restarted", "id={} backend={} ms={:.1f} sessions={}",
        e.info.id, e.info.backend,
        std::chrono::duration<double, std::milli>(Clock::now() - start).count(), restored);
    respond(JsonOk(SandboxJson(out)));
  });
}

}  // namespace agentbox::daemon
