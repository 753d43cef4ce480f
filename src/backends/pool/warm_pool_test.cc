#include "backends/pool/warm_pool.h"

#include <gtest/gtest.h>

#include <functional>
#include <set>
#include <thread>

#include "common/time_util.h"
#include "fakes/borrowed_backend.h"
#include "fakes/memory_backend.h"

namespace agentbox::pool {
namespace {

using namespace std::chrono_literals;
using fakes::BorrowedBackend;
using fakes::MemoryBackend;

bool WaitFor(const std::function<bool()>& cond, std::chrono::milliseconds limit = 5s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) {
      return true;
    }
    std::this_thread::sleep_for(2ms);
  }
  return cond();
}

WarmPoolOptions Fast(size_t size = 2) {
  WarmPoolOptions o;
  o.size = size;
  o.retry_min = 5ms;
  o.retry_max = 20ms;
  o.refill_delay = 0ms;
  return o;
}

SandboxSpec Owned(const std::string& owner, int64_t ttl = 600) {
  SandboxSpec s;
  s.owner = owner;
  s.labels = {{"team", owner}};
  s.ttl_s = ttl;
  return s;
}

class WarmPoolTest : public ::testing::Test {
 protected:
  std::unique_ptr<WarmPool> MakePool(WarmPoolOptions o = Fast()) {
    return std::make_unique<WarmPool>(std::make_unique<BorrowedBackend>(inner_), o);
  }
  // Pooled (hidden) sandboxes in the inner backend.
  std::set<std::string> PooledIds() {
    std::set<std::string> out;
    for (const auto& [id, info] : inner_.Snapshot()) {
      if (IsUnclaimedPoolSandbox(info)) {
        out.insert(id);
      }
    }
    return out;
  }

  MemoryBackend inner_;
};

TEST(SpecKeyTest, IgnoresOwnerLabelsAndTtlOnly) {
  SandboxSpec a;
  SandboxSpec b = Owned("alice", 42);
  EXPECT_EQ(SpecKey(a), SpecKey(b));
  auto differs = [&](const std::function<void(SandboxSpec&)>& change) {
    SandboxSpec c;
    change(c);
    return SpecKey(c) != SpecKey(a);
  };
  EXPECT_TRUE(differs([](SandboxSpec& s) { s.image = "/srv/img"; }));
  EXPECT_TRUE(differs([](SandboxSpec& s) { s.env = {{"A", "1"}}; }));
  EXPECT_TRUE(differs([](SandboxSpec& s) { s.env = {{"A", ""}}; }));
  EXPECT_TRUE(differs([](SandboxSpec& s) { s.limits.memory_bytes = 1 << 30; }));
  EXPECT_TRUE(differs([](SandboxSpec& s) { s.limits.cpus = 0.5; }));
  EXPECT_TRUE(differs([](SandboxSpec& s) { s.limits.open_files = 2048; }));
  EXPECT_TRUE(differs([](SandboxSpec& s) { s.network = NetworkMode::kHost; }));
  EXPECT_TRUE(differs([](SandboxSpec& s) { s.network_name = "n1"; }));
  EXPECT_TRUE(differs([](SandboxSpec& s) { s.read_only_root = true; }));
  // Env order does not matter; values do.
  SandboxSpec e1, e2;
  e1.env = {{"B", "2"}, {"A", "1"}};
  e2.env = {{"A", "1"}, {"B", "2"}};
  EXPECT_EQ(SpecKey(e1), SpecKey(e2));
}

TEST(SpecKeyTest, RoundTrips) {
  SandboxSpec s;
  s.image = "/srv/img.tar";
  s.env = {{"A", "1 \"quoted\""}, {"PATH", "/x"}};
  s.limits.memory_bytes = 512ull << 20;
  s.limits.cpus = 1.5;
  s.limits.pids = 100;
  s.network = NetworkMode::kHost;
  s.network_name = "net";
  s.read_only_root = true;
  auto back = SpecFromKey(SpecKey(s));
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(SpecKey(*back), SpecKey(s));
  EXPECT_EQ(back->limits, s.limits);
  EXPECT_FALSE(SpecFromKey("{\"image\":1}"));
  EXPECT_FALSE(SpecFromKey("not json"));
}

TEST_F(WarmPoolTest, PrefillsTheDefaultSpecAndHandsOutAPooledSandbox) {
  auto pool = MakePool();
  ASSERT_TRUE(WaitFor([&] { return pool->ReadyFor({}) == 2; }));
  const auto pooled = PooledIds();
  ASSERT_EQ(pooled.size(), 2u);

  const double before = NowUnix();
  auto info = pool->Create("sb-requested", Owned("alice", 600));
  ASSERT_TRUE(info) << info.error().message;
  EXPECT_NE(info->id, "sb-requested");  // the pooled sandbox's own id
  EXPECT_TRUE(pooled.count(info->id));
  EXPECT_EQ(info->spec.owner, "alice");
  EXPECT_EQ(info->spec.labels, (std::map<std::string, std::string>{{"team", "alice"}}));
  EXPECT_GE(info->expires_at, before + 600);
  EXPECT_LE(info->expires_at, NowUnix() + 600);
  // Recorded in the backend, not only returned.
  auto got = pool->Get(info->id);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->spec.owner, "alice");
  EXPECT_FALSE(inner_.Get("sb-requested"));

  WarmPoolStats s = pool->Stats();
  EXPECT_EQ(s.hits, 1u);
  EXPECT_EQ(s.misses, 0u);
  EXPECT_EQ(s.backend, "memory");
  // Refilled in the background.
  ASSERT_TRUE(WaitFor([&] { return pool->ReadyFor({}) == 2; }));
  EXPECT_EQ(inner_.creates(), 3);
  EXPECT_EQ(inner_.claims(), 1);
}

TEST_F(WarmPoolTest, RefillWaitsAfterAHandOut) {
  WarmPoolOptions o = Fast(2);
  o.refill_delay = 400ms;
  auto pool = MakePool(o);
  ASSERT_TRUE(WaitFor([&] { return pool->ReadyFor({}) == 2; }));
  const auto handed_out = std::chrono::steady_clock::now();
  ASSERT_TRUE(pool->Create("a", Owned("alice")));
  std::this_thread::sleep_for(100ms);
  if (std::chrono::steady_clock::now() - handed_out < 400ms) {
    EXPECT_EQ(inner_.creates_begun(), 2);  // the refill has not started yet
  }
  EXPECT_EQ(pool->ReadyFor({}), 1u);
  ASSERT_TRUE(pool->Create("b", Owned("bob")));  // the second ready one serves meanwhile
  EXPECT_EQ(pool->Stats().hits, 2u);
  ASSERT_TRUE(WaitFor([&] { return pool->ReadyFor({}) == 2; }));
  EXPECT_GE(std::chrono::steady_clock::now() - handed_out, 400ms);
}

TEST_F(WarmPoolTest, OtherSpecsMissFirstThenArePooled) {
  auto pool = MakePool();
  ASSERT_TRUE(WaitFor([&] { return pool->ReadyFor({}) == 2; }));
  SandboxSpec env = Owned("bob");
  env.env = {{"A", "1"}};
  auto first = pool->Create("sb-first", env);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->id, "sb-first");  // cold
  EXPECT_EQ(first->spec.env.at("A"), "1");
  EXPECT_EQ(pool->Stats().misses, 1u);
  ASSERT_TRUE(WaitFor([&] { return pool->ReadyFor(env) == 2; }));

  // A different owner, labels and ttl share the key; the pooled sandbox has the env.
  SandboxSpec env2 = Owned("carol", 60);
  env2.env = {{"A", "1"}};
  auto second = pool->Create("sb-second", env2);
  ASSERT_TRUE(second);
  EXPECT_NE(second->id, "sb-second");
  EXPECT_EQ(second->spec.env.at("A"), "1");
  EXPECT_EQ(second->spec.owner, "carol");

  // Another value of the env, or other limits: not the same key.
  SandboxSpec other = Owned("bob");
  other.env = {{"A", "2"}};
  auto third = pool->Create("sb-third", other);
  ASSERT_TRUE(third);
  EXPECT_EQ(third->id, "sb-third");
  SandboxSpec limited = Owned("bob");
  limited.limits.memory_bytes = 256ull << 20;
  auto fourth = pool->Create("sb-fourth", limited);
  ASSERT_TRUE(fourth);
  EXPECT_EQ(fourth->id, "sb-fourth");
  EXPECT_EQ(*inner_.Get("sb-fourth")->spec.limits.memory_bytes, 256ull << 20);

  WarmPoolStats s = pool->Stats();
  EXPECT_EQ(s.hits, 1u);
  EXPECT_EQ(s.misses, 3u);
  EXPECT_EQ(s.keys, 4u);  // default, A=1, A=2, memory
}

TEST_F(WarmPoolTest, KeysAreCappedAndIdleKeysEvicted) {
  WarmPoolOptions o = Fast(1);
  o.max_specs = 2;
  o.key_idle_ttl = 300ms;
  auto pool = MakePool(o);
  SandboxSpec a = Owned("x");
  a.env = {{"K", "a"}};
  SandboxSpec b = Owned("x");
  b.env = {{"K", "b"}};
  ASSERT_TRUE(pool->Create("sb-a", a));
  ASSERT_TRUE(pool->Create("sb-b", b));
  EXPECT_EQ(pool->Stats().keys, 2u);  // the default spec and a; b is over the cap
  ASSERT_TRUE(WaitFor([&] { return pool->ReadyFor(a) == 1 && pool->ReadyFor({}) == 1; }));
  EXPECT_EQ(pool->ReadyFor(b), 0u);
  // a is not used again: evicted, its sandbox destroyed; the default spec stays.
  ASSERT_TRUE(WaitFor([&] { return pool->Stats().keys == 1; }));
  ASSERT_TRUE(WaitFor([&] { return PooledIds().size() == 1; }));
  EXPECT_EQ(pool->ReadyFor({}), 1u);
  // Now b fits.
  ASSERT_TRUE(pool->Create("sb-b2", b));
  ASSERT_TRUE(WaitFor([&] { return pool->ReadyFor(b) == 1; }));
}

TEST_F(WarmPoolTest, FailedClaimDestroysTheSandboxAndCreatesCold) {
  auto pool = MakePool();
  ASSERT_TRUE(WaitFor([&] { return pool->ReadyFor({}) == 2; }));
  const auto pooled = PooledIds();
  inner_.FailNextClaims(1);
  auto info = pool->Create("sb-cold", Owned("alice"));
  ASSERT_TRUE(info) << info.error().message;
  EXPECT_EQ(info->id, "sb-cold");
  EXPECT_EQ(info->spec.owner, "alice");
  WarmPoolStats s = pool->Stats();
  EXPECT_EQ(s.claim_failures, 1u);
  EXPECT_EQ(s.misses, 1u);
  EXPECT_EQ(s.hits, 0u);
  // The sandbox whose claim failed is destroyed in the background.
  ASSERT_TRUE(WaitFor([&] {
    int left = 0;
    for (const auto& id : pooled) {
      left += inner_.Get(id) ? 1 : 0;
    }
    return left == 1;
  }));
  ASSERT_TRUE(WaitFor([&] { return pool->ReadyFor({}) == 2; }));
}

TEST_F(WarmPoolTest, DeadSandboxesAreNeverHandedOut) {
  WarmPoolOptions o = Fast();
  o.health_interval = 1h;  // only the check on the request path: the claim
  auto pool = MakePool(o);
  ASSERT_TRUE(WaitFor([&] { return pool->ReadyFor({}) == 2; }));
  const auto killed = PooledIds();
  for (const auto& id : killed) {
    inner_.Kill(id);
  }
  // The backend refuses to claim a dead sandbox: destroyed, and the create goes cold.
  for (const char* id : {"sb-new1", "sb-new2"}) {
    auto info = pool->Create(id, Owned("alice"));
    ASSERT_TRUE(info);
    EXPECT_EQ(info->id, id);
    EXPECT_EQ(info->state, SandboxState::kRunning);
  }
  EXPECT_EQ(pool->Stats().claim_failures, 2u);
  EXPECT_EQ(pool->Stats().misses, 2u);
  EXPECT_EQ(inner_.claims(), 0);
  for (const auto& id : killed) {
    ASSERT_TRUE(WaitFor([&] { return !inner_.Get(id).has_value(); }));
  }
  ASSERT_TRUE(WaitFor([&] { return pool->ReadyFor({}) == 2; }));
  auto hit = pool->Create("sb-new3", Owned("alice"));
  ASSERT_TRUE(hit);
  EXPECT_NE(hit->id, "sb-new3");
  EXPECT_FALSE(killed.count(hit->id));
}

TEST_F(WarmPoolTest, BackgroundHealthCheckReplacesDeadSandboxes) {
  WarmPoolOptions o = Fast();
  o.health_interval = 20ms;
  auto pool = MakePool(o);
  ASSERT_TRUE(WaitFor([&] { return pool->ReadyFor({}) == 2; }));
  const std::string victim = *PooledIds().begin();
  inner_.Kill(victim);
  ASSERT_TRUE(WaitFor([&] { return !inner_.Get(victim).has_value(); }));
  EXPECT_EQ(pool->Stats().discarded, 1u);
  ASSERT_TRUE(WaitFor([&] { return pool->ReadyFor({}) == 2; }));
}

TEST_F(WarmPoolTest, PooledSandboxesAreHidden) {
  auto pool = MakePool();
  ASSERT_TRUE(WaitFor([&] { return pool->ReadyFor({}) == 2; }));
  ASSERT_TRUE(inner_.Create("sb-user", Owned("u")));
  auto list = pool->List();
  ASSERT_TRUE(list);
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].id, "sb-user");
  for (const auto& id : PooledIds()) {
    EXPECT_EQ(pool->Get(id).error().code, ErrorCode::kNotFound);
    EXPECT_EQ(pool->Destroy(id).error().code, ErrorCode::kNotFound);
    EXPECT_EQ(pool->SetExpiry(id, 1).error().code, ErrorCode::kNotFound);
    EXPECT_EQ(pool->Claim(id, Owned("evil"), 1).error().code, ErrorCode::kNotFound);
  }
  EXPECT_EQ(PooledIds().size(), 2u);
  auto claimed = pool->Create("x", Owned("alice"));
  ASSERT_TRUE(claimed);
  list = pool->List();
  ASSERT_TRUE(list);
  EXPECT_EQ(list->size(), 2u);
  EXPECT_TRUE(pool->Get(claimed->id));
  EXPECT_TRUE(pool->SetExpiry(claimed->id, NowUnix() + 5));
  EXPECT_TRUE(pool->Destroy(claimed->id));
  // Clients may not forge the pool's labels.
  SandboxSpec forged = Owned("");
  forged.labels = {{kPoolLabel, kPoolLabelValue}};
  EXPECT_EQ(pool->Create("f", forged).error().code, ErrorCode::kInvalidArgument);
}

TEST_F(WarmPoolTest, ARestartedPoolAdoptsWhatTheLastOneLeft) {
  SandboxSpec env = Owned("bob");
  env.env = {{"A", "1"}};
  {
    auto pool = MakePool();
    ASSERT_TRUE(pool->Create("sb-env", env));
    ASSERT_TRUE(WaitFor([&] { return pool->ReadyFor({}) == 2 && pool->ReadyFor(env) == 2; }));
  }  // the "daemon" stops: the pooled sandboxes keep running
  const auto left = PooledIds();
  ASSERT_EQ(left.size(), 4u);
  const int creates = inner_.creates();

  auto pool = MakePool();
  ASSERT_TRUE(WaitFor([&] { return pool->Adopted(); }));
  EXPECT_EQ(pool->ReadyFor({}), 2u);
  EXPECT_EQ(pool->ReadyFor(env), 2u);  // its key came back with it
  EXPECT_EQ(inner_.creates(), creates);
  auto hit = pool->Create("sb-new", env);
  ASSERT_TRUE(hit);
  EXPECT_TRUE(left.count(hit->id));
  EXPECT_EQ(hit->spec.env.at("A"), "1");
  auto list = pool->List();
  ASSERT_TRUE(list);
  EXPECT_EQ(list->size(), 2u);  // sb-env and the claimed one
}

TEST_F(WarmPoolTest, RestartDestroysWhatItCannotAdopt) {
  SandboxSpec env = Owned("bob");
  env.env = {{"A", "1"}};
  {
    WarmPoolOptions o = Fast(3);
    auto pool = MakePool(o);
    ASSERT_TRUE(pool->Create("sb-env", env));
    ASSERT_TRUE(WaitFor([&] { return pool->ReadyFor({}) == 3 && pool->ReadyFor(env) == 3; }));
  }
  inner_.Kill(*PooledIds().begin());
  WarmPoolOptions o = Fast(1);
  o.max_specs = 1;  // the env spec is not pooled any more
  auto pool = MakePool(o);
  ASSERT_TRUE(WaitFor([&] { return pool->Adopted(); }));
  ASSERT_TRUE(WaitFor([&] { return PooledIds().size() == 1; }));
  EXPECT_EQ(pool->ReadyFor({}), 1u);
  EXPECT_EQ(pool->ReadyFor(env), 0u);
  const std::string kept = *PooledIds().begin();
  EXPECT_EQ(inner_.Get(kept)->state, SandboxState::kRunning);
  EXPECT_EQ(inner_.Get(kept)->spec.env.size(), 0u);
}

TEST_F(WarmPoolTest, SizeZeroIsAPassThrough) {
  // A pool that was switched off: the leftovers become visible, nothing is started or hidden.
  {
    auto pool = MakePool();
    ASSERT_TRUE(WaitFor([&] { return pool->ReadyFor({}) == 2; }));
  }
  auto pool = MakePool(Fast(0));
  auto info = pool->Create("sb-1", Owned("alice"));
  ASSERT_TRUE(info);
  EXPECT_EQ(info->id, "sb-1");
  std::this_thread::sleep_for(50ms);  // would be time enough to start something
  EXPECT_EQ(inner_.creates(), 3);
  auto list = pool->List();
  ASSERT_TRUE(list);
  EXPECT_EQ(list->size(), 3u);
  for (const auto& id : PooledIds()) {
    EXPECT_TRUE(pool->Get(id));
    EXPECT_TRUE(pool->Destroy(id));
  }
  EXPECT_EQ(pool->Stats().ready, 0u);

  // WithWarmPool does not even wrap.
  auto plain = std::make_unique<MemoryBackend>();
  SandboxBackend* raw = plain.get();
  EXPECT_EQ(WithWarmPool(std::move(plain), Fast(0)).get(), raw);
  auto no_claim = std::make_unique<MemoryBackend>("noclaim", false);
  raw = no_claim.get();
  EXPECT_EQ(WithWarmPool(std::move(no_claim), Fast(2)).get(), raw);
  auto wrapped = WithWarmPool(std::make_unique<MemoryBackend>(), Fast(1));
  EXPECT_TRUE(WarmPoolStatsOf(wrapped.get()).has_value());
  EXPECT_FALSE(WarmPoolStatsOf(&inner_).has_value());
}

TEST_F(WarmPoolTest, BackgroundStartFailuresBackOffAndRecover) {
  inner_.FailNextCreates(3);
  auto pool = MakePool();
  ASSERT_TRUE(WaitFor([&] { return pool->ReadyFor({}) == 2; }));
  EXPECT_EQ(pool->Stats().start_failures, 3u);
  EXPECT_EQ(pool->Stats().started, 2u);
}

TEST_F(WarmPoolTest, ManyConcurrentCreatesNeverShareASandbox) {
  inner_.SetCreateDelay(1ms);
  auto pool = MakePool(Fast(4));
  ASSERT_TRUE(WaitFor([&] { return pool->ReadyFor({}) == 4; }));
  constexpr int kThreads = 8;
  constexpr int kEach = 8;
  std::mutex mu;
  std::vector<std::string> ids;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        std::string owner = "o";
        owner += std::to_string(t);  // not "o" + ...: g++ 12 -O3 warns falsely (-Wrestrict)
        SandboxSpec s = Owned(owner);
        if (i % 4 == 3) {
          s.env = {{"T", std::to_string(t % 2)}};
        }
        auto info = pool->Create("c-" + std::to_string(t) + "-" + std::to_string(i), s);
        if (!info || info->spec.owner != s.owner) {
          ++failures;
          continue;
        }
        std::lock_guard lock(mu);
        ids.push_back(info->id);
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  EXPECT_EQ(failures, 0);
  ASSERT_EQ(ids.size(), size_t{kThreads * kEach});
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(), ids.size());
  WarmPoolStats s = pool->Stats();
  EXPECT_EQ(s.hits + s.misses, uint64_t{kThreads * kEach});
  EXPECT_GE(s.hits, 4u);
  EXPECT_EQ(inner_.claims(), static_cast<int>(s.hits));
  for (const auto& id : ids) {
    EXPECT_EQ(inner_.Get(id)->spec.owner.empty(), false) << id;
  }
}

TEST_F(WarmPoolTest, ShutdownWaitsForAStartInFlightAndKeepsReadySandboxes) {
  auto pool = MakePool(Fast(2));
  ASSERT_TRUE(WaitFor([&] { return pool->ReadyFor({}) == 2; }));
  inner_.SetCreateDelay(100ms);
  auto claimed = pool->Create("x", Owned("alice"));  // takes one: a slow refill starts
  ASSERT_TRUE(claimed);
  ASSERT_TRUE(WaitFor([&] { return inner_.creates_begun() == 3; }));
  const auto start = std::chrono::steady_clock::now();
  pool.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  // Nothing is lost: the claimed sandbox, the ready one and the one that was starting.
  EXPECT_EQ(inner_.size(), 3u);
  EXPECT_EQ(PooledIds().size(), 2u);
}

TEST(WarmPoolConfigTest, ReadsSizesAndRejectsBadValues) {
  auto o = WarmPoolOptionsFromConfig(Config::FromMap({}), "jail");
  ASSERT_TRUE(o);
  EXPECT_EQ(o->size, 2u);
  EXPECT_EQ(o->max_specs, 4u);
  EXPECT_EQ(o->refill_delay, 100ms);
  o = WarmPoolOptionsFromConfig(Config::FromMap({}), "docker");
  ASSERT_TRUE(o);
  EXPECT_EQ(o->size, 2u);
  o = WarmPoolOptionsFromConfig(Config::FromMap({}), "cloudrun");  // not pooled unless asked
  ASSERT_TRUE(o);
  EXPECT_EQ(o->size, 0u);
  o = WarmPoolOptionsFromConfig(Config::FromMap({{"AGENTBOX_WARM_POOL_SIZE", "3"}}), "docker");
  ASSERT_TRUE(o);
  EXPECT_EQ(o->size, 3u);
  o = WarmPoolOptionsFromConfig(Config::FromMap({{"AGENTBOX_WARM_POOL_SIZE", "5"},
                                                 {"AGENTBOX_WARM_POOL_SIZE_JAIL", "0"},
                                                 {"AGENTBOX_WARM_POOL_MAX_SPECS", "8"},
                                                 {"AGENTBOX_WARM_POOL_REFILL_DELAY_MS", "0"}}),
                                "jail");
  ASSERT_TRUE(o);
  EXPECT_EQ(o->size, 0u);
  EXPECT_EQ(o->max_specs, 8u);
  EXPECT_EQ(o->refill_delay, 0ms);
  o = WarmPoolOptionsFromConfig(
      Config::FromMap({{"AGENTBOX_WARM_POOL_SIZE", "5"}, {"AGENTBOX_WARM_POOL_SIZE_JAIL", "1"}}),
      "docker");
  ASSERT_TRUE(o);
  EXPECT_EQ(o->size, 5u);
  for (const auto& [key, value] : std::vector<std::pair<std::string, std::string>>{
           {"AGENTBOX_WARM_POOL_SIZE", "two"},
           {"AGENTBOX_WARM_POOL_SIZE", "-1"},
           {"AGENTBOX_WARM_POOL_SIZE_JAIL", "1000"},
           {"AGENTBOX_WARM_POOL_MAX_SPECS", "0"},
           {"AGENTBOX_WARM_POOL_REFILL_DELAY_MS", "soon"}}) {
    o = WarmPoolOptionsFromConfig(Config::FromMap({{key, value}}), "jail");
    ASSERT_FALSE(o) << key << "=" << value;
    EXPECT_EQ(o.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(o.error().message.find(key), std::string::npos) << o.error().message;
  }
  auto wrapped = WithWarmPool(std::make_unique<MemoryBackend>(),
                              Config::FromMap({{"AGENTBOX_WARM_POOL_SIZE_MEMORY", "x"}}));
  EXPECT_FALSE(wrapped);
  wrapped = WithWarmPool(std::make_unique<MemoryBackend>(), Config::FromMap({}));
  ASSERT_TRUE(wrapped);
  EXPECT_FALSE(WarmPoolStatsOf(wrapped->get()));  // "memory" has no built-in size: not pooled
}

}  // namespace
}  // namespace agentbox::pool
