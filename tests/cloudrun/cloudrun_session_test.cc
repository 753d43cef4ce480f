// cloudrun session mode end to end: agentboxd binaries against a private agentbox-gcp-emulator
// whose executions run on the local Docker engine in the host's network namespace, so the guest
// of each execution dials back to the daemon on 127.0.0.1 (docs/cloudrun.md, "Session mode").
// Create waits for the guest; every capability works through the tunnel; a killed execution is
// replaced and its sessions continue (processes reported lost); the warm pool hands out started
// executions; destroy and failures leave nothing behind. Prints the figures of
// docs/benchmarks.md (create -> first exec cold and from the pool, exec p50 through the tunnel).
#include <algorithm>
#include <chrono>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "cloudrun_harness.h"

namespace {

using namespace agentbox::cloudrun_e2e;
using Clock = std::chrono::steady_clock;

double Ms(Clock::time_point since) {
  return std::chrono::duration<double, std::milli>(Clock::now() - since).count();
}

std::string Shell(const std::string& cmd) {
  std::string out;
  if (FILE* p = popen(cmd.c_str(), "r")) {
    char buf[512];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), p)) > 0) {
      out.append(buf, n);
    }
    pclose(p);
  }
  return out;
}

class CloudRunSession : public EmulatorTest {
 protected:
  void SetUp() override { StartEmulator("/var/run/docker.sock", "agentbox-cloudrun-session"); }
  Daemon* StartSweeper() override {
    return StartDaemon("sweep", {{"AGENTBOX_WARM_POOL_SIZE", "0"}});
  }

  // A session-mode daemon whose tunnel listens on a free port of 127.0.0.1.
  Daemon* StartDaemon(const std::string& name, std::map<std::string, std::string> extra,
                      int port = 0) {
    port = port > 0 ? port : FreePort();
    last_port_ = port;
    std::map<std::string, std::string> c =
        EmulatorConfig({{"SANDBOX_BACKEND", "cloudrun"},
                        {"AGENTBOX_CLOUDRUN_MODE", "session"},
                        {"AGENTBOX_PUBLIC_URL", "http://127.0.0.1:" + std::to_string(port)},
                        {"AGENTBOX_API_KEYS", "e2e:session-test-key"},
                        {"AGENTBOX_WARM_POOL_SIZE_CLOUDRUN", "0"}});
    for (auto& [k, v] : extra) {
      c[k] = v;
    }
    return Keep(std::make_unique<Daemon>(
        dir_ + "/" + name, c, std::vector<std::string>{"tcp:127.0.0.1:" + std::to_string(port)}));
  }

  Json Exec(Daemon* d, const std::string& id, const std::string& session,
            const std::string& command) {
    Reply r = d->Api(id, "shell/exec", {{"id", session}, {"command", command}});
    EXPECT_EQ(r.status, 200) << r.body;
    return r.data();
  }

  // The running container of the sandbox's current execution.
  std::string Container(const std::string& execution) {
    std::string out =
        Shell("docker ps -q --filter label=agentbox.gcp-emulator.execution=" + execution +
              " 2>/dev/null");
    out.erase(std::remove(out.begin(), out.end(), '\n'), out.end());
    return out;
  }

  static std::string ExecutionOf(const Json& sandbox) {
    const std::string detail = sandbox.value("detail", "");
    const size_t at = detail.find("execution ");
    if (at == std::string::npos) {
      return "";
    }
    const size_t from = at + 10;
    return detail.substr(from, detail.find(' ', from) - from);
  }

  int last_port_ = 0;
};

TEST_F(CloudRunSession, CreateWaitsForTheGuestAndEveryCapabilityWorks) {
  Daemon* d = StartDaemon("a", {});
  Reply info = d->Call("GET", "/v1/info");
  const Json caps = info.data()["backends"]["cloudrun"]["capabilities"];
  for (const char* c : {"background_processes", "stdin", "pty", "streaming", "guest_process"}) {
    EXPECT_TRUE(caps.value(c, false)) << c << ": " << caps;
  }

  auto t0 = Clock::now();
  Reply created = d->Create();
  ASSERT_EQ(created.status, 201) << created.body << d->log();
  const std::string id = created.data()["id"];
  Json first = Exec(d, id, "s", "echo first");
  const double cold = Ms(t0);
  EXPECT_EQ(first["output"], "first\n");
  std::printf("cloudrun session mode: create -> first exec (cold, emulator) %.0f ms\n", cold);
  EXPECT_NE(created.data()["detail"].get<std::string>().find("session mode"), std::string::npos)
      << created.body;

  // Session state, a background process, stdin and a PTY: a long-lived guest.
  EXPECT_EQ(Exec(d, id, "s", "cd /tmp && export E=1 && V=2 && echo ok")["output"], "ok\n");
  EXPECT_EQ(Exec(d, id, "s", "echo $PWD $E $V")["output"], "/tmp 1 2\n");
  Reply started = d->Api(id, "process/start", {{"session_id", "s"}, {"command", "sleep 60"}});
  EXPECT_EQ(started.status, 200) << started.body;
  Reply read = d->Api(id, "shell/exec",
                      {{"id", "in"}, {"command", "read L; echo got:$L"}, {"wait_seconds", 0}});
  EXPECT_EQ(read.status, 200) << read.body;
  EXPECT_EQ(d->Api(id, "shell/write", {{"id", "in"}, {"input", "hello\n"}}).status, 200);
  Reply waited = d->Api(id, "shell/wait", {{"id", "in"}, {"seconds", 10}});
  EXPECT_EQ(waited.data()["returncode"], 0) << waited.body;
  Reply viewed = d->Api(id, "shell/view", {{"id", "in"}});
  EXPECT_NE(viewed.body.find("got:hello"), std::string::npos) << viewed.body;
  Reply pty = d->Api(id, "shell/exec", {{"id", "p"}, {"command", "tty"}, {"pty", true}});
  EXPECT_EQ(pty.status, 200) << pty.body;
  EXPECT_NE(pty.data().value("output", "").find("/dev/pts/"), std::string::npos) << pty.body;

  // /workspace is the sandbox's prefix of the bucket, as in job mode.
  EXPECT_EQ(Exec(d, id, "s", "echo hi > /workspace/w.txt && echo done")["output"], "done\n");
  Reply obj = emulator_->Call(
      "GET", "/storage/v1/b/e2e-bucket/o/sandboxes%2F" + id + "%2Fworkspace%2Fw.txt?alt=media");
  EXPECT_EQ(obj.body, "hi\n");

  // Exec round trip through the tunnel.
  std::vector<double> ms;
  for (int i = 0; i < 200; ++i) {
    auto t = Clock::now();
    Reply r = d->Api(id, "shell/exec", {{"id", "bench"}, {"command", "true"}});
    ms.push_back(Ms(t));
    ASSERT_EQ(r.status, 200);
  }
  std::sort(ms.begin(), ms.end());
  std::printf(
      "cloudrun session mode: exec round trip through the tunnel p50 %.2f ms, p90 %.2f ms\n",
      ms[ms.size() / 2], ms[ms.size() * 9 / 10]);
  EXPECT_EQ(d->Call("DELETE", "/v1/sandboxes/" + id).status, 200);
}

TEST_F(CloudRunSession, LostExecutionIsReplacedAndSessionsContinue) {
  Daemon* d = StartDaemon("a", {});
  Reply created = d->Create();
  ASSERT_EQ(created.status, 201) << created.body << d->log();
  const std::string id = created.data()["id"];
  EXPECT_EQ(Exec(d, id, "s",
                 "cd /workspace && mkdir -p sub && cd sub && export E=kept && "
                 "V=var && f() { echo fn; } && echo ready")["output"],
            "ready\n");
  EXPECT_EQ(d->Api(id, "process/start", {{"session_id", "s"}, {"command", "sleep 300"}}).status,
            200);
  // The snapshot is in the bucket, not only in the daemon's memory.
  const auto until = Clock::now() + 10s;
  Reply kept;
  while (Clock::now() < until) {
    kept = emulator_->Call(
        "GET", "/storage/v1/b/e2e-bucket/o?prefix=sandboxes%2F" + id + "%2Fkept-sessions%2F");
    if (kept.json.contains("items") && !kept.json["items"].empty()) {
      break;
    }
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_TRUE(kept.json.contains("items")) << kept.body;

  const std::string execution = ExecutionOf(d->Call("GET", "/v1/sandboxes/" + id).data());
  ASSERT_FALSE(execution.empty());
  const std::string container = Container(execution);
  ASSERT_FALSE(container.empty()) << "no container for " << execution;
  auto t0 = Clock::now();
  ASSERT_EQ(system(("docker kill " + container + " >/dev/null").c_str()), 0);

  // Replaced by itself: a new execution, the same sandbox, the sessions back.
  Json sb;
  std::set<std::string> states;
  const auto deadline = Clock::now() + 60s;
  while (Clock::now() < deadline) {
    sb = d->Call("GET", "/v1/sandboxes/" + id).data();
    states.insert(sb.value("state", ""));
    if (sb.value("state", "") == "running" && ExecutionOf(sb) != execution &&
        !ExecutionOf(sb).empty()) {
      break;
    }
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_NE(ExecutionOf(sb), execution) << sb << d->log();
  Json after = Exec(d, id, "s", "echo $PWD $E $V; f");
  std::printf("cloudrun session mode: lost execution replaced, sessions back in %.0f ms\n", Ms(t0));
  EXPECT_EQ(after["output"], "/workspace/sub kept var\nfn\n") << after;
  EXPECT_NE(after.value("notice", "").find("was restored"), std::string::npos) << after;
  EXPECT_NE(after.value("notice", "").find("Background processes started before the restart"),
            std::string::npos)
      << after;
  EXPECT_TRUE(states.count("unreachable")) << "states seen: " << Json(states);
  Reply view = d->Api(id, "shell/view", {{"id", "s"}});
  EXPECT_NE(view.data().value("notice", "").find("lost"), std::string::npos) << view.body;
  Reply metrics = d->Call("GET", "/metrics");
  EXPECT_NE(metrics.body.find("agentbox_guest_replacements_total{backend=\"cloudrun\",outcome="
                              "\"replaced\"} 1"),
            std::string::npos);
  EXPECT_EQ(d->Call("DELETE", "/v1/sandboxes/" + id).status, 200);
}

TEST_F(CloudRunSession, DaemonRestartTakesTheGuestBack) {
  Daemon* d = StartDaemon("a", {});
  Reply created = d->Create();
  ASSERT_EQ(created.status, 201) << created.body << d->log();
  const std::string id = created.data()["id"];
  EXPECT_EQ(Exec(d, id, "s", "cd /tmp && X=1 && echo ok")["output"], "ok\n");
  const int port = last_port_;
  daemons_.clear();  // SIGTERM: the execution goes on, its guest redials
  Daemon* again = StartDaemon("b", {}, port);
  Reply got = again->Call("GET", "/v1/sandboxes/" + id);
  ASSERT_EQ(got.status, 200) << got.body;
  // Same guest, same sessions (nothing restored: nothing was lost).
  Reply r;
  const auto deadline = Clock::now() + 30s;
  while (Clock::now() < deadline) {
    r = again->Api(id, "shell/exec", {{"id", "s"}, {"command", "echo $PWD $X"}});
    if (r.status == 200) {
      break;
    }
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(r.data()["output"], "/tmp 1\n") << r.body << again->log();
}

TEST_F(CloudRunSession, PerCreateModeAndWarmPool) {
  // Job mode by default; cloudrun_mode "session" on one create.
  Daemon* d = StartDaemon("a", {{"AGENTBOX_CLOUDRUN_MODE", "job"}});
  Reply job = d->Create();
  ASSERT_EQ(job.status, 201) << job.body;
  Reply refused = d->Api(job.data()["id"], "process/start", {{"command", "sleep 1"}});
  EXPECT_EQ(refused.status, 400) << refused.body;
  Reply session = d->Create({{"cloudrun_mode", "session"}});
  ASSERT_EQ(session.status, 201) << session.body << d->log();
  EXPECT_EQ(d->Api(session.data()["id"], "process/start", {{"command", "sleep 1"}}).status, 200);
  EXPECT_EQ(d->Create({{"cloudrun_mode", "batch"}}).status, 422);

  // A pool of started executions.
  Daemon* p = StartDaemon("pool", {{"AGENTBOX_WARM_POOL_SIZE_CLOUDRUN", "1"}});
  const auto deadline = Clock::now() + 60s;
  while (Clock::now() < deadline &&
         p->Call("GET", "/metrics").body.find("agentbox_pool_ready{backend=\"cloudrun\"} 1") ==
             std::string::npos) {
    std::this_thread::sleep_for(50ms);
  }
  auto t0 = Clock::now();
  Reply pooled = p->Create();
  ASSERT_EQ(pooled.status, 201) << pooled.body;
  Json first = Exec(p, pooled.data()["id"], "s", "echo pooled");
  const double warm = Ms(t0);
  EXPECT_EQ(first["output"], "pooled\n");
  std::printf("cloudrun session mode: create -> first exec from the warm pool %.1f ms\n", warm);
  EXPECT_NE(
      p->Call("GET", "/metrics")
          .body.find("agentbox_pool_acquisitions_total{backend=\"cloudrun\",outcome=\"hit\"} 1"),
      std::string::npos);
}

TEST_F(CloudRunSession, DestroyCancelsTheExecutionAndRemovesEverything) {
  Daemon* d = StartDaemon("a", {});
  Reply created = d->Create();
  ASSERT_EQ(created.status, 201) << created.body << d->log();
  const std::string id = created.data()["id"];
  const std::string execution = ExecutionOf(created.data());
  ASSERT_FALSE(Container(execution).empty());
  EXPECT_EQ(Exec(d, id, "s", "echo x > /workspace/x && echo ok")["output"], "ok\n");
  EXPECT_EQ(d->Call("DELETE", "/v1/sandboxes/" + id).status, 200);
  Reply e = emulator_->Call("GET", "/v2/" + execution);
  EXPECT_TRUE(e.status == 404 || e.body.find("cancelledCount") != std::string::npos) << e.body;
  const auto deadline = Clock::now() + 20s;
  while (!Container(execution).empty() && Clock::now() < deadline) {
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_TRUE(Container(execution).empty());
  Reply objects =
      emulator_->Call("GET", "/storage/v1/b/e2e-bucket/o?prefix=sandboxes%2F" + id + "%2F");
  EXPECT_TRUE(!objects.json.contains("items") || objects.json["items"].empty()) << objects.body;
  Reply jobs = emulator_->Call("GET", "/v2/projects/e2e-project/locations/us-central1/jobs");
  EXPECT_EQ(jobs.body.find("ab-" + id.substr(0, 6)), std::string::npos) << jobs.body;
}

TEST_F(CloudRunSession, GuestThatNeverConnectsFailsClearlyAndCleansUp) {
  // The executions are told a port nobody listens on.
  Daemon* d =
      StartDaemon("a", {{"AGENTBOX_PUBLIC_URL", "http://127.0.0.1:" + std::to_string(FreePort())},
                        {"AGENTBOX_CLOUDRUN_CONNECT_TIMEOUT_S", "2"}});
  auto t0 = Clock::now();
  Reply created = d->Create();
  EXPECT_EQ(created.status, 503) << created.body;
  EXPECT_NE(created.message().find("did not connect"), std::string::npos) << created.body;
  EXPECT_NE(created.message().find("AGENTBOX_PUBLIC_URL"), std::string::npos) << created.body;
  EXPECT_LT(Ms(t0), 30000);
  Reply list = emulator_->Call("GET", "/storage/v1/b/e2e-bucket/o?prefix=sandboxes%2F");
  EXPECT_TRUE(!list.json.contains("items") || list.json["items"].empty()) << list.body;
  // The token never reaches the log.
  EXPECT_EQ(d->log().find("AGENTBOX_GUEST_TOKEN="), std::string::npos);
}

}  // namespace
