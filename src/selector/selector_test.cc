// The selector's decisions, after the original factory's suite (test_sandbox_factory.py): the
// default, the setting off or missing, invalid configuration falling back, an error during
// selection falling back, the info shapes, the logging of each decision; plus probes, pinning,
// metrics and configuration versions.
#include "selector/selector.h"

#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <thread>

#include "common/log.h"

namespace agentbox::selector {
namespace {

// A backend that only answers Probe(); selection never creates anything.
class FakeBackend : public SandboxBackend {
 public:
  explicit FakeBackend(std::string name) : name_(std::move(name)) {}
  std::string_view Name() const override { return name_; }
  ProbeResult Probe() override {
    ++probes;
    if (throws) {
      throw std::runtime_error("engine client exploded");
    }
    return usable ? ProbeResult{true, "", {}}
                  : ProbeResult{false, name_ + " engine is not reachable", {}};
  }
  Capabilities GetCapabilities() const override { return {}; }
  Result<SandboxInfo> Create(const std::string&, const SandboxSpec&) override {
    return Fail(ErrorCode::kInternal, "not used");
  }
  Result<SandboxInfo> Get(const std::string&) override {
    return Fail(ErrorCode::kNotFound, "not used");
  }
  Result<std::vector<SandboxInfo>> List() override { return std::vector<SandboxInfo>{}; }
  Result<void> Destroy(const std::string&) override { return {}; }
  Result<void> SetExpiry(const std::string&, double) override { return {}; }

  std::atomic<bool> usable{true};
  std::atomic<bool> throws{false};
  std::atomic<int> probes{0};

 private:
  std::string name_;
};

const std::vector<std::string> kKnown = {"docker", "jail"};

// Captured log lines (the sink is process-wide, so tests using it run one at a time).
std::mutex g_log_mu;
std::vector<std::string> g_log;
void Capture(LogLevel, std::string_view event, std::string_view fields) {
  std::lock_guard<std::mutex> lock(g_log_mu);
  g_log.push_back(std::string(event) + " " + std::string(fields));
}

class SelectorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::lock_guard<std::mutex> lock(g_log_mu);
    g_log.clear();
    SetLogSink(&Capture);
  }
  void TearDown() override { SetLogSink(nullptr); }

  std::unique_ptr<Selector> Make(std::map<std::string, std::string> cfg,
                                 std::map<std::string, std::string> config_errors = {},
                                 bool with_docker = true) {
    std::map<std::string, SandboxBackend*> b = {{"jail", &jail_}};
    if (with_docker) {
      b["docker"] = &docker_;
    }
    return std::make_unique<Selector>(b, std::move(config_errors),
                                      Settings::FromConfig(Config::FromMap(std::move(cfg)), kKnown),
                                      &metrics_);
  }

  std::vector<std::string> Logged() {
    std::lock_guard<std::mutex> lock(g_log_mu);
    return g_log;
  }

  FakeBackend docker_{"docker"};
  FakeBackend jail_{"jail"};
  Metrics metrics_;
};

// --- the default (TestSandboxFactory) ---

TEST_F(SelectorTest, DefaultIsDocker) {
  auto s = Make({});
  Decision d = s->Select({});
  EXPECT_EQ(d.backend, "docker");
  EXPECT_EQ(d.reason, "DEFAULT");
  EXPECT_FALSE(d.error_code);
  EXPECT_EQ(d.requested_backend, "docker");
  EXPECT_EQ(d.fallback_chain, (std::vector<std::string>{"docker", "jail"}));
  EXPECT_TRUE(d.probes.at("docker").usable);
}

// A drain excludes the backend it empties: the next one along the chain, as a FALLBACK saying so.
TEST_F(SelectorTest, ExcludedBackendIsSkippedWithItsReason) {
  auto s = Make({});
  Decision d = s->Select({}, {{"docker"}, "being drained"});
  EXPECT_EQ(d.backend, "jail");
  EXPECT_EQ(d.reason, "FALLBACK");
  EXPECT_EQ(d.error_code, std::optional<std::string>("EXCLUDED"));
  EXPECT_NE(d.detail.find("docker is excluded: being drained"), std::string::npos) << d.detail;
  EXPECT_TRUE(s->Select({}, {{"docker", "jail"}, "x"}).backend.empty());
}

TEST_F(SelectorTest, FlagOffIsDocker) {
  auto s = Make({{"USE_CLOUDRUN_JOBS_SANDBOX", "false"}});
  EXPECT_EQ(s->Select({}).backend, "docker");
  EXPECT_EQ(s->Select({}).reason, "DEFAULT");
}

TEST_F(SelectorTest, MissingOrEmptySettingIsDocker) {
  EXPECT_EQ(Make({})->Select({}).backend, "docker");
  auto s = Make({{"SANDBOX_BACKEND", "  "}});
  Decision d = s->Select({});
  EXPECT_EQ(d.backend, "docker");
  EXPECT_EQ(d.reason, "DEFAULT");
}

TEST_F(SelectorTest, SettingChoosesJailAndSaysWhereItCameFrom) {
  auto s = Make({{"SANDBOX_BACKEND", "Jail"}});
  Decision d = s->Select({});
  EXPECT_EQ(d.backend, "jail");
  EXPECT_EQ(d.reason, "DEFAULT");
  EXPECT_NE(d.detail.find("SANDBOX_BACKEND=jail"), std::string::npos) << d.detail;
}

TEST_F(SelectorTest, OnlyOneBackendIsStatic) {
  auto s = Make({{"SANDBOX_BACKEND", "jail"}}, {}, /*with_docker=*/false);
  // docker is not in the table and has no config error: jail is the only possibility.
  Decision d = s->Select({});
  EXPECT_EQ(d.backend, "jail");
  EXPECT_EQ(d.reason, "STATIC");
}

// --- invalid configuration falls back (TestConfigurationValidation, TestCloudRunSandboxSelection)

TEST_F(SelectorTest, UnknownBackendNameFallsBackWithInvalidConfig) {
  auto s = Make({{"SANDBOX_BACKEND", "dokcer"}});
  Decision d = s->Select({});
  EXPECT_EQ(d.backend, "docker");
  EXPECT_EQ(d.reason, "FALLBACK");
  EXPECT_EQ(d.error_code, "INVALID_CONFIG");
  EXPECT_EQ(d.requested_backend, "dokcer");
  EXPECT_NE(d.detail.find("'dokcer' is not a backend"), std::string::npos) << d.detail;
}

TEST_F(SelectorTest, BackendWithInvalidConfigFallsBackToJail) {
  auto s = Make({}, {{"docker", "DOCKER_HOST=tcp://x is not a unix socket"}});
  Decision d = s->Select({});
  EXPECT_EQ(d.backend, "jail");
  EXPECT_EQ(d.reason, "FALLBACK");
  EXPECT_EQ(d.error_code, "INVALID_CONFIG");
  ASSERT_EQ(d.skipped.size(), 1u);
  EXPECT_EQ(d.skipped[0].backend, "docker");
  EXPECT_NE(d.detail.find("DOCKER_HOST"), std::string::npos);
}

TEST_F(SelectorTest, UnparsableFlagIsTreatedAsOffAndSaysSo) {
  auto s = Make({{"USE_CLOUDRUN_JOBS_SANDBOX", "maybe"}});
  Decision d = s->Select({});
  EXPECT_EQ(d.backend, "docker");
  EXPECT_EQ(d.reason, "FALLBACK");
  EXPECT_EQ(d.error_code, "PARSE_ERROR");
  EXPECT_NE(d.detail.find("USE_CLOUDRUN_JOBS_SANDBOX=maybe"), std::string::npos);
}

TEST_F(SelectorTest, CloudRunFlagWithoutProjectFallsBack) {
  for (const char* project : std::initializer_list<const char*>{"", nullptr}) {
    std::map<std::string, std::string> cfg = {{"USE_CLOUDRUN_JOBS_SANDBOX", "true"}};
    if (project) {
      cfg["SANDBOX_GCP_PROJECT"] = project;
    }
    Decision d = Make(cfg)->Select({});
    EXPECT_EQ(d.requested_backend, "cloudrun");
    EXPECT_EQ(d.backend, "docker");
    EXPECT_EQ(d.reason, "FALLBACK");
    EXPECT_EQ(d.error_code, "INVALID_CONFIG");
    EXPECT_NE(d.detail.find("SANDBOX_GCP_PROJECT is empty"), std::string::npos);
  }
}

TEST_F(SelectorTest, CloudRunFlagWithProjectButNoCloudRunBackendFallsBack) {
  Decision d = Make({{"USE_CLOUDRUN_JOBS_SANDBOX", "1"}, {"SANDBOX_GCP_PROJECT", "p"}})->Select({});
  EXPECT_EQ(d.backend, "docker");
  EXPECT_EQ(d.reason, "FALLBACK");
  EXPECT_EQ(d.error_code, "PROVIDER_NOT_READY");
}

TEST_F(SelectorTest, CloudRunConfigDefaults) {
  auto s = Make({{"USE_CLOUDRUN_JOBS_SANDBOX", "true"}, {"SANDBOX_GCP_PROJECT", "proj"}});
  EXPECT_EQ(s->settings()->gcp_region, "us-central1");
  EXPECT_EQ(s->settings()->gcs_bucket, "proj-sandbox-state");
  auto t = Make({{"SANDBOX_GCP_PROJECT", "proj"},
                 {"SANDBOX_GCP_REGION", "europe-west1"},
                 {"SANDBOX_GCS_BUCKET", "mine"}});
  EXPECT_EQ(t->settings()->gcp_region, "europe-west1");
  EXPECT_EQ(t->settings()->gcs_bucket, "mine");
}

// --- unhealthy backends and errors during selection fall back (TestGracefulFallback) ---

TEST_F(SelectorTest, UnusableDockerFallsBackToJail) {
  docker_.usable = false;
  auto s = Make({});
  Decision d = s->Select({});
  EXPECT_EQ(d.backend, "jail");
  EXPECT_EQ(d.reason, "FALLBACK");
  EXPECT_EQ(d.error_code, "PROVIDER_NOT_READY");
  EXPECT_FALSE(d.probes.at("docker").usable);
  EXPECT_EQ(d.probes.at("docker").reason, "docker engine is not reachable");
  EXPECT_NE(d.detail.find("docker engine is not reachable; using jail"), std::string::npos);
}

TEST_F(SelectorTest, ExceptionDuringProbeFallsBackWithGeneral) {
  docker_.throws = true;
  Decision d = Make({})->Select({});
  EXPECT_EQ(d.backend, "jail");
  EXPECT_EQ(d.reason, "FALLBACK");
  EXPECT_EQ(d.error_code, "GENERAL");
  EXPECT_NE(d.detail.find("engine client exploded"), std::string::npos);
}

TEST_F(SelectorTest, NothingUsableIsAnErrorDecision) {
  docker_.usable = false;
  jail_.usable = false;
  Decision d = Make({})->Select({});
  EXPECT_TRUE(d.backend.empty());
  EXPECT_EQ(d.reason, "ERROR");
  EXPECT_EQ(d.error_code, "PROVIDER_NOT_READY");
  EXPECT_NE(d.detail.find("no usable backend"), std::string::npos);
}

TEST_F(SelectorTest, EmptyFallbackChainMeansNoFallback) {
  docker_.usable = false;
  Decision d = Make({{"AGENTBOX_FALLBACK_CHAIN", ""}})->Select({});
  EXPECT_EQ(d.reason, "ERROR");
  EXPECT_EQ(d.fallback_chain, std::vector<std::string>{"docker"});
}

TEST_F(SelectorTest, InvalidFallbackChainIsASettingsErrorNotACrash) {
  auto s = Make({{"AGENTBOX_FALLBACK_CHAIN", "docker,lxc"}});
  EXPECT_TRUE(s->settings()->errors.count("AGENTBOX_FALLBACK_CHAIN"));
  EXPECT_EQ(s->settings()->fallback_chain, kKnown);
  Decision d = s->Select({});
  EXPECT_EQ(d.backend, "docker");
  EXPECT_EQ(d.error_code, "PARSE_ERROR");
}

// --- pinning ---

TEST_F(SelectorTest, PinnedBackendIsATargetingMatch) {
  Decision d = Make({})->Select({"jail", "alice"});
  EXPECT_EQ(d.backend, "jail");
  EXPECT_EQ(d.reason, "TARGETING_MATCH");
  EXPECT_EQ(d.rule_id, "pin");
}

TEST_F(SelectorTest, PinnedBackendNeverSilentlyLandsElsewhere) {
  jail_.usable = false;
  Decision d = Make({})->Select({"jail", "alice"});
  EXPECT_TRUE(d.backend.empty());
  EXPECT_EQ(d.reason, "ERROR");
  EXPECT_EQ(d.fallback_chain, std::vector<std::string>{"jail"});
}

// --- info shapes (TestSandboxInfo, TestBackwardCompatibility) ---

TEST_F(SelectorTest, InfoKeepsTheOriginalKeysWithFlagOff) {
  auto s = Make({});
  Json j = s->InfoJson(s->Preview());
  EXPECT_EQ(j["implementation"], "DockerSandbox");
  EXPECT_EQ(j["feature_flag_enabled"], false);
  EXPECT_EQ(j["reason"], "DEFAULT");
  ASSERT_TRUE(j["config"].is_object());
  EXPECT_EQ(j["config"]["region"], "us-central1");
  EXPECT_EQ(j["backend"], "docker");
  EXPECT_TRUE(j["error_code"].is_null());
  EXPECT_EQ(j["requested_backend"], "docker");
  EXPECT_TRUE(j["fallback_chain"].is_array());
  EXPECT_TRUE(j["probes"]["docker"]["usable"]);
  EXPECT_TRUE(j["config_version"].get<std::string>().starts_with("v1-"));
  EXPECT_TRUE(j["backends"]["jail"]["available"]);
}

TEST_F(SelectorTest, InfoWithFlagOnAndValidConfig) {
  auto s = Make({{"USE_CLOUDRUN_JOBS_SANDBOX", "true"}, {"SANDBOX_GCP_PROJECT", "proj"}});
  Json j = s->InfoJson(s->Preview());
  EXPECT_EQ(j["feature_flag_enabled"], true);
  EXPECT_EQ(j["config"]["project_id"], "proj");
  EXPECT_EQ(j["config"]["bucket"], "proj-sandbox-state");
  EXPECT_EQ(j["requested_backend"], "cloudrun");
}

TEST_F(SelectorTest, InfoWithFlagOnButMissingConfig) {
  auto s = Make({{"USE_CLOUDRUN_JOBS_SANDBOX", "true"}});
  Json j = s->InfoJson(s->Preview());
  EXPECT_EQ(j["feature_flag_enabled"], true);
  EXPECT_EQ(j["implementation"], "DockerSandbox");
  EXPECT_EQ(j["reason"], "FALLBACK");
  EXPECT_EQ(j["error_code"], "INVALID_CONFIG");
  EXPECT_EQ(j["config"]["project_id"], "");
}

TEST_F(SelectorTest, InfoListsBackendsThatFailedConfiguration) {
  auto s = Make({}, {{"docker", "bad DOCKER_HOST"}}, /*with_docker=*/false);
  Json j = s->InfoJson(s->Preview());
  EXPECT_EQ(j["backends"]["docker"]["available"], false);
  EXPECT_EQ(j["backends"]["docker"]["config_error"], "bad DOCKER_HOST");
  EXPECT_EQ(j["implementation"], "JailSandbox");
}

// --- logging (TestLogging) ---

TEST_F(SelectorTest, EachDecisionIsLoggedOnceWithItsReason) {
  auto s = Make({});
  s->Select({"", "alice"});
  auto lines = Logged();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("selection.decision backend=docker reason=DEFAULT"), std::string::npos)
      << lines[0];
  EXPECT_NE(lines[0].find("subject=alice"), std::string::npos);
}

TEST_F(SelectorTest, FallbackIsLoggedWithItsErrorCode) {
  docker_.usable = false;
  Make({})->Select({});
  auto lines = Logged();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("backend=jail reason=FALLBACK error_code=PROVIDER_NOT_READY"),
            std::string::npos)
      << lines[0];
}

TEST_F(SelectorTest, PreviewIsNeitherLoggedNorCounted) {
  auto s = Make({});
  s->Preview();
  EXPECT_TRUE(Logged().empty());
  EXPECT_EQ(
      metrics_.Value("agentbox_selection_total", {{"backend", "docker"}, {"reason", "DEFAULT"}}),
      0);
}

// --- metrics, probes, versions ---

TEST_F(SelectorTest, DecisionsAndFallbacksAreCounted) {
  auto s = Make({{"AGENTBOX_PROBE_TTL_MS", "0"}});
  s->Select({});
  docker_.usable = false;
  s->Select({});
  s->Select({});
  EXPECT_EQ(
      metrics_.Value("agentbox_selection_total", {{"backend", "docker"}, {"reason", "DEFAULT"}}),
      1);
  EXPECT_EQ(
      metrics_.Value("agentbox_selection_total", {{"backend", "jail"}, {"reason", "FALLBACK"}}), 2);
  EXPECT_EQ(
      metrics_.Value("agentbox_fallback_total",
                     {{"from", "docker"}, {"to", "jail"}, {"error_code", "PROVIDER_NOT_READY"}}),
      2);
  const std::string text = metrics_.Render();
  EXPECT_NE(text.find("agentbox_selection_duration_seconds_count 3"), std::string::npos) << text;
}

TEST_F(SelectorTest, ProbesAreCachedForTheirTtl) {
  auto s = Make({{"AGENTBOX_PROBE_TTL_MS", "60000"}});
  for (int i = 0; i < 5; ++i) {
    s->Select({});
  }
  EXPECT_EQ(docker_.probes.load(), 1);
  s->ForgetProbes();
  s->Select({});
  EXPECT_EQ(docker_.probes.load(), 2);
  auto t = Make({{"AGENTBOX_PROBE_TTL_MS", "0"}});
  t->Select({});
  t->Select({});
  EXPECT_EQ(docker_.probes.load(), 4);
}

TEST_F(SelectorTest, ConfigVersionIsStableAndChangesWithTheSettings) {
  EXPECT_EQ(Make({})->Preview().config_version, Make({})->Preview().config_version);
  EXPECT_NE(Make({})->Preview().config_version,
            Make({{"SANDBOX_BACKEND", "jail"}})->Preview().config_version);
}

TEST_F(SelectorTest, ReloadSwapsSettingsBumpsTheVersionAndForgetsProbes) {
  auto s = Make({{"AGENTBOX_PROBE_TTL_MS", "60000"}});
  EXPECT_TRUE(s->Select({}).config_version.starts_with("v1-"));
  EXPECT_EQ(docker_.probes.load(), 1);
  s->Reload(Settings::FromConfig(
      Config::FromMap({{"SANDBOX_BACKEND", "jail"}, {"AGENTBOX_PROBE_TTL_MS", "60000"}}), kKnown));
  Decision d = s->Select({});
  EXPECT_EQ(d.backend, "jail");
  EXPECT_TRUE(d.config_version.starts_with("v2-")) << d.config_version;
  s->Reload(Settings::FromConfig(Config::FromMap({{"AGENTBOX_PROBE_TTL_MS", "60000"}}), kKnown));
  EXPECT_EQ(s->Select({}).backend, "docker");
  EXPECT_EQ(docker_.probes.load(), 2);  // the cached probe was dropped by the reload
  EXPECT_NE(metrics_.Render().find("agentbox_config_info{version=\"v3-"), std::string::npos);
  // The same content under a new version: the hash part stays, the counter moves.
  EXPECT_EQ(s->ConfigVersion().substr(3),
            Make({{"AGENTBOX_PROBE_TTL_MS", "60000"}})->ConfigVersion().substr(3));
}

TEST_F(SelectorTest, ReloadWhileDecidingIsSafe) {
  auto s = Make({{"AGENTBOX_PROBE_TTL_MS", "0"}});
  std::atomic<bool> stop{false};
  std::thread reloader([&] {
    for (int i = 0; !stop; ++i) {
      s->Reload(Settings::FromConfig(
          Config::FromMap({{"SANDBOX_BACKEND", i % 2 ? "jail" : "docker"}}), kKnown));
    }
  });
  for (int i = 0; i < 2000; ++i) {
    const std::string b = s->Select({}).backend;
    EXPECT_TRUE(b == "docker" || b == "jail") << b;
  }
  stop = true;
  reloader.join();
}

TEST_F(SelectorTest, ConcurrentDecisionsAreAllCounted) {
  auto s = Make({{"AGENTBOX_PROBE_TTL_MS", "0"}});
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        EXPECT_EQ(s->Select({}).backend, "docker");
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  EXPECT_EQ(
      metrics_.Value("agentbox_selection_total", {{"backend", "docker"}, {"reason", "DEFAULT"}}),
      400);
  EXPECT_EQ(Logged().size(), 400u);
}

// --- sticky percentage rollout (rollout.md) ---

std::map<std::string, std::string> RolloutTo(const std::string& pct) {
  return {{"SANDBOX_BACKEND", "docker"},
          {"AGENTBOX_ROLLOUT_BACKEND", "jail"},
          {"AGENTBOX_ROLLOUT_PERCENTAGE", pct}};
}

TEST_F(SelectorTest, SplitSendsThePercentageAndIsStickyPerSubject) {
  auto s = Make(RolloutTo("30"));
  int enrolled = 0;
  for (int i = 0; i < 1000; ++i) {
    const std::string subject = "user-" + std::to_string(i);
    Decision d = s->Select({"", subject});
    ASSERT_EQ(d.reason, "SPLIT") << d.detail;
    ASSERT_TRUE(d.bucket);
    EXPECT_EQ(d.rule_id, "rollout:AGENTBOX_ROLLOUT_BACKEND");
    EXPECT_EQ(d.backend, *d.bucket <= 30 ? "jail" : "docker") << *d.bucket;
    EXPECT_EQ(d.requested_backend, d.backend);
    EXPECT_FALSE(d.error_code);
    enrolled += d.backend == "jail";
    EXPECT_EQ(s->Select({"", subject}).backend, d.backend);  // sticky
  }
  EXPECT_NEAR(enrolled, 300, 50);
}

TEST_F(SelectorTest, RaisingThePercentageKeepsEveryEnrolledSubject) {
  auto s = Make(RolloutTo("20"));
  std::vector<std::string> enrolled;
  for (int i = 0; i < 500; ++i) {
    const std::string subject = "tenant-" + std::to_string(i);
    if (s->Select({"", subject}).backend == "jail") {
      enrolled.push_back(subject);
    }
  }
  ASSERT_FALSE(enrolled.empty());
  s->Reload(Settings::FromConfig(Config::FromMap(RolloutTo("60")), kKnown));
  for (const auto& subject : enrolled) {
    EXPECT_EQ(s->Select({"", subject}).backend, "jail") << subject;
  }
}

TEST_F(SelectorTest, KillSwitchSendsEveryoneToTheBaseline) {
  auto cfg = RolloutTo("100");
  cfg["AGENTBOX_ROLLOUT_KILL_SWITCH"] = "true";
  auto s = Make(cfg);
  for (int i = 0; i < 50; ++i) {
    Decision d = s->Select({"", "user-" + std::to_string(i)});
    EXPECT_EQ(d.backend, "docker");
    EXPECT_EQ(d.reason, "DISABLED");
  }
  // An unreadable kill switch counts as on, and says why.
  cfg["AGENTBOX_ROLLOUT_KILL_SWITCH"] = "maybe";
  Decision d = Make(cfg)->Select({"", "user-1"});
  EXPECT_EQ(d.backend, "docker");
  EXPECT_EQ(d.error_code, "PARSE_ERROR");
}

TEST_F(SelectorTest, AnUnusableCandidateFallsBackToTheBaseline) {
  jail_.usable = false;
  auto s = Make(RolloutTo("100"));
  Decision d = s->Select({"", "user-1"});
  EXPECT_EQ(d.backend, "docker");
  EXPECT_EQ(d.reason, "FALLBACK");
  EXPECT_EQ(d.error_code, "PROVIDER_NOT_READY");
  EXPECT_EQ(d.requested_backend, "jail");
  EXPECT_EQ(d.fallback_chain, (std::vector<std::string>{"jail", "docker"}));
}

TEST_F(SelectorTest, WithoutASubjectNobodyIsEnrolledUnlessRandomIsAsked) {
  auto cfg = RolloutTo("50");
  Decision d = Make(cfg)->Select({"", ""});
  EXPECT_EQ(d.backend, "docker");
  EXPECT_EQ(d.reason, "DEFAULT");
  EXPECT_EQ(d.error_code, "TARGETING_KEY_MISSING");
  EXPECT_FALSE(d.bucket);
  cfg["AGENTBOX_ROLLOUT_UNKEYED"] = "random";
  auto s = Make(cfg);
  int jail = 0;
  for (int i = 0; i < 400; ++i) {
    d = s->Select({"", ""});
    EXPECT_EQ(d.reason, "SPLIT");
    jail += d.backend == "jail";
  }
  EXPECT_NEAR(jail, 200, 60);
}

TEST_F(SelectorTest, AllOrNothingNeedsNoBucketAndABadPercentageEnrolsNobody) {
  Decision all = Make(RolloutTo("100"))->Select({"", "u"});
  EXPECT_EQ(all.backend, "jail");
  EXPECT_EQ(all.reason, "DEFAULT");
  EXPECT_FALSE(all.bucket);
  Decision none = Make(RolloutTo("0"))->Select({"", "u"});
  EXPECT_EQ(none.backend, "docker");
  EXPECT_EQ(none.reason, "DEFAULT");
  for (const char* bad : {"abc", "150", "-5"}) {
    Decision d = Make(RolloutTo(bad))->Select({"", "u"});
    EXPECT_EQ(d.backend, "docker") << bad;
    EXPECT_EQ(d.reason, "FALLBACK") << bad;
    EXPECT_EQ(d.error_code, "PARSE_ERROR") << bad;
    EXPECT_NE(d.detail.find("AGENTBOX_ROLLOUT_PERCENTAGE"), std::string::npos) << d.detail;
  }
  Decision unknown = Make({{"AGENTBOX_ROLLOUT_BACKEND", "podman"}, {"SANDBOX_BACKEND", "docker"}})
                         ->Select({"", "u"});
  EXPECT_EQ(unknown.backend, "docker");
  EXPECT_EQ(unknown.error_code, "PARSE_ERROR");
}

TEST_F(SelectorTest, APinOverridesTheRollout) {
  Decision d = Make(RolloutTo("100"))->Select({"docker", "user-1"});
  EXPECT_EQ(d.backend, "docker");
  EXPECT_EQ(d.reason, "TARGETING_MATCH");
}

TEST_F(SelectorTest, TheSeedsCloudRunFlagRollsOutByPercentage) {
  auto s = Make({{"USE_CLOUDRUN_JOBS_SANDBOX", "true"},
                 {"SANDBOX_GCP_PROJECT", "proj"},
                 {"CLOUDRUN_JOBS_ROLLOUT_PERCENTAGE", "50"}});
  bool saw_enrolled = false;
  bool saw_not = false;
  for (int i = 0; i < 100; ++i) {
    Decision d = s->Select({"", "user-" + std::to_string(i)});
    ASSERT_TRUE(d.bucket);
    EXPECT_EQ(d.rule_id, "rollout:USE_CLOUDRUN_JOBS_SANDBOX");
    if (*d.bucket <= 50) {
      // cloudrun is not in this build: enrolled subjects fall back to the baseline, and say so.
      saw_enrolled = true;
      EXPECT_EQ(d.requested_backend, "cloudrun");
      EXPECT_EQ(d.reason, "FALLBACK");
      EXPECT_EQ(d.fallback_chain[1], "docker");
    } else {
      saw_not = true;
      EXPECT_EQ(d.requested_backend, "docker");
      EXPECT_EQ(d.reason, "SPLIT");
    }
    EXPECT_EQ(d.backend, "docker");
  }
  EXPECT_TRUE(saw_enrolled && saw_not);
  Json info = s->InfoJson(s->Preview());
  EXPECT_EQ(info["settings"]["rollout"]["percentage"], 50);
  EXPECT_EQ(info["settings"]["rollout"]["percentage_key"], "CLOUDRUN_JOBS_ROLLOUT_PERCENTAGE");
  EXPECT_EQ(info["feature_flag_enabled"], true);
}

TEST_F(SelectorTest, AnOpenBreakerRollsEnrolledSubjectsBackAndShowsInInfoAndMetrics) {
  auto cfg = RolloutTo("100");
  cfg["AGENTBOX_BREAKER_WINDOW_MS"] = "1000";
  cfg["AGENTBOX_BREAKER_MIN_SAMPLES"] = "5";
  cfg["AGENTBOX_BREAKER_WINDOWS"] = "1";
  cfg["AGENTBOX_BREAKER_COOLDOWN_MS"] = "60000";
  auto s = Make(cfg);
  auto now = std::chrono::steady_clock::time_point(std::chrono::hours(1));
  s->breaker().SetTimeSource([&] { return now; });
  EXPECT_EQ(s->Select({"", "u"}).backend, "jail");
  for (int i = 0; i < 10; ++i) {
    s->Record("jail", false);  // every create on the candidate fails
  }
  now += std::chrono::milliseconds(1000);
  Decision d = s->Select({"", "u"});
  EXPECT_EQ(d.backend, "docker");
  EXPECT_EQ(d.reason, "AUTO_ROLLBACK");
  EXPECT_EQ(d.requested_backend, "docker");
  EXPECT_NE(d.detail.find("automatic rollback of jail: error rate 100% (10/10)"), std::string::npos)
      << d.detail;
  EXPECT_EQ(s->Select({"jail", "u"}).backend, "jail");  // a pin is still honoured
  Json info = s->InfoJson(s->Preview());
  EXPECT_EQ(info["reason"], "AUTO_ROLLBACK");
  EXPECT_EQ(info["breaker"]["state"], "open");
  EXPECT_EQ(info["breaker"]["candidate"], "jail");
  const std::string text = metrics_.Render();
  EXPECT_NE(text.find("agentbox_breaker_state{backend=\"jail\"} 1"), std::string::npos) << text;
  EXPECT_NE(text.find("reason=\"AUTO_ROLLBACK\""), std::string::npos);
  bool logged = false;
  for (const auto& line : Logged()) {
    logged |= line.starts_with("breaker.state backend=jail state=open");
  }
  EXPECT_TRUE(logged);
  // The trip survives a reload of the same rollout.
  s->Reload(Settings::FromConfig(Config::FromMap(cfg), kKnown));
  EXPECT_EQ(s->Select({"", "u"}).reason, "AUTO_ROLLBACK");
}

}  // namespace
}  // namespace agentbox::selector
