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

#include "fakes/agentboxd_process.h"

namespace {

using Json = nlohmann::json;
using namespace std::chrono_literals;

constexpr uint64_t kLimit = 64ull << 20;


class AgentboxdDisk
    : public agentbox::test_support::AgentboxdProcessTest<::testing::TestWithParam<std::string>> {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) {
      GTEST_SKIP() << "SKIPPED: disk limits need root (loop devices)";
    }
    StartAgentboxd(GetParam(), "agentbox-disk-e2e");
  }
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
