// The warm pool over real jail sandboxes: a pooled sandbox is handed out, works, and what the
// claim recorded (owner, labels, expiry) survives a new JailBackend over the same state (a
// daemon restart); a new pool adopts the sandboxes the last one left running. Skips with the
// reason where jails cannot run.
#include <gtest/gtest.h>
#include <signal.h>

#include <functional>
#include <thread>

#include "backends/jail/jail_test_util.h"
#include "backends/pool/warm_pool.h"
#include "common/time_util.h"

namespace agentbox::pool {
namespace {

using namespace std::chrono_literals;
using namespace agentbox::jail::testing;

bool WaitFor(const std::function<bool()>& cond, std::chrono::milliseconds limit = 60s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) {
      return true;
    }
    std::this_thread::sleep_for(10ms);
  }
  return cond();
}

class WarmPoolJailTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!JailsAvailable(&why)) {
      GTEST_SKIP() << "SKIPPED: jail sandboxes cannot run here: " << why;
    }
    state_dir_ = tmp_.path() + "/state";
  }

  // Stops the pool first (so it starts nothing more), then destroys every sandbox, pooled ones
  // included: nothing keeps running after the test.
  void TearDown() override {
    pool_.reset();
    if (state_dir_.empty()) {
      return;
    }
    jail::JailBackend raw(TestOptions(state_dir_));
    if (auto all = raw.List()) {
      for (const auto& info : *all) {
        EXPECT_TRUE(raw.Destroy(info.id)) << info.id;
      }
    }
    auto left = raw.List();
    ASSERT_TRUE(left);
    EXPECT_TRUE(left->empty());
  }

  std::unique_ptr<WarmPool> MakePool(size_t size) {
    WarmPoolOptions o;
    o.size = size;
    return std::make_unique<WarmPool>(std::make_unique<jail::JailBackend>(TestOptions(state_dir_)),
                                      o);
  }

  TempDir tmp_;
  std::string state_dir_;
  std::unique_ptr<WarmPool> pool_;
};

TEST_F(WarmPoolJailTest, HandsOutAPooledSandboxWhoseClaimSurvivesARestart) {
  pool_ = MakePool(1);
  ASSERT_TRUE(WaitFor([&] { return pool_->ReadyFor({}) == 1; })) << "the pool never filled";
  EXPECT_TRUE(pool_->List()->empty());  // hidden while pooled

  SandboxSpec spec;
  spec.owner = "alice";
  spec.labels = {{"team", "a"}};
  spec.ttl_s = 900;
  const double before = NowUnix();
  auto info = pool_->Create("sb-requested", spec);
  ASSERT_TRUE(info) << info.error().message;
  EXPECT_NE(info->id, "sb-requested");
  EXPECT_EQ(pool_->Stats().hits, 1u);
  EXPECT_EQ(info->state, SandboxState::kRunning);
  EXPECT_EQ(info->spec.owner, "alice");
  EXPECT_EQ(info->spec.labels, spec.labels);
  EXPECT_GE(info->expires_at, before + 900);
  // The sandbox works at once, and its spare shell makes the first command cheap.
  ExecResult r = Exec(*info, "echo hi; hostname");
  EXPECT_EQ(r.returncode, 0) << r.error;
  EXPECT_EQ(r.output, "hi\n" + info->id + "\n");
  auto listed = pool_->List();
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].id, info->id);

  // A new JailBackend over the same state (the daemon restarted) reads the claim back.
  jail::JailBackend again(TestOptions(state_dir_));
  auto got = again.Get(info->id);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->spec.owner, "alice");
  EXPECT_EQ(got->spec.labels, spec.labels);
  EXPECT_DOUBLE_EQ(got->expires_at, info->expires_at);
  EXPECT_FALSE(IsUnclaimedPoolSandbox(*got));

  // Refilled in the background.
  ASSERT_TRUE(WaitFor([&] { return pool_->ReadyFor({}) == 1; }));
}

TEST_F(WarmPoolJailTest, ARestartedPoolAdoptsTheRunningSandboxes) {
  pool_ = MakePool(2);
  ASSERT_TRUE(WaitFor([&] { return pool_->ReadyFor({}) == 2; }));
  pool_.reset();  // the daemon stops; the pooled sandboxes keep running

  jail::JailBackend raw(TestOptions(state_dir_));
  auto left = raw.List();
  ASSERT_TRUE(left);
  ASSERT_EQ(left->size(), 2u);
  for (const auto& i : *left) {
    EXPECT_TRUE(IsUnclaimedPoolSandbox(i));
    EXPECT_EQ(i.state, SandboxState::kRunning);
  }

  pool_ = MakePool(1);  // smaller now: one is adopted, one destroyed
  ASSERT_TRUE(WaitFor([&] { return pool_->Adopted() && raw.List()->size() == 1; }));
  EXPECT_EQ(pool_->ReadyFor({}), 1u);
  EXPECT_EQ(pool_->Stats().started, 0u);
  const std::string kept = (*raw.List())[0].id;

  SandboxSpec spec;
  spec.owner = "bob";
  auto info = pool_->Create("sb-x", spec);
  ASSERT_TRUE(info) << info.error().message;
  EXPECT_EQ(info->id, kept);
  EXPECT_EQ(Exec(*info, "echo adopted").output, "adopted\n");
}

TEST_F(WarmPoolJailTest, ClaimOfADeadSandboxFailsAndTheJailRecordsNothing) {
  jail::JailBackend raw(TestOptions(state_dir_));
  SandboxSpec pooled;
  pooled.labels = {{kPoolLabel, kPoolLabelValue}};
  auto info = raw.Create("sb-dead", pooled);
  ASSERT_TRUE(info) << info.error().message;
  auto rec = jail::LoadSandboxRecord(raw.SandboxDir("sb-dead") + "/spec.json");
  ASSERT_TRUE(rec);
  ASSERT_EQ(::kill(rec->init.pid, SIGKILL), 0);
  ASSERT_TRUE(WaitFor([&] { return raw.Get("sb-dead")->state != SandboxState::kRunning; }));
  SandboxSpec spec;
  spec.owner = "alice";
  auto claimed = raw.Claim("sb-dead", spec, NowUnix() + 60);
  ASSERT_FALSE(claimed);
  EXPECT_EQ(claimed.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(raw.Get("sb-dead")->spec.owner, "");
  EXPECT_EQ(raw.Claim("sb-none", spec, 1).error().code, ErrorCode::kNotFound);
}

}  // namespace
}  // namespace agentbox::pool
