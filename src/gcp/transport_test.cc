#include "gcp/transport.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "common/metrics.h"
#include "gcp/auth.h"
#include "gcp/endpoints.h"
#include "gcp/errors.h"
#include "gcp/testing/fake_http.h"
#include "gcp/testing/test_util.h"

namespace agentbox::gcp {
namespace {

using std::chrono::milliseconds;
using testing::FakeHttpServer;
using testing::FakeRequest;
using testing::FakeResponse;
using testing::RecordedSleeps;

TEST(GcpEndpoints, PathSegmentEncodingKeepsOnlyUnreserved) {
  EXPECT_EQ(EncodePathSegment("a/b c+d%e~f-g_h.i"), "a%2Fb%20c%2Bd%25e~f-g_h.i");
  EXPECT_EQ(EncodePathSegment("\xc3\xbc?#&="), "%C3%BC%3F%23%26%3D");
  EXPECT_EQ(EncodePathSegment(""), "");
}

TEST(GcpEndpoints, FromConfigReadsOverrides) {
  auto e = EndpointsFromConfig(Config::FromMap({{"STORAGE_EMULATOR_HOST", "127.0.0.1:4443"},
                                                {"AGENTBOX_CLOUDRUN_ENDPOINT", "http://h:1/"},
                                                {"AGENTBOX_GCP_TOKEN_URI", "http://h:2/token"},
                                                {"GCE_METADATA_HOST", "127.0.0.1:9"}}));
  ASSERT_TRUE(e) << e.error().message;
  EXPECT_EQ(e->storage, "http://127.0.0.1:4443");
  EXPECT_EQ(e->run, "http://h:1");
  EXPECT_EQ(e->token_uri, "http://h:2/token");
  EXPECT_EQ(MetadataBaseUrl(*e), "http://127.0.0.1:9");

  auto with_scheme =
      EndpointsFromConfig(Config::FromMap({{"STORAGE_EMULATOR_HOST", "http://127.0.0.1:4443/"}}));
  ASSERT_TRUE(with_scheme);
  EXPECT_EQ(with_scheme->storage, "http://127.0.0.1:4443");
  EXPECT_EQ(with_scheme->run, "https://run.googleapis.com");

  auto cpp_name = EndpointsFromConfig(
      Config::FromMap({{"CLOUD_STORAGE_EMULATOR_ENDPOINT", "http://127.0.0.1:9000"}}));
  ASSERT_TRUE(cpp_name);
  EXPECT_EQ(cpp_name->storage, "http://127.0.0.1:9000");
  auto both = EndpointsFromConfig(Config::FromMap(
      {{"CLOUD_STORAGE_EMULATOR_ENDPOINT", "http://h:1"}, {"STORAGE_EMULATOR_HOST", "h:2"}}));
  ASSERT_TRUE(both);
  EXPECT_EQ(both->storage, "http://h:2");

  auto defaults = EndpointsFromConfig(Config::FromMap({}));
  ASSERT_TRUE(defaults);
  EXPECT_EQ(defaults->storage, "https://storage.googleapis.com");
  EXPECT_EQ(MetadataBaseUrl(*defaults), "http://metadata.google.internal");

  auto bad = EndpointsFromConfig(Config::FromMap({{"AGENTBOX_CLOUDRUN_ENDPOINT", "run.example"}}));
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(bad.error().message.find("AGENTBOX_CLOUDRUN_ENDPOINT"), std::string::npos);
  auto spaces = EndpointsFromConfig(Config::FromMap({{"STORAGE_EMULATOR_HOST", "a b"}}));
  ASSERT_FALSE(spaces);
  EXPECT_NE(spaces.error().message.find("STORAGE_EMULATOR_HOST"), std::string::npos);
}

TEST(GcpErrors, MapsGoogleStatusesAndNamesThem) {
  Error nf = ErrorFromResponse(
      "Cloud Storage", 404,
      R"({"error":{"code":404,"message":"No such object: b/o","errors":[{"reason":"notFound"}]}})");
  EXPECT_EQ(nf.code, ErrorCode::kNotFound);
  EXPECT_EQ(nf.message, "Cloud Storage: 404 notFound: No such object: b/o");

  Error pre = ErrorFromResponse(
      "Cloud Storage", 412,
      R"({"error":{"code":412,"message":"At least one of the pre-conditions you specified did not hold.","errors":[{"reason":"conditionNotMet"}]}})");
  EXPECT_EQ(pre.code, ErrorCode::kConflict);
  EXPECT_NE(pre.message.find("precondition"), std::string::npos);
  EXPECT_NE(pre.message.find("conditionNotMet"), std::string::npos);

  Error exists = ErrorFromResponse(
      "Cloud Run", 409,
      R"({"error":{"code":409,"message":"Resource 'j' already exists.","status":"ALREADY_EXISTS"}})");
  EXPECT_EQ(exists.code, ErrorCode::kConflict);
  EXPECT_NE(exists.message.find("409 ALREADY_EXISTS"), std::string::npos);

  Error forbidden_storage = ErrorFromResponse(
      "Cloud Storage", 403,
      R"({"error":{"code":403,"message":"sa@p.iam.gserviceaccount.com does not have storage.objects.create access to the Google Cloud Storage object.","errors":[{"reason":"forbidden"}]}})");
  EXPECT_EQ(forbidden_storage.code, ErrorCode::kForbidden);
  EXPECT_NE(forbidden_storage.message.find("missing permission storage.objects.create"),
            std::string::npos);

  Error forbidden_run = ErrorFromResponse(
      "Cloud Run", 403,
      R"({"error":{"code":403,"message":"Permission denied on resource","status":"PERMISSION_DENIED","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"IAM_PERMISSION_DENIED","metadata":{"permission":"run.jobs.runWithOverrides"}}]}})");
  EXPECT_NE(forbidden_run.message.find("missing permission run.jobs.runWithOverrides"),
            std::string::npos);

  EXPECT_EQ(ErrorFromResponse("Cloud Run", 401, "{}").code, ErrorCode::kUnauthorized);
  EXPECT_EQ(ErrorFromResponse("Cloud Run", 400, "{}").code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(ErrorFromResponse("Cloud Run", 429, "{}").code, ErrorCode::kUnavailable);
  EXPECT_EQ(ErrorFromResponse("Cloud Run", 503, "oops").code, ErrorCode::kUnavailable);
  EXPECT_EQ(ErrorFromResponse("Cloud Run", 418, "").code, ErrorCode::kInternal);
  EXPECT_EQ(ErrorFromResponse("Cloud Run", 503, "oops").message, "Cloud Run: 503: oops");
  EXPECT_EQ(ErrorFromResponse("Cloud Run", 502, "<html>\n<b>Bad</b>\n</html>").message,
            "Cloud Run: 502: <html> <b>Bad</b> </html>");
}

TEST(GcpTransport, ParsesRetryAfter) {
  auto now = std::chrono::system_clock::from_time_t(784111777);  // Sun, 06 Nov 1994 08:49:37 GMT
  EXPECT_EQ(ParseRetryAfter("7", now), milliseconds(7000));
  EXPECT_EQ(ParseRetryAfter("Sun, 06 Nov 1994 08:49:40 GMT", now), milliseconds(3000));
  EXPECT_EQ(ParseRetryAfter("", now), milliseconds(-1));
  EXPECT_EQ(ParseRetryAfter("soon", now), milliseconds(-1));
  // Dates far away: no hint, and no overflow of the clock's nanoseconds (fuzz_gcp_answers).
  EXPECT_EQ(ParseRetryAfter("Mon, 01 Jan 9999 00:00:00 GMT", now), milliseconds(-1));
  EXPECT_EQ(ParseRetryAfter("Mon, 01 Jan 0001 00:00:00 GMT", now), milliseconds(0));
}

TEST(GcpTransport, RetriesUnavailableWithGrowingJitteredBackoff) {
  std::atomic<int> n{0};
  FakeHttpServer server([&](const FakeRequest&) {
    return ++n <= 3 ? FakeResponse::Json(503, R"({"error":{"code":503,"message":"busy"}})")
                    : FakeResponse::Json(200, R"({"ok":true})");
  });
  auto sleeps = std::make_shared<RecordedSleeps>();
  auto http = testing::TransportWithToken("tok", sleeps);
  auto resp = http->Send({.url = server.url() + "/x"});
  ASSERT_TRUE(resp) << resp.error().message;
  EXPECT_EQ(resp->status, 200);
  EXPECT_EQ(server.requests().size(), 4u);
  auto waits = sleeps->Get();
  ASSERT_EQ(waits.size(), 3u);
  // Jittered in [b/2, b] with b = 100, 200, 400 ms.
  EXPECT_GE(waits[0], milliseconds(50));
  EXPECT_LE(waits[0], milliseconds(100));
  EXPECT_GE(waits[1], milliseconds(100));
  EXPECT_LE(waits[1], milliseconds(200));
  EXPECT_GE(waits[2], milliseconds(200));
  EXPECT_LE(waits[2], milliseconds(400));
}

TEST(GcpTransport, CountsAttemptsAndRetriesInMetrics) {
  std::atomic<int> n{0};
  FakeHttpServer server([&](const FakeRequest&) {
    return ++n == 1 ? FakeResponse::Json(503, "{}") : FakeResponse::Json(200, "{}");
  });
  Metrics metrics;
  auto sleeps = std::make_shared<RecordedSleeps>();
  auto opts = testing::FastOptions(sleeps);
  opts.metrics = &metrics;
  opts.metrics_api = "storage";
  HttpTransport http(nullptr, opts);
  ASSERT_TRUE(http.Send({.url = server.url() + "/x"}));
  EXPECT_EQ(metrics.Value("agentbox_gcp_requests_total",
                          {{"api", "storage"}, {"method", "GET"}, {"code", "503"}}),
            1);
  EXPECT_EQ(metrics.Value("agentbox_gcp_requests_total",
                          {{"api", "storage"}, {"method", "GET"}, {"code", "200"}}),
            1);
  EXPECT_EQ(metrics.Value("agentbox_gcp_retries_total", {{"api", "storage"}}), 1);
  EXPECT_NE(metrics.Render().find("agentbox_gcp_request_duration_seconds_count{api=\"storage\"} 2"),
            std::string::npos)
      << metrics.Render();
}

TEST(GcpTransport, HonoursRetryAfterAndBoundsTotalTime) {
  FakeHttpServer server([&](const FakeRequest&) {
    auto r = FakeResponse::Json(429, R"({"error":{"code":429,"status":"RESOURCE_EXHAUSTED"}})");
    r.headers.emplace_back("Retry-After", "4");
    return r;
  });
  auto sleeps = std::make_shared<RecordedSleeps>();
  auto opts = testing::FastOptions(sleeps);
  opts.retry.total = std::chrono::seconds(10);
  opts.retry.max_attempts = 100;
  HttpTransport http(nullptr, opts);
  auto resp = http.Send({.url = server.url() + "/x"});
  ASSERT_TRUE(resp);
  EXPECT_EQ(resp->status, 429);  // the last answer, once the budget is spent
  // 4 s + 4 s fit in 10 s; a third wait would not.
  EXPECT_EQ(sleeps->Get(), (std::vector<milliseconds>{milliseconds(4000), milliseconds(4000)}));
  EXPECT_EQ(server.requests().size(), 3u);
}

TEST(GcpTransport, ConnectionResetIsRetriedForIdempotentCalls) {
  std::atomic<int> n{0};
  FakeHttpServer server([&](const FakeRequest&) {
    if (++n == 1) {
      FakeResponse r;
      r.action = FakeResponse::Action::kReset;
      return r;
    }
    return FakeResponse::Json(200, "{}");
  });
  auto sleeps = std::make_shared<RecordedSleeps>();
  auto http = testing::TransportWithToken("tok", sleeps);
  auto resp = http->Send({.method = "DELETE", .url = server.url() + "/o"});
  ASSERT_TRUE(resp) << resp.error().message;
  EXPECT_EQ(resp->status, 200);
  EXPECT_EQ(server.requests().size(), 2u);
  EXPECT_EQ(sleeps->Get().size(), 1u);
}

TEST(GcpTransport, NonIdempotentCallIsNotResentAfterAReset) {
  FakeHttpServer server([&](const FakeRequest& req) {
    if (req.method == "GET") {
      return FakeResponse::Json(200, "{}");
    }
    FakeResponse r;
    r.action = FakeResponse::Action::kReset;
    return r;
  });
  auto sleeps = std::make_shared<RecordedSleeps>();
  auto http = testing::TransportWithToken("tok", sleeps);
  // A kept-alive connection exists: libcurl must not quietly re-send the POST on another one.
  ASSERT_TRUE(http->Send({.url = server.url() + "/warm"}));
  auto resp = http->Send(
      {.method = "POST", .url = server.url() + "/run", .body = "{}", .idempotent = false});
  ASSERT_FALSE(resp);
  EXPECT_EQ(resp.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(server.requests().size(), 2u);  // the GET and one POST
  EXPECT_TRUE(sleeps->Get().empty());
}

TEST(GcpTransport, NonIdempotentCallIsRetriedWhenTheServiceRefusedIt) {
  std::atomic<int> n{0};
  FakeHttpServer server([&](const FakeRequest&) {
    int i = ++n;
    if (i == 1) {
      return FakeResponse::Json(429, "{}");
    }
    if (i == 2) {
      return FakeResponse::Json(503, "{}");
    }
    if (i == 3) {
      return FakeResponse::Json(500, "{}");  // may have acted: not retried
    }
    return FakeResponse::Json(200, "{}");
  });
  auto sleeps = std::make_shared<RecordedSleeps>();
  auto http = testing::TransportWithToken("tok", sleeps);
  auto resp = http->Send(
      {.method = "POST", .url = server.url() + "/run", .body = "{}", .idempotent = false});
  ASSERT_TRUE(resp);
  EXPECT_EQ(resp->status, 500);
  EXPECT_EQ(server.requests().size(), 3u);
}

TEST(GcpTransport, RefusedConnectionIsRetriedEvenWhenNotIdempotent) {
  int port;
  {
    FakeHttpServer gone([](const FakeRequest&) { return FakeResponse{}; });
    port = gone.port();
  }
  auto sleeps = std::make_shared<RecordedSleeps>();
  auto opts = testing::FastOptions(sleeps);
  opts.retry.max_attempts = 3;
  HttpTransport http(nullptr, opts);
  auto resp = http.Send({.method = "POST",
                         .url = "http://127.0.0.1:" + std::to_string(port) + "/run",
                         .idempotent = false});
  ASSERT_FALSE(resp);
  EXPECT_EQ(resp.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(sleeps->Get().size(), 2u);
  EXPECT_EQ(http.attempts(), 3u);
}

TEST(GcpTransport, StalledTransferFailsAndIsRetried) {
  std::atomic<int> n{0};
  FakeHttpServer server([&](const FakeRequest&) {
    if (++n == 1) {
      FakeResponse hang;
      hang.action = FakeResponse::Action::kHang;
      return hang;
    }
    return FakeResponse::Json(200, "{}");
  });
  auto sleeps = std::make_shared<RecordedSleeps>();
  auto opts = testing::FastOptions(sleeps);
  opts.stall_timeout = std::chrono::seconds(1);
  HttpTransport http(nullptr, opts);
  auto start = std::chrono::steady_clock::now();
  // No total timeout (a large transfer): only the stall detection ends the first attempt.
  auto resp = http.Send({.url = server.url() + "/slow", .timeout = milliseconds(0)});
  ASSERT_TRUE(resp) << resp.error().message;
  EXPECT_EQ(resp->status, 200);
  EXPECT_EQ(server.requests().size(), 2u);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

TEST(GcpTransport, AttachesTheBearerTokenOnlyWhenAsked) {
  FakeHttpServer server([](const FakeRequest&) { return FakeResponse::Json(200, "{}"); });
  auto sleeps = std::make_shared<RecordedSleeps>();
  auto http = testing::TransportWithToken("ya29.secret", sleeps);
  ASSERT_TRUE(http->Send({.url = server.url() + "/a"}));
  ASSERT_TRUE(http->Send({.url = server.url() + "/b", .authenticate = false}));
  auto reqs = server.requests();
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_EQ(reqs[0].Header("authorization"), "Bearer ya29.secret");
  EXPECT_EQ(reqs[1].Header("authorization"), "");
  EXPECT_EQ(reqs[0].Header("expect"), "");
}

// A token source whose token changes each time it is invalidated.
class RotatingTokens : public TokenSource {
 public:
  Result<std::string> Token() override { return "tok-" + std::to_string(generation_.load()); }
  std::string Describe() const override { return "rotating"; }
  void Invalidate() override { ++generation_; }
  std::atomic<int> generation_{1};
};

TEST(GcpTransport, RejectedTokenIsReplacedOnce) {
  FakeHttpServer server([](const FakeRequest& r) {
    return r.Header("authorization") == "Bearer tok-2"
               ? FakeResponse::Json(200, "{}")
               : FakeResponse::Json(401, R"({"error":{"code":401,"status":"UNAUTHENTICATED"}})");
  });
  auto tokens = std::make_shared<RotatingTokens>();
  auto sleeps = std::make_shared<RecordedSleeps>();
  HttpTransport http(tokens, testing::FastOptions(sleeps));
  auto ok = http.Send({.url = server.url() + "/a"});
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
  EXPECT_EQ(server.requests().size(), 2u);
  // Rejected again with the new token: the 401 is the answer (no loop).
  tokens->generation_ = 5;
  auto denied = http.Send({.url = server.url() + "/b"});
  ASSERT_TRUE(denied);
  EXPECT_EQ(denied->status, 401);
  EXPECT_EQ(server.requests().size(), 4u);
  EXPECT_TRUE(sleeps->Get().empty());
}

TEST(GcpTransport, ReusesConnectionsAcrossCallsAndThreads) {
  FakeHttpServer server([](const FakeRequest& r) { return FakeResponse::Json(200, r.body); });
  auto sleeps = std::make_shared<RecordedSleeps>();
  auto http = testing::TransportWithToken("tok", sleeps);
  for (int i = 0; i < 20; ++i) {
    auto resp =
        http->Send({.method = "PUT", .url = server.url() + "/p", .body = std::to_string(i)});
    ASSERT_TRUE(resp);
    EXPECT_EQ(resp->body, std::to_string(i));
  }
  EXPECT_EQ(server.connections(), 1);

  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 25; ++i) {
        auto resp = http->Send({.url = server.url() + "/q"});
        ok += resp && resp->status == 200 ? 1 : 0;
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  EXPECT_EQ(ok.load(), 100);
  EXPECT_LE(server.connections(), 5);  // at most one per concurrent caller, reused
}

TEST(GcpTransport, StreamedBodyIsNotRetriedOnceBytesReachedTheSink) {
  FakeHttpServer server([](const FakeRequest&) {
    FakeResponse r;
    r.body = std::string(1000, 'x');
    r.action = FakeResponse::Action::kPartialAndClose;
    r.partial_bytes = 300;
    return r;
  });
  auto sleeps = std::make_shared<RecordedSleeps>();
  auto http = testing::TransportWithToken("tok", sleeps);
  std::string got;
  HttpRequest req{.url = server.url() + "/d"};
  req.sink = [&](std::string_view b) {
    got.append(b);
    return true;
  };
  auto resp = http->Send(req);
  ASSERT_FALSE(resp);
  EXPECT_EQ(resp.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(got, std::string(300, 'x'));
  EXPECT_EQ(server.requests().size(), 1u);
}

}  // namespace
}  // namespace agentbox::gcp
