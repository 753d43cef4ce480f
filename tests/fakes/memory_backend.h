#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <string>

#include "api/sandbox_backend.h"

namespace agentbox::fakes {

// A SandboxBackend test double that runs nothing: sandboxes are records in memory. For units of
// code that decorates or drives a backend (the warm pool): failures, slowness and dead sandboxes
// are injected, and every call is counted. The records outlive any decorator, so a new decorator
// over the same MemoryBackend stands for a restarted daemon. Thread-safe.
class MemoryBackend : public SandboxBackend {
 public:
  explicit MemoryBackend(std::string name = "memory", bool can_claim = true)
      : name_(std::move(name)), can_claim_(can_claim) {}

  std::string_view Name() const override { return name_; }
  ProbeResult Probe() override { return {true, "", {"test double"}}; }
  Capabilities GetCapabilities() const override {
    Capabilities c;
    c.claim = can_claim_;
    return c;
  }
  // kConflict for an id that exists.
  Result<SandboxInfo> Create(const std::string& id, const SandboxSpec& spec) override;
  Result<SandboxInfo> Get(const std::string& id) override;
  Result<std::vector<SandboxInfo>> List() override;
  Result<void> Destroy(const std::string& id) override;
  Result<void> SetExpiry(const std::string& id, double expires_at) override;
  // kNotFound for an unknown id, kUnavailable for a sandbox that is not running.
  Result<SandboxInfo> Claim(const std::string& id, const SandboxSpec& spec,
                            double expires_at) override;

  // Injections: the next n calls fail (kUnavailable).
  void FailNextCreates(int n) { fail_creates_ = n; }
  void FailNextClaims(int n) { fail_claims_ = n; }
  // Every Create takes this long (a real backend takes milliseconds).
  void SetCreateDelay(std::chrono::milliseconds d) { create_delay_ms_ = d.count(); }
  // The sandbox's processes "exit": Get and List report it stopped.
  void Kill(const std::string& id);

  // Create calls that began (counted before the delay).
  int creates_begun() const { return creates_begun_; }
  // Counters of calls that succeeded.
  int creates() const { return creates_; }
  int claims() const { return claims_; }
  int destroys() const { return destroys_; }
  size_t size() const;
  // Every record, pooled ones included (the decorator hides some).
  std::map<std::string, SandboxInfo> Snapshot() const;

 private:
  std::string name_;
  bool can_claim_;
  mutable std::mutex mu_;
  std::map<std::string, SandboxInfo> boxes_;  // guarded by mu_
  std::atomic<int> fail_creates_{0};
  std::atomic<int> fail_claims_{0};
  std::atomic<int64_t> create_delay_ms_{0};
  std::atomic<int> creates_begun_{0};
  std::atomic<int> creates_{0};
  std::atomic<int> claims_{0};
  std::atomic<int> destroys_{0};
};

}  // namespace agentbox::fakes
