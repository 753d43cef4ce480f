#pragma once

#include "api/sandbox_backend.h"

namespace agentbox::fakes {

// Forwards every call to a backend it does not own, so that a decorator which takes ownership
// (the warm pool) can be put in front of a test double the test keeps using, or several
// decorators one after the other (a daemon and its restarted successor) in front of the same one.
class BorrowedBackend final : public SandboxBackend {
 public:
  explicit BorrowedBackend(SandboxBackend& b) : b_(b) {}
  std::string_view Name() const override { return b_.Name(); }
  ProbeResult Probe() override { return b_.Probe(); }
  Capabilities GetCapabilities() const override { return b_.GetCapabilities(); }
  Result<SandboxInfo> Create(const std::string& id, const SandboxSpec& spec) override {
    return b_.Create(id, spec);
  }
  Result<SandboxInfo> Get(const std::string& id) override { return b_.Get(id); }
  Result<std::vector<SandboxInfo>> List() override { return b_.List(); }
  Result<void> Destroy(const std::string& id) override { return b_.Destroy(id); }
  Result<void> SetExpiry(const std::string& id, double expires_at) override {
    return b_.SetExpiry(id, expires_at);
  }
  Result<void> Prepare(const SandboxSpec& spec, const ProgressFn& progress) override {
    return b_.Prepare(spec, progress);
  }
  Result<SandboxInfo> Claim(const std::string& id, const SandboxSpec& spec,
                            double expires_at) override {
    return b_.Claim(id, spec, expires_at);
  }
  Result<SandboxInfo> RestartGuest(const std::string& id) override { return b_.RestartGuest(id); }
  std::optional<std::string> EngineDown() override { return b_.EngineDown(); }

 private:
  SandboxBackend& b_;
};

}  // namespace agentbox::fakes
