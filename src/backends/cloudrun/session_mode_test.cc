// Units of cloudrun session mode against in-memory fakes of Cloud Storage, Cloud Run and the
// daemon's tunnel endpoint: what an execution is started with (the token only in its
// environment), create waiting for the guest or failing clearly and cleaning up, a lost execution
// replaced with the daemon told, and session snapshots kept in the bucket. The end-to-end suite
// (tests/cloudrun/cloudrun_session_test.cc) and the conformance suite run the real thing.
#include <gtest/gtest.h>

#include <condition_variable>
#include <set>

#include "backends/cloudrun/cloudrun_backend.h"
#include "backends/cloudrun/layout.h"
#include "backends/cloudrun/memory_cloud.h"
#include "common/fs_util.h"

namespace agentbox::cloudrun {
namespace {

using namespace std::chrono_literals;

// The daemon's tunnel endpoint as a backend sees it; Connect plays the guest dialling in.
class FakeTunnels final : public TunnelRegistry {
 public:
  Result<Registration> Register(const std::string& id, const std::string& secret) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (registered_.count(id)) {
      return Fail(ErrorCode::kConflict, "registered");
    }
    registered_[id] = secret.empty() ? "minted-secret-minted-secret-minted-secret" : secret;
    return Registration{id + "." + registered_[id], "unix:/tunnels/" + id + ".sock"};
  }
  void Unregister(const std::string& id) override {
    std::lock_guard<std::mutex> lock(mu_);
    registered_.erase(id);
    connected_.erase(id);
    cv_.notify_all();
  }
  bool Registered(const std::string& id) const override {
    std::lock_guard<std::mutex> lock(mu_);
    return registered_.count(id) > 0;
  }
  bool Connected(const std::string& id) const override {
    std::lock_guard<std::mutex> lock(mu_);
    return connected_.count(id) > 0;
  }
  bool WaitConnected(const std::string& id, std::chrono::milliseconds timeout) override {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return connected_.count(id) > 0; });
  }
  void Drop(const std::string& id) override {
    std::lock_guard<std::mutex> lock(mu_);
    connected_.erase(id);
  }
  // The guest with `token` connects (refused unless it is the registered one).
  void Connect(const std::string& id, const std::string& token) {
    std::lock_guard<std::mutex> lock(mu_);
    if (registered_.count(id) && token == id + "." + registered_[id]) {
      connected_.insert(id);
      cv_.notify_all();
    }
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, std::string> registered_;
  std::set<std::string> connected_;
};

class CloudRunSessionModeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/agentbox-cloudrun-session-unit-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    store_ = std::make_shared<MemoryObjectStore>();
    jobs_ = std::make_shared<FakeJobRunner>([this](const std::string&, FakeExecution& e) {
      // A session execution keeps running; its guest dials in with the token of its env.
      e.done = false;
      e.exit_code.reset();
      std::string token;
      for (const auto& v : e.overrides["containerOverrides"][0]["env"]) {
        if (v["name"] == "AGENTBOX_GUEST_TOKEN") {
          token = v["value"];
        }
      }
      if (guest_connects_) {
        tunnels_.Connect("sb1", token);
      }
      if (fails_at_once_) {
        e.done = true;
        e.succeeded = false;
        e.exit_code = 1;
        e.message = "Task failed";
      }
    });
    opts_.project = "test-project";
    opts_.bucket = "test-bucket";
    opts_.state_dir = dir_ + "/cloudrun";
    opts_.guest_binary = "/proc/self/exe";
    opts_.mode = "session";
    opts_.public_url = "http://127.0.0.1:8080";
    opts_.start_timeout = 500ms;
    opts_.connect_timeout = 200ms;
    opts_.poll_max = 10ms;
    backend_ = std::make_unique<CloudRunBackend>(opts_, Cloud{store_, jobs_}, &tunnels_);
  }
  void TearDown() override {
    backend_.reset();
    (void)RemoveTree(dir_);
  }
  Result<SandboxInfo> Create() {
    SandboxSpec spec;
    spec.ttl_s = 600;
    return backend_->Create("sb1", spec);
  }
  size_t SandboxObjects() {
    size_t n = 0;
    for (const auto& [name, data] : store_->Names()) {
      n += name.starts_with("sandboxes/sb1/") ? 1 : 0;
    }
    return n;
  }

  std::string dir_;
  std::shared_ptr<MemoryObjectStore> store_;
  std::shared_ptr<FakeJobRunner> jobs_;
  FakeTunnels tunnels_;
  CloudRunOptions opts_;
  std::unique_ptr<CloudRunBackend> backend_;
  bool guest_connects_ = true;
  bool fails_at_once_ = false;
};

TEST(CloudRunSessionOptionsTest, TunnelUrlAndPublicUrl) {
  EXPECT_EQ(TunnelUrl("http://10.0.0.1:8080"), "ws://10.0.0.1:8080/v1/tunnel");
  EXPECT_EQ(TunnelUrl("https://agentbox.example.com/"), "wss://agentbox.example.com/v1/tunnel");
  EXPECT_EQ(TunnelUrl("wss://h/base"), "wss://h/base/v1/tunnel");
  for (const char* bad : {"", "10.0.0.1:8080", "ftp://h", "http://", "http:///x", "http://h?x"}) {
    EXPECT_EQ(TunnelUrl(bad), "") << bad;
  }
}

TEST_F(CloudRunSessionModeTest, CreateStartsOneExecutionAndWaitsForTheGuest) {
  auto info = Create();
  ASSERT_TRUE(info) << info.error().message;
  EXPECT_EQ(info->guest_endpoint, "unix:/tunnels/sb1.sock");
  EXPECT_TRUE(info->guest_token.starts_with("sb1."));
  EXPECT_NE(info->detail.find("session mode"), std::string::npos) << info->detail;
  EXPECT_EQ(info->spec.run_mode, "session");
  ASSERT_EQ(jobs_->executions(), 1u);
  auto e = jobs_->GetExecution(jobs_->last_execution());
  ASSERT_TRUE(e);
  // The guest serves through the tunnel; its token is in the environment, never in the args.
  auto record = store_->Read(layout::RecordObject("sb1"), std::nullopt);
  ASSERT_TRUE(record);
  const Json r = Json::parse(record->data);
  EXPECT_EQ(r["mode"], "session");
  EXPECT_EQ(r["execution"], jobs_->last_execution());
  EXPECT_TRUE(backend_->GetCapabilities().pty);
  EXPECT_TRUE(backend_->GetCapabilities().background_processes);
  EXPECT_TRUE(backend_->GetCapabilities().claim);

  auto got = backend_->Get("sb1");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->guest_endpoint, info->guest_endpoint);
  EXPECT_EQ(got->guest_token, info->guest_token);

  ASSERT_TRUE(backend_->Destroy("sb1"));
  EXPECT_FALSE(tunnels_.Registered("sb1"));
  EXPECT_EQ(jobs_->GetExecution(jobs_->last_execution())->value("cancelledCount", 0), 1);
  EXPECT_EQ(SandboxObjects(), 0u);
  EXPECT_TRUE(jobs_->Jobs().empty());
}

TEST(CloudRunSessionLayoutTest, OverridesCarryTheTokenInTheEnvironmentOnly) {
  CloudRunOptions o;
  o.public_url = "https://d.example.com";
  Json ov = BuildSessionOverrides(o, "sb1.secret", 1e9, "agentbox/guest/a", "agentbox/guest/a");
  const Json& c = ov["containerOverrides"][0];
  EXPECT_EQ(c["args"], (Json{"serve", "--connect", "wss://d.example.com/v1/tunnel", "--workdir",
                             "/workspace"}));
  EXPECT_EQ(c["env"][0], (Json{{"name", "AGENTBOX_GUEST_TOKEN"}, {"value", "sb1.secret"}}));
  EXPECT_EQ(ov["timeout"], "604800s");  // Cloud Run's 168 h at most
  Json newer = BuildSessionOverrides(o, "t", 60, "agentbox/guest/b", "agentbox/guest/a");
  EXPECT_EQ(newer["containerOverrides"][0]["args"][0], "exec");
}

TEST_F(CloudRunSessionModeTest, AnExecutionThatFailsBeforeConnectingIsAClearErrorAndCleansUp) {
  guest_connects_ = false;
  fails_at_once_ = true;
  auto info = Create();
  ASSERT_FALSE(info);
  EXPECT_EQ(info.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(info.error().message.find("failed (container exit code 1)"), std::string::npos)
      << info.error().message;
  EXPECT_NE(info.error().message.find("before its guest connected"), std::string::npos);
  EXPECT_EQ(SandboxObjects(), 0u);
  EXPECT_TRUE(jobs_->Jobs().empty());
  EXPECT_FALSE(tunnels_.Registered("sb1"));
}

TEST_F(CloudRunSessionModeTest, AGuestThatNeverConnectsIsCancelled) {
  guest_connects_ = false;
  auto info = Create();
  ASSERT_FALSE(info);
  EXPECT_NE(info.error().message.find("did not connect"), std::string::npos)
      << info.error().message;
  EXPECT_NE(info.error().message.find("ws://127.0.0.1:8080/v1/tunnel"), std::string::npos);
  EXPECT_EQ(jobs_->GetExecution(jobs_->last_execution())->value("cancelledCount", 0), 1);
  EXPECT_EQ(SandboxObjects(), 0u);
  EXPECT_TRUE(jobs_->Jobs().empty());
}

TEST_F(CloudRunSessionModeTest, ALostExecutionIsReplacedAndTheDaemonTold) {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> seen;
  SandboxInfo replaced;
  GuestEvents ev;
  ev.lost = [&](const std::string& id, const std::string& detail) {
    std::lock_guard<std::mutex> lock(mu);
    seen.push_back("lost " + id + ": " + detail);
  };
  ev.replaced = [&](const SandboxInfo& info, const std::string& why) {
    std::lock_guard<std::mutex> lock(mu);
    seen.push_back("replaced: " + why);
    replaced = info;
    cv.notify_all();
  };
  backend_->SetGuestEvents(ev);
  auto info = Create();
  ASSERT_TRUE(info) << info.error().message;
  const std::string first = jobs_->last_execution();
  tunnels_.Drop("sb1");
  jobs_->Finish(first, [](FakeExecution& e) {
    e.done = true;
    e.succeeded = false;
    e.exit_code = 137;
  });
  std::unique_lock<std::mutex> lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, 5s, [&] { return !replaced.id.empty(); }));
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_NE(seen[0].find("lost sb1: the Cloud Run execution " + first +
                         " failed (container exit "
                         "code 137, killed)"),
            std::string::npos)
      << seen[0];
  EXPECT_NE(seen[1].find("replaced by " + jobs_->last_execution()), std::string::npos) << seen[1];
  EXPECT_NE(jobs_->last_execution(), first);
  EXPECT_EQ(replaced.guest_endpoint, info->guest_endpoint);  // same socket, same token
  EXPECT_EQ(replaced.guest_token, info->guest_token);
  EXPECT_EQ(replaced.state, SandboxState::kRunning);
}

TEST_F(CloudRunSessionModeTest, SessionSnapshotsAreKeptInTheBucket) {
  ASSERT_TRUE(Create());
  backend_->KeepSessionState("sb1", "a/b", Json{{"cwd", "/tmp"}});
  backend_->KeepSessionState("sb1", "c", Json{{"cwd", "/"}});
  backend_->KeepSessionState("sb1", "c", Json());  // deleted
  Result<Json> kept = Json::object();
  for (auto until = std::chrono::steady_clock::now() + 5s; std::chrono::steady_clock::now() < until;
       std::this_thread::sleep_for(10ms)) {
    kept = backend_->KeptSessionStates("sb1");
    if (kept && kept->size() == 1 && kept->contains("a/b")) {
      break;
    }
  }
  ASSERT_TRUE(kept);
  EXPECT_EQ(*kept, (Json{{"a/b", {{"cwd", "/tmp"}}}})) << kept->dump();
}

TEST_F(CloudRunSessionModeTest, ARestartedDaemonTakesTheTunnelBackWithTheRecordsSecret) {
  auto info = Create();
  ASSERT_TRUE(info);
  backend_.reset();  // the daemon stops; the execution runs on
  EXPECT_FALSE(tunnels_.Registered("sb1"));
  backend_ = std::make_unique<CloudRunBackend>(opts_, Cloud{store_, jobs_}, &tunnels_);
  auto list = backend_->List();
  ASSERT_TRUE(list);
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].guest_token, info->guest_token);
  EXPECT_TRUE(tunnels_.Registered("sb1"));
  EXPECT_EQ(jobs_->executions(), 1u);  // nothing started anew
}

}  // namespace
}  // namespace agentbox::cloudrun
