// agentboxd on jail with OCI images, end to end (issue 11 §1, docs/images.md): a sandbox from the
// local engine's agentbox/base:latest and from a `docker save` archive of it, the errors as HTTP
// statuses, and the image cache in /metrics. The engine cases skip with the reason when no
// dockerd answers or agentbox/base is missing.
#include <curl/curl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

namespace {

using Json = nlohmann::json;
using namespace std::chrono_literals;

size_t Collect(char* p, size_t s, size_t n, void* out) {
  static_cast<std::string*>(out)->append(p, s * n);
  return s * n;
}

class AgentboxdImages : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/agentbox-images-e2e-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    socket_ = dir_ + "/d.sock";
    pid_ = fork();
    if (pid_ == 0) {
      for (const char* k : {"SANDBOX_BACKEND", "AGENTBOX_FALLBACK_CHAIN",
                            "AGENTBOX_DEFAULT_DISK_BYTES", "AGENTBOX_MIN_FREE_BYTES",
                            "AGENTBOX_IMAGE_CACHE_BYTES"}) {
        unsetenv(k);
      }
      setenv("AGENTBOX_WARM_POOL_SIZE", "0", 1);  // pooled sandboxes would outlive the test
      unsetenv("AGENTBOX_WARM_POOL_SIZE_JAIL");
      unsetenv("AGENTBOX_WARM_POOL_SIZE_DOCKER");
      setenv("AGENTBOX_FALLBACK_CHAIN", "jail", 1);
      FILE* f = freopen((dir_ + "/agentboxd.log").c_str(), "a", stderr);
      (void)f;
      execl(AGENTBOXD_BIN, AGENTBOXD_BIN, "--env-file", "/dev/null", "--backend",
            "jail", "--listen", ("unix:" + socket_).c_str(), "--state-dir",
            (dir_ + "/state").c_str(), nullptr);
      _exit(127);
    }
    for (auto deadline = std::chrono::steady_clock::now() + 20s;
         std::chrono::steady_clock::now() < deadline; std::this_thread::sleep_for(20ms)) {
      if (Call("GET", "/healthz").first == 200) {
        auto [status, body] = Call("GET", "/readyz");
        const Json j = Json::parse(body, nullptr, false);
        if (status != 200 || !j.is_object() || j["data"]["backend"] != "jail") {
          GTEST_SKIP() << "SKIPPED: backend " << "jail" << " is not usable here: " << body;
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
    CURL* c = curl_easy_init();
    std::string out;
    long status = 0;
    const std::string url = "http://agentboxd" + path;
    curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, socket_.c_str());
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
    curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
    if (method != "GET") {
      curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.c_str());
      curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    }
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &out);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
    if (curl_easy_perform(c) == CURLE_OK) {
      curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    }
    curl_slist_free_all(headers);
    curl_easy_cleanup(c);
    return {status, out};
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
