// No relayed call waits forever on a guest: the deadlines derived from each call, and what the
// daemon does when a guest stops answering (504 naming the sandbox, state unresponsive with a
// detail, agentbox_guest_unresponsive_total, an error counted for the breaker) and when it
// answers again. The guest is frozen with SIGSTOP, as a successful ptrace attach left it.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <thread>

#include "common/config.h"
#include "daemon/guest_health.h"
#include "fakes/daemon_fixture.h"

namespace agentbox::daemon {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

TEST(GuestDeadlinesTest, FollowWhatEachCallAsksToWait) {
  GuestDeadlines d;  // margin 10 s, other calls 60 s
  const double ttl = 3600;
  EXPECT_EQ(CallDeadline(d, "shell/exec", R"({"command":"x","wait_seconds":2.5})", ttl),
            milliseconds(12500));
  EXPECT_EQ(CallDeadline(d, "shell/exec", R"({"command":"x"})", ttl), seconds(15));  // default 5
  EXPECT_EQ(CallDeadline(d, "shell/wait", R"({"id":"s","seconds":30})", ttl), seconds(40));
  EXPECT_EQ(CallDeadline(d, "shell/wait", R"({"id":"s"})", ttl), seconds(70));  // default 60
  EXPECT_EQ(CallDeadline(d, "shell/run", R"({"command":"x","timeout":5})", ttl), seconds(15));
  EXPECT_EQ(CallDeadline(d, "shell/run", R"({"command":"x"})", ttl), seconds(130));
  // No timeout at all: bounded by the sandbox's remaining lifetime.
  EXPECT_EQ(CallDeadline(d, "shell/run", R"({"command":"x","timeout":0})", ttl), seconds(3610));
  EXPECT_EQ(CallDeadline(d, "shell/exec", R"({"command":"x","wait_seconds":86400})", 100),
            seconds(110));
  EXPECT_EQ(CallDeadline(d, "shell/kill", R"({"id":"s"})", ttl), seconds(20));
  EXPECT_EQ(CallDeadline(d, "file/read", R"({"file":"/x"})", ttl), seconds(60));
  EXPECT_EQ(CallDeadline(d, "shell/exec", "{not json", ttl), seconds(15));
  EXPECT_EQ(CallDeadline(d, "shell/exec", R"({"wait_seconds":"soon"})", ttl), seconds(15));
  EXPECT_EQ(UploadDeadline(d, 0), seconds(60));
  EXPECT_EQ(UploadDeadline(d, 100ull << 20), seconds(160));  // 100 MiB at 1 MiB/s
  EXPECT_EQ(DeadlineText(milliseconds(12500)), "12.5 s");
}

TEST(GuestDeadlinesTest, ComeFromTheConfiguration) {
  auto d =
      GuestDeadlines::FromConfig(Config::FromMap({{"AGENTBOX_GUEST_CALL_MARGIN_S", "3"},
                                                  {"AGENTBOX_GUEST_CALL_TIMEOUT_S", "20"},
                                                  {"AGENTBOX_GUEST_STREAM_IDLE_S", "30"},
                                                  {"AGENTBOX_GUEST_UPLOAD_MIN_RATE", "2048"}}));
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(d->margin, seconds(3));
  EXPECT_EQ(d->call, seconds(20));
  EXPECT_EQ(d->stream_idle, seconds(30));
  EXPECT_EQ(UploadDeadline(*d, 4096), seconds(22));
  // A stream idle limit below the guest's 15 s keep-alive would cut healthy streams.
  auto bad = GuestDeadlines::FromConfig(Config::FromMap({{"AGENTBOX_GUEST_STREAM_IDLE_S", "5"}}));
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("AGENTBOX_GUEST_STREAM_IDLE_S"), std::string::npos);
}

class GuestDeadlineDaemonTest : public fakes::DaemonFixture {
 protected:
  void SetUp() override {
    options_.guest_deadlines.margin = milliseconds(1000);
    options_.guest_deadlines.call = milliseconds(1500);
    options_.guest_deadlines.probe = milliseconds(500);
    options_.guest_deadlines.stream_idle = milliseconds(1000);
    fakes::DaemonFixture::SetUp();
  }
  Json Sandbox(const std::string& id) { return Call("GET", "/v1/sandboxes/" + id).json["data"]; }
  double Metric(const std::string& name, const Labels& labels) {
    return api_->metrics().Value(name, labels);
  }
};

TEST_F(GuestDeadlineDaemonTest, AFrozenGuestGets504UnresponsiveAndComesBack) {
  const std::string id = CreateAs("");
  const std::string exec = "/v1/sandboxes/" + id + "/api/v1/shell/exec";
  ASSERT_EQ(Call("POST", exec, R"({"id":"s","command":"cd /tmp"})").status, 200);
  const pid_t guest = backend_->GuestPid(id);
  ASSERT_GT(guest, 0);
  const Labels errors = {{"backend", "process"}, {"op", "shell/exec"}, {"outcome", "error"}};
  const double errors_before = Metric("agentbox_operation_total", errors);
  ASSERT_EQ(kill(guest, SIGSTOP), 0);

  auto t0 = Clock::now();
  auto r = Call("POST", exec, R"({"id":"s","command":"echo hi","wait_seconds":0.5})");
  const double waited = std::chrono::duration<double>(Clock::now() - t0).count();
  EXPECT_EQ(r.status, 504) << r.body;
  EXPECT_NE(r.body.find("sandbox '" + id + "' did not answer shell/exec within 1.5 s"),
            std::string::npos)
      << r.body;
  EXPECT_GE(waited, 1.4);
  EXPECT_LT(waited, 5.0);

  Json got = Sandbox(id);
  EXPECT_EQ(got["state"], "unresponsive");
  EXPECT_NE(got["detail"].get<std::string>().find("did not answer shell/exec"), std::string::npos);
  Json list = Call("GET", "/v1/sandboxes").json["data"]["sandboxes"];
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["state"], "unresponsive");
  EXPECT_EQ(Metric("agentbox_guest_unresponsive_total", {{"backend", "process"}}), 1);
  // The timed-out call is a backend error, which is what the rollout's breaker counts.
  EXPECT_EQ(Metric("agentbox_operation_total", errors), errors_before + 1);
  EXPECT_NE(Call("GET", "/metrics")
                .body.find("agentbox_sandboxes{backend=\"process\",state=\"unresponsive\"} 1"),
            std::string::npos);

  // Known unresponsive: a call that would wait longer fails after the short health check.
  t0 = Clock::now();
  r = Call("POST", "/v1/sandboxes/" + id + "/api/v1/shell/wait", R"({"id":"s","seconds":60})");
  EXPECT_EQ(r.status, 504) << r.body;
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 3.0);
  EXPECT_EQ(Metric("agentbox_guest_unresponsive_total", {{"backend", "process"}}), 1);

  // This backend cannot replace a guest: it says so, and DELETE still works later.
  r = Call("POST", "/v1/sandboxes/" + id + "/restart-guest");
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_NE(r.body.find("cannot restart the guest"), std::string::npos) << r.body;

  ASSERT_EQ(kill(guest, SIGCONT), 0);
  const auto deadline = Clock::now() + seconds(15);
  while (Sandbox(id)["state"] != "running" && Clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(50));
  }
  EXPECT_EQ(Sandbox(id)["state"], "running");
  EXPECT_EQ(Sandbox(id)["detail"], "");
  r = Call("POST", exec, R"({"id":"s","command":"pwd"})");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json["data"]["output"], "/tmp\n");
  EXPECT_EQ(Call("DELETE", "/v1/sandboxes/" + id).status, 200);
}

TEST_F(GuestDeadlineDaemonTest, AFrozenGuestEndsAnEventStreamAndDeleteIsFast) {
  const std::string id = CreateAs("");
  ASSERT_EQ(Call("POST", "/v1/sandboxes/" + id + "/api/v1/shell/exec",
                 R"({"id":"s","command":"echo ready"})")
                .status,
            200);
  const pid_t guest = backend_->GuestPid(id);
  ASSERT_GT(guest, 0);
  // Frozen while the stream is open (or just before it opens): either way the client gets an
  // end instead of a stream that never moves again.
  std::thread freeze([guest] {
    std::this_thread::sleep_for(milliseconds(200));
    kill(guest, SIGSTOP);
  });
  const std::string events = ReadEvents("/v1/sandboxes/" + id + "/shell/s/stream", "no-such-text");
  freeze.join();
  EXPECT_TRUE(events.find("event: error") != std::string::npos ||
              events.find("did not answer shell/stream") != std::string::npos)
      << events;
  // Marked once its health check has failed too.
  const auto until = Clock::now() + seconds(5);
  while (Sandbox(id)["state"] != "unresponsive" && Clock::now() < until) {
    std::this_thread::sleep_for(milliseconds(50));
  }
  EXPECT_EQ(Sandbox(id)["state"], "unresponsive");
  const auto t0 = Clock::now();
  EXPECT_EQ(Call("DELETE", "/v1/sandboxes/" + id).status, 200);
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 5.0);
  EXPECT_EQ(Call("GET", "/v1/sandboxes/" + id).status, 404);
}

// A guest that answers its health check but not a call in time is slow, not unresponsive.
class SlowCallTest : public fakes::DaemonFixture {
 protected:
  void SetUp() override {
    options_.guest_deadlines.call = milliseconds(1);  // no real call finishes this fast
    options_.guest_deadlines.probe = milliseconds(2000);
    fakes::DaemonFixture::SetUp();
  }
};

TEST_F(SlowCallTest, IsA504WithoutMarkingTheGuest) {
  const std::string id = CreateAs("");
  auto r = Call("POST", "/v1/sandboxes/" + id + "/api/v1/file/find",
                R"({"path":"/usr","glob":"**/*.h"})");
  EXPECT_EQ(r.status, 504) << r.body;
  EXPECT_NE(r.body.find("its guest still answers"), std::string::npos) << r.body;
  Json got = Call("GET", "/v1/sandboxes/" + id).json["data"];
  EXPECT_EQ(got["state"], "running");
  EXPECT_EQ(api_->metrics().Value("agentbox_guest_unresponsive_total", {{"backend", "process"}}),
            0);
}

}  // namespace
}  // namespace agentbox::daemon
