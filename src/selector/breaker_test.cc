// The rollout breaker on a fake clock: when it trips, when it does not, its cool-down and
// half-open trial, and how the selector turns it into AUTO_ROLLBACK decisions.
#include "selector/breaker.h"

#include <gtest/gtest.h>

#include <vector>

namespace agentbox::selector {
namespace {

using namespace std::chrono_literals;
using TimePoint = std::chrono::steady_clock::time_point;

class BreakerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    breaker_.SetTimeSource([this] { return now_; });
    breaker_.SetOnChange([this](const std::string& candidate, BreakerState s, const std::string&) {
      EXPECT_EQ(candidate, "cand");
      changes_.push_back(s);
    });
    settings_.window = 1s;
    settings_.min_samples = 10;
    settings_.max_error_rate = 0.25;
    settings_.max_over_baseline = 0.10;
    settings_.windows = 2;
    settings_.cooldown = 5s;
    settings_.half_open_sandboxes = 2;
    breaker_.Configure(settings_, "cand", "base");
  }

  // One window with `ops` candidate operations of which `errors` fail (and, optionally, the
  // baseline's), then the clock moves past its end.
  void Window(int ops, int errors, int base_ops = 0, int base_errors = 0) {
    for (int i = 0; i < ops; ++i) {
      breaker_.Record("cand", i >= errors);
    }
    for (int i = 0; i < base_ops; ++i) {
      breaker_.Record("base", i >= base_errors);
    }
    now_ += 1s;
  }
  BreakerState State() { return breaker_.GetStatus().state; }

  TimePoint now_{std::chrono::hours(1000)};
  BreakerSettings settings_;
  Breaker breaker_{[] { return TimePoint{}; }};
  std::vector<BreakerState> changes_;
};

TEST_F(BreakerTest, TripsAfterConsecutiveBreachingWindowsAndSaysWhy) {
  Window(20, 10);  // 50% errors: one breaching window is not enough
  EXPECT_EQ(State(), BreakerState::kClosed);
  EXPECT_EQ(breaker_.GetStatus().breaching_windows, 1);
  Window(20, 10);
  EXPECT_EQ(State(), BreakerState::kOpen);
  EXPECT_EQ(changes_, std::vector<BreakerState>{BreakerState::kOpen});
  const Breaker::Verdict v = breaker_.Admit(true);
  EXPECT_FALSE(v.allow);
  EXPECT_NE(v.why.find("error rate 50% (10/20) above 25% in 2 windows"), std::string::npos)
      << v.why;
}

TEST_F(BreakerTest, NoDataIsInconclusiveNeverSuccess) {
  Window(20, 10);
  Window(5, 5);  // below min_samples: neither trips nor clears
  Window(0, 0);
  EXPECT_EQ(State(), BreakerState::kClosed);
  EXPECT_EQ(breaker_.GetStatus().breaching_windows, 1);
  Window(20, 10);
  EXPECT_EQ(State(), BreakerState::kOpen);
}

TEST_F(BreakerTest, AHealthyWindowResetsTheCount) {
  Window(20, 10);
  Window(20, 1);
  Window(20, 10);
  EXPECT_EQ(State(), BreakerState::kClosed);
  EXPECT_TRUE(breaker_.Admit(true).allow);
}

TEST_F(BreakerTest, ComparesWithTheBaseline) {
  // 20% is under the absolute 25%, but 15 points above a baseline at 5%.
  Window(20, 4, 20, 1);
  Window(20, 4, 20, 1);
  EXPECT_EQ(State(), BreakerState::kOpen);
  EXPECT_NE(breaker_.GetStatus().why.find("above base's 5%"), std::string::npos)
      << breaker_.GetStatus().why;
  // A baseline just as bad is no reason to roll back.
  breaker_.Configure(settings_, "cand2", "base");
  breaker_.Configure(settings_, "cand", "base");
  Window(20, 4, 20, 3);
  Window(20, 4, 20, 3);
  EXPECT_EQ(State(), BreakerState::kClosed);
}

TEST_F(BreakerTest, CoolDownThenHalfOpenTrialClosesOrReopens) {
  Window(20, 20);
  Window(20, 20);
  ASSERT_EQ(State(), BreakerState::kOpen);
  now_ += 3s;
  EXPECT_FALSE(breaker_.Admit(true).allow);  // still cooling down (5 s)
  now_ += 2s;
  EXPECT_EQ(State(), BreakerState::kHalfOpen);
  EXPECT_TRUE(breaker_.Admit(false).allow);  // a preview uses no admission
  EXPECT_TRUE(breaker_.Admit(true).allow);
  EXPECT_TRUE(breaker_.Admit(true).allow);
  EXPECT_FALSE(breaker_.Admit(true).allow);  // the two trial sandboxes are out
  Window(20, 20);                            // the trial goes badly: open again
  EXPECT_EQ(State(), BreakerState::kOpen);
  now_ += 5s;
  EXPECT_EQ(State(), BreakerState::kHalfOpen);
  Window(20, 0);  // healthy now: closed
  EXPECT_EQ(State(), BreakerState::kClosed);
  EXPECT_TRUE(breaker_.Admit(true).allow);
  EXPECT_EQ(changes_, (std::vector<BreakerState>{BreakerState::kOpen, BreakerState::kHalfOpen,
                                                 BreakerState::kOpen, BreakerState::kHalfOpen,
                                                 BreakerState::kClosed}));
}

TEST_F(BreakerTest, AReloadKeepsTheTripUnlessTheRolloutChanges) {
  Window(20, 20);
  Window(20, 20);
  ASSERT_EQ(State(), BreakerState::kOpen);
  settings_.max_error_rate = 0.5;
  breaker_.Configure(settings_, "cand", "base");
  EXPECT_EQ(State(), BreakerState::kOpen);
  breaker_.Configure(settings_, "other", "base");
  EXPECT_EQ(State(), BreakerState::kClosed);
}

TEST_F(BreakerTest, OffMeansAlwaysAllowed) {
  settings_.enabled = false;
  breaker_.Configure(settings_, "cand", "base");
  Window(20, 20);
  Window(20, 20);
  Window(20, 20);
  EXPECT_TRUE(breaker_.Admit(true).allow);
  EXPECT_FALSE(breaker_.GetStatus().enabled);
}

}  // namespace
}  // namespace agentbox::selector
