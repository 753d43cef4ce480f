// Units: checksums, quantities, job validation, overrides.
#include <gtest/gtest.h>

#include "executor.h"
#include "hashes.h"
#include "run_model.h"

namespace agentbox::gcpemu {
namespace {

TEST(Hashes, Crc32cAndMd5AsCloudStorageReportsThem) {
  EXPECT_EQ(Crc32cExtend(0, "123456789"), 0xE3069283u);  // the CRC-32C check value
  ObjectHasher h;
  h.Update("hel");
  h.Update("lo");
  EXPECT_EQ(h.Crc32cBase64(), "mnG7TA==");
  EXPECT_EQ(h.Md5Base64(), "XUFAKrxLKna5cZ2REBfFkg==");
  EXPECT_EQ(Base64Decode(Base64UrlEncode("\xff\xfe binary")), "\xff\xfe binary");
  EXPECT_FALSE(Base64Decode("not base64!"));
}

TEST(Quantities, MemoryAndCpu) {
  EXPECT_EQ(ParseMemory("512Mi"), 512ll << 20);
  EXPECT_EQ(ParseMemory("2Gi"), 2ll << 30);
  EXPECT_EQ(ParseMemory("1G"), 1000000000ll);
  EXPECT_FALSE(ParseMemory("lots"));
  EXPECT_EQ(ParseNanoCpus("2"), 2000000000ll);
  EXPECT_EQ(ParseNanoCpus("500m"), 500000000ll);
  EXPECT_FALSE(ParseNanoCpus("-1"));
}

TEST(JobModel, DefaultsAndOverrides) {
  Json job = Json::parse(R"({"launchStage":4,"template":{"template":{"executionEnvironment":2,
      "containers":[{"name":"c","image":"i","args":["a"],"env":[{"name":"X","value":"1"}]}]}}})");
  NormalizeJobEnums(job);
  ASSERT_TRUE(ValidateAndDefaultJob(job));
  EXPECT_EQ(job["launchStage"], "GA");
  EXPECT_EQ(job["template"]["taskCount"], 1);
  EXPECT_EQ(job["template"]["template"]["maxRetries"], 3);
  EXPECT_EQ(job["template"]["template"]["timeout"], "600s");
  auto exec = ApplyOverrides(job["template"], Json::parse(R"({"containerOverrides":[{"name":"c",
      "args":["b","c"],"env":[{"name":"Y","value":"2"},{"name":"X","value":"3"}]}],
      "timeout":"30s","taskCount":2})"));
  ASSERT_TRUE(exec);
  const Json& c = (*exec)["template"]["containers"][0];
  EXPECT_EQ(c["args"], Json::array({"b", "c"}));
  EXPECT_EQ(c["env"], Json::parse(R"([{"name":"X","value":"3"},{"name":"Y","value":"2"}])"));
  EXPECT_EQ((*exec)["template"]["timeout"], "30s");
  EXPECT_EQ((*exec)["taskCount"], 2);
  auto cleared = ApplyOverrides(job["template"],
                                Json::parse(R"({"containerOverrides":[{"clearArgs":true}]})"));
  ASSERT_TRUE(cleared);
  EXPECT_FALSE((*cleared)["template"]["containers"][0].contains("args"));
  EXPECT_FALSE(
      ApplyOverrides(job["template"], Json::parse(R"({"containerOverrides":[{"name":"other"}]})")));
  EXPECT_FALSE(ValidJobId("1abc"));
  EXPECT_TRUE(ValidJobId("sandbox-1"));
  Json bad = Json::parse(
      R"({"template":{"template":{"timeout":"forever","containers":[{"image":"i"}]}}})");
  auto r = ValidateAndDefaultJob(bad);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("template.template.timeout"), std::string::npos);
}

}  // namespace
}  // namespace agentbox::gcpemu
