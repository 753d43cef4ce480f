#include <gtest/gtest.h>

#include "common/ansi.h"
#include "common/error.h"
#include "common/json_util.h"
#include "common/ring_buffer.h"
#include "common/shell_quote.h"
#include "common/utf8.h"

namespace agentbox {
namespace {

TEST(Utf8, CompletePrefixHoldsBackSplitCharacter) {
  EXPECT_EQ(Utf8CompletePrefix("abc"), 3u);
  EXPECT_EQ(Utf8CompletePrefix("a\xc3"), 1u);           // é cut after its lead byte
  EXPECT_EQ(Utf8CompletePrefix("a\xe6\xbc"), 1u);       // 漢 cut after two bytes
  EXPECT_EQ(Utf8CompletePrefix("a\xf0\x9f\x98"), 1u);   // emoji cut after three bytes
  EXPECT_EQ(Utf8CompletePrefix("a\xc3\xa9"), 3u);
  EXPECT_EQ(Utf8CompletePrefix("a\xff"), 2u);           // invalid bytes are not held back
}

TEST(Utf8, LeadingContinuations) {
  EXPECT_EQ(Utf8LeadingContinuations("\xa9x"), 1u);
  EXPECT_EQ(Utf8LeadingContinuations("x"), 0u);
}

TEST(Utf8, ValidateAndSanitize) {
  EXPECT_TRUE(IsValidUtf8("é漢字😀"));
  EXPECT_FALSE(IsValidUtf8("\xff"));
  EXPECT_FALSE(IsValidUtf8("\xc0\xaf"));       // overlong
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));   // surrogate
  EXPECT_EQ(SanitizeUtf8("a\xff" "b"), "a\xEF\xBF\xBD" "b");
  EXPECT_EQ(SanitizeUtf8("é"), "é");
}

TEST(RingBuffer, KeepsNewestBytesWithAbsoluteOffsets) {
  RingBuffer r(8);
  r.Append("abcdef");
  EXPECT_FALSE(r.truncated());
  r.Append("ghijk");
  EXPECT_TRUE(r.truncated());
  EXPECT_EQ(r.end_offset(), 11u);
  EXPECT_EQ(r.start_offset(), 3u);
  auto s = r.Read(0);
  EXPECT_TRUE(s.missed);
  EXPECT_EQ(s.bytes, "defghijk");
  EXPECT_EQ(s.offset, 3u);
  EXPECT_EQ(s.next_offset, 11u);
  auto t = r.Read(9, 1);
  EXPECT_FALSE(t.missed);
  EXPECT_EQ(t.bytes, "j");
  r.Append(std::string(100, 'x'));
  EXPECT_EQ(r.size(), 8u);
  EXPECT_EQ(r.Read(0).bytes, std::string(8, 'x'));
}

TEST(RingBuffer, ManySmallAppendsStayBounded) {
  RingBuffer r(16);
  for (int i = 0; i < 10000; ++i) {
    r.Append("0123456789");
  }
  EXPECT_EQ(r.size(), 16u);
  EXPECT_EQ(r.Read(r.end_offset() - 10).bytes, "0123456789");
}

TEST(Json, ParseObjectErrors) {
  EXPECT_TRUE(ParseJsonObject("{}"));
  EXPECT_TRUE(ParseJsonObject("  "));  // empty body is {}
  auto bad = ParseJsonObject("{\"a\":");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(bad.error().message.find("malformed JSON"), std::string::npos);
  auto arr = ParseJsonObject("[1]");
  ASSERT_FALSE(arr);
  EXPECT_NE(arr.error().message.find("array"), std::string::npos);
  EXPECT_FALSE(ParseJsonObject("{\"a\":\"\xff\"}"));  // invalid UTF-8 inside a string
}

TEST(Json, TypedFieldsNameTheField) {
  Json j = Json::parse(R"({"s":"x","n":5,"f":1.5,"b":true,"m":{"k":"v"},"bad":[1]})");
  JsonFields f(j);
  EXPECT_EQ(*f.String("s"), "x");
  EXPECT_EQ(f.String("missing").error().field, "missing");
  EXPECT_EQ(f.String("n").error().code, ErrorCode::kValidation);
  EXPECT_EQ(**f.OptInt("n", 0, 10), 5);
  EXPECT_FALSE(f.OptInt("n", 6, 10));
  EXPECT_FALSE(f.OptInt("f", 0, 10));  // not an integer
  EXPECT_EQ(**f.OptNumber("f", 0, 2), 1.5);
  EXPECT_FALSE(f.OptNumber("s", 0, 2));
  EXPECT_EQ(**f.OptBool("b"), true);
  EXPECT_FALSE(f.OptBool("n"));
  EXPECT_EQ(f.OptStringMap("m")->at(0).second, "v");
  EXPECT_FALSE(f.OptStringMap("bad"));
}

TEST(Json, DumpReplacesInvalidUtf8) {
  Json j = {{"out", std::string("a\xff")}};
  EXPECT_EQ(DumpJson(j), "{\"out\":\"a\xEF\xBF\xBD\"}");
}

TEST(Ansi, StripsEscapes) {
  EXPECT_EQ(StripAnsi("\x1b[31mred\x1b[0m plain\r\n\x1b]0;title\x07x"), "red plain\nx");
}

TEST(ShellQuote, SingleQuotes) { EXPECT_EQ(ShellQuote("it's $x"), "'it'\\''s $x'"); }

TEST(Error, ErrnoMapping) {
  EXPECT_EQ(ErrnoError(ENOENT, "open").code, ErrorCode::kNotFound);
  EXPECT_EQ(ErrnoError(EACCES, "open").code, ErrorCode::kForbidden);
  EXPECT_EQ(HttpStatus(ErrorCode::kValidation), 422);
  EXPECT_EQ(HttpStatus(ErrorCode::kTimeout), 400);
}

}  // namespace
}  // namespace agentbox
