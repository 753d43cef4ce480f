// Sandboxes whose engine stopped answering: shown unreachable meanwhile, brought back when it
// answers again (daemon/backend_watch.h); guests the engine restarted on its own, and guests
// found after a daemon restart, get their sessions back (daemon/session_keeper.h). Runs from the
// reaper's tick and from Start, on the worker pool.
#include <chrono>
#include <set>
#include <thread>

#include "common/log.h"
#include "daemon/daemon_api.h"

namespace agentbox::daemon {

namespace {
using Clock = std::chrono::steady_clock;
}  // namespace

void DaemonApi::WatchEngines() {
  std::map<SandboxBackend*, std::vector<SandboxEntry>> held;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [id, e] : sandboxes_) {
      held[e.backend].push_back(e);
    }
  }
  if (held.empty() || !watch_.Begin()) {
    return;
  }
  pool_.Post([this, held = std::move(held)] {
    for (const auto& [backend, entries] : held) {
      const std::string name(backend->Name());
      const auto down = backend->EngineDown();
      if (!watch_.Record(name, down)) {
        if (down) {
          continue;
        }
        // Up: guests the engine started again by itself (a crash its restart policy answered).
        for (const auto& id : backend->GuestsRestarted()) {
          metrics_.Increment("agentbox_guest_restarts_noticed_total", {{"backend", name}});
          for (const auto& e : entries) {
            if (e.info.id == id && sessions_.Holds(id)) {
              pool_.Post([this, e] {
                RestoreSessions(e, "it stopped and the " + e.info.backend +
                                       " engine started it again (restart policy)");
              });
            }
          }
        }
        continue;
      }
      // Back: every sandbox of it stays unreachable until it has been brought back.
      for (const auto& e : entries) {
        watch_.Recovering(e.info.id, "unreachable: the " + name +
                                         " engine answers again; the sandbox is being brought "
                                         "back (its guest started again if it stopped).");
      }
      for (const auto& e : entries) {
        RecoverSandbox(e);
        watch_.Recovered(e.info.id);
      }
    }
    watch_.End();
  });
}

void DaemonApi::RecoverSandbox(const SandboxEntry& e) {
  const auto start = Clock::now();
  const std::string& id = e.info.id;
  auto outcome = [&](const char* what) {
    metrics_.Increment("agentbox_sandbox_recoveries_total",
                       {{"backend", e.info.backend}, {"outcome", what}});
    Log(LogLevel::kInfo, "sandbox.recovered", "id={} backend={} outcome={} ms={:.1f}", id,
        e.info.backend, what,
        std::chrono::duration<double, std::milli>(Clock::now() - start).count());
  };
  auto now = e.backend->Get(id);
  if (!now) {
    Log(LogLevel::kWarn, "sandbox.recover_failed", "id={} error=\"{}\"", id, now.error().message);
    return outcome("error");
  }
  SandboxInfo info = *now;
  // A container that is running may still be starting its guest (the engine's restart policy
  // started it): give the guest the time a start takes before replacing it.
  bool answers = false;
  if (info.state == SandboxState::kRunning) {
    const auto until = Clock::now() + std::chrono::seconds(20);
    while (!answers && Clock::now() < until) {
      auto h = CallGuest(client_, info, "GET", "/api/v1/health", "", std::chrono::seconds(2));
      answers = h && h->status < 500;
      if (!answers) {
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
      }
    }
  }
  std::string why = "the " + e.info.backend + " engine restarted";
  if (!answers) {
    // Stopped with the engine (no live-restore) or never came back: the same container again.
    auto r = e.backend->RestartGuest(id);
    if (!r) {
      Log(LogLevel::kWarn, "sandbox.recover_failed", "id={} error=\"{}\"", id, r.error().message);
      return outcome("error");
    }
    info = *r;
    why += " and stopped the sandbox; agentbox started it again";
  }
  if (info.guest_endpoint.starts_with("unix:")) {
    client_.Forget(info.guest_endpoint.substr(5));  // connections to the old guest lead nowhere
  }
  health_.Forget(id);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = sandboxes_.find(id); it != sandboxes_.end()) {
      it->second.info.guest_endpoint = info.guest_endpoint;
      it->second.info.guest_token = info.guest_token;
      it->second.info.state = info.state;
    }
  }
  sessions_.Restore(info, why);
  outcome(answers ? "running" : "restarted");
}

void DaemonApi::RestoreSessions(const SandboxEntry& e, const std::string& why) {
  auto now = e.backend->Get(e.info.id);
  if (!now || now->state != SandboxState::kRunning) {
    Log(LogLevel::kWarn, "session.restore_skipped", "id={} why=\"{}\" error=\"{}\"", e.info.id, why,
        now ? std::string("not running") : now.error().message);
    return;
  }
  if (now->guest_endpoint.starts_with("unix:")) {
    client_.Forget(now->guest_endpoint.substr(5));  // connections to the old guest lead nowhere
  }
  health_.Forget(e.info.id);
  // A container the engine just started may still be starting its guest.
  if (!GuestAnswers(client_, *now, std::chrono::seconds(20))) {
    Log(LogLevel::kWarn, "session.restore_skipped",
        "id={} why=\"{}\" error=\"guest does not answer\"", e.info.id, why);
    return;
  }
  sessions_.Restore(*now, why);
}

void DaemonApi::RestoreKeptSessions(bool complete) {
  std::vector<std::string> ids;
  std::map<std::string, SandboxEntry> entries;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [id, e] : sandboxes_) {
      ids.push_back(id);
      entries.emplace(id, e);
    }
  }
  for (const auto& id : sessions_.Load(ids, complete)) {
    pool_.Post([this, e = entries.at(id)] {
      RestoreSessions(e, "found without its sessions when agentboxd started again");
    });
  }
}

}  // namespace agentbox::daemon
