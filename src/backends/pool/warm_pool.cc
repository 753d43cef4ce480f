#include "backends/pool/warm_pool.h"

#include <algorithm>
#include <cctype>

#include "common/crash_point.h"
#include "common/guarded.h"
#include "common/json_util.h"
#include "common/log.h"
#include "common/strings.h"
#include "common/time_util.h"

namespace agentbox::pool {
namespace {

using Clock = std::chrono::steady_clock;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// Built-in pool sizes, from measurements. jail: an idle sandbox costs ~1 MiB and the pool cuts
// create -> first exec from 23-26 ms to under 10 ms (docs/benchmarks.md).
// Two started sandboxes per pooled spec: about 2 MiB for jail, 34 MiB for docker (17 MiB per idle
// container, 13 of them the containerd shim), in exchange for a ~5 ms create instead of 0.5 s.
int64_t DefaultPoolSize(std::string_view backend) {
  return backend == "jail" || backend == "docker" ? 2 : 0;
}

}  // namespace

std::string SpecKey(const SandboxSpec& spec) {
  // nlohmann's object keeps keys sorted: the dump is canonical.
  Json j = {{"image", spec.image},
            {"env", spec.env},
            {"limits", LimitsToJson(spec.limits)},
            {"network", NetworkModeName(spec.network)},
            {"network_name", spec.network_name},
            {"read_only_root", spec.read_only_root}};
  if (spec.egress) {
    j["egress"] = EgressPolicyToJson(*spec.egress);  // absent when unset, as run_mode
  }
  if (!spec.run_mode.empty()) {
    j["run_mode"] = spec.run_mode;  // absent when empty: the keys of earlier pools stay valid
  }
  return DumpJson(j);
}

Result<SandboxSpec> SpecFromKey(const std::string& key) {
  auto j = ParseJsonObject(key);
  if (!j) {
    return Fail(ErrorCode::kInvalidArgument, "pool key: " + j.error().message);
  }
  try {
    SandboxSpec s;
    s.image = j->at("image").get<std::string>();
    s.env = j->at("env").get<std::map<std::string, std::string>>();
    s.limits = LimitsFromJson(j->at("limits"));
    const std::string net = j->at("network").get<std::string>();
    if (net != "host" && net != "none") {
      return Fail(ErrorCode::kInvalidArgument, "pool key: bad network '" + net + "'");
    }
    s.network = net == "host" ? NetworkMode::kHost : NetworkMode::kNone;
    s.network_name = j->at("network_name").get<std::string>();
    s.read_only_root = j->at("read_only_root").get<bool>();
    s.run_mode = j->value("run_mode", "");
    return s;
  } catch (const Json::exception& e) {
    return Fail(ErrorCode::kInvalidArgument, std::string("pool key: ") + e.what());
  }
}

bool IsUnclaimedPoolSandbox(const SandboxInfo& info) {
  auto it = info.spec.labels.find(kPoolLabel);
  return info.spec.owner.empty() && it != info.spec.labels.end() && it->second == kPoolLabelValue;
}

WarmPool::WarmPool(SandboxBackendPtr inner, WarmPoolOptions options)
    : inner_(std::move(inner)), opts_(options), default_key_(SpecKey(SandboxSpec{})) {
  stats_.backend = std::string(inner_->Name());
  if (opts_.size == 0) {
    adopted_ = true;
    return;
  }
  Entry e;
  e.spec = SandboxSpec{};
  e.pinned = true;
  e.last_used = Clock::now();
  entries_.emplace(default_key_, std::move(e));
  next_health_ = Clock::now() + opts_.health_interval;
  Log(LogLevel::kInfo, "pool.started", "backend={} size={} max_specs={} refill_delay_ms={}",
      stats_.backend, opts_.size, opts_.max_specs, opts_.refill_delay.count());
  thread_ = std::thread([this] { CallGuarded([this] { Run(); }, "warm_pool"); });
}

WarmPool::~WarmPool() {
  if (!thread_.joinable()) {
    return;
  }
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

bool WarmPool::IsPoolId(const std::string& id) const {
  std::lock_guard lock(mu_);
  return pool_ids_.count(id) != 0;
}

void WarmPool::Condemn(const std::string& id) {
  condemned_.push_back(id);
  pool_ids_.insert(id);
}

Result<SandboxInfo> WarmPool::Create(const std::string& id, const SandboxSpec& spec) {
  if (opts_.size == 0 || spec.exact_id) {
    return inner_->Create(id, spec);
  }
  if (spec.labels.count(kPoolLabel) != 0 || spec.labels.count(kPoolKeyLabel) != 0) {
    return Fail(ErrorCode::kInvalidArgument, std::string("labels '") + kPoolLabel + "' and '" +
                                                 kPoolKeyLabel + "' are reserved");
  }
  const auto start = Clock::now();
  const std::string key = SpecKey(spec);
  for (;;) {
    std::optional<std::string> pooled;
    {
      std::lock_guard lock(mu_);
      auto it = entries_.find(key);
      if (it != entries_.end()) {
        it->second.last_used = Clock::now();
        if (!it->second.ready.empty()) {
          pooled = it->second.ready.front();
          it->second.ready.pop_front();
          it->second.next_attempt =
              std::max(it->second.next_attempt, Clock::now() + opts_.refill_delay);
        }
      }
    }
    if (!pooled) {
      break;
    }
    cv_.notify_all();  // refill what was taken
    // The claim is the health check: the backends' Claim reads the sandbox's state (jail: its
    // init process; docker: one inspect) and refuses one that is not running, and the info it
    // returns carries the state. A separate Get first would cost docker a second inspect.
    auto claimed = inner_->Claim(*pooled, spec, NowUnix() + static_cast<double>(spec.ttl_s));
    if (claimed && claimed->state == SandboxState::kRunning) {
      CrashPoint("pool.claim.claimed");
      {
        std::lock_guard lock(mu_);
        ++stats_.hits;
        pool_ids_.erase(*pooled);
      }
      Log(LogLevel::kInfo, "pool.hit", "backend={} id={} owner={} ms={:.2f}", stats_.backend,
          *pooled, spec.owner, Ms(Clock::now() - start));
      return claimed;
    }
    if (claimed) {  // claimed, but dead: never hand it out; the next ready one may do
      Log(LogLevel::kWarn, "pool.discarded", "backend={} id={} reason=\"{}\"", stats_.backend,
          *pooled, claimed->detail);
      std::lock_guard lock(mu_);
      ++stats_.discarded;
      Condemn(*pooled);
      continue;
    }
    Log(LogLevel::kWarn, "pool.claim_failed", "backend={} id={} error=\"{}\"", stats_.backend,
        *pooled, claimed.error().message);
    {
      std::lock_guard lock(mu_);
      ++stats_.claim_failures;
      Condemn(*pooled);
    }
    cv_.notify_all();
    break;
  }
  {
    std::lock_guard lock(mu_);
    ++stats_.misses;
  }
  auto info = inner_->Create(id, spec);
  if (info) {
    bool added = false;
    {
      std::lock_guard lock(mu_);
      if (entries_.count(key) == 0 && entries_.size() < opts_.max_specs) {
        Entry e;
        e.spec = spec;
        e.spec.owner.clear();
        e.spec.labels.clear();
        e.spec.ttl_s = SandboxSpec{}.ttl_s;
        e.last_used = Clock::now();
        entries_.emplace(key, std::move(e));
        added = true;
      }
    }
    if (added) {
      Log(LogLevel::kInfo, "pool.key_added", "backend={} image=\"{}\"", stats_.backend, spec.image);
      cv_.notify_all();
    }
  }
  return info;
}

Result<SandboxInfo> WarmPool::Get(const std::string& id) {
  if (opts_.size == 0) {
    return inner_->Get(id);
  }
  auto info = inner_->Get(id);
  if (info && IsUnclaimedPoolSandbox(*info)) {
    return Fail(SandboxNotFound(id));
  }
  return info;
}

Result<SandboxInfo> WarmPool::RestartGuest(const std::string& id) {
  if (opts_.size > 0) {
    if (auto info = inner_->Get(id); info && IsUnclaimedPoolSandbox(*info)) {
      return Fail(SandboxNotFound(id));
    }
  }
  return inner_->RestartGuest(id);
}

Result<std::vector<SandboxInfo>> WarmPool::List() {
  auto list = inner_->List();
  if (!list || opts_.size == 0) {
    return list;
  }
  std::erase_if(*list, [](const SandboxInfo& i) { return IsUnclaimedPoolSandbox(i); });
  return list;
}

Result<void> WarmPool::Destroy(const std::string& id) {
  if (opts_.size != 0 && IsPoolId(id)) {
    return Fail(SandboxNotFound(id));
  }
  return inner_->Destroy(id);
}

Result<void> WarmPool::SetExpiry(const std::string& id, double expires_at) {
  if (opts_.size != 0 && IsPoolId(id)) {
    return Fail(SandboxNotFound(id));
  }
  return inner_->SetExpiry(id, expires_at);
}

Result<SandboxInfo> WarmPool::Claim(const std::string& id, const SandboxSpec& spec,
                                    double expires_at) {
  if (opts_.size != 0 && IsPoolId(id)) {
    return Fail(SandboxNotFound(id));
  }
  return inner_->Claim(id, spec, expires_at);
}

WarmPoolStats WarmPool::Stats() const {
  std::lock_guard lock(mu_);
  WarmPoolStats s = stats_;
  s.ready = 0;
  for (const auto& [key, e] : entries_) {
    s.ready += e.ready.size();
  }
  s.keys = entries_.size();
  return s;
}

size_t WarmPool::ReadyFor(const SandboxSpec& spec) const {
  std::lock_guard lock(mu_);
  auto it = entries_.find(SpecKey(spec));
  return it == entries_.end() ? 0 : it->second.ready.size();
}

bool WarmPool::Adopted() const {
  std::lock_guard lock(mu_);
  return adopted_;
}

// Sandboxes an earlier WarmPool left running over the same inner backend.
void WarmPool::Adopt() {
  auto list = inner_->List();
  if (!list) {
    Log(LogLevel::kWarn, "pool.adopt_failed", "backend={} error=\"{}\"", stats_.backend,
        list.error().message);
    std::lock_guard lock(mu_);
    adopted_ = true;
    return;
  }
  std::unique_lock lock(mu_);
  size_t adopted = 0;
  for (const SandboxInfo& info : *list) {
    if (!IsUnclaimedPoolSandbox(info)) {
      continue;
    }
    auto label = info.spec.labels.find(kPoolKeyLabel);
    auto spec = label == info.spec.labels.end()
                    ? Result<SandboxSpec>(Fail(ErrorCode::kNotFound, "no key label"))
                    : SpecFromKey(label->second);
    std::string why;
    if (!spec) {
      why = "no valid pool key";
    } else if (info.state != SandboxState::kRunning) {
      why = "not running";
    } else {
      const std::string key = SpecKey(*spec);
      auto it = entries_.find(key);
      if (it == entries_.end() && entries_.size() < opts_.max_specs) {
        Entry e;
        e.spec = *spec;
        e.last_used = Clock::now();
        it = entries_.emplace(key, std::move(e)).first;
      }
      if (it == entries_.end()) {
        why = "too many pooled specs";
      } else if (it->second.ready.size() >= opts_.size) {
        why = "pool full";
      } else {
        it->second.ready.push_back(info.id);
        pool_ids_.insert(info.id);
        ++adopted;
        continue;
      }
    }
    Log(LogLevel::kInfo, "pool.adopt_destroy", "backend={} id={} reason=\"{}\"", stats_.backend,
        info.id, why);
    Condemn(info.id);
  }
  adopted_ = true;
  Log(LogLevel::kInfo, "pool.adopted", "backend={} sandboxes={} condemned={}", stats_.backend,
      adopted, condemned_.size());
}

void WarmPool::Run() {
  Adopt();
  std::unique_lock lock(mu_);
  while (!stop_) {
    TimePoint wake = Clock::now() + std::chrono::seconds(1);
    if (!Step(lock, &wake) && !stop_) {
      cv_.wait_until(lock, wake);
    }
  }
  // Condemned sandboxes are destroyed before leaving; ready ones stay for the next WarmPool.
  while (!condemned_.empty()) {
    const std::string id = condemned_.front();
    condemned_.pop_front();
    lock.unlock();
    (void)inner_->Destroy(id);
    lock.lock();
    pool_ids_.erase(id);
  }
}

bool WarmPool::Step(std::unique_lock<std::mutex>& lock, TimePoint* wake) {
  const auto now = Clock::now();
  // 1. Destroy what was condemned.
  if (!condemned_.empty()) {
    const std::string id = condemned_.front();
    condemned_.pop_front();
    lock.unlock();
    auto r = inner_->Destroy(id);
    if (!r && r.error().code != ErrorCode::kNotFound) {
      Log(LogLevel::kWarn, "pool.destroy_failed", "backend={} id={} error=\"{}\"", stats_.backend,
          id, r.error().message);
    }
    lock.lock();
    pool_ids_.erase(id);
    return true;
  }
  // 2. Drop keys unused for a while (never the default spec's, nor one being filled).
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    Entry& e = it->second;
    if (!e.pinned && !e.starting && now - e.last_used >= opts_.key_idle_ttl) {
      Log(LogLevel::kInfo, "pool.key_evicted", "backend={} image=\"{}\" sandboxes={}",
          stats_.backend, e.spec.image, e.ready.size());
      for (const auto& id : e.ready) {
        Condemn(id);
      }
      entries_.erase(it);
      return true;
    }
    if (!e.pinned) {
      *wake = std::min(*wake, e.last_used + opts_.key_idle_ttl);
    }
  }
  // 3. Check the ready sandboxes now and then.
  if (now >= next_health_) {
    CheckHealth(lock);
    next_health_ = Clock::now() + opts_.health_interval;
    return true;
  }
  *wake = std::min(*wake, next_health_);
  // 4. Start one sandbox for the emptiest key that may try now.
  const std::string* best = nullptr;
  size_t best_ready = opts_.size;
  for (auto& [key, e] : entries_) {
    if (e.starting || e.ready.size() >= opts_.size) {
      continue;
    }
    if (e.next_attempt > now) {
      *wake = std::min(*wake, e.next_attempt);
      continue;
    }
    if (e.ready.size() < best_ready) {
      best = &key;
      best_ready = e.ready.size();
    }
  }
  if (best != nullptr) {
    StartOne(lock, *best);
    return true;
  }
  return false;
}

void WarmPool::StartOne(std::unique_lock<std::mutex>& lock, std::string key) {
  Entry& entry = entries_.at(key);
  entry.starting = true;
  SandboxSpec spec = entry.spec;
  spec.owner.clear();
  spec.labels = {{kPoolLabel, kPoolLabelValue}, {kPoolKeyLabel, key}};
  spec.ttl_s = opts_.pooled_ttl_s;
  const std::string id = "sb-" + RandomId(12);
  pool_ids_.insert(id);
  lock.unlock();
  const auto start = Clock::now();
  auto info = inner_->Create(id, spec);
  if (info) {
    CrashPoint("pool.refill.created");
  }
  const double ms = Ms(Clock::now() - start);
  lock.lock();
  auto it = entries_.find(key);  // may have been evicted meanwhile: then not pooled any more
  if (it != entries_.end()) {
    it->second.starting = false;
  }
  if (!info) {
    ++stats_.start_failures;
    pool_ids_.erase(id);
    if (it == entries_.end()) {
      return;
    }
    Entry& e = it->second;
    ++e.failures;
    const auto backoff = std::min<std::chrono::milliseconds>(
        opts_.retry_max, opts_.retry_min * (1LL << std::min(e.failures - 1, 16)));
    e.next_attempt = Clock::now() + backoff;
    // A backend that is down (an engine not running) fails every retry: warn on the first
    // failures and then ever more rarely (1, 2, 4, 8, ...), not every 30 s forever.
    const bool loud = (e.failures & (e.failures - 1)) == 0;
    Log(loud ? LogLevel::kWarn : LogLevel::kDebug, "pool.start_failed",
        "backend={} image=\"{}\" failures={} retry_ms={} error=\"{}\"", stats_.backend,
        e.spec.image, e.failures, backoff.count(), info.error().message);
    if (!e.pinned && e.failures >= opts_.max_failures) {
      Log(LogLevel::kWarn, "pool.key_dropped", "backend={} image=\"{}\"", stats_.backend,
          e.spec.image);
      for (const auto& rid : e.ready) {
        Condemn(rid);
      }
      entries_.erase(it);
    }
    return;
  }
  ++stats_.started;
  if (it == entries_.end() || it->second.ready.size() >= opts_.size) {
    Condemn(id);
    return;
  }
  it->second.failures = 0;
  it->second.ready.push_back(id);
  Log(LogLevel::kDebug, "pool.ready", "backend={} id={} ms={:.1f} ready={}", stats_.backend, id, ms,
      it->second.ready.size());
}

void WarmPool::CheckHealth(std::unique_lock<std::mutex>& lock) {
  std::vector<std::string> ids;
  for (const auto& [key, e] : entries_) {
    ids.insert(ids.end(), e.ready.begin(), e.ready.end());
  }
  lock.unlock();
  std::vector<std::pair<std::string, std::string>> dead;
  for (const auto& id : ids) {
    auto info = inner_->Get(id);
    if (!info || info->state != SandboxState::kRunning) {
      dead.emplace_back(id, info ? info->detail : info.error().message);
    }
  }
  lock.lock();
  for (const auto& [id, why] : dead) {
    for (auto& [key, e] : entries_) {
      auto it = std::find(e.ready.begin(), e.ready.end(), id);
      if (it != e.ready.end()) {
        e.ready.erase(it);
        ++stats_.discarded;
        Log(LogLevel::kWarn, "pool.discarded", "backend={} id={} reason=\"{}\"", stats_.backend, id,
            why);
        Condemn(id);
        break;
      }
    }
  }
}

Result<WarmPoolOptions> WarmPoolOptionsFromConfig(const Config& cfg, std::string_view backend) {
  WarmPoolOptions o;
  auto size = cfg.GetInt("AGENTBOX_WARM_POOL_SIZE", DefaultPoolSize(backend), 0, 64);
  if (!size) {
    return Fail(size.error());
  }
  std::string upper = "AGENTBOX_WARM_POOL_SIZE_";
  for (char c : backend) {
    upper += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  auto own = cfg.GetInt(upper, *size, 0, 64);
  if (!own) {
    return Fail(own.error());
  }
  auto specs = cfg.GetInt("AGENTBOX_WARM_POOL_MAX_SPECS", static_cast<int64_t>(o.max_specs), 1, 64);
  if (!specs) {
    return Fail(specs.error());
  }
  auto delay = cfg.GetInt("AGENTBOX_WARM_POOL_REFILL_DELAY_MS", o.refill_delay.count(), 0, 60000);
  if (!delay) {
    return Fail(delay.error());
  }
  o.refill_delay = std::chrono::milliseconds(*delay);
  o.size = static_cast<size_t>(*own);
  o.max_specs = static_cast<size_t>(*specs);
  return o;
}

SandboxBackendPtr WithWarmPool(SandboxBackendPtr inner, const WarmPoolOptions& options) {
  if (options.size == 0 || !inner->GetCapabilities().claim) {
    return inner;
  }
  return std::make_unique<WarmPool>(std::move(inner), options);
}

Result<SandboxBackendPtr> WithWarmPool(SandboxBackendPtr inner, const Config& cfg) {
  auto o = WarmPoolOptionsFromConfig(cfg, inner->Name());
  if (!o) {
    return Fail(o.error());
  }
  return WithWarmPool(std::move(inner), *o);
}

std::optional<WarmPoolStats> WarmPoolStatsOf(const SandboxBackend* backend) {
  if (const auto* p = dynamic_cast<const WarmPool*>(backend)) {
    return p->Stats();
  }
  return std::nullopt;
}

}  // namespace agentbox::pool
