// agentboxd on jail with OCI images, end to end (issue 11 §1, docs/images.md): a sandbox from the
// local engine's agentbox/base:latest and from a `docker save` archive of it, the errors as HTTP
// statuses, and the image cache in /metrics. The engine cases skip with the reason when no
// dockerd answers or agentbox/base is missing.
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

class AgentboxdImages : public agentbox::test_support::AgentboxdProcessTest<::testing::Test> {
 protected:
  void SetUp() override {
    StartAgentboxd("jail", "agentbox-images-e2e", {"AGENTBOX_IMAGE_CACHE_BYTES"});
  }

  // The value of one series of /metrics (-1 when absent).
  double Metric(const std::string& series) {
    const std::string text = Call("GET", "/metrics").second;
    const size_t at = text.find("\n" + series + " ");
    return at == std::string::npos ? -1 : std::atof(text.c_str() + at + series.size() + 2);
  }

  bool EngineHasBase() {
    return std::system("docker image inspect agentbox/base:latest >/dev/null 2>&1") == 0;
  }
};

TEST_F(AgentboxdImages, ErrorsAreClearStatuses) {
  auto [unknown, ubody] =
      Call("POST", "/v1/sandboxes", Json{{"image", "agentbox/never-built:nope"}}.dump());
  if (unknown != 503) {  // 503: no engine to ask
    EXPECT_EQ(unknown, 404) << ubody;
    EXPECT_NE(ubody.find("agentbox/never-built:nope"), std::string::npos) << ubody;
  }
  EXPECT_EQ(Call("POST", "/v1/sandboxes", Json{{"image", "./relative.tar"}}.dump()).first, 400);
  EXPECT_EQ(Call("POST", "/v1/sandboxes", Json{{"image", dir_ + "/missing.tar"}}.dump()).first,
            404);
  // A docker save archive whose manifest is not JSON.
  const std::string bad = dir_ + "/bad.tar";
  ASSERT_EQ(std::system(("cd " + dir_ + " && echo '{' > manifest.json && tar -cf " + bad +
                         " manifest.json")
                            .c_str()),
            0);
  auto [corrupt, cbody] = Call("POST", "/v1/sandboxes", Json{{"image", bad}}.dump());
  EXPECT_EQ(corrupt, 400) << cbody;
  EXPECT_NE(cbody.find("corrupt image"), std::string::npos) << cbody;
}

TEST_F(AgentboxdImages, EngineImageAndDockerSaveArchive) {
  if (!EngineHasBase()) {
    GTEST_SKIP() << "SKIPPED: no Docker engine with agentbox/base:latest "
                    "(scripts/start-dockerd.sh, scripts/build-base-image.sh)";
  }
  auto [status, body] =
      Call("POST", "/v1/sandboxes", Json{{"image", "agentbox/base:latest"}}.dump());
  ASSERT_EQ(status, 201) << body;
  const std::string id = Json::parse(body)["data"]["id"];
  ids_.push_back(id);
  const Json r = Exec(id, "grep -c Debian /etc/os-release >/dev/null && echo ok && pwd");
  EXPECT_EQ(r["output"], "ok\n/workspace\n") << r;
  EXPECT_GE(Metric("agentbox_image_cache_misses_total{backend=\"jail\"}"), 1);
  EXPECT_GE(Metric("agentbox_image_cache_layers{backend=\"jail\"}"), 1);
  EXPECT_GE(Metric("agentbox_image_cache_bytes{backend=\"jail\"}"), 1 << 20);
  EXPECT_GE(Metric("agentbox_image_cache_leased_layers{backend=\"jail\"}"), 1);
  EXPECT_EQ(Metric("agentbox_image_cache_engine_exports_total{backend=\"jail\"}"), 1);

  const std::string saved = dir_ + "/base.tar";
  ASSERT_EQ(std::system(("docker save -o " + saved + " agentbox/base:latest").c_str()), 0);
  const double misses = Metric("agentbox_image_cache_misses_total{backend=\"jail\"}");
  auto [s2, b2] = Call("POST", "/v1/sandboxes", Json{{"image", saved}}.dump());
  ASSERT_EQ(s2, 201) << b2;
  const std::string id2 = Json::parse(b2)["data"]["id"];
  ids_.push_back(id2);
  EXPECT_EQ(Exec(id2, "echo from-archive")["output"], "from-archive\n");
  EXPECT_EQ(Metric("agentbox_image_cache_misses_total{backend=\"jail\"}"), misses);
  for (const auto& i : ids_) {
    EXPECT_EQ(Call("DELETE", "/v1/sandboxes/" + i).first, 200);
  }
  ids_.clear();
  EXPECT_EQ(Metric("agentbox_image_cache_leased_layers{backend=\"jail\"}"), 0);
}

}  // namespace
