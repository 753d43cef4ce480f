// Guests that a backend replaces on its own (cloudrun session mode starts a new execution when
// one is lost): the sandbox is unreachable meanwhile, and its sessions are restored from the
// session keeper (or from the backend's durable copies) once the new guest answers.
#include "common/log.h"
#include "daemon/daemon_api.h"

namespace agentbox::daemon {

void DaemonApi::WireBackends() {
  metrics_.Describe("agentbox_guest_replacements_total", "counter",
                    "Guests a backend replaced on its own (a lost Cloud Run execution), by "
                    "backend and outcome (replaced, failed).");
  for (const auto& [name, backend] : backends_) {
    GuestEvents ev;
    ev.lost = [this](const std::string& id, const std::string& detail) {
      watch_.Recovering(id, "unreachable: " + detail);
      Log(LogLevel::kWarn, "sandbox.guest_lost", "id={} detail=\"{}\"", id, detail);
    };
    ev.replaced = [this](const SandboxInfo& info, const std::string& why) {
      if (info.guest_endpoint.starts_with("unix:")) {
        client_.Forget(info.guest_endpoint.substr(5));  // pooled streams of the old tunnel
      }
      health_.Forget(info.id);
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (auto it = sandboxes_.find(info.id); it != sandboxes_.end()) {
          it->second.info.guest_endpoint = info.guest_endpoint;
          it->second.info.guest_token = info.guest_token;
          it->second.info.state = info.state;
          it->second.info.detail = info.detail;
        }
      }
      const int restored = sessions_.Restore(info, why);
      auto resume = [this, info, restored, why] {
        watch_.Recovered(info.id);
        metrics_.Increment("agentbox_guest_replacements_total",
                           {{"backend", info.backend}, {"outcome", "replaced"}});
        Log(LogLevel::kInfo, "sandbox.guest_replaced", "id={} sessions={} why=\"{}\"", info.id,
            restored, why);
      };
      // What the E2B API keeps in the guest (its `user` account) is made again before the
      // sandbox is shown running.
      if (e2b_) {
        return e2b_->GuestReplaced(info, std::move(resume));
      }
      resume();
    };
    ev.failed = [this](const SandboxInfo& info) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (auto it = sandboxes_.find(info.id); it != sandboxes_.end()) {
          it->second.info.state = info.state;
          it->second.info.detail = info.detail;
        }
      }
      watch_.Recovered(info.id);
      metrics_.Increment("agentbox_guest_replacements_total",
                         {{"backend", info.backend}, {"outcome", "failed"}});
      Log(LogLevel::kWarn, "sandbox.guest_replace_failed", "id={} detail=\"{}\"", info.id,
          info.detail);
    };
    backend->SetGuestEvents(std::move(ev));
  }
  SessionKeeper::Durable durable;
  durable.save = [this](const std::string& backend, const std::string& id,
                        const std::string& session, const Json& kept) {
    if (auto it = backends_.find(backend); it != backends_.end()) {
      it->second->KeepSessionState(id, session, kept);
    }
  };
  durable.load = [this](const std::string& backend, const std::string& id) -> Result<Json> {
    if (auto it = backends_.find(backend); it != backends_.end()) {
      return it->second->KeptSessionStates(id);
    }
    return Json::object();
  };
  sessions_.SetDurable(std::move(durable));
}

void DaemonApi::UnwireBackends() {
  for (const auto& [name, backend] : backends_) {
    backend->SetGuestEvents({});
  }
}

}  // namespace agentbox::daemon
