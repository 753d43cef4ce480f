#include "daemon/backend_watch.h"

#include <cctype>

#include "common/log.h"
#include "common/time_util.h"

namespace agentbox::daemon {

BackendWatch::BackendWatch(Metrics& metrics) : metrics_(metrics) {
  metrics_.Describe("agentbox_engine_unreachable_total", "counter",
                    "Times a backend's engine stopped answering while it held sandboxes.");
  metrics_.Describe("agentbox_engine_unreachable_seconds_total", "counter",
                    "Seconds a backend's engine was not answering, counted when it answers again.");
  metrics_.Describe("agentbox_guest_restarts_noticed_total", "counter",
                    "Guests the engine started again on its own (a restart policy after a crash), "
                    "noticed from the engine's events; their sessions are then restored.");
}

bool BackendWatch::Record(const std::string& backend, const std::optional<std::string>& down) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = down_.find(backend);
  if (down) {
    std::string why = down->empty() ? "the " + backend + " engine is not answering" : *down;
    why[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(why[0])));
    const std::string detail = "unreachable: " + why +
                               " Calls fail with 503 until it answers again; the sandbox comes "
                               "back by itself then.";
    if (it == down_.end()) {
      down_[backend] = Down{detail, NowUnix()};
      metrics_.Increment("agentbox_engine_unreachable_total", {{"backend", backend}});
      Log(LogLevel::kWarn, "engine.unreachable", "backend={} reason=\"{}\"", backend, *down);
    } else {
      it->second.detail = detail;
    }
    return false;
  }
  if (it == down_.end()) {
    return false;
  }
  const double secs = NowUnix() - it->second.since;
  metrics_.Increment("agentbox_engine_unreachable_seconds_total", {{"backend", backend}}, secs);
  Log(LogLevel::kInfo, "engine.reachable", "backend={} down_s={:.1f}", backend, secs);
  down_.erase(it);
  return true;
}

void BackendWatch::Recovering(const std::string& id, const std::string& detail) {
  std::lock_guard<std::mutex> lock(mu_);
  recovering_[id] = detail;
}

void BackendWatch::Recovered(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  recovering_.erase(id);
}

std::optional<std::string> BackendWatch::Unreachable(const SandboxInfo& info) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = down_.find(info.backend); it != down_.end()) {
    return it->second.detail;
  }
  if (auto it = recovering_.find(info.id); it != recovering_.end()) {
    return it->second;
  }
  return std::nullopt;
}

}  // namespace agentbox::daemon
