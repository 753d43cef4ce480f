#pragma once

// The agentboxd binary as a child process serving one backend, for the end-to-end tests that run
// real sandboxes (agentboxd_disk_test, agentboxd_images_test): a state directory of its own, the
// environment cleared of what would change the backend or leave pooled sandboxes behind, requests
// over its unix socket, and the sandboxes a test created destroyed at the end. Header-only: those
// tests link libcurl, not the fakes library.

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "fakes/unix_call.h"

namespace agentbox::test_support {

// `Base`: ::testing::Test or ::testing::TestWithParam<...>.
template <class Base>
class AgentboxdProcessTest : public Base {
 protected:
  using Json = nlohmann::json;

  // Starts agentboxd with `backend` as its only backend (AGENTBOX_FALLBACK_CHAIN) in a new
  // directory /tmp/<dir_prefix>-XXXXXX, with SANDBOX_BACKEND, AGENTBOX_FALLBACK_CHAIN,
  // AGENTBOX_DEFAULT_DISK_BYTES, AGENTBOX_MIN_FREE_BYTES and `unset` removed from its environment
  // and no warm pool. Fails the test when it does not answer within 20 s; skips it when /readyz
  // says the backend is not usable here. Call it last in SetUp.
  void StartAgentboxd(const std::string& backend, const std::string& dir_prefix,
                      std::initializer_list<const char*> unset = {}) {
    std::string tmpl = "/tmp/" + dir_prefix + "-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    socket_ = dir_ + "/d.sock";
    pid_ = fork();
    if (pid_ == 0) {
      for (const char* k : {"SANDBOX_BACKEND", "AGENTBOX_FALLBACK_CHAIN",
                            "AGENTBOX_DEFAULT_DISK_BYTES", "AGENTBOX_MIN_FREE_BYTES"}) {
        unsetenv(k);
      }
      for (const char* k : unset) {
        unsetenv(k);
      }
      setenv("AGENTBOX_WARM_POOL_SIZE", "0", 1);  // pooled sandboxes would outlive the test
      unsetenv("AGENTBOX_WARM_POOL_SIZE_JAIL");
      unsetenv("AGENTBOX_WARM_POOL_SIZE_DOCKER");
      setenv("AGENTBOX_FALLBACK_CHAIN", backend.c_str(), 1);
      FILE* f = freopen((dir_ + "/agentboxd.log").c_str(), "a", stderr);
      (void)f;
      execl(AGENTBOXD_BIN, AGENTBOXD_BIN, "--env-file", "/dev/null", "--backend", backend.c_str(),
            "--listen", ("unix:" + socket_).c_str(), "--state-dir", (dir_ + "/state").c_str(),
            nullptr);
      _exit(127);
    }
    for (auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
         std::chrono::steady_clock::now() < deadline;
         std::this_thread::sleep_for(std::chrono::milliseconds(20))) {
      if (Call("GET", "/healthz").first == 200) {
        auto [status, body] = Call("GET", "/readyz");
        const Json j = Json::parse(body, nullptr, false);
        if (status != 200 || !j.is_object() || j["data"]["backend"] != backend) {
          GTEST_SKIP() << "SKIPPED: backend " << backend << " is not usable here: " << body;
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
    return UnixCall(socket_, method, path, body, 120L);
  }

  // shell/exec of `command` in session "s" of sandbox `id` (expects 200); its data.
  Json Exec(const std::string& id, const std::string& command) {
    auto [status, body] = Call("POST", "/v1/sandboxes/" + id + "/api/v1/shell/exec",
                               Json{{"id", "s"}, {"command", command}}.dump());
    EXPECT_EQ(status, 200) << body;
    const Json j = Json::parse(body, nullptr, false);
    return j.is_object() ? j["data"] : Json();
  }

  pid_t pid_ = -1;
  std::string dir_, socket_;
  std::vector<std::string> ids_;  // destroyed at TearDown
};

}  // namespace agentbox::test_support
