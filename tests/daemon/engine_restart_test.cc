// Sessions survive a guest that comes back empty, and a sandbox whose engine stops answering is
// shown unreachable, fails calls fast with 503, and comes back by itself. The backend is the
// ProcessBackend test double playing an engine (tests/fakes/process_backend.h); the same flow
// against a real Docker engine stopped and started is tests/docker/engine_restart_test.sh.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "fakes/daemon_fixture.h"

namespace agentbox::daemon {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

class EngineRestartTest : public fakes::DaemonFixture {
 protected:
  void SetUp() override {
    // Before the daemon starts (the fixture's dir_ is made in SetUp: a path of our own here).
    char tmpl[] = "/tmp/agentbox-sessions-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    sessions_dir_ = tmpl;
    options_.sessions_dir = sessions_dir_;
    fakes::DaemonFixture::SetUp();
    backend_->PlayEngine();
  }
  void TearDown() override {
    fakes::DaemonFixture::TearDown();
    ASSERT_EQ(system(("rm -rf '" + sessions_dir_ + "'").c_str()), 0);
  }
  // Waits until `n` sessions were restored in all (counted by the daemon running now).
  void WaitForRestored(double n) {
    const auto until = Clock::now() + seconds(20);
    while (Clock::now() < until && Metric("agentbox_sessions_restored_total",
                                          {{"backend", "process"}, {"outcome", "ok"}}) < n) {
      std::this_thread::sleep_for(milliseconds(20));
    }
    ASSERT_GE(
        Metric("agentbox_sessions_restored_total", {{"backend", "process"}, {"outcome", "ok"}}), n);
  }
  std::string sessions_dir_;
  Json Sandbox(const std::string& id) { return Call("GET", "/v1/sandboxes/" + id).json["data"]; }
  double Metric(const std::string& name, const Labels& labels) {
    return api_->metrics().Value(name, labels);
  }
  // Polls the sandbox's state until it is `state` or 20 s pass; returns the last one seen.
  std::string WaitForState(const std::string& id, const std::string& state) {
    const auto until = Clock::now() + seconds(20);
    std::string seen;
    while (Clock::now() < until) {
      seen = Sandbox(id)["state"].get<std::string>();
      if (seen == state) {
        break;
      }
      std::this_thread::sleep_for(milliseconds(50));
    }
    return seen;
  }
  // A session with state in every part a snapshot keeps.
  void Prime(const std::string& id) {
    const std::string exec = "/v1/sandboxes/" + id + "/api/v1/shell/exec";
    ASSERT_EQ(Call("POST", exec,
                   R"({"id":"s","command":"mkdir -p sub && cd sub && export GREETING=hi && )"
                   R"(count=3 && f() { echo \"f:$1\"; } && alias ll='echo listed'"})")
                  .status,
              200);
    // The snapshot is fetched after the answer.
    WaitForSnapshots(1);
  }
  // Waits until `n` session snapshots have arrived in all.
  void WaitForSnapshots(double n) {
    const std::string series = "agentbox_session_snapshot_seconds_count{backend=\"process\"} ";
    const auto until = Clock::now() + seconds(5);
    while (Clock::now() < until) {
      const std::string text = api_->metrics().Render();
      const auto at = text.find(series);
      if (at != std::string::npos && std::stod(text.substr(at + series.size())) >= n) {
        return;
      }
      std::this_thread::sleep_for(milliseconds(10));
    }
    ADD_FAILURE() << "fewer than " << n << " snapshots arrived";
  }
  void ExpectRestored(const std::string& id) {
    auto r = Call("POST", "/v1/sandboxes/" + id + "/api/v1/shell/exec",
                  R"({"id":"s","command":"echo \"$PWD|$GREETING|$count|$(f x)\"; ll"})");
    ASSERT_EQ(r.status, 200) << r.body;
    const std::string out = r.json["data"]["output"].get<std::string>();
    EXPECT_NE(out.find("/sub|hi|3|f:x\nlisted\n"), std::string::npos) << out;
    // The first answer after the restore says it happened.
    EXPECT_NE(r.json["data"]["notice"].get<std::string>().find("was restored"), std::string::npos)
        << r.body;
  }
};

TEST_F(EngineRestartTest, RestartGuestRestoresSessionsAndReportsTheLostCommand) {
  const std::string id = CreateAs("");
  Prime(id);
  { std::ofstream(Workspace(id) + "/kept.txt") << "kept\n"; }
  // A command still running when the guest goes away is lost, and said to be.
  const std::string exec = "/v1/sandboxes/" + id + "/api/v1/shell/exec";
  ASSERT_EQ(Call("POST", exec, R"({"id":"busy","command":"sleep 300","wait_seconds":0.1})")
                .json["data"]["status"],
            "running");
  WaitForSnapshots(2);  // one of session s, one of busy
  auto r = Call("POST", "/v1/sandboxes/" + id + "/restart-guest");
  ASSERT_EQ(r.status, 200) << r.body;
  ExpectRestored(id);
  auto view = Call("POST", "/v1/sandboxes/" + id + "/api/v1/shell/view", R"({"id":"busy"})");
  ASSERT_EQ(view.status, 200) << view.body;
  EXPECT_NE(view.json["data"]["notice"].get<std::string>().find(
                "The command that was running (sleep 300) was lost"),
            std::string::npos)
      << view.body;
  auto list = Call("GET", "/v1/sandboxes/" + id + "/api/v1/shell/list");
  bool listed = false;
  for (const auto& row : list.json["data"]["sessions"]) {
    listed = listed || (row["session_id"] == "busy" && row.contains("notice"));
  }
  EXPECT_TRUE(listed) << list.body;
  EXPECT_EQ(Metric("agentbox_sessions_restored_total", {{"backend", "process"}, {"outcome", "ok"}}),
            2);
}

// The cost of keeping snapshots: one shell/state round trip per command, sent after the client
// has its answer. Prints the figures (docs/sessions.md quotes them).
TEST_F(EngineRestartTest, SnapshotCostPerExec) {
  const std::string id = CreateAs("");
  const std::string exec = "/v1/sandboxes/" + id + "/api/v1/shell/exec";
  ASSERT_EQ(Call("POST", exec, R"({"id":"s","command":"true"})").status, 200);
  constexpr int kRuns = 100;
  const auto t0 = Clock::now();
  for (int i = 0; i < kRuns; ++i) {
    ASSERT_EQ(Call("POST", exec, R"({"id":"s","command":"x=1"})").status, 200);
  }
  const double exec_ms =
      std::chrono::duration<double, std::milli>(Clock::now() - t0).count() / kRuns;
  // Histogram sum and count from the exposition, once every snapshot was kept (they are taken
  // after the client has its answer and kept on the keeper's own thread).
  std::string text;
  auto value = [&](const std::string& series) {
    const auto at = text.find(series);
    return at == std::string::npos ? -1.0 : std::stod(text.substr(at + series.size() + 1));
  };
  double sum = 0;
  double count = 0;
  for (const auto until = Clock::now() + std::chrono::seconds(10);;) {
    text = api_->metrics().Render();
    sum = value("agentbox_session_snapshot_seconds_sum{backend=\"process\"}");
    count = value("agentbox_session_snapshot_seconds_count{backend=\"process\"}");
    if (count >= kRuns || Clock::now() >= until) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_GE(count, kRuns);
  std::printf(
      "exec through the daemon: %.3f ms mean over %d; snapshot (shell/state): %.3f ms "
      "mean over %.0f\n",
      exec_ms, kRuns, sum / count * 1000, count);
}

TEST_F(EngineRestartTest, UnreachableWhileTheEngineIsDownThenRunningWithSessions) {
  const std::string id = CreateAs("");
  Prime(id);
  backend_->SetEngineDown(true, /*stop_guests=*/true);
  ASSERT_EQ(WaitForState(id, "unreachable"), "unreachable");
  Json got = Sandbox(id);
  EXPECT_NE(got["detail"].get<std::string>().find("unreachable: the process engine at"),
            std::string::npos)
      << got.dump();
  // Listed the same way, and calls fail at once with the reason.
  bool listed = false;
  auto all = Call("GET", "/v1/sandboxes");
  for (const auto& s : all.json["data"]["sandboxes"]) {
    listed = listed || (s["id"] == id && s["state"] == "unreachable");
  }
  EXPECT_TRUE(listed) << all.body;
  const auto t0 = Clock::now();
  auto r =
      Call("POST", "/v1/sandboxes/" + id + "/api/v1/shell/exec", R"({"id":"s","command":"true"})");
  EXPECT_EQ(r.status, 503) << r.body;
  EXPECT_NE(r.body.find("is unreachable: the process engine"), std::string::npos) << r.body;
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 1.0);
  EXPECT_EQ(Metric("agentbox_engine_unreachable_total", {{"backend", "process"}}), 1);

  // Back by itself: no request needed beyond looking.
  backend_->SetEngineDown(false, false);
  ASSERT_EQ(WaitForState(id, "running"), "running");
  ExpectRestored(id);
  EXPECT_EQ(Metric("agentbox_sandbox_recoveries_total",
                   {{"backend", "process"}, {"outcome", "restarted"}}),
            1);
  EXPECT_GT(Metric("agentbox_engine_unreachable_seconds_total", {{"backend", "process"}}), 0);
  EXPECT_EQ(Metric("agentbox_engine_unreachable_total", {{"backend", "process"}}), 1);
}

TEST_F(EngineRestartTest, AGuestThatKeptRunningKeepsItsSessionsUntouched) {
  const std::string id = CreateAs("");
  Prime(id);
  backend_->SetEngineDown(true, /*stop_guests=*/false);  // live-restore: containers kept running
  ASSERT_EQ(WaitForState(id, "unreachable"), "unreachable");
  backend_->SetEngineDown(false, false);
  ASSERT_EQ(WaitForState(id, "running"), "running");
  auto r = Call("POST", "/v1/sandboxes/" + id + "/api/v1/shell/exec",
                R"({"id":"s","command":"echo \"$PWD|$GREETING\""})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.json["data"]["output"].get<std::string>().find("/sub|hi"), std::string::npos);
  EXPECT_FALSE(r.json["data"].contains("notice")) << r.body;  // nothing was restored
  EXPECT_EQ(
      Metric("agentbox_sandbox_recoveries_total", {{"backend", "process"}, {"outcome", "running"}}),
      1);
}

// A guest that died and that the engine started again by itself (a restart policy): the daemon
// notices (SandboxBackend::GuestsRestarted) and restores its sessions without any request.
TEST_F(EngineRestartTest, AGuestTheEngineRestartedGetsItsSessionsBack) {
  const std::string id = CreateAs("");
  Prime(id);
  ASSERT_TRUE(backend_->CrashGuest(id));
  WaitForRestored(1);
  EXPECT_EQ(Metric("agentbox_guest_restarts_noticed_total", {{"backend", "process"}}), 1);
  ExpectRestored(id);
  auto view = Call("POST", "/v1/sandboxes/" + id + "/api/v1/shell/view", R"({"id":"s"})");
  EXPECT_NE(view.json["data"]["notice"].get<std::string>().find("restart policy"),
            std::string::npos)
      << view.body;
}

// Snapshots outlive the daemon: a guest that restarted while no daemon ran gets its sessions
// back from <sessions_dir>/<id>.json when the daemon starts again, and a running command is
// reported lost.
TEST_F(EngineRestartTest, SessionsSurviveADaemonRestartAndAGuestRestart) {
  const std::string id = CreateAs("");
  Prime(id);
  const std::string exec = "/v1/sandboxes/" + id + "/api/v1/shell/exec";
  ASSERT_EQ(Call("POST", exec, R"({"id":"busy","command":"sleep 300","wait_seconds":0.1})")
                .json["data"]["status"],
            "running");
  WaitForSnapshots(2);
  const std::string file = sessions_dir_ + "/" + id + ".json";
  struct stat st {};
  ASSERT_EQ(::stat(file.c_str(), &st), 0) << file;
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // The index holds no snapshot: each is a file of its own (the daemon's memory holds the index).
  {
    std::ifstream in(file);
    const Json index = Json::parse(in, nullptr, false);
    ASSERT_TRUE(index.is_object()) << file;
    for (const auto& [sid, row] : index["sessions"].items()) {
      EXPECT_FALSE(row.contains("state")) << sid;
      EXPECT_GT(row.value("state_bytes", 0), 0) << sid;
    }
    size_t states = 0;
    const std::string states_dir = sessions_dir_ + "/" + id + ".states";
    for (const auto& e : std::filesystem::directory_iterator(states_dir)) {
      states += e.is_regular_file() ? 1 : 0;
    }
    EXPECT_EQ(states, index["sessions"].size());
  }
  // Files of sandboxes that are gone are removed at start; a damaged file is skipped.
  { std::ofstream(sessions_dir_ + "/gone.json") << R"({"version":1})"; }
  { std::ofstream(sessions_dir_ + "/x.json.tmp") << "partial"; }
  RestartDaemon([&] { ASSERT_TRUE(backend_->RestartGuest(id)); });
  WaitForRestored(2);
  ExpectRestored(id);
  auto view = Call("POST", "/v1/sandboxes/" + id + "/api/v1/shell/view", R"({"id":"busy"})");
  EXPECT_NE(view.json["data"]["notice"].get<std::string>().find("(sleep 300) was lost"),
            std::string::npos)
      << view.body;
  EXPECT_NE(::access((sessions_dir_ + "/gone.json").c_str(), F_OK), 0);
  EXPECT_NE(::access((sessions_dir_ + "/x.json.tmp").c_str(), F_OK), 0);
  // Destroying the sandbox removes its file.
  ASSERT_EQ(Call("DELETE", "/v1/sandboxes/" + id).status, 200);
  EXPECT_NE(::access(file.c_str(), F_OK), 0);
  EXPECT_NE(::access((sessions_dir_ + "/" + id + ".states").c_str(), F_OK), 0);
}

// A file read back is untrusted: wrong shapes and types are skipped, never restored, and the
// daemon starts as usual; a daemon restart with the guest still running restores nothing.
TEST_F(EngineRestartTest, DamagedSessionFilesAreSkipped) {
  const std::string a = CreateAs("");
  const std::string b = CreateAs("");
  Prime(a);
  RestartDaemon([&] {
    { std::ofstream(sessions_dir_ + "/" + b + ".json") << "{not json"; }
    std::ofstream(sessions_dir_ + "/" + a + ".json.bak") << "x";
  });
  // a's guest kept running: its sessions are present, nothing is restored.
  auto r = Call("POST", "/v1/sandboxes/" + a + "/api/v1/shell/exec",
                R"({"id":"s","command":"echo \"$PWD|$GREETING\""})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.json["data"]["output"].get<std::string>().find("/sub|hi"), std::string::npos);
  EXPECT_FALSE(r.json["data"].contains("notice")) << r.body;
  // b's damaged file: b works as a sandbox without kept sessions.
  r = Call("POST", "/v1/sandboxes/" + b + "/api/v1/shell/exec", R"({"id":"s","command":"pwd"})");
  EXPECT_EQ(r.status, 200) << r.body;
  RestartDaemon([&] {
    // Wrong types everywhere but one well-formed session.
    std::ofstream(sessions_dir_ + "/" + b + ".json")
        << R"({"version":1,"sandbox":")" << b
        << R"(","background_started":"many","sessions":{"":{"cwd":"/"},"n":5,)"
        << R"("t":{"state":"no","cwd":7},"ok":{"cwd":"/tmp","running":"yes"}}})";
    ASSERT_TRUE(backend_->RestartGuest(b));
  });
  WaitForRestored(1);
  r = Call("POST", "/v1/sandboxes/" + b + "/api/v1/shell/exec", R"({"id":"ok","command":"pwd"})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.json["data"]["output"].get<std::string>().find("/tmp"), std::string::npos) << r.body;
  EXPECT_EQ(Metric("agentbox_sessions_restored_total", {{"backend", "process"}, {"outcome", "ok"}}),
            1);
}

}  // namespace
}  // namespace agentbox::daemon
