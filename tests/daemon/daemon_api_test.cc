// agentboxd's REST API over real HTTP: an in-process DaemonApi and server, a test-double backend
// whose sandboxes are real agentbox-guest processes, and libcurl as the client.
#include "daemon/daemon_api.h"

#include <gtest/gtest.h>
#include <strings.h>
#include <unistd.h>

#include <algorithm>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "backends/pool/warm_pool.h"
#include "common/log.h"
#include "fakes/borrowed_backend.h"
#include "fakes/daemon_fixture.h"
#include "fakes/fixed_config.h"

namespace agentbox::daemon {
namespace {

using Reply = fakes::HttpReply;

class DaemonApiTest : public fakes::DaemonFixture {};

TEST_F(DaemonApiTest, HealthAndReadiness) {
  EXPECT_EQ(Call("GET", "/healthz").status, 200);
  Reply r = Call("GET", "/readyz");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json["data"]["backends"]["process"]["usable"], true);
}

TEST_F(DaemonApiTest, TcpNeedsAValidKey) {
  EXPECT_EQ(Call("GET", "/v1/sandboxes", "", "-").status, 401);
  EXPECT_EQ(Call("GET", "/v1/sandboxes", "", "key-alic").status, 401);  // a prefix is not a key
  EXPECT_EQ(Call("GET", "/v1/sandboxes", "", "wrong").status, 401);
  EXPECT_EQ(Call("GET", "/v1/sandboxes", "", "key-alice").status, 200);
  // Runtime flags steer every tenant's sandboxes: a key over TCP may neither read nor set them.
  EXPECT_EQ(Call("GET", "/v1/flags", "", "key-alice").status, 403);
  Reply put = Call("PUT", "/v1/flags", R"({"flags":{"SANDBOX_BACKEND":"jail"}})", "key-alice");
  EXPECT_EQ(put.status, 403) << put.body;
  EXPECT_EQ(Call("PUT", "/v1/flags", "{}", "-").status, 401);
}

TEST_F(DaemonApiTest, CreateExecWithPersistentStateThenDestroy) {
  Reply c = Call("POST", "/v1/sandboxes", R"({"labels":{"team":"a"},"ttl_s":600})", "key-alice");
  ASSERT_EQ(c.status, 201) << c.body;
  const std::string id = c.json["data"]["id"];
  EXPECT_EQ(c.json["data"]["backend"], "process");
  EXPECT_EQ(c.json["data"]["reason"], "STATIC");
  EXPECT_EQ(c.json["data"]["labels"]["team"], "a");
  const std::string base = "/v1/sandboxes/" + id + "/api/v1";
  Reply e = Call("POST", base + "/shell/exec", R"({"id":"s","command":"cd /tmp && export X=7"})",
                 "key-alice");
  ASSERT_EQ(e.status, 200) << e.body;
  e = Call("POST", base + "/shell/exec", R"({"id":"s","command":"echo $PWD $X"})", "key-alice");
  EXPECT_EQ(e.json["data"]["output"], "/tmp 7\n");
  EXPECT_EQ(Call("DELETE", "/v1/sandboxes/" + id, "", "key-alice").status, 200);
  EXPECT_EQ(Call("GET", "/v1/sandboxes/" + id, "", "key-alice").status, 404);
  EXPECT_EQ(Call("POST", base + "/shell/exec", R"({"command":"true"})", "key-alice").status, 404);
}

TEST_F(DaemonApiTest, AnotherKeysSandboxIsNotFound) {
  const std::string id = CreateAs("key-alice");
  EXPECT_EQ(Call("GET", "/v1/sandboxes/" + id, "", "key-bob").status, 404);
  EXPECT_EQ(Call("DELETE", "/v1/sandboxes/" + id, "", "key-bob").status, 404);
  EXPECT_EQ(
      Call("POST", "/v1/sandboxes/" + id + "/api/v1/shell/exec", R"({"command":"id"})", "key-bob")
          .status,
      404);
  EXPECT_TRUE(Call("GET", "/v1/sandboxes", "", "key-bob").json["data"]["sandboxes"].empty());
  EXPECT_EQ(Call("GET", "/v1/sandboxes", "", "key-alice").json["data"]["sandboxes"].size(), 1u);
  // The local socket is trusted by its file mode and sees everything.
  EXPECT_EQ(Call("GET", "/v1/sandboxes/" + id).status, 200);
}

TEST_F(DaemonApiTest, UploadAndDownloadStreamThroughTheDaemon) {
  const std::string id = CreateAs("key-alice");
  const std::string blob = fakes::PatternBytes(3 << 20);
  Reply down;
  UploadThenDownload(id, "key-alice", "big.bin", blob, "xYzBoundary42", &down);
  if (HasFatalFailure()) {
    return;
  }
  EXPECT_NE(down.headers.find("attachment"), std::string::npos);
  Reply missing =
      Call("GET", "/v1/sandboxes/" + id + "/api/v1/file/download?path=nope", "", "key-alice");
  EXPECT_EQ(missing.status, 404);
}

TEST_F(DaemonApiTest, MetricsCountOperationsPerBackend) {
  const std::string id = CreateAs("key-alice");
  Call("POST", "/v1/sandboxes/" + id + "/api/v1/shell/exec", R"({"command":"true"})", "key-alice");
  Reply m = Call("GET", "/metrics");
  ASSERT_EQ(m.status, 200);
  EXPECT_NE(m.body.find("agentbox_operation_total{backend=\"process\",op=\"create\","
                        "outcome=\"ok\"} 1"),
            std::string::npos)
      << m.body;
  EXPECT_NE(m.body.find("agentbox_operation_total{backend=\"process\",op=\"shell/exec\","
                        "outcome=\"ok\"} 1"),
            std::string::npos);
  EXPECT_NE(m.body.find("agentbox_sandboxes{backend=\"process\",state=\"running\"} 1"),
            std::string::npos);
  EXPECT_NE(m.body.find("agentbox_operation_duration_seconds_bucket{backend=\"process\","
                        "op=\"create\",le=\"+Inf\"} 1"),
            std::string::npos);
}

TEST_F(DaemonApiTest, ExpiredSandboxesAreDestroyed) {
  const std::string id = CreateAs("key-alice");
  Reply t = Call("POST", "/v1/sandboxes/" + id + "/timeout", R"({"ttl_s":1})", "key-alice");
  ASSERT_EQ(t.status, 200) << t.body;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (Call("GET", "/v1/sandboxes/" + id, "", "key-alice").status != 404) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "sandbox did not expire";
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_TRUE(backend_->List()->empty());
}

TEST_F(DaemonApiTest, BadInputGetsClearErrors) {
  Reply r = Call("POST", "/v1/sandboxes", "{not json", "key-alice");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.json["message"].get<std::string>().find("malformed JSON"), std::string::npos);
  r = Call("POST", "/v1/sandboxes", R"({"limits":{"memory_mb":"lots"}})", "key-alice");
  EXPECT_EQ(r.status, 422);
  EXPECT_EQ(r.json["data"]["fields"][0], "limits.memory_mb");
  r = Call("POST", "/v1/sandboxes", R"({"backend":"nope"})", "key-alice");
  EXPECT_EQ(r.status, 422);
  r = Call("POST", "/v1/sandboxes", R"({"ttl_s":-5})", "key-alice");
  EXPECT_EQ(r.status, 422);
  r = Call("POST", "/v1/sandboxes", R"({"network":"host"})", "key-alice");
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(Call("GET", "/v1/sandboxes/sb-unknown", "", "key-alice").status, 404);
  EXPECT_EQ(Call("GET", "/v1/nothing", "", "key-alice").status, 404);
  EXPECT_EQ(Call("PUT", "/v1/sandboxes", "{}", "key-alice").status, 405);
  r = Call("POST", "/v1/sandboxes", std::string(2 << 20, 'x'), "key-alice");
  EXPECT_EQ(r.status, 413);
  // Nothing was created by any of it, and the daemon still works.
  EXPECT_TRUE(Call("GET", "/v1/sandboxes", "", "key-alice").json["data"]["sandboxes"].empty());
  EXPECT_EQ(Call("GET", "/healthz").status, 200);
}

TEST_F(DaemonApiTest, BackendFailureIsReportedAndLeavesNothing) {
  backend_->FailNextCreates(1);
  Reply r = Call("POST", "/v1/sandboxes", "{}", "key-alice");
  EXPECT_EQ(r.status, 503);
  EXPECT_NE(r.json["message"].get<std::string>().find("told to fail"), std::string::npos);
  EXPECT_TRUE(Call("GET", "/v1/sandboxes", "", "key-alice").json["data"]["sandboxes"].empty());
}

TEST_F(DaemonApiTest, AGuestSocketSwappedForASymlinkIsNotFollowed) {
  // A sandbox can write the directory of its guest socket; the daemon must never be steered to
  // another socket (here: its own) through a symlink.
  const std::string id = CreateAs("key-alice");
  const std::string sock = dir_ + "/state/" + id + "/guest.sock";
  ASSERT_EQ(::unlink(sock.c_str()), 0);
  ASSERT_EQ(::symlink(unix_sock_.c_str(), sock.c_str()), 0);
  Reply r = Call("POST", "/v1/sandboxes/" + id + "/api/v1/shell/exec", R"({"command":"true"})",
                 "key-alice");
  EXPECT_EQ(r.status, 403) << r.body;
  EXPECT_NE(r.body.find("not a socket"), std::string::npos);
}

TEST_F(DaemonApiTest, StreamsLiveSessionOutputAsServerSentEvents) {
  const std::string id = CreateAs("key-alice");
  Reply e = Call("POST", "/v1/sandboxes/" + id + "/api/v1/shell/exec",
                 R"({"id":"s","command":"for i in 1 2 3; do echo line$i; sleep 0.2; done",)"
                 R"("wait_seconds":0})",
                 "key-alice");
  ASSERT_EQ(e.json["data"]["status"], "running") << e.body;
  const std::string events = ReadEvents("/v1/sandboxes/" + id + "/shell/s/stream", "event: status");
  EXPECT_NE(events.find("event: output"), std::string::npos) << events;
  for (const char* line : {"line1", "line2", "line3"}) {
    EXPECT_NE(events.find(line), std::string::npos) << events;
  }
  EXPECT_NE(events.find("event: status\ndata: {\"command\""), std::string::npos) << events;
  EXPECT_NE(events.find("\"returncode\":0"), std::string::npos) << events;
  EXPECT_EQ(Call("GET", "/v1/sandboxes/" + id + "/shell/nope/stream").status, 404);
}

TEST_F(DaemonApiTest, StreamEndsWithAnErrorEventWhenTheSandboxDies) {
  const std::string id = CreateAs("key-alice");
  Call("POST", "/v1/sandboxes/" + id + "/api/v1/shell/exec",
       R"({"id":"s","command":"sleep 30","wait_seconds":0})", "key-alice");
  std::string events;
  std::thread reader(
      [&] { events = ReadEvents("/v1/sandboxes/" + id + "/shell/s/stream", "event: error"); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ASSERT_TRUE(backend_->Destroy(id));  // the sandbox dies under the daemon
  reader.join();
  EXPECT_NE(events.find("event: error"), std::string::npos) << events;
}

TEST_F(DaemonApiTest, InfoKeepsTheSeedsKeys) {
  Reply r = Call("GET", "/v1/info", "", "key-alice");
  ASSERT_EQ(r.status, 200);
  for (const char* k : {"implementation", "feature_flag_enabled", "reason", "config"}) {
    EXPECT_TRUE(r.json["data"].contains(k)) << k;
  }
}

// The values of a reply's Warning headers, in order.
std::vector<std::string> Warnings(const Reply& r) {
  std::vector<std::string> out;
  std::istringstream lines(r.headers);
  for (std::string line; std::getline(lines, line);) {
    if (!line.empty() && line.back() == '\r') {
      line.pop_back();
    }
    if (line.size() > 8 && strncasecmp(line.c_str(), "warning:", 8) == 0) {
      out.push_back(line.substr(line.find_first_not_of(' ', 8)));
    }
  }
  return out;
}

// Unknown request fields (README.md, "Unknown request fields"): the daemon's own bodies that
// bound a sandbox reject them with a 422 naming the field and the one probably meant.
// Captured log lines (the sink is process-wide; gtest runs the tests one at a time).
std::mutex g_log_mu;
std::vector<std::string> g_log;
void Capture(LogLevel, std::string_view event, std::string_view fields) {
  std::lock_guard<std::mutex> lock(g_log_mu);
  g_log.push_back(std::string(event) + " " + std::string(fields));
}

class UnknownFieldsTest : public DaemonApiTest {
 protected:
  void SetUp() override {
    options_.load_config = fakes::FixedConfig({{"SANDBOX_BACKEND", "process"}});
    DaemonApiTest::SetUp();
    std::lock_guard<std::mutex> lock(g_log_mu);
    g_log.clear();
    SetLogSink(&Capture);
  }
  void TearDown() override {
    SetLogSink(nullptr);
    DaemonApiTest::TearDown();
  }

  bool Logged(const std::string& line) {
    std::lock_guard<std::mutex> lock(g_log_mu);
    return std::find(g_log.begin(), g_log.end(), line) != g_log.end();
  }
};

TEST_F(UnknownFieldsTest, AMistypedLimitIsRejectedNotDropped) {
  Reply r = Call("POST", "/v1/sandboxes", R"({"limits":{"memory_bytes":268435456}})", "key-alice");
  EXPECT_EQ(r.status, 422) << r.body;
  EXPECT_EQ(r.json["message"], "unknown field 'memory_bytes' in limits; did you mean 'memory_mb'?");
  EXPECT_EQ(r.json["data"]["fields"], Json::array({"limits.memory_bytes"}));
  r = Call("POST", "/v1/sandboxes", R"({"limits":{"memory_mb":256,"cpu":1}})", "key-alice");
  EXPECT_EQ(r.status, 422) << r.body;
  EXPECT_EQ(r.json["message"], "unknown field 'cpu' in limits; did you mean 'cpus'?");
  r = Call("POST", "/v1/sandboxes", R"({"limits":{"memory":256}})", "key-alice");
  EXPECT_EQ(r.status, 422) << r.body;
  EXPECT_EQ(r.json["message"], "unknown field 'memory' in limits; did you mean 'memory_mb'?");
  r = Call("POST", "/v1/sandboxes", R"({"limits":{"disk_gb":1}})", "key-alice");
  EXPECT_EQ(r.status, 422) << r.body;
  EXPECT_EQ(r.json["message"], "unknown field 'disk_gb' in limits; did you mean 'disk_bytes'?");
  r = Call("POST", "/v1/sandboxes", R"({"limits":{"gpu_count":1}})", "key-alice");
  EXPECT_EQ(r.status, 422) << r.body;
  EXPECT_EQ(r.json["message"],
            "unknown field 'gpu_count' in limits; the fields are memory_mb, cpus, pids, tmp_mb, "
            "open_files, disk_bytes");
  EXPECT_TRUE(Call("GET", "/v1/sandboxes", "", "key-alice").json["data"]["sandboxes"].empty());
}

TEST_F(UnknownFieldsTest, TtlForTtlSIsRejected) {
  Reply r = Call("POST", "/v1/sandboxes", R"({"ttl":3})", "key-alice");
  EXPECT_EQ(r.status, 422) << r.body;
  EXPECT_EQ(r.json["message"], "unknown field 'ttl'; did you mean 'ttl_s'?");
  EXPECT_EQ(r.json["data"]["fields"], Json::array({"ttl"}));
  r = Call("POST", "/v1/sandboxes", R"({"image":"","networking":"none"})", "key-alice");
  EXPECT_EQ(r.status, 422) << r.body;
  EXPECT_EQ(r.json["message"], "unknown field 'networking'; did you mean 'network'?");
  EXPECT_TRUE(Call("GET", "/v1/sandboxes", "", "key-alice").json["data"]["sandboxes"].empty());
  // env and labels are maps: any key is data, not a field.
  Reply ok = Call("POST", "/v1/sandboxes",
                  R"({"ttl_s":60,"limits":{"memory_mb":256,"cpus":1,"pids":64,"tmp_mb":16,)"
                  R"("open_files":256},"env":{"ttl":"3"},"labels":{"memory_bytes":"1"}})",
                  "key-alice");
  ASSERT_EQ(ok.status, 201) << ok.body;
  EXPECT_TRUE(Warnings(ok).empty());
  EXPECT_EQ(ok.json["data"]["limits"]["memory_mb"], 256);
  const std::string id = ok.json["data"]["id"];
  const double expires = ok.json["data"]["expires_at"];
  // Extending the lifetime with the wrong name is a 422 too, and changes nothing.
  r = Call("POST", "/v1/sandboxes/" + id + "/timeout", R"({"ttl":3600})", "key-alice");
  EXPECT_EQ(r.status, 422) << r.body;
  EXPECT_EQ(r.json["message"], "unknown field 'ttl'; did you mean 'ttl_s'?");
  EXPECT_EQ(Call("GET", "/v1/sandboxes/" + id, "", "key-alice").json["data"]["expires_at"],
            expires);
}

TEST_F(UnknownFieldsTest, FlagsRejectUnknownTopLevelFields) {
  Reply r = Call("PUT", "/v1/flags", R"({"flags":{"SANDBOX_BACKEND":"process"},"dry_run":true})");
  EXPECT_EQ(r.status, 422) << r.body;
  EXPECT_EQ(r.json["message"], "unknown field 'dry_run'; the fields are flags, force");
  r = Call("PUT", "/v1/flags", R"({"flag":{"SANDBOX_BACKEND":"process"}})");
  EXPECT_EQ(r.status, 422) << r.body;
  EXPECT_EQ(r.json["message"], "unknown field 'flag'; did you mean 'flags'?");
  EXPECT_TRUE(Call("GET", "/v1/flags").json["data"]["flags"].empty());
  EXPECT_EQ(Call("PUT", "/v1/flags", R"({"flags":{"SANDBOX_BACKEND":"process"}})").status, 200);
}

TEST_F(UnknownFieldsTest, PullWarnsAndStillPulls) {
  Reply r = Call("POST", "/v1/images/pull", R"({"image":"remote/app:1","platform":"linux/arm64"})",
                 "key-alice");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find("\"done\":true"), std::string::npos) << r.body;
  EXPECT_EQ(Warnings(r),
            std::vector<std::string>{"299 agentbox \"unknown field 'platform' ignored\""});
  EXPECT_TRUE(
      Logged("request.unknown_field endpoint=\"POST /v1/images/pull\" "
             "field=\"platform\" suggestion=\"\" action=ignored"));
  // A failure before any progress carries the warning too.
  r = Call("POST", "/v1/images/pull", R"({"image":"missing/x","imag":"y"})", "key-alice");
  EXPECT_EQ(r.status, 404) << r.body;
  EXPECT_EQ(Warnings(r),
            std::vector<std::string>{
                "299 agentbox \"unknown field 'imag' ignored; did you mean 'image'?\""});
  r = Call("POST", "/v1/images/pull", R"({"image":"remote/app:1"})", "key-alice");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(Warnings(r).empty());
}

TEST_F(UnknownFieldsTest, TheGuestsWarningsAndRejectionsComeThrough) {
  const std::string id = CreateAs("key-alice");
  const std::string g = "/v1/sandboxes/" + id + "/api/v1/";
  Reply r = Call("POST", g + "shell/exec", R"({"id":"s","command":"echo hi","wait_second":5})",
                 "key-alice");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json["data"]["output"], "hi\n");
  EXPECT_EQ(
      Warnings(r),
      std::vector<std::string>{
          "299 agentbox \"unknown field 'wait_second' ignored; did you mean 'wait_seconds'?\""});
  r = Call("POST", g + "shell/run", R"({"command":"sleep 30","timeout_s":1})", "key-alice");
  EXPECT_EQ(r.status, 422) << r.body;
  EXPECT_EQ(r.json["message"], "unknown field 'timeout_s'; did you mean 'timeout'?");
  // The upload is streamed through the daemon; its form's warnings come back the same way.
  const std::string boundary = "b0undary";
  const std::string body =
      "--" + boundary + "\r\nContent-Disposition: form-data; name=\"path\"\r\n\r\nu.txt\r\n--" +
      boundary + "\r\nContent-Disposition: form-data; name=\"overwrite\"\r\n\r\n1\r\n--" +
      boundary +
      "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"u.txt\"\r\n"
      "\r\nbytes\r\n--" +
      boundary + "--\r\n";
  Reply up = Call("POST", g + "file/upload", body, "key-alice",
                  {"Content-Type: multipart/form-data; boundary=" + boundary});
  EXPECT_EQ(up.status, 200) << up.body;
  EXPECT_EQ(Warnings(up),
            std::vector<std::string>{"299 agentbox \"unknown field 'overwrite' ignored\""});
}

// The daemon in front of a warm pool: a create hands out a pooled sandbox under its own id,
// which the daemon registers, forwards to and deletes; unclaimed pool sandboxes stay invisible.
class PooledDaemonApiTest : public DaemonApiTest {
 protected:
  SandboxBackendPtr Decorate(fakes::ProcessBackend& backend) override {
    pool::WarmPoolOptions o;
    o.size = 2;
    auto p = std::make_unique<pool::WarmPool>(std::make_unique<fakes::BorrowedBackend>(backend), o);
    pool_ = p.get();
    return p;
  }

  bool WaitForPool(size_t n) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < deadline) {
      if (pool_->ReadyFor({}) == n) {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return false;
  }

  pool::WarmPool* pool_ = nullptr;  // owned by the fixture (decorator_)
};

TEST_F(PooledDaemonApiTest, CreateHandsOutAPooledSandbox) {
  ASSERT_TRUE(WaitForPool(2));
  std::set<std::string> pooled;
  auto all = backend_->List();
  ASSERT_TRUE(all);
  for (const auto& info : *all) {
    pooled.insert(info.id);
  }
  ASSERT_EQ(pooled.size(), 2u);
  Reply l = Call("GET", "/v1/sandboxes");
  EXPECT_EQ(l.json["data"]["sandboxes"].size(), 0u) << l.body;

  Reply c = Call("POST", "/v1/sandboxes", R"({"labels":{"team":"a"},"ttl_s":600})", "key-alice");
  ASSERT_EQ(c.status, 201) << c.body;
  const std::string id = c.json["data"]["id"];
  EXPECT_TRUE(pooled.count(id)) << id;
  EXPECT_EQ(c.json["data"]["labels"], Json({{"team", "a"}}));
  EXPECT_EQ(pool_->Stats().hits, 1u);
  Reply e = Call("POST", "/v1/sandboxes/" + id + "/api/v1/shell/exec",
                 R"({"id":"s","command":"echo pooled"})", "key-alice");
  ASSERT_EQ(e.status, 200) << e.body;
  EXPECT_EQ(e.json["data"]["output"], "pooled\n");
  EXPECT_EQ(Call("GET", "/v1/sandboxes/" + id, "", "key-bob").status, 404);
  Reply g = Call("GET", "/v1/sandboxes/" + id, "", "key-alice");
  EXPECT_EQ(g.status, 200);
  EXPECT_EQ(g.json["data"]["labels"], Json({{"team", "a"}}));
  l = Call("GET", "/v1/sandboxes");
  ASSERT_EQ(l.json["data"]["sandboxes"].size(), 1u) << l.body;
  EXPECT_EQ(l.json["data"]["sandboxes"][0]["id"], id);
  // A spec that is not pooled is created cold under the daemon's id.
  Reply cold = Call("POST", "/v1/sandboxes", R"({"env":{"A":"1"}})", "key-alice");
  ASSERT_EQ(cold.status, 201) << cold.body;
  EXPECT_FALSE(pooled.count(cold.json["data"]["id"].get<std::string>()));
  EXPECT_EQ(pool_->Stats().misses, 1u);
  // Clients cannot forge the pool's label.
  EXPECT_EQ(
      Call("POST", "/v1/sandboxes", R"({"labels":{"agentbox.pool":"warm"}})", "key-alice").status,
      400);
  EXPECT_EQ(Call("DELETE", "/v1/sandboxes/" + id, "", "key-alice").status, 200);
  EXPECT_FALSE(backend_->Get(id));
  ASSERT_TRUE(WaitForPool(2));
}

}  // namespace
}  // namespace agentbox::daemon
