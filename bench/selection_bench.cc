// How long the selector takes to decide a new sandbox's backend (the seed's alert: > 50 ms; its
// target: < 10 ms). Probes are cached between decisions as in agentboxd; the "uncached" case
// re-probes every time with probes that cost nothing, so it measures the selector's own work.
#include <benchmark/benchmark.h>

#include <map>
#include <string>

#include "common/log.h"
#include "selector/selector.h"

namespace {

using namespace agentbox;

class Instant : public SandboxBackend {
 public:
  explicit Instant(std::string name, bool usable) : name_(std::move(name)), usable_(usable) {}
  std::string_view Name() const override { return name_; }
  ProbeResult Probe() override { return {usable_, usable_ ? "" : "engine down", {}}; }
  Capabilities GetCapabilities() const override { return {}; }
  Result<SandboxInfo> Create(const std::string&, const SandboxSpec&) override {
    return Fail(ErrorCode::kInternal, "unused");
  }
  Result<SandboxInfo> Get(const std::string&) override {
    return Fail(ErrorCode::kNotFound, "unused");
  }
  Result<std::vector<SandboxInfo>> List() override { return std::vector<SandboxInfo>{}; }
  Result<void> Destroy(const std::string&) override { return {}; }
  Result<void> SetExpiry(const std::string&, double) override { return {}; }

 private:
  std::string name_;
  bool usable_;
};

void Run(benchmark::State& state, bool docker_up, const char* ttl_ms,
         std::map<std::string, std::string> extra = {}) {
  SetLogLevel(LogLevel::kError);  // decisions are logged at info/warn; keep stderr out of it
  Instant docker("docker", docker_up), jail("jail", true);
  Metrics metrics;
  extra["AGENTBOX_PROBE_TTL_MS"] = ttl_ms;
  selector::Selector s(
      {{"docker", &docker}, {"jail", &jail}}, {},
      selector::Settings::FromConfig(Config::FromMap(std::move(extra)), {"docker", "jail"}),
      &metrics);
  int64_t n = 0;
  for (auto _ : state) {
    // A new subject each time: the rollout hashes every one.
    benchmark::DoNotOptimize(s.Select({"", "tenant-" + std::to_string(n++ % 100000)}));
  }
}

void BM_SelectDefault(benchmark::State& state) { Run(state, true, "2000"); }
void BM_SelectFallback(benchmark::State& state) { Run(state, false, "2000"); }
void BM_SelectUncachedProbes(benchmark::State& state) { Run(state, false, "0"); }

// A 30% sticky rollout of jail against docker (bucket hashed per subject, breaker consulted).
void BM_SelectRollout(benchmark::State& state) {
  Run(state, true, "2000",
      {{"SANDBOX_BACKEND", "docker"},
       {"AGENTBOX_ROLLOUT_BACKEND", "jail"},
       {"AGENTBOX_ROLLOUT_PERCENTAGE", "30"}});
}

BENCHMARK(BM_SelectDefault);
BENCHMARK(BM_SelectRollout);
BENCHMARK(BM_SelectFallback);
BENCHMARK(BM_SelectUncachedProbes);

}  // namespace

BENCHMARK_MAIN();
