#include "common/known_fields.h"

#include <gtest/gtest.h>

namespace agentbox {
namespace {

const std::vector<std::string_view> kLimits = {"memory_mb", "cpus", "pids", "tmp_mb", "open_files"};
const std::vector<std::string_view> kCreate = {"image", "backend", "subject", "network",
                                               "ttl_s", "limits",  "env",     "labels"};

TEST(EditDistance, CountsEditsAndTranspositions) {
  EXPECT_EQ(EditDistance("", ""), 0u);
  EXPECT_EQ(EditDistance("abc", ""), 3u);
  EXPECT_EQ(EditDistance("", "abc"), 3u);
  EXPECT_EQ(EditDistance("kitten", "sitting"), 3u);
  EXPECT_EQ(EditDistance("cpus", "cpsu"), 1u);  // one transposition, not two substitutions
  EXPECT_EQ(EditDistance("ttl", "ttl_s"), 2u);
  EXPECT_EQ(EditDistance("same", "same"), 0u);
}

TEST(ClosestField, SuggestsTheFieldProbablyMeant) {
  EXPECT_EQ(ClosestField("memory_bytes", kLimits), "memory_mb");
  EXPECT_EQ(ClosestField("memory", kLimits), "memory_mb");
  EXPECT_EQ(ClosestField("mem", kLimits), "memory_mb");
  EXPECT_EQ(ClosestField("cpu", kLimits), "cpus");
  EXPECT_EQ(ClosestField("cpsu", kLimits), "cpus");
  EXPECT_EQ(ClosestField("pid", kLimits), "pids");
  EXPECT_EQ(ClosestField("tmp", kLimits), "tmp_mb");
  EXPECT_EQ(ClosestField("open_fds", kLimits), "open_files");
  EXPECT_EQ(ClosestField("ttl", kCreate), "ttl_s");
  EXPECT_EQ(ClosestField("ttl_seconds", kCreate), "ttl_s");
  EXPECT_EQ(ClosestField("label", kCreate), "labels");
  EXPECT_EQ(ClosestField("imgae", kCreate), "image");
  EXPECT_EQ(ClosestField("environment", kCreate), "env");
}

TEST(ClosestField, IgnoresCaseUnderscoresAndDashes) {
  EXPECT_EQ(ClosestField("memoryMB", kLimits), "memory_mb");
  EXPECT_EQ(ClosestField("MEMORY-MB", kLimits), "memory_mb");
  EXPECT_EQ(ClosestField("TTL_S", kCreate), "ttl_s");
}

TEST(ClosestField, SuggestsNothingFarAway) {
  EXPECT_EQ(ClosestField("gpu", kLimits), "");
  EXPECT_EQ(ClosestField("x", kLimits), "");
  EXPECT_EQ(ClosestField("", kLimits), "");
  EXPECT_EQ(ClosestField("___", kLimits), "");
  EXPECT_EQ(ClosestField("foo", kCreate), "");
  EXPECT_EQ(ClosestField("region", kCreate), "");
  EXPECT_EQ(ClosestField("anything", {}), "");
}

TEST(ClosestField, PrefersTheNearestThenTheLongerPrefix) {
  EXPECT_EQ(ClosestField("tmp_mbs", kLimits), "tmp_mb");
  EXPECT_EQ(ClosestField("timeouts", {"timeout", "time"}), "timeout");
  EXPECT_EQ(ClosestField("ab", {"abc", "abd"}), "abc");  // a tie goes to the declaration order
}

TEST(CheckKnownFields, AcceptsKnownFieldsAndNonObjects) {
  const FieldSchema s = FieldSchema::Reject(kLimits);
  auto r = CheckKnownFields(Json{{"memory_mb", 256}, {"cpus", 1}}, s, "limits");
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->empty());
  EXPECT_TRUE(CheckKnownFields(Json::object(), s)->empty());
  EXPECT_TRUE(CheckKnownFields(Json(nullptr), s)->empty());
  EXPECT_TRUE(CheckKnownFields(Json::array({1, 2}), s)->empty());
}

TEST(CheckKnownFields, RejectsWithTheFieldAndTheLikelyOne) {
  const FieldSchema s = FieldSchema::Reject(kLimits);
  auto r = CheckKnownFields(Json{{"memory_bytes", 268435456}}, s, "limits");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kValidation);
  EXPECT_EQ(r.error().message, "unknown field 'memory_bytes' in limits; did you mean 'memory_mb'?");
  EXPECT_EQ(r.error().field, "limits.memory_bytes");

  auto top = CheckKnownFields(Json{{"ttl", 3}}, FieldSchema::Reject(kCreate));
  ASSERT_FALSE(top);
  EXPECT_EQ(top.error().message, "unknown field 'ttl'; did you mean 'ttl_s'?");
  EXPECT_EQ(top.error().field, "ttl");
}

TEST(CheckKnownFields, WithoutASuggestionListsTheFields) {
  auto r = CheckKnownFields(Json{{"gpu", 1}}, FieldSchema::Reject(kLimits), "limits");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message,
            "unknown field 'gpu' in limits; the fields are memory_mb, cpus, pids, tmp_mb, "
            "open_files");
  auto none = CheckKnownFields(Json{{"a", 1}}, FieldSchema::Reject({}));
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().message, "unknown field 'a'; this object takes no fields");
}

TEST(CheckKnownFields, WarnPolicyReturnsTheUnknownFields) {
  const FieldSchema s = FieldSchema::Warn({"id", "command", "timeout"}, {"timeout"});
  auto r = CheckKnownFields(Json{{"command", "ls"}, {"comand", "x"}, {"extra", true}}, s);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].name, "comand");  // nlohmann orders members by name
  EXPECT_EQ((*r)[0].suggestion, "command");
  EXPECT_EQ((*r)[1].name, "extra");
  EXPECT_EQ((*r)[1].suggestion, "");
}

TEST(CheckKnownFields, WarnPolicyStillRejectsMisspelledGuardedFields) {
  const FieldSchema s = FieldSchema::Warn({"id", "command", "timeout"}, {"timeout"});
  auto r = CheckKnownFields(Json{{"command", "sleep 9"}, {"timeout_s", 1}}, s);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, "unknown field 'timeout_s'; did you mean 'timeout'?");
  EXPECT_EQ(r.error().field, "timeout_s");
}

TEST(CheckKnownFields, NamesAreMadePrintableAndShort) {
  auto r =
      CheckKnownFields(Json{{std::string("a\"b\\c\r\nd\x01\xc3\xa9"), 1}}, FieldSchema::Reject({}));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().field, "a?b?c??d???");
  auto long_name = CheckKnownFields(Json{{std::string(300, 'z'), 1}}, FieldSchema::Reject({}));
  ASSERT_FALSE(long_name);
  EXPECT_EQ(long_name.error().field, std::string(64, 'z') + "...");
}

TEST(WarningHeader, FollowsRfc7234) {
  UnknownField f{"", "comand", "command"};
  EXPECT_EQ(WarningHeaderValue(f),
            "299 agentbox \"unknown field 'comand' ignored; did you mean 'command'?\"");
  UnknownField nested{"state", "extra", ""};
  EXPECT_EQ(WarningHeaderValue(nested), "299 agentbox \"unknown field 'extra' in state ignored\"");
}

TEST(WarningHeader, CapsTheNumberOfHeaders) {
  std::vector<UnknownField> many;
  for (int i = 0; i < 20; ++i) {
    std::string name = "f";
    name += std::to_string(i);
    many.push_back({"", name, ""});
  }
  auto values = WarningHeaderValues(many);
  ASSERT_EQ(values.size(), kMaxFieldWarnings);
  EXPECT_EQ(values.back(), "299 agentbox \"13 more unknown fields ignored\"");
  std::vector<UnknownField> few(many.begin(), many.begin() + kMaxFieldWarnings);
  auto exact = WarningHeaderValues(few);
  ASSERT_EQ(exact.size(), kMaxFieldWarnings);
  EXPECT_EQ(exact.back(), WarningHeaderValue(few.back()));
}

}  // namespace
}  // namespace agentbox
