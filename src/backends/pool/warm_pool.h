#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "api/root_changes.h"
#include "api/sandbox_backend.h"
#include "common/config.h"

namespace agentbox::pool {

// Labels of a sandbox that waits in the pool (empty owner). A claim replaces the labels with the
// owner's, so a claimed sandbox carries neither. Clients may not set them.
inline constexpr const char* kPoolLabel = "agentbox.pool";  // value kPoolLabelValue
inline constexpr const char* kPoolLabelValue = "warm";
// The pooled spec key (see SpecKey), so that a restarted daemon re-adopts the sandbox under the
// key it was started for, whatever the backend records of its spec (e.g. limits with defaults
// filled in).
inline constexpr const char* kPoolKeyLabel = "agentbox.pool.key";

struct WarmPoolOptions {
  // Started sandboxes kept ready per spec key. 0: no pool, every call goes to the inner backend.
  size_t size = 2;
  // Distinct spec keys pooled at once, the default spec's included. A spec requested while the
  // cap is reached is created cold and not pooled.
  size_t max_specs = 4;
  // A key other than the default spec's, unused this long, is dropped and its sandboxes destroyed.
  std::chrono::milliseconds key_idle_ttl = std::chrono::minutes(10);
  // How often ready sandboxes are checked (inner Get: running?) in the background. Every
  // sandbox is checked again right before it is handed out.
  std::chrono::milliseconds health_interval = std::chrono::seconds(5);
  // How long the refill waits after a sandbox was handed out. Starting a sandbox takes tens of
  // milliseconds of CPU (helper, guest, spare shell); on a small machine a refill that starts at
  // once competes with the first commands of the sandbox just handed out, which is the latency
  // the pool exists to cut. Ready sandboxes left over keep serving bursts meanwhile.
  std::chrono::milliseconds refill_delay{100};
  // Backoff after a failed background create: doubles from retry_min up to retry_max. A key
  // other than the default's is dropped after max_failures failures in a row.
  std::chrono::milliseconds retry_min{200};
  std::chrono::milliseconds retry_max = std::chrono::seconds(30);
  int max_failures = 5;
  // ttl_s of a pooled sandbox's spec. Pooled sandboxes are invisible to the daemon's TTL reaper;
  // the claim sets the real expiry. If the pool is switched off, the backend lists its leftovers
  // as ownerless sandboxes (label agentbox.pool=warm); agentboxd destroys them at start-up
  // (DaemonApi::DestroyPoolLeftovers), and this expiry is the bound if nothing does.
  int64_t pooled_ttl_s = 3600;
};

// Counters for /metrics. hits + misses = creates through the pool.
struct WarmPoolStats {
  std::string backend;
  uint64_t hits = 0;            // handed out a pooled sandbox
  uint64_t misses = 0;          // created cold (no ready sandbox for the key, or a failed claim)
  uint64_t claim_failures = 0;  // a pooled sandbox whose Claim failed (then destroyed)
  uint64_t discarded = 0;       // pooled sandboxes found dead and destroyed
  uint64_t started = 0;         // sandboxes the pool started in the background
  uint64_t start_failures = 0;  // background starts that failed
  size_t ready = 0;             // sandboxes ready now, every key
  size_t keys = 0;              // spec keys pooled now
};

// The part of a spec that decides whether a pooled sandbox can serve it: everything but owner,
// labels and ttl_s. A canonical JSON string (stable order), equal for equal specs.
std::string SpecKey(const SandboxSpec& spec);
// The spec a key stands for (owner, labels empty; ttl_s default). kInvalidArgument if malformed.
Result<SandboxSpec> SpecFromKey(const std::string& key);
// A sandbox started by a pool and not yet claimed: empty owner and the pool label.
bool IsUnclaimedPoolSandbox(const SandboxInfo& info);

// Decorates a backend that can Claim (Capabilities::claim) with a pool of started sandboxes, so
// that Create hands out one that is already running: Claim records the owner, labels and expiry,
// and the returned info carries the pooled sandbox's own id (not the one passed to Create).
//
// The pool is refilled, health-checked and trimmed by its own thread, never on the request path:
// Create only takes a ready sandbox and claims it (a claimed sandbox that is not running is
// destroyed and the next one tried); on a miss or a failed claim it creates cold. The default spec
// (SandboxSpec{}) is pooled from the start; another spec gets a pool entry after its first
// successful cold create, up to max_specs keys, and loses it after key_idle_ttl without use.
//
// Pooled sandboxes are hidden: List omits them, Get/Destroy/SetExpiry/Claim answer kNotFound.
// They are started with an empty owner and the labels kPoolLabel and kPoolKeyLabel, and they
// outlive the WarmPool: the destructor stops the thread and leaves them running, and a new
// WarmPool over the same inner backend (a restarted daemon) adopts them back, or destroys them
// when their key is full or not pooled any more, or when they are not running.
//
// With size 0 every call goes straight to the inner backend and nothing is hidden or started.
// Thread-safe.
class WarmPool final : public SandboxBackend, public RootChangeSource {
 public:
  WarmPool(SandboxBackendPtr inner, WarmPoolOptions options);
  // Stops the refill thread (waits for a background create in flight), destroys the sandboxes
  // already condemned (dead, evicted, failed claims) and leaves the ready ones running.
  ~WarmPool() override;
  WarmPool(const WarmPool&) = delete;
  WarmPool& operator=(const WarmPool&) = delete;

  std::string_view Name() const override { return inner_->Name(); }
  ProbeResult Probe() override { return inner_->Probe(); }
  std::optional<std::string> EngineDown() override { return inner_->EngineDown(); }
  std::vector<std::string> GuestsRestarted() override { return inner_->GuestsRestarted(); }
  Capabilities GetCapabilities() const override { return inner_->GetCapabilities(); }
  // The inner backend's sweep. A refill in flight holds its id in the inner backend, which
  // leaves it alone; a pooled sandbox the sweep keeps is adopted as usual.
  Result<RecoveryReport> Recover() override { return inner_->Recover(); }
  void SetGuestEvents(GuestEvents events) override { inner_->SetGuestEvents(std::move(events)); }
  void KeepSessionState(const std::string& id, const std::string& session,
                        const Json& kept) override {
    inner_->KeepSessionState(id, session, kept);
  }
  // The inner backend's, when it can tell.
  Result<RootChanges> ListRootChanges(const std::string& id, size_t limit) override {
    auto* inner = dynamic_cast<RootChangeSource*>(inner_.get());
    if (inner == nullptr) {
      return Fail(ErrorCode::kInvalidArgument,
                  std::string(Name()) + " cannot list what a sandbox changed in its root");
    }
    return inner->ListRootChanges(id, limit);
  }
  Result<Json> KeptSessionStates(const std::string& id) override {
    return inner_->KeptSessionStates(id);
  }
  // kInvalidArgument if spec.labels holds a pool label.
  Result<SandboxInfo> Create(const std::string& id, const SandboxSpec& spec) override;
  Result<SandboxInfo> Get(const std::string& id) override;
  Result<std::vector<SandboxInfo>> List() override;
  Result<void> Destroy(const std::string& id) override;
  Result<void> SetExpiry(const std::string& id, double expires_at) override;
  Result<void> Prepare(const SandboxSpec& spec, const ProgressFn& progress) override {
    return inner_->Prepare(spec, progress);
  }
  Result<SandboxInfo> Claim(const std::string& id, const SandboxSpec& spec,
                            double expires_at) override;
  // The inner backend's, for sandboxes handed out (a waiting pool sandbox is kNotFound).
  Result<SandboxInfo> RestartGuest(const std::string& id) override;

  WarmPoolStats Stats() const;
  // Ready sandboxes for the key of `spec` (tests, benchmarks).
  size_t ReadyFor(const SandboxSpec& spec) const;
  // True once the sandboxes left by an earlier WarmPool have been adopted or destroyed.
  bool Adopted() const;
  SandboxBackend& inner() { return *inner_; }
  const WarmPoolOptions& options() const { return opts_; }

 private:
  using TimePoint = std::chrono::steady_clock::time_point;
  struct Entry {
    SandboxSpec spec;  // the key's spec, as pooled sandboxes are started with
    std::deque<std::string> ready;
    bool starting = false;  // a background create for this key is in flight
    bool pinned = false;    // the default spec: never evicted
    TimePoint last_used;
    int failures = 0;
    TimePoint next_attempt;
  };

  void Run();
  void Adopt();
  // One step of housekeeping with `lock` held; may unlock to call the inner backend. Returns
  // false when there was nothing to do (then Run waits until `wake`).
  bool Step(std::unique_lock<std::mutex>& lock, TimePoint* wake);
  void StartOne(std::unique_lock<std::mutex>& lock, std::string key);
  void CheckHealth(std::unique_lock<std::mutex>& lock);
  void Condemn(const std::string& id);  // mu_ held: destroy in the background
  bool IsPoolId(const std::string& id) const;

  SandboxBackendPtr inner_;
  const WarmPoolOptions opts_;
  const std::string default_key_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;                     // guarded by mu_
  bool adopted_ = false;                  // guarded by mu_
  std::map<std::string, Entry> entries_;  // by SpecKey; guarded by mu_
  std::set<std::string> pool_ids_;        // ready, starting or condemned; guarded by mu_
  std::deque<std::string> condemned_;     // to destroy in the background; guarded by mu_
  TimePoint next_health_;                 // guarded by mu_
  WarmPoolStats stats_;                   // guarded by mu_
  std::thread thread_;
};

// Pool options for backend `backend` (e.g. "jail") from configuration:
// AGENTBOX_WARM_POOL_SIZE_<BACKEND> (upper case), else AGENTBOX_WARM_POOL_SIZE, else the
// built-in size (jail 2, other backends 0: not measured yet), AGENTBOX_WARM_POOL_MAX_SPECS (default
// 4), AGENTBOX_WARM_POOL_REFILL_DELAY_MS (default 100). kInvalidArgument names the key.
Result<WarmPoolOptions> WarmPoolOptionsFromConfig(const Config& cfg, std::string_view backend);

// `inner` wrapped in a WarmPool, or `inner` itself when options.size is 0 or the backend cannot
// Claim.
SandboxBackendPtr WithWarmPool(SandboxBackendPtr inner, const WarmPoolOptions& options);
// Both of the above: what the backend table calls for every backend it constructs.
Result<SandboxBackendPtr> WithWarmPool(SandboxBackendPtr inner, const Config& cfg);

// The pool's counters if `backend` is a WarmPool, for /metrics.
std::optional<WarmPoolStats> WarmPoolStatsOf(const SandboxBackend* backend);

}  // namespace agentbox::pool
