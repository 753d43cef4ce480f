// agentboxd on jail and docker, end to end (issue 16): limits.disk_bytes in the create, ENOSPC
// inside at the limit, usage in GET /v1/sandboxes/{id} and in /metrics. Needs root (loop
// devices); the docker case also a Docker engine with agentbox/base. Skips with the reason.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "fakes/unix_call.h"

namespace {

using Json = nlohmann::json;
using namespace std::chrono_literals;

constexpr uint64_t kLimit = 64ull << 20;


class AgentboxdDisk : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) {
      GTEST_SKIP() << "SKIPPED: disk limits need root (loop devices)";
    }
    char tmpl[] = "/tmp/agentbox-disk-e2e-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    socket_ = dir_ + "/d.sock";
    pid_ = fork();
    if (pid_ == 0) {
      for (const char* k : {"SANDBOX_BACKEND", "AGENTBOX_FALLBACK_CHAIN",
                            "AGENTBOX_DEFAULT_DISK_BYTES", "AGENTBOX_MIN_FREE_BYTES"}) {
        unsetenv(k);
      }
      setenv("AGENTBOX_WARM_POOL_SIZE", "0", 1);  // pooled sandboxes would outlive the test
      unsetenv("AGENTBOX_WARM_POOL_SIZE_JAIL");
      unsetenv("AGENTBOX_WARM_POOL_SIZE_DOCKER");
      setenv("AGENTBOX_FALLBACK_CHAIN", GetParam().c_str(), 1);
      FILE* f = freopen((dir_ + "/agentboxd.log").c_str(), "a", stderr);
      (void)f;
      execl(AGENTBOXD_BIN, AGENTBOXD_BIN, "--env-file", "/dev/null", "--backend",
            GetParam().c_str(), "--listen", ("unix:" + socket_).c_str(), "--state-dir",
            (dir_ + "/state").c_str(), nullptr);
      _exit(127);
    }
    for (auto deadline = std::chrono::steady_clock::now() + 20s;
         std::chrono::steady_clock::now() < deadline; std::this_thread::sleep_for(20ms)) {
      if (Call("GET", "/healthz").first == 200) {
        auto [status, body] = Call("GET", "/readyz");
        const Json j = Json::parse(body, nullptr, false);
        if (status != 200 || !j.is_object() || j["data"]["backend"] != GetParam()) {
          GTEST_SKIP() << "SKIPPED: backend " << GetParam() << " is not usable here: " << body;
        }
        return;
      }
    }
    FAIL() << "agentboxd did not start";
  }

  void TearDown() override {
    if (pid_ > 0) {
      for (const auto& id : ids_) {
        Call("DELETE", "/v1/sandboxes/" + id);
      }
      kill(pid_, SIGTERM);
      waitpid(pid_, nullptr, 0);
    }
    if (!dir_.empty()) {
      int rc = system(("rm -rf '" + dir_ + "'").c_str());
      (void)rc;
    }
  }

  // One request over the unix socket; status 0 when no answer came.
  std::pair<long, std::string> Call(const std::string& method, const std::string& path,
                                    const std::string& body = "") {
    return agentbox::test_support::UnixCall(socket_, method, path, body, 120L);
  }

  Json Exec(const std::string& id, const std::string& command) {
    auto [status, body] = Call("POST", "/v1/sandboxes/" + id + "/api/v1/shell/exec",
                               Json{{"id", "s"}, {"command", command}}.dump());
    EXPECT_EQ(status, 200) << body;
    const Json j = Json::parse(body, nullptr, false);
    return j.is_object() ? j["data"] : Json();
  }

  pid_t pid_ = -1;
  std::string dir_, socket_;
  std::vector<std::string> ids_;
};

TEST_P(AgentboxdDisk, LimitEnforcedAndUsageVisible) {
  auto [status, body] =
      Call("POST", "/v1/sandboxes", Json{{"limits", {{"disk_bytes", kLimit}}}}.dump());
  ASSERT_EQ(status, 201) << body;
  const Json sb = Json::parse(body)["data"];
  const std::string id = sb["id"];
  ids_.push_back(id);
  EXPECT_EQ(sb["backend"], GetParam());
  EXPECT_EQ(sb["limits"]["disk_bytes"], kLimit);

  Json fill = Exec(id, "dd if=/dev/zero of=/workspace/big bs=1M count=100 conv=fsync 2>&1");
  EXPECT_NE(fill["returncode"], 0) << fill;
  EXPECT_NE(fill["output"].get<std::string>().find("No space left on device"), std::string::npos)
      << fill;

  auto [gs, gbody] = Call("GET", "/v1/sandboxes/" + id);
  ASSERT_EQ(gs, 200) << gbody;
  const Json disk = Json::parse(gbody)["data"]["disk"];
  EXPECT_EQ(disk["limit_bytes"], kLimit);
  ASSERT_TRUE(disk["used_bytes"].is_number()) << disk;
  EXPECT_GT(disk["used_bytes"].get<uint64_t>(), kLimit * 8 / 10);

  auto [ms, metrics] = Call("GET", "/metrics");
  ASSERT_EQ(ms, 200);
  const std::string key = "agentbox_sandbox_disk_bytes{backend=\"" + GetParam() + "\"} ";
  const size_t at = metrics.find(key);
  ASSERT_NE(at, std::string::npos) << metrics;
  EXPECT_GT(std::stod(metrics.substr(at + key.size())), kLimit * 8.0 / 10) << metrics;

  // A default-sized sandbox still has its whole disk.
  auto [s2, b2] = Call("POST", "/v1/sandboxes", "{}");
  ASSERT_EQ(s2, 201) << b2;
  const std::string other = Json::parse(b2)["data"]["id"];
  ids_.push_back(other);
  EXPECT_EQ(Json::parse(b2)["data"]["disk"]["limit_bytes"], 10ull << 30);
  Json ok = Exec(other, "dd if=/dev/zero of=/workspace/f bs=1M count=8 conv=fsync 2>&1");
  EXPECT_EQ(ok["returncode"], 0) << ok;
}

INSTANTIATE_TEST_SUITE_P(Backends, AgentboxdDisk, ::testing::Values("jail", "docker"),
                         [](const auto& p) { return p.param; });

}  // namespace
