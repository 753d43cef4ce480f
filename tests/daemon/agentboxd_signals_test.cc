// The agentboxd binary and its signals: SIGHUP switches where new sandboxes go when the
// configuration file changed, without a restart (a file that disappears or breaks keeps the last
// good settings and is counted); SIGTERM lets in-flight requests finish, exits cleanly and leaves
// every sandbox running for the next daemon to find.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "fakes/unix_call.h"

namespace {

using Json = nlohmann::json;
using namespace std::chrono_literals;


class AgentboxdSignals : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/agentbox-signals-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    socket_ = dir_ + "/d.sock";
    config_ = dir_ + "/agentboxd.conf";
    WriteConfig("SANDBOX_BACKEND=jail\nAGENTBOX_FALLBACK_CHAIN=jail\n");
    Start();
  }

  // Starts agentboxd on the test's socket, configuration and state directory; waits until it
  // answers.
  void Start() {
    pid_ = fork();
    if (pid_ == 0) {
      for (const char* k : {"SANDBOX_BACKEND", "AGENTBOX_FALLBACK_CHAIN",
                            "USE_CLOUDRUN_JOBS_SANDBOX", "AGENTBOX_PROBE_TTL_MS"}) {
        unsetenv(k);
      }
      // No warm pool: its sandboxes would outlive this daemon.
      setenv("AGENTBOX_WARM_POOL_SIZE", "0", 1);
      unsetenv("AGENTBOX_WARM_POOL_SIZE_JAIL");
      FILE* f = freopen((dir_ + "/agentboxd.log").c_str(), "a", stderr);
      (void)f;
      execl(AGENTBOXD_BIN, AGENTBOXD_BIN, "--config", config_.c_str(), "--env-file", "/dev/null",
            "--listen", ("unix:" + socket_).c_str(), "--state-dir", (dir_ + "/state").c_str(),
            nullptr);
      _exit(127);
    }
    for (auto deadline = std::chrono::steady_clock::now() + 20s;
         std::chrono::steady_clock::now() < deadline; std::this_thread::sleep_for(20ms)) {
      if (Get("/healthz").first == 200) {
        return;
      }
    }
    FAIL() << "agentboxd did not start";
  }

  void TearDown() override {
    if (pid_ > 0) {
      // Sandboxes outlive the daemon by design; a failed test must not leave any behind.
      auto [status, body] = Get("/v1/sandboxes");
      const Json list = Json::parse(body, nullptr, false);
      const Json sandboxes =
          list.is_object() ? list.value("data", Json::object()).value("sandboxes", Json::array())
                           : Json::array();
      if (status == 200) {
        for (const auto& sb : sandboxes) {
          Call("DELETE", "/v1/sandboxes/" + sb.value("id", std::string()), "");
        }
      }
      kill(pid_, SIGTERM);
      waitpid(pid_, nullptr, 0);
    }
    int rc = system(("rm -rf '" + dir_ + "'").c_str());
    (void)rc;
  }

  void WriteConfig(const std::string& text) {
    const std::string tmp = config_ + ".tmp";
    std::ofstream(tmp) << text;
    ASSERT_EQ(rename(tmp.c_str(), config_.c_str()), 0);
  }

  std::pair<long, std::string> Get(const std::string& path) { return Call("GET", path, ""); }

  // One request over the unix socket; status 0 when no answer came.
  std::pair<long, std::string> Call(const std::string& method, const std::string& path,
                                    const std::string& body) {
    return agentbox::test_support::UnixCall(socket_, method, path, body, 20L);
  }

  Json Info() {
    auto [status, body] = Get("/v1/info");
    EXPECT_EQ(status, 200) << body;
    return Json::parse(body, nullptr, false)["data"];
  }

  // Sends SIGHUP and waits until /v1/info shows a config_version other than `before`, or the
  // timeout passes (when the reload is expected to be refused).
  Json Reload(const std::string& before, std::chrono::milliseconds wait = 5s) {
    kill(pid_, SIGHUP);
    Json info;
    for (auto deadline = std::chrono::steady_clock::now() + wait;
         std::chrono::steady_clock::now() < deadline; std::this_thread::sleep_for(20ms)) {
      info = Info();
      if (info["config_version"] != before) {
        break;
      }
    }
    return info;
  }

  // agentbox_config_reload_errors_total, or -1 when absent.
  int ReloadErrors() {
    const std::string metrics = Get("/metrics").second;
    const std::string key = "\nagentbox_config_reload_errors_total ";  // not the HELP line
    const size_t at = metrics.find(key);
    return at == std::string::npos ? -1 : std::atoi(metrics.c_str() + at + key.size());
  }

  // Polls /v1/info until `done` holds or `wait` passes; returns the last answer.
  Json InfoWhen(const std::function<bool(const Json&)>& done, std::chrono::milliseconds wait) {
    Json info;
    for (auto deadline = std::chrono::steady_clock::now() + wait;
         std::chrono::steady_clock::now() < deadline; std::this_thread::sleep_for(20ms)) {
      info = Info();
      if (done(info)) {
        break;
      }
    }
    return info;
  }

  std::string dir_, socket_, config_;
  pid_t pid_ = -1;
};

TEST_F(AgentboxdSignals, SighupAppliesAChangedSettingWithoutARestart) {
  Json info = Info();
  EXPECT_EQ(info["requested_backend"], "jail");
  const std::string v1 = info["config_version"];
  EXPECT_TRUE(v1.starts_with("v1-")) << v1;

  WriteConfig("SANDBOX_BACKEND=docker\nAGENTBOX_FALLBACK_CHAIN=jail\n");
  info = Reload(v1);
  EXPECT_EQ(info["requested_backend"], "docker");
  EXPECT_EQ(info["settings"]["SANDBOX_BACKEND"]["source"], "file:" + config_);
  const std::string v2 = info["config_version"];
  EXPECT_TRUE(v2.starts_with("v2-")) << v2;
  auto [status, metrics] = Get("/metrics");
  EXPECT_NE(metrics.find("agentbox_config_info{version=\"" + v2 + "\"} 1"), std::string::npos)
      << metrics;

  // A deleted file keeps the last good settings and is counted, never reset to defaults.
  ASSERT_EQ(unlink(config_.c_str()), 0);
  info = Reload(v2, 1500ms);
  EXPECT_EQ(info["config_version"], v2);
  EXPECT_EQ(info["requested_backend"], "docker");
  // So does a malformed one.
  WriteConfig("this line has no equals sign\n");
  info = Reload(v2, 1500ms);
  EXPECT_EQ(info["config_version"], v2);
  // Counted once per failed reload: each change is seen by the file watch and by the SIGHUP.
  EXPECT_GE(ReloadErrors(), 2);
  std::ifstream log(dir_ + "/agentboxd.log");
  std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("config.file_deleted"), std::string::npos) << text;
  EXPECT_NE(text.find("config.reload_failed"), std::string::npos) << text;
  EXPECT_EQ(Get("/healthz").first, 200);
}

TEST_F(AgentboxdSignals, AChangedConfigurationFileAppliesWithoutASignal) {
  const std::string v1 = Info()["config_version"];
  // Replaced by rename, as editors and configuration tools do.
  WriteConfig("SANDBOX_BACKEND=docker\nAGENTBOX_FALLBACK_CHAIN=jail\n");
  Json info = InfoWhen([](const Json& i) { return i["requested_backend"] == "docker"; }, 5s);
  EXPECT_EQ(info["requested_backend"], "docker");
  const std::string v2 = info["config_version"];
  EXPECT_NE(v2, v1);
  // The same settings again: nothing changes, not even the version.
  WriteConfig("SANDBOX_BACKEND=docker\nAGENTBOX_FALLBACK_CHAIN=jail\n");
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(Info()["config_version"], v2);
  // Deleted: the last good settings stay, and the failure is counted.
  ASSERT_EQ(unlink(config_.c_str()), 0);
  for (auto deadline = std::chrono::steady_clock::now() + 5s;
       ReloadErrors() < 1 && std::chrono::steady_clock::now() < deadline;
       std::this_thread::sleep_for(20ms)) {
  }
  EXPECT_EQ(ReloadErrors(), 1);
  info = Info();
  EXPECT_EQ(info["config_version"], v2);
  EXPECT_EQ(info["requested_backend"], "docker");
  // Back again, with a new value: applied.
  WriteConfig("SANDBOX_BACKEND=jail\nAGENTBOX_FALLBACK_CHAIN=jail\n");
  info = InfoWhen([](const Json& i) { return i["requested_backend"] == "jail"; }, 5s);
  EXPECT_EQ(info["requested_backend"], "jail");
}

TEST_F(AgentboxdSignals, SigtermFinishesInFlightRequestsAndLeavesSandboxesRunning) {
  auto [created, body] = Call("POST", "/v1/sandboxes", "{}");
  ASSERT_EQ(created, 201) << body;
  const std::string id = Json::parse(body)["data"]["id"];
  const std::string exec = "/v1/sandboxes/" + id + "/api/v1/shell/exec";
  ASSERT_EQ(Call("POST", exec, R"({"id":"s","command":"cd /tmp && export KEPT=yes"})").first, 200);

  // A command that is still running when SIGTERM arrives gets its answer.
  std::pair<long, std::string> slow;
  std::thread client([&] {
    slow =
        Call("POST", exec, R"({"id":"s","command":"sleep 1.5; echo finished","wait_seconds":15})");
  });
  std::this_thread::sleep_for(500ms);  // the request is in flight (the command sleeps 1.5 s)
  ASSERT_EQ(kill(pid_, SIGTERM), 0);
  client.join();
  EXPECT_EQ(slow.first, 200) << slow.second;
  EXPECT_NE(slow.second.find("finished"), std::string::npos) << slow.second;
  int status = -1;
  ASSERT_EQ(waitpid(pid_, &status, 0), pid_);
  pid_ = -1;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_EQ(Get("/healthz").first, 0);  // nothing answers any more

  // The next daemon finds the sandbox running, with its session's state.
  Start();
  auto [got, info] = Get("/v1/sandboxes/" + id);
  ASSERT_EQ(got, 200) << info;
  EXPECT_EQ(Json::parse(info)["data"]["state"], "running") << info;
  auto [ran, out] = Call("POST", exec, R"({"id":"s","command":"echo $PWD $KEPT"})");
  EXPECT_EQ(ran, 200) << out;
  EXPECT_NE(out.find("/tmp yes"), std::string::npos) << out;
  EXPECT_EQ(Call("DELETE", "/v1/sandboxes/" + id, "").first, 200);
}

}  // namespace
