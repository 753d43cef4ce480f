// GuestBudget: what one guest's answers may hold at once and how fast the daemon reads them
// (docs/reliability.md §4).
#include "http/guest_budget.h"

#include <gtest/gtest.h>

#include <thread>

namespace agentbox::http {
namespace {

using namespace std::chrono_literals;
using Clock = GuestBudget::Clock;

TEST(GuestBudget, HeldBytesAreBoundedPerGuest) {
  GuestBudget b({/*max_held=*/100, /*burst=*/1000, /*rate=*/1000});
  EXPECT_TRUE(b.Take("/a", 60));
  EXPECT_FALSE(b.Take("/a", 41));  // 101 held: refused, nothing taken
  EXPECT_TRUE(b.Take("/a", 40));
  EXPECT_TRUE(b.Take("/b", 100));  // another guest has its own bound
  b.Give("/a", 50);
  EXPECT_TRUE(b.Take("/a", 50));
  EXPECT_FALSE(b.Take("/a", 1));
}

TEST(GuestBudget, TheBurstPassesAtOnceThenReadingIsPacedAtTheRate) {
  GuestBudget b({/*max_held=*/1 << 30, /*burst=*/1000, /*rate=*/1000});  // 1000 bytes a second
  const auto t0 = Clock::now();
  EXPECT_EQ(b.Pace("/a", 1000, t0).count(), 0);
  // 500 bytes past the burst: half a second before reading on.
  EXPECT_NEAR(static_cast<double>(b.Pace("/a", 500, t0).count()), 500000, 10);
  // Other guests keep their own bucket.
  EXPECT_EQ(b.Pace("/b", 1000, t0).count(), 0);
  // Once waited, the debt is paid: another 100 bytes a tenth of a second later cost 0.1 s.
  EXPECT_NEAR(static_cast<double>(b.Pace("/a", 100, t0 + 500ms).count()), 100000, 10);
  // A second later the bucket has refilled up to the burst, no further.
  EXPECT_EQ(b.Pace("/a", 1000, t0 + 5s).count(), 0);
  EXPECT_GT(b.Pace("/a", 1, t0 + 5s).count(), 0);
}

TEST(GuestBudget, ADebtWaitsAtLeastTheShortestWait) {
  // Small reads past the burst do not each wait a few microseconds (a timer wake-up each): the
  // first waits min_wait, during which the tokens refill, so the next reads go on at once.
  GuestBudget b({/*max_held=*/1 << 30, /*burst=*/1000000, /*rate=*/1000000, /*min_wait=*/20ms});
  const auto t0 = Clock::now();
  EXPECT_EQ(b.Pace("/a", 1000000, t0).count(), 0);
  EXPECT_EQ(b.Pace("/a", 10, t0).count(), 20000);  // 10 µs of debt, 20 ms of wait
  for (int i = 0; i < 100; ++i) {                   // 20 ms later: 20,000 tokens less the debt
    EXPECT_EQ(b.Pace("/a", 100, t0 + 20ms).count(), 0);
  }
}

TEST(GuestBudget, AnswersOneAfterAnotherDoNotRefillTheBucket) {
  // A sandbox making one call at a time must not get a new burst with each answer.
  GuestBudget b({/*max_held=*/1 << 30, /*burst=*/1000, /*rate=*/10});
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(b.Take("/a", 100));
    b.Pace("/a", 1000, Clock::now());
    b.Give("/a", 100);  // the answer is done; its guest's bucket is still empty
  }
  EXPECT_GT(b.Pace("/a", 1, Clock::now()).count(), 0);
  EXPECT_EQ(b.Tracked(), 1u);
}

TEST(GuestBudget, GuestsBackToNewAreForgotten) {
  GuestBudget b({/*max_held=*/100, /*burst=*/1000, /*rate=*/1000000});  // refills in 1 ms
  for (int i = 0; i < 2000; ++i) {
    const std::string path = "/g" + std::to_string(i);
    ASSERT_TRUE(b.Take(path, 10));
    b.Pace(path, 1000, Clock::now());
    b.Give(path, 10);
  }
  std::this_thread::sleep_for(5ms);
  EXPECT_EQ(b.Tracked(), 0u);
  EXPECT_TRUE(b.Take("/held", 10));
  EXPECT_EQ(b.Tracked(), 1u);  // held bytes keep a guest's state
}

TEST(GuestBudget, RateZeroIsNotPaced) {
  GuestBudget b({/*max_held=*/100, /*burst=*/0, /*rate=*/0});
  EXPECT_EQ(b.Pace("/a", 1ull << 40, Clock::now()).count(), 0);
}

}  // namespace
}  // namespace agentbox::http
