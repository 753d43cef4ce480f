#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <optional>
#include <thread>

#include "common/ansi.h"
#include "common/error.h"
#include "common/json_util.h"
#include "common/keyed_mutex.h"
#include "common/ring_buffer.h"
#include "common/shell_quote.h"
#include "common/utf8.h"

namespace agentbox {
namespace {

TEST(Utf8, CompletePrefixHoldsBackSplitCharacter) {
  EXPECT_EQ(Utf8CompletePrefix("abc"), 3u);
  EXPECT_EQ(Utf8CompletePrefix("a\xc3"), 1u);          // é cut after its lead byte
  EXPECT_EQ(Utf8CompletePrefix("a\xe6\xbc"), 1u);      // 漢 cut after two bytes
  EXPECT_EQ(Utf8CompletePrefix("a\xf0\x9f\x98"), 1u);  // emoji cut after three bytes
  EXPECT_EQ(Utf8CompletePrefix("a\xc3\xa9"), 3u);
  EXPECT_EQ(Utf8CompletePrefix("a\xff"), 2u);  // invalid bytes are not held back
}

TEST(Utf8, LeadingContinuations) {
  EXPECT_EQ(Utf8LeadingContinuations("\xa9x"), 1u);
  EXPECT_EQ(Utf8LeadingContinuations("x"), 0u);
}

TEST(Utf8, ValidateAndSanitize) {
  EXPECT_TRUE(IsValidUtf8("é漢字😀"));
  EXPECT_FALSE(IsValidUtf8("\xff"));
  EXPECT_FALSE(IsValidUtf8("\xc0\xaf"));      // overlong
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));  // surrogate
  EXPECT_EQ(SanitizeUtf8("a\xff"
                         "b"),
            "a\xEF\xBF\xBD"
            "b");
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

// Regression (fuzz/fuzz_json_request): a deeply nested value parsed fine, then overflowed the
// stack of whoever copied or dumped it (agentboxd's session keeper copies and dumps a guest's
// session state). Untrusted JSON is now refused beyond kMaxJsonDepth levels.
TEST(Json, DeepNestingRefused) {
  auto nested = [](size_t depth) {
    return "{\"a\":" + std::string(depth - 1, '[') + std::string(depth - 1, ']') + "}";
  };
  EXPECT_TRUE(ParseJsonObject(nested(kMaxJsonDepth)));
  auto deep = ParseJsonObject(nested(kMaxJsonDepth + 1));
  ASSERT_FALSE(deep);
  EXPECT_EQ(deep.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(deep.error().message.find("nested deeper"), std::string::npos);
  const std::string huge = nested(200000);
  EXPECT_FALSE(ParseJsonObject(huge));
  EXPECT_TRUE(ParseUntrustedJson(huge).is_discarded());
  EXPECT_TRUE(ParseUntrustedJson("{\"a\":").is_discarded());
  EXPECT_EQ(ParseUntrustedJson("{\"a\":[1]}")["a"][0], 1);
  // Brackets inside strings (escaped quotes included) are not nesting.
  const std::string in_string = "{\"s\":\"\\\"" + std::string(1000, '[') + "\"}";
  EXPECT_TRUE(JsonDepthWithin(in_string));
  EXPECT_TRUE(ParseJsonObject(in_string));
  EXPECT_FALSE(JsonDepthWithin("[[[", 2));
  EXPECT_TRUE(JsonDepthWithin("[[]][[]]", 2));
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

TEST(Json, ValueOrNeverThrowsOnOutsideShapes) {
  const Json j = Json::parse(
      R"({"s":"x","n":7,"big":1e30,"u":18446744073709551615,"neg":-3,"f":2.5,"b":true,"nul":null})");
  EXPECT_EQ(ValueOr(j, "s", "d"), "x");
  EXPECT_EQ(ValueOr(j, "n", "d"), "d");  // another type: the fallback, not type_error
  EXPECT_EQ(ValueOr(j, "missing", "d"), "d");
  EXPECT_EQ(ValueOr(Json::array(), "s", "d"), "d");
  EXPECT_EQ(ValueOr(Json(), "s", "d"), "d");
  EXPECT_EQ(ValueOr<int64_t>(j, "n", -1), 7);
  EXPECT_EQ(ValueOr<int64_t>(j, "big", -1), -1);  // out of range: no undefined cast
  EXPECT_EQ(ValueOr<int64_t>(j, "u", -1), -1);
  EXPECT_EQ(ValueOr<int>(j, "neg", 0), -3);
  EXPECT_EQ(ValueOr<int>(j, "f", 0), 2);
  EXPECT_EQ(ValueOr<int>(j, "s", 9), 9);
  EXPECT_EQ(ValueOr<double>(j, "n", 0), 7.0);
  EXPECT_EQ(ValueOr(j, "b", false), true);
  EXPECT_EQ(ValueOr(j, "n", false), false);
  EXPECT_EQ(ValueOr(j, "nul", true), true);
  EXPECT_EQ(ValueOr<int>(Json::parse(R"({"x":4294967296})"), "x", 1), 1);
  EXPECT_EQ(ValueOr<int>(Json::parse(R"({"x":2147483648.0})"), "x", 1), 1);
  EXPECT_EQ(ValueOr<int>(Json::parse(R"({"x":-2147483648.0})"), "x", 1), -2147483648);
  EXPECT_EQ(ValueOr<uint64_t>(j, "u", 0), 18446744073709551615ULL);
  EXPECT_EQ(ValueOr<uint64_t>(j, "neg", 5), 5u);
  EXPECT_EQ(ValueOr<uint64_t>(Json::parse(R"({"x":1.8446744073709552e19})"), "x", 5), 5u);
  EXPECT_EQ(ValueOr(j, "n", Json()), Json(7));
  EXPECT_EQ(ValueOr(Json::array(), "n", Json("d")), Json("d"));
  using StringMap = std::map<std::string, std::string>;
  EXPECT_EQ(ValueOr(Json::parse(R"({"m":{"a":"b"}})"), "m", StringMap{}), StringMap({{"a", "b"}}));
  EXPECT_EQ(ValueOr(Json::parse(R"({"m":{"a":1}})"), "m", StringMap{{"x", "y"}}),
            StringMap({{"x", "y"}}));
}

TEST(Json, DumpReplacesInvalidUtf8) {
  Json j = {{"out", std::string("a\xff")}};
  EXPECT_EQ(DumpJson(j), "{\"out\":\"a\xEF\xBF\xBD\"}");
}

TEST(KeyedMutex, SerialisesOneKeyOnly) {
  KeyedMutex m;
  std::optional<KeyedLock> a;
  a.emplace(m, "a");
  EXPECT_FALSE(m.TryLock("a"));
  EXPECT_TRUE(m.TryLock("b"));  // another key is free
  m.Unlock("b");
  std::atomic<bool> got{false};
  std::thread waiter([&] {
    KeyedLock again(m, "a");
    got = true;
  });
  EXPECT_FALSE(got);
  a.reset();  // lets the waiter in
  waiter.join();
  EXPECT_TRUE(got);
  EXPECT_TRUE(m.TryLock("a"));
  m.Unlock("a");
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

#include "common/config.h"

namespace agentbox {
namespace {

TEST(Dotenv, ParsesQuotesCommentsAndExport) {
  auto kv = ParseDotenv(
      "# comment\n"
      "A=1\n"
      "export B = two words  # trailing comment\n"
      "C='single # not a comment'\n"
      "D=\"line\\nnext \\\"q\\\"\"\n"
      "\n"
      "E=\n",
      ".env");
  ASSERT_TRUE(kv) << kv.error().message;
  ASSERT_EQ(kv->size(), 5u);
  EXPECT_EQ((*kv)[0], std::make_pair(std::string("A"), std::string("1")));
  EXPECT_EQ((*kv)[1].second, "two words");
  EXPECT_EQ((*kv)[2].second, "single # not a comment");
  EXPECT_EQ((*kv)[3].second, "line\nnext \"q\"");
  EXPECT_EQ((*kv)[4].second, "");
}

TEST(Dotenv, ErrorsNameFileAndLine) {
  auto kv = ParseDotenv("A=1\nnot a pair\n", "/etc/agentbox.conf");
  ASSERT_FALSE(kv);
  EXPECT_EQ(kv.error().message, "/etc/agentbox.conf:2: expected KEY=VALUE");
  EXPECT_FALSE(ParseDotenv("A='x\n", "f"));
  EXPECT_FALSE(ParseDotenv("1A=x\n", "f"));
}

TEST(Config, PrecedenceAndSources) {
  char dir[] = "/tmp/agentbox-config-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string file = std::string(dir) + "/agentbox.conf";
  const std::string dotenv = std::string(dir) + "/.env";
  FILE* f = fopen(file.c_str(), "w");
  fputs("X=file\nY=file\nZ=file\n", f);
  fclose(f);
  f = fopen(dotenv.c_str(), "w");
  fputs("Y=dotenv\nZ=dotenv\n", f);
  fclose(f);
  setenv("Z", "env", 1);
  Config::Sources s;
  s.defaults = {{"W", "default"}, {"X", "default"}};
  s.config_file = file;
  s.dotenv_file = dotenv;
  auto c = Config::Load(s);
  unsetenv("Z");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->GetOr("W", ""), "default");
  EXPECT_EQ(c->GetOr("X", ""), "file");
  EXPECT_EQ(c->GetOr("Y", ""), "dotenv");
  EXPECT_EQ(c->GetOr("Z", ""), "env");
  EXPECT_EQ(c->SourceOf("Y"), "dotenv:" + dotenv);
  s.config_file = std::string(dir) + "/missing.conf";
  EXPECT_FALSE(Config::Load(s));  // a named config file must exist
  s.config_file.clear();
  s.dotenv_file = std::string(dir) + "/missing.env";
  EXPECT_TRUE(Config::Load(s));  // a missing .env is fine
  ASSERT_EQ(system(("rm -rf " + std::string(dir)).c_str()), 0);
}

TEST(Config, TypedGetters) {
  Config c = Config::FromMap({{"B", "Yes"}, {"N", "42"}, {"BAD", "x"}, {"L", " a, b ,,c "}});
  EXPECT_EQ(*c.GetBool("B", false), true);
  EXPECT_EQ(*c.GetBool("MISSING", true), true);
  EXPECT_FALSE(c.GetBool("BAD", false));
  EXPECT_EQ(*c.GetInt("N", 0, 0, 100), 42);
  EXPECT_FALSE(c.GetInt("N", 0, 0, 10));
  EXPECT_FALSE(c.GetInt("BAD", 0, 0, 10));
  EXPECT_EQ(c.GetList("L"), (std::vector<std::string>{"a", "b", "c"}));
}

}  // namespace
}  // namespace agentbox

#include "common/metrics.h"

namespace agentbox {
namespace {

TEST(Metrics, RendersCountersGaugesAndHistograms) {
  Metrics m;
  m.Describe("agentbox_operation_total", "counter", "Operations by backend, op and outcome.");
  m.Increment("agentbox_operation_total", {{"backend", "jail"}, {"op", "exec"}, {"outcome", "ok"}});
  m.Increment("agentbox_operation_total", {{"backend", "jail"}, {"op", "exec"}, {"outcome", "ok"}});
  m.Set("agentbox_sandboxes", {{"backend", "jail"}, {"state", "running"}}, 3);
  m.Observe("agentbox_operation_duration_seconds", {{"op", "exec"}}, 0.0003, {0.001, 0.01});
  m.Observe("agentbox_operation_duration_seconds", {{"op", "exec"}}, 0.005, {0.001, 0.01});
  m.Increment("weird", {{"v", "a\"b\\c\nd"}});
  const std::string text = m.Render();
  EXPECT_NE(text.find("# TYPE agentbox_operation_total counter\n"), std::string::npos);
  EXPECT_NE(text.find("agentbox_operation_total{backend=\"jail\",op=\"exec\",outcome=\"ok\"} 2\n"),
            std::string::npos);
  EXPECT_NE(text.find("agentbox_sandboxes{backend=\"jail\",state=\"running\"} 3\n"),
            std::string::npos);
  EXPECT_NE(text.find("agentbox_operation_duration_seconds_bucket{op=\"exec\",le=\"0.001\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("agentbox_operation_duration_seconds_bucket{op=\"exec\",le=\"+Inf\"} 2\n"),
            std::string::npos);
  EXPECT_NE(text.find("agentbox_operation_duration_seconds_count{op=\"exec\"} 2\n"),
            std::string::npos);
  EXPECT_NE(text.find("weird{v=\"a\\\"b\\\\c\\nd\"} 1\n"), std::string::npos);
  EXPECT_EQ(m.Value("agentbox_sandboxes", {{"backend", "jail"}, {"state", "running"}}), 3);
}

}  // namespace
}  // namespace agentbox

#include <boost/asio/post.hpp>

#include "common/guarded.h"
#include "common/worker_pool.h"

namespace agentbox {
namespace {

// A handler that throws is logged and counted, and the loop runs the handlers after it: one bad
// answer must not end the daemon's event loop or a worker thread.
TEST(Guarded, AThrowingHandlerDoesNotStopTheLoop) {
  const uint64_t before = CaughtHandlerExceptions();
  boost::asio::io_context io;
  int ran = 0;
  boost::asio::post(io, [] { (void)Json::parse("{}").at("missing"); });
  boost::asio::post(io, [&] { ++ran; });
  boost::asio::post(io, [] { throw 7; });
  boost::asio::post(io, [&] { ++ran; });
  RunGuarded(io, "test");
  EXPECT_EQ(ran, 2);
  EXPECT_EQ(CaughtHandlerExceptions(), before + 2);

  CallGuarded([] { throw std::runtime_error("x"); }, "test");
  EXPECT_EQ(CaughtHandlerExceptions(), before + 3);

  std::atomic<int> done{0};
  {
    WorkerPool pool(1, 1 << 20);
    pool.Post([] { throw std::runtime_error("job"); });
    pool.Post([&] { ++done; });
  }  // joins after the queued jobs
  EXPECT_EQ(done.load(), 1);
  EXPECT_EQ(CaughtHandlerExceptions(), before + 4);
}

}  // namespace
}  // namespace agentbox

#include <future>

#include "common/sched_slice.h"

namespace agentbox {
namespace {

// The daemon and every guest ask for a short EEVDF slice, which what they start inherits.
TEST(SchedSlice, AThreadsShortSliceIsInheritedByWhatItStarts) {
  std::chrono::microseconds in_thread{0};
  std::thread t([&] {
    if (!RequestSchedulerSlice(kShortSchedulerSlice)) {
      return;  // kernel without custom slices (before 6.12): checked below
    }
    std::thread child([&] { in_thread = CurrentSchedulerSlice(); });
    child.join();
  });
  t.join();
  if (in_thread.count() == 0) {
    GTEST_SKIP() << "this kernel has no custom EEVDF slices (Linux 6.12+): sched_setattr with "
                    "sched_runtime did not take";
  }
  EXPECT_EQ(in_thread, kShortSchedulerSlice);
}

// The kernel lets a woken task preempt at once only when its slice is shorter than the running
// task's: bulk work (worker pools) keeps the default slice even when a short-sliced thread
// starts the pool.
TEST(SchedSlice, WorkerPoolThreadsKeepTheDefaultSlice) {
  std::chrono::microseconds in_pool{0};
  bool short_taken = false;
  std::thread t([&] {
    short_taken = RequestSchedulerSlice(kShortSchedulerSlice);
    WorkerPool pool(1, 1 << 20);
    std::promise<std::chrono::microseconds> slice;
    pool.Post([&] { slice.set_value(CurrentSchedulerSlice()); });
    in_pool = slice.get_future().get();
  });
  t.join();
  if (!short_taken) {
    GTEST_SKIP() << "this kernel has no custom EEVDF slices (Linux 6.12+)";
  }
  EXPECT_GT(in_pool, kShortSchedulerSlice);
}

// posix_spawn cannot reset the slice in the child: the spawning thread drops its short slice
// for the spawn and takes it back afterwards.
TEST(SchedSlice, DefaultSliceScopeLendsTheDefaultAndGivesTheShortSliceBack) {
  std::chrono::microseconds inside{0}, started{0}, after{0};
  bool short_taken = false;
  std::thread t([&] {
    short_taken = RequestSchedulerSlice(kShortSchedulerSlice);
    {
      const DefaultSliceScope bulk;
      inside = CurrentSchedulerSlice();
      std::thread child([&] { started = CurrentSchedulerSlice(); });
      child.join();
    }
    after = CurrentSchedulerSlice();
  });
  t.join();
  if (!short_taken) {
    GTEST_SKIP() << "this kernel has no custom EEVDF slices (Linux 6.12+)";
  }
  EXPECT_GT(inside, kShortSchedulerSlice);
  EXPECT_EQ(started, inside);
  EXPECT_EQ(after, kShortSchedulerSlice);
}

}  // namespace
}  // namespace agentbox
