// Unleash's normalized hash (rollout.md): its published test vectors, and the properties a sticky
// percentage rollout depends on.
#include "selector/rollout.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace agentbox::selector {
namespace {

TEST(RolloutHash, MatchesUnleashTestVectors) {
  EXPECT_EQ(Murmur3X86_32("gr1:123", 0), 538421172u);
  EXPECT_EQ(NormalizedBucket("gr1", "123"), 73);
  EXPECT_EQ(NormalizedBucket("groupX", "999"), 25);
  EXPECT_EQ(NormalizedBucket("Feature.flexibleRollout.10", "174"), 10);
  EXPECT_EQ(NormalizedBucket("Feature.flexibleRollout.10", "499"), 32);
  EXPECT_EQ(NormalizedBucket("Feature.flexibleRollout.userId.55", "25"), 55);
  EXPECT_EQ(NormalizedBucket("Feature.flexibleRollout.sessionId.42", "147"), 42);
}

TEST(RolloutHash, ReferenceMurmur3Values) {
  // Published verification values of MurmurHash3_x86_32, covering every tail length.
  EXPECT_EQ(Murmur3X86_32("", 0), 0u);
  EXPECT_EQ(Murmur3X86_32("", 1), 0x514E28B7u);
  EXPECT_EQ(Murmur3X86_32("", 0xffffffff), 0x81F16F39u);
  EXPECT_EQ(Murmur3X86_32(std::string(4, '\0'), 0), 0x2362F9DEu);
  EXPECT_EQ(Murmur3X86_32("a", 0x9747b28c), 0x7FA09EA6u);
  EXPECT_EQ(Murmur3X86_32("ab", 0x9747b28c), 0x74875592u);
  EXPECT_EQ(Murmur3X86_32("abc", 0x9747b28c), 0xC84A62DDu);
  EXPECT_EQ(Murmur3X86_32("abcd", 0x9747b28c), 0xF0478627u);
  EXPECT_EQ(Murmur3X86_32("aaaa", 0x9747b28c), 0x5A97808Au);
  EXPECT_EQ(Murmur3X86_32("Hello, world!", 0x9747b28c), 0x24884CBAu);
  EXPECT_EQ(Murmur3X86_32("The quick brown fox jumps over the lazy dog", 0x9747b28c), 0x2FA826CDu);
}

TEST(RolloutHash, RaisingThePercentageNeverMovesAnEnrolledSubjectOut) {
  for (int s = 0; s < 2000; ++s) {
    const int bucket = NormalizedBucket("flag", "user-" + std::to_string(s));
    ASSERT_GE(bucket, 1);
    ASSERT_LE(bucket, 100);
    bool was = false;
    for (int pct = 0; pct <= 100; ++pct) {
      const bool now = Enrolled(pct, bucket);
      EXPECT_FALSE(was && !now) << "subject " << s << " left at " << pct << "%";
      was = now;
    }
    EXPECT_FALSE(Enrolled(0, bucket));
    EXPECT_TRUE(Enrolled(100, bucket));
  }
}

TEST(RolloutHash, DistinctGroupsEnrolIndependentSubjects) {
  // At 50% each, two independent groups share about a quarter of the subjects.
  int both = 0;
  const int n = 20000;
  for (int s = 0; s < n; ++s) {
    const std::string subject = "tenant-" + std::to_string(s);
    both += Enrolled(50, NormalizedBucket("flag-a", subject)) &&
            Enrolled(50, NormalizedBucket("flag-b", subject));
  }
  EXPECT_NEAR(static_cast<double>(both) / n, 0.25, 0.02);
}

TEST(RolloutHash, BucketsAreUniform) {
  // Chi-square over 100 buckets, 99 degrees of freedom: 148.2 is the 0.999 quantile.
  const int n = 100000;
  std::vector<int> count(101, 0);
  for (int s = 0; s < n; ++s) {
    ++count[NormalizedBucket("uniformity", std::to_string(s))];
  }
  double chi2 = 0;
  const double expected = n / 100.0;
  for (int b = 1; b <= 100; ++b) {
    chi2 += (count[b] - expected) * (count[b] - expected) / expected;
  }
  EXPECT_LT(chi2, 148.2);
}

}  // namespace
}  // namespace agentbox::selector
