#include "fakes/memory_backend.h"

#include <thread>

#include "common/time_util.h"

namespace agentbox::fakes {
namespace {

// Decrements `n` if positive; true when this call should fail.
bool Take(std::atomic<int>& n) {
  int v = n.load();
  while (v > 0) {
    if (n.compare_exchange_weak(v, v - 1)) {
      return true;
    }
  }
  return false;
}

}  // namespace

Result<SandboxInfo> MemoryBackend::Create(const std::string& id, const SandboxSpec& spec) {
  ++creates_begun_;
  if (create_delay_ms_ > 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(create_delay_ms_.load()));
  }
  if (Take(fail_creates_)) {
    return Fail(ErrorCode::kUnavailable, "memory backend told to fail");
  }
  SandboxInfo info;
  info.id = id;
  info.backend = name_;
  info.state = SandboxState::kRunning;
  info.spec = spec;
  info.created_at = NowUnix();
  info.expires_at = info.created_at + static_cast<double>(spec.ttl_s);
  info.guest_endpoint = "unix:/nonexistent/" + id;
  std::lock_guard lock(mu_);
  if (!boxes_.emplace(id, info).second) {
    return Fail(ErrorCode::kConflict, "sandbox '" + id + "' already exists");
  }
  ++creates_;
  return info;
}

Result<SandboxInfo> MemoryBackend::Get(const std::string& id) {
  std::lock_guard lock(mu_);
  auto it = boxes_.find(id);
  if (it == boxes_.end()) {
    return Fail(SandboxNotFound(id));
  }
  return it->second;
}

Result<std::vector<SandboxInfo>> MemoryBackend::List() {
  std::lock_guard lock(mu_);
  std::vector<SandboxInfo> out;
  for (const auto& [id, info] : boxes_) {
    out.push_back(info);
  }
  return out;
}

Result<void> MemoryBackend::Destroy(const std::string& id) {
  std::lock_guard lock(mu_);
  if (boxes_.erase(id) == 0) {
    return Fail(SandboxNotFound(id));
  }
  ++destroys_;
  return {};
}

Result<void> MemoryBackend::SetExpiry(const std::string& id, double expires_at) {
  std::lock_guard lock(mu_);
  auto it = boxes_.find(id);
  if (it == boxes_.end()) {
    return Fail(SandboxNotFound(id));
  }
  it->second.expires_at = expires_at;
  return {};
}

Result<SandboxInfo> MemoryBackend::Claim(const std::string& id, const SandboxSpec& spec,
                                         double expires_at) {
  if (!can_claim_) {
    return SandboxBackend::Claim(id, spec, expires_at);
  }
  if (Take(fail_claims_)) {
    return Fail(ErrorCode::kUnavailable, "memory backend told to fail the claim");
  }
  std::lock_guard lock(mu_);
  auto it = boxes_.find(id);
  if (it == boxes_.end()) {
    return Fail(SandboxNotFound(id));
  }
  if (it->second.state != SandboxState::kRunning) {
    return Fail(ErrorCode::kUnavailable, "sandbox '" + id + "' is not running");
  }
  it->second.spec.owner = spec.owner;
  it->second.spec.labels = spec.labels;
  it->second.expires_at = expires_at;
  ++claims_;
  return it->second;
}

void MemoryBackend::Kill(const std::string& id) {
  std::lock_guard lock(mu_);
  if (auto it = boxes_.find(id); it != boxes_.end()) {
    it->second.state = SandboxState::kStopped;
    it->second.detail = "killed by the test";
  }
}

size_t MemoryBackend::size() const {
  std::lock_guard lock(mu_);
  return boxes_.size();
}

std::map<std::string, SandboxInfo> MemoryBackend::Snapshot() const {
  std::lock_guard lock(mu_);
  return boxes_;
}

}  // namespace agentbox::fakes
