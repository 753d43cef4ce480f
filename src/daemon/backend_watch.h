#pragma once

#include <atomic>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "api/sandbox_backend.h"
#include "common/metrics.h"

namespace agentbox::daemon {

// Which engines are not answering, and which sandboxes are being brought back after one came
// back. The daemon asks every backend that holds sandboxes whether its engine is down
// (SandboxBackend::EngineDown) every couple of seconds (daemon/engine_recovery.cc) and records the
// outcome here. While a backend is down, every sandbox of it is unreachable: its state and detail
// say so and calls to its guest fail at once with 503. Counts
// agentbox_engine_unreachable_total{backend} (one per episode) and
// agentbox_engine_unreachable_seconds_total{backend}. Thread-safe.
class BackendWatch {
 public:
  explicit BackendWatch(Metrics& metrics);

  // Records what probing `backend` found. Returns true when the backend had been marked down and
  // answers again (the caller then brings its sandboxes back).
  // `down`: what SandboxBackend::EngineDown said.
  bool Record(const std::string& backend, const std::optional<std::string>& down);
  // Sandbox `id` is being brought back: unreachable with `detail` until Recovered.
  void Recovering(const std::string& id, const std::string& detail);
  void Recovered(const std::string& id);

  // The detail of an unreachable sandbox ("unreachable: the Docker engine at ... is not
  // answering ..."), or nothing.
  std::optional<std::string> Unreachable(const SandboxInfo& info) const;

  // At most one round of checks at a time: Begin returns false while one runs.
  bool Begin() { return !busy_.exchange(true); }
  void End() { busy_ = false; }

 private:
  struct Down {
    std::string detail;
    double since = 0;  // unix seconds
  };
  Metrics& metrics_;
  std::atomic<bool> busy_{false};
  mutable std::mutex mu_;
  std::map<std::string, Down> down_;               // by backend; guarded by mu_
  std::map<std::string, std::string> recovering_;  // by sandbox id; guarded by mu_
};

}  // namespace agentbox::daemon
