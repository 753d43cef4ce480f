// Sandboxes of shared backends (Capabilities::shared_state): several agentboxd replicas serve
// the same sandboxes, so a replica learns about ids it did not create when they are used.
#include <boost/asio/post.hpp>
#include <set>

#include "common/log.h"
#include "daemon/daemon_api.h"

namespace agentbox::daemon {

bool DaemonApi::LookUpShared(const std::string& id, const http::Request& req, const Caller& caller,
                             const http::Respond& respond) {
  std::vector<SandboxBackend*> shared;
  for (const auto& [name, b] : backends_) {
    if (b->GetCapabilities().shared_state) {
      shared.push_back(b);
    }
  }
  if (shared.empty() || !ValidSandboxId(id)) {
    return false;
  }
  pool_.Post([this, id, req, caller, respond, shared] {
    for (SandboxBackend* b : shared) {
      auto info = b->Get(id);
      if (!info) {
        continue;
      }
      std::lock_guard<std::mutex> lock(mu_);
      if (!sandboxes_.count(id)) {
        Log(LogLevel::kInfo, "daemon.shared_sandbox_found", "id={} backend={}", id, b->Name());
        sandboxes_[id] = SandboxEntry{*info, b, "SHARED"};
      }
      break;
    }
    boost::asio::post(io_, [this, req, caller, respond] { Route(req, caller, respond, true); });
  });
  return true;
}

void DaemonApi::SyncShared() {
  for (const auto& [name, b] : backends_) {
    if (!b->GetCapabilities().shared_state) {
      continue;
    }
    auto list = b->List();
    if (!list) {
      continue;
    }
    std::set<std::string> live;
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& info : *list) {
      live.insert(info.id);
      if (!sandboxes_.count(info.id)) {
        sandboxes_[info.id] = SandboxEntry{info, b, "SHARED"};
      }
    }
    for (auto it = sandboxes_.begin(); it != sandboxes_.end();) {
      if (it->second.backend == b && !live.count(it->first)) {
        it = sandboxes_.erase(it);  // destroyed through another daemon
      } else {
        ++it;
      }
    }
  }
}

void DaemonApi::ForgetShared(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  sandboxes_.erase(id);
}

}  // namespace agentbox::daemon
