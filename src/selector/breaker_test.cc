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

// A window of `n` successful latency-op calls on `backend`: all at `fast_s` except the slowest
// `slow` of them at `slow_s`.
void LatencyWindow(Breaker& b, const std::string& backend, int n, double fast_s, int slow,
                   double slow_s) {
  for (int i = 0; i < n; ++i) {
    b.Record(backend, true, "shell/exec", i < slow ? slow_s : fast_s);
  }
}

TEST_F(BreakerTest, LatencyOffByDefaultNeverTrips) {
  for (int w = 0; w < 3; ++w) {
    LatencyWindow(breaker_, "cand", 50, 5.0, 50, 5.0);
    now_ += 1s;
  }
  EXPECT_EQ(State(), BreakerState::kClosed);
}

TEST_F(BreakerTest, TripsOnAnAbsoluteP99AndSaysWhich) {
  settings_.max_p99 = 200ms;
  breaker_.Configure(settings_, "cand", "base");
  // 100 calls, 1 slow: p99 (nearest rank 99) is fast, no breach.
  LatencyWindow(breaker_, "cand", 100, 0.010, 1, 1.0);
  now_ += 1s;
  EXPECT_EQ(breaker_.GetStatus().breaching_windows, 0);
  // 100 calls, 2 slow: p99 is 1 s.
  for (int w = 0; w < 2; ++w) {
    LatencyWindow(breaker_, "cand", 100, 0.010, 2, 1.0);
    now_ += 1s;
  }
  EXPECT_EQ(State(), BreakerState::kOpen);
  const Breaker::Verdict v = breaker_.Admit(true);
  EXPECT_NE(v.why.find("p99 of shell/exec 1000 ms (100 samples) above 200 ms"), std::string::npos)
      << v.why;
}

TEST_F(BreakerTest, TripsOnP99RelativeToTheBaselineOnlyWithEnoughBaselineSamples) {
  settings_.max_p99_over_baseline = 3;
  breaker_.Configure(settings_, "cand", "base");
  // The candidate is 10x slower, but the baseline has too few samples to compare: inconclusive.
  for (int w = 0; w < 3; ++w) {
    LatencyWindow(breaker_, "cand", 20, 0.100, 0, 0);
    LatencyWindow(breaker_, "base", 5, 0.010, 0, 0);
    now_ += 1s;
  }
  EXPECT_EQ(State(), BreakerState::kClosed);
  // 2x slower is within 3x.
  for (int w = 0; w < 3; ++w) {
    LatencyWindow(breaker_, "cand", 20, 0.020, 0, 0);
    LatencyWindow(breaker_, "base", 20, 0.010, 0, 0);
    now_ += 1s;
  }
  EXPECT_EQ(State(), BreakerState::kClosed);
  // 10x slower, twice: open.
  for (int w = 0; w < 2; ++w) {
    LatencyWindow(breaker_, "cand", 20, 0.100, 0, 0);
    LatencyWindow(breaker_, "base", 20, 0.010, 0, 0);
    now_ += 1s;
  }
  EXPECT_EQ(State(), BreakerState::kOpen);
  EXPECT_NE(breaker_.GetStatus().why.find("more than 3x base's 10.0 ms"), std::string::npos)
      << breaker_.GetStatus().why;
}

TEST_F(BreakerTest, OtherOperationsAndFailuresAreNotLatencySamples) {
  settings_.max_p99 = 200ms;
  breaker_.Configure(settings_, "cand", "base");
  for (int w = 0; w < 3; ++w) {
    for (int i = 0; i < 50; ++i) {
      breaker_.Record("cand", true, "create", 5.0);  // not the latency op
    }
    now_ += 1s;
  }
  EXPECT_EQ(State(), BreakerState::kClosed);
  for (int i = 0; i < 30; ++i) {
    breaker_.Record("cand", true, "shell/exec", 0.5);
  }
  EXPECT_EQ(breaker_.GetStatus().candidate_latency_samples, 30);
  EXPECT_NEAR(breaker_.GetStatus().candidate_p99_s, 0.5, 1e-9);
}

TEST_F(BreakerTest, TheLatencySampleIsBoundedAndStaysRepresentative) {
  settings_.max_p99 = 200ms;
  breaker_.Configure(settings_, "cand", "base");
  // 20,000 calls, 5% of them slow, interleaved: the bounded sample still sees a p99 that is slow.
  for (int i = 0; i < 20000; ++i) {
    breaker_.Record("cand", true, "shell/exec", i % 20 == 0 ? 1.0 : 0.001);
  }
  const Breaker::Status st = breaker_.GetStatus();
  EXPECT_EQ(st.candidate_latency_samples, 4096);
  EXPECT_NEAR(st.candidate_p99_s, 1.0, 1e-9);
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
