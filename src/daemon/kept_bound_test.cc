#include "daemon/kept_bound.h"

#include <gtest/gtest.h>

namespace agentbox::daemon {
namespace {

TEST(KeptBound, UnderTheBudgetNothingIsDropped) {
  EXPECT_TRUE(SnapshotsOverBudget({{"a", 100}, {"b", 200}}, 300).empty());
  EXPECT_TRUE(SnapshotsOverBudget({}, 0).empty());
}

TEST(KeptBound, TheLargestGoFirstUntilTheRestFit) {
  const auto drop = SnapshotsOverBudget({{"a", 100}, {"b", 5000}, {"c", 300}, {"d", 900}}, 1000);
  EXPECT_EQ(drop, (std::vector<std::string>{"b", "d"}));
}

TEST(KeptBound, ManySmallSessionsAreBoundedToo) {
  std::map<std::string, size_t> sizes;
  for (int i = 0; i < 256; ++i) {
    std::string id = std::to_string(i);
    id.insert(0, 1, 's');  // not "s" + ...: GCC 12's -Wrestrict false positive
    sizes[id] = 10000;
  }
  const auto drop = SnapshotsOverBudget(sizes, 1 << 20);
  EXPECT_EQ(drop.size(), 256u - 104u);  // 104 snapshots of 10000 bytes fit in 1 MiB
}

}  // namespace
}  // namespace agentbox::daemon
