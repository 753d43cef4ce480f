#pragma once

#include <sys/types.h>

#include <atomic>
#include <map>
#include <mutex>
#include <string>

#include "api/sandbox_backend.h"

namespace agentbox::fakes {

// A SandboxBackend test double with NO isolation: each "sandbox" is an agentbox-guest process
// serving on a unix socket in a temporary directory. It exercises the daemon's lifecycle,
// forwarding, auth and metrics without the kernel features a real backend needs. Never used
// outside tests. Thread-safe.
class ProcessBackend : public SandboxBackend {
 public:
  ProcessBackend(std::string guest_binary, std::string state_dir, std::string name = "process");
  ~ProcessBackend() override;

  std::string_view Name() const override { return name_; }
  ProbeResult Probe() override;
  Capabilities GetCapabilities() const override {
    Capabilities c;
    c.claim = true;
    return c;
  }
  Result<SandboxInfo> Create(const std::string& id, const SandboxSpec& spec) override;
  Result<SandboxInfo> Get(const std::string& id) override;
  Result<std::vector<SandboxInfo>> List() override;
  Result<void> Destroy(const std::string& id) override;
  Result<void> SetExpiry(const std::string& id, double expires_at) override;
  // Records owner, labels and expiry (in memory: this double has no restart to survive).
  Result<SandboxInfo> Claim(const std::string& id, const SandboxSpec& spec,
                            double expires_at) override;
  // Plays an image store: "missing/*" is found nowhere (kNotFound naming it), "remote/*" is
  // pulled with three progress lines, "flaky/*" fails half way (kUnavailable); anything else is
  // present.
  Result<void> Prepare(const SandboxSpec& spec, const ProgressFn& progress) override;

  // The pid of the guest process of `id` (tests that freeze it); -1 for an unknown id.
  pid_t GuestPid(const std::string& id);

  // Makes the next Create calls fail (tests of error paths); 0 = succeed.
  void FailNextCreates(int n) { fail_creates_ = n; }

  // Plays a backend whose sandboxes live in an engine that can be taken down: while down,
  // EngineDown and Probe say the engine is not answering and Get/List fail with kUnavailable;
  // `stop_guests` kills every guest as an engine without live-restore stops its containers.
  // Also enables RestartGuest (a fresh guest process over the same directory).
  void PlayEngine() { engine_ = true; }
  void SetEngineDown(bool down, bool stop_guests);
  Result<SandboxInfo> RestartGuest(const std::string& id) override;
  std::optional<std::string> EngineDown() override;
  // Plays a guest that died and that the engine's restart policy started again: a fresh guest
  // over the same directory, reported once by GuestsRestarted.
  Result<void> CrashGuest(const std::string& id);
  std::vector<std::string> GuestsRestarted() override;

 private:
  struct Box {
    SandboxInfo info;
    pid_t pid = -1;
    std::string dir;
  };
  std::string guest_;
  std::string state_dir_;
  std::string name_;
  std::mutex mu_;
  std::map<std::string, Box> boxes_;
  std::vector<std::string> restarted_;  // by CrashGuest, not yet reported; guarded by mu_
  std::atomic<int> fail_creates_{0};
  std::atomic<bool> engine_{false};
  std::atomic<bool> engine_down_{false};
};

}  // namespace agentbox::fakes
