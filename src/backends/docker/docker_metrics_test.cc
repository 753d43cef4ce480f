// DockerBackend::Metrics: the engine's stats answer translated (cgroup v1 and v2 shapes), and
// a real container against the real engine (skips with the reason without one).
#include "backends/docker/docker_metrics.h"

#include <curl/curl.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <memory>
#include <string>

#include "backends/docker/docker_backend.h"
#include "common/fs_util.h"

namespace agentbox::docker {
namespace {

TEST(DockerMetrics, StatsOfACgroupV2Engine) {
  // 0.5 s of CPU over a 1 s window on a 4-CPU host (system usage grows 4 s of CPU per second).
  const Json stats = Json::parse(R"({
    "cpu_stats": {"cpu_usage": {"total_usage": 3500000000}, "system_cpu_usage": 104000000000,
                  "online_cpus": 4},
    "precpu_stats": {"cpu_usage": {"total_usage": 3000000000}, "system_cpu_usage": 100000000000,
                     "online_cpus": 4},
    "memory_stats": {"usage": 300000000, "limit": 1073741824,
                     "stats": {"file": 120000000, "inactive_file": 100000000, "anon": 150000000}}
  })");
  auto m = MetricsFromStats(stats, std::nullopt);
  ASSERT_TRUE(m) << m.error().message;
  EXPECT_EQ(m->cpu_count, 4);
  EXPECT_NEAR(m->window_s, 1.0, 1e-9);
  EXPECT_NEAR(m->cpu_used_pct, 12.5, 1e-9);  // half a core of four
  EXPECT_EQ(m->mem_used_bytes, 200000000u);
  EXPECT_EQ(m->mem_cache_bytes, 120000000u);
  EXPECT_EQ(m->mem_total_bytes, 1073741824u);
  // With a limit of one core, the same half core is 50%.
  EXPECT_NEAR(MetricsFromStats(stats, 1.0)->cpu_used_pct, 50.0, 1e-9);
}

TEST(DockerMetrics, StatsOfACgroupV1Engine) {
  const Json stats = Json::parse(R"({
    "cpu_stats": {"cpu_usage": {"total_usage": 2000000000, "percpu_usage": [1, 1]},
                  "system_cpu_usage": 52000000000},
    "precpu_stats": {"cpu_usage": {"total_usage": 0}, "system_cpu_usage": 50000000000},
    "memory_stats": {"usage": 5000, "limit": 8000,
                     "stats": {"cache": 3000, "total_inactive_file": 1000}}
  })");
  auto m = MetricsFromStats(stats, std::nullopt);
  ASSERT_TRUE(m) << m.error().message;
  EXPECT_EQ(m->cpu_count, 2);            // percpu_usage's length
  EXPECT_NEAR(m->cpu_used_pct, 100, 1e-9);  // 2 s of CPU in 1 s on 2 CPUs
  EXPECT_EQ(m->mem_used_bytes, 4000u);
  EXPECT_EQ(m->mem_cache_bytes, 3000u);
}

TEST(DockerMetrics, AStoppedContainersZerosAreAnError) {
  const Json stats = Json::parse(
      R"({"cpu_stats": {"cpu_usage": {"total_usage": 0}}, "precpu_stats": {}, "memory_stats": {}})");
  auto m = MetricsFromStats(stats, std::nullopt);
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().code, ErrorCode::kBadGateway);
}

size_t Collect(char* p, size_t s, size_t n, void* out) {
  static_cast<std::string*>(out)->append(p, s * n);
  return s * n;
}

// Starts `command` in the background in the sandbox (guest process/start).
bool StartInBackground(const SandboxInfo& info, const std::string& command) {
  CURL* c = curl_easy_init();
  std::string out;
  const std::string sock = info.guest_endpoint.substr(5);
  const std::string payload = Json{{"session_id", "bg"}, {"command", command}}.dump();
  curl_slist* h = curl_slist_append(nullptr, ("X-Access-Token: " + info.guest_token).c_str());
  h = curl_slist_append(h, "Content-Type: application/json");
  curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, sock.c_str());
  curl_easy_setopt(c, CURLOPT_URL, "http://guest/api/v1/process/start");
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Collect);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &out);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
  long status = 0;
  const CURLcode rc = curl_easy_perform(c);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  return rc == CURLE_OK && status == 200;
}

TEST(DockerMetricsEngine, ABusyContainerShowsItsCpuMemoryAndDisk) {
  const char* host = std::getenv("DOCKER_HOST");
  auto sock = SocketFromDockerHost(host ? host : "");
  if (!sock) {
    GTEST_SKIP() << sock.error().message;
  }
  char tmpl[] = "/tmp/agentbox-docker-metrics-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  DockerBackendOptions opts;
  opts.state_dir = dir + "/docker";
  opts.socket_path = *sock;
  opts.guest_binary = AGENTBOX_GUEST_BINARY;
  auto backend = std::make_unique<DockerBackend>(opts);
  if (ProbeResult p = backend->Probe(); !p.usable) {
    GTEST_SKIP() << "no usable Docker engine (scripts/start-dockerd.sh): " << p.reason;
  }
  EXPECT_TRUE(backend->GetCapabilities().metrics);
  SandboxSpec spec;
  spec.limits.cpus = 1;
  spec.limits.memory_bytes = 256ull << 20;
  auto info = backend->Create("dk-metrics", spec);
  ASSERT_TRUE(info) << info.error().message;
  ASSERT_TRUE(StartInBackground(*info, "while :; do :; done"));
  // The most of a few readings: on a loaded machine the spinner gets only its share of the CPUs,
  // so a tenth of its core is asked.
  SandboxMetrics m;
  for (int i = 0; i < 10 && m.cpu_used_pct < 50; ++i) {
    auto r = backend->Metrics("dk-metrics");
    ASSERT_TRUE(r) << r.error().message;
    if (r->cpu_used_pct >= m.cpu_used_pct) {
      m = *r;
    }
  }
  EXPECT_GE(m.cpu_used_pct, 10) << "cpu_used_pct " << m.cpu_used_pct;
  EXPECT_EQ(m.cpu_count, 1);
  EXPECT_GT(m.window_s, 0.1);
  EXPECT_GT(m.mem_used_bytes, 0u);
  EXPECT_EQ(m.mem_total_bytes, 256ull << 20);
  EXPECT_GT(m.disk_total_bytes, 0u);
  EXPECT_FALSE(m.disk_source.empty());
  EXPECT_GT(m.timestamp, 0);
  EXPECT_EQ(backend->Metrics("dk-nope").error().code, ErrorCode::kNotFound);
  EXPECT_TRUE(backend->Destroy("dk-metrics"));
  (void)RemoveTree(dir);
}

}  // namespace
}  // namespace agentbox::docker
