#include "gcp/auth.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <mutex>

#include "common/log.h"
#include "gcp/testing/fake_http.h"
#include "gcp/testing/rsa_key.h"
#include "gcp/testing/test_util.h"

namespace agentbox::gcp {
namespace {

using nlohmann::json;
using std::chrono::seconds;
using std::chrono::system_clock;
using testing::FakeHttpServer;
using testing::FakeRequest;
using testing::FakeResponse;
using testing::RecordedSleeps;

const testing::TestRsaKey& Key() {
  static testing::TestRsaKey key;
  return key;
}

struct Jwt {
  json header, claims;
  bool signature_ok = false;
};

Jwt DecodeJwt(const std::string& jwt) {
  size_t a = jwt.find('.');
  size_t b = jwt.find('.', a + 1);
  EXPECT_NE(b, std::string::npos);
  EXPECT_EQ(jwt.find('='), std::string::npos) << "base64url without padding";
  Jwt out;
  out.header = json::parse(testing::Base64UrlDecode(jwt.substr(0, a)));
  out.claims = json::parse(testing::Base64UrlDecode(jwt.substr(a + 1, b - a - 1)));
  out.signature_ok = Key().Verify(jwt.substr(0, b), testing::Base64UrlDecode(jwt.substr(b + 1)));
  return out;
}

std::string WriteTemp(const std::string& content) {
  char path[] = "/tmp/agentbox-gcp-key-XXXXXX";
  int fd = mkstemp(path);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(write(fd, content.data(), content.size()), static_cast<ssize_t>(content.size()));
  close(fd);
  return path;
}

json ServiceAccountKey(const std::string& token_uri) { return Key().ServiceAccountKey(token_uri); }

// Captures log lines for the "logged once, never the token" checks.
std::mutex g_log_mu;
std::vector<std::string> g_log;
void CaptureLog(LogLevel, std::string_view event, std::string_view fields) {
  std::lock_guard lock(g_log_mu);
  g_log.push_back(std::string(event) + " " + std::string(fields));
}

TEST(GcpAuth, ServiceAccountJwtIsSignedAndExchanged) {
  std::atomic<int> exchanges{0};
  std::string assertion;
  std::mutex mu;
  FakeHttpServer server([&](const FakeRequest& r) {
    if (r.method != "POST" || r.path != "/token" ||
        r.Header("content-type") != "application/x-www-form-urlencoded") {
      return FakeResponse::Json(400, R"({"error":"invalid_request"})");
    }
    FakeRequest form = r;
    form.query = r.body;
    if (form.Query("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer") {
      return FakeResponse::Json(400, R"({"error":"unsupported_grant_type"})");
    }
    std::lock_guard lock(mu);
    assertion = form.Query("assertion");
    ++exchanges;
    return FakeResponse::Json(
        200, R"({"access_token":"ya29.sa","expires_in":3599,"token_type":"Bearer"})");
  });
  std::string path = WriteTemp(ServiceAccountKey(server.url() + "/token").dump());
  auto source = MakeTokenSource(Config::FromMap({{"GOOGLE_APPLICATION_CREDENTIALS", path}}), {});
  ASSERT_TRUE(source) << source.error().message;
  EXPECT_EQ((*source)->Describe(),
            "service account agentbox@proj.iam.gserviceaccount.com (key file " + path + ")");
  auto before = system_clock::now();
  auto token = (*source)->Token();
  ASSERT_TRUE(token) << token.error().message;
  EXPECT_EQ(*token, "ya29.sa");
  EXPECT_EQ(*(*source)->Token(), "ya29.sa");
  EXPECT_EQ(exchanges.load(), 1);  // cached

  Jwt jwt = DecodeJwt(assertion);
  EXPECT_TRUE(jwt.signature_ok);
  EXPECT_EQ(jwt.header, (json{{"alg", "RS256"}, {"typ", "JWT"}, {"kid", "kid-123"}}));
  EXPECT_EQ(jwt.claims["iss"], "agentbox@proj.iam.gserviceaccount.com");
  EXPECT_EQ(jwt.claims["aud"], server.url() + "/token");
  EXPECT_EQ(jwt.claims["scope"], "https://www.googleapis.com/auth/cloud-platform");
  int64_t iat = jwt.claims["iat"];
  EXPECT_NEAR(iat, system_clock::to_time_t(before), 5);
  EXPECT_EQ(jwt.claims["exp"].get<int64_t>() - iat, 3600);
  unlink(path.c_str());
}

TEST(GcpAuth, TokenUriOverrideWinsOverTheKeyFile) {
  std::atomic<int> hits{0};
  FakeHttpServer server([&](const FakeRequest& r) {
    ++hits;
    EXPECT_EQ(r.path, "/override/token");
    return FakeResponse::Json(200, R"({"access_token":"t2","expires_in":3600})");
  });
  std::string path = WriteTemp(ServiceAccountKey("https://oauth2.invalid/token").dump());
  auto source = MakeTokenSource(
      Config::FromMap({{"GOOGLE_APPLICATION_CREDENTIALS", path},
                       {"AGENTBOX_GCP_TOKEN_URI", server.url() + "/override/token"}}),
      *EndpointsFromConfig(
          Config::FromMap({{"AGENTBOX_GCP_TOKEN_URI", server.url() + "/override/token"}})));
  ASSERT_TRUE(source);
  ASSERT_TRUE((*source)->Token());
  EXPECT_EQ(hits.load(), 1);
  unlink(path.c_str());
}

TEST(GcpAuth, AuthorizedUserUsesTheRefreshTokenGrant) {
  FakeHttpServer server([&](const FakeRequest& r) {
    FakeRequest form = r;
    form.query = r.body;
    bool ok = form.Query("grant_type") == "refresh_token" && form.Query("client_id") == "cid" &&
              form.Query("client_secret") == "s&cret=" && form.Query("refresh_token") == "1//rt";
    return ok ? FakeResponse::Json(200, R"({"access_token":"ya29.user","expires_in":3600})")
              : FakeResponse::Json(
                    400, R"({"error":"invalid_grant","error_description":"Bad Request"})");
  });
  json file = {{"type", "authorized_user"},
               {"client_id", "cid"},
               {"client_secret", "s&cret="},
               {"refresh_token", "1//rt"}};
  std::string path = WriteTemp(file.dump());
  Endpoints e;
  e.token_uri = server.url() + "/token";
  auto source = MakeTokenSource(Config::FromMap({{"GOOGLE_APPLICATION_CREDENTIALS", path}}), e);
  ASSERT_TRUE(source);
  auto token = (*source)->Token();
  ASSERT_TRUE(token) << token.error().message;
  EXPECT_EQ(*token, "ya29.user");
  unlink(path.c_str());

  file["refresh_token"] = "revoked";
  path = WriteTemp(file.dump());
  auto bad = MakeTokenSource(Config::FromMap({{"GOOGLE_APPLICATION_CREDENTIALS", path}}), e);
  ASSERT_TRUE(bad);
  auto refused = (*bad)->Token();
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kUnauthorized);
  EXPECT_NE(refused.error().message.find("invalid_grant"), std::string::npos);
  unlink(path.c_str());
}

TEST(GcpAuth, MetadataServerNeedsTheFlavorHeader) {
  FakeHttpServer server([&](const FakeRequest& r) {
    if (r.Header("metadata-flavor") != "Google") {
      return FakeResponse::Json(403, "{}");
    }
    if (r.path == "/computeMetadata/v1/instance/service-accounts/default/token") {
      return FakeResponse::Json(
          200, R"({"access_token":"ya29.md","expires_in":1800,"token_type":"Bearer"})");
    }
    if (r.path == "/computeMetadata/v1/project/project-id") {
      FakeResponse p;
      p.body = "my-project";
      return p;
    }
    return FakeResponse::Json(404, "{}");
  });
  auto endpoints = EndpointsFromConfig(
      Config::FromMap({{"GCE_METADATA_HOST", "127.0.0.1:" + std::to_string(server.port())}}));
  ASSERT_TRUE(endpoints);
  auto source = MakeTokenSource(Config::FromMap({}), *endpoints);
  ASSERT_TRUE(source);
  EXPECT_EQ((*source)->Describe(), "metadata server " + server.url());
  auto token = (*source)->Token();
  ASSERT_TRUE(token) << token.error().message;
  EXPECT_EQ(*token, "ya29.md");
  HttpTransport http(nullptr);
  EXPECT_EQ(*MetadataProjectId(*endpoints, http), "my-project");
}

TEST(GcpAuth, RefreshesFiveMinutesEarlyAndKeepsTheOldTokenWhenRefreshFails) {
  std::atomic<int> calls{0};
  std::atomic<bool> failing{false};
  FakeHttpServer server([&](const FakeRequest&) {
    int n = ++calls;
    if (failing) {
      return FakeResponse::Json(500, R"({"error":"internal_failure"})");
    }
    return FakeResponse::Json(
        200, json{{"access_token", "tok-" + std::to_string(n)}, {"expires_in", 3600}}.dump());
  });
  auto t0 = system_clock::from_time_t(1'800'000'000);
  std::atomic<int64_t> offset_s{0};
  Clock now = [&] { return t0 + seconds(offset_s.load()); };
  auto sleeps = std::make_shared<RecordedSleeps>();
  auto opts = testing::FastOptions(sleeps);
  opts.retry.max_attempts = 2;
  auto http = std::make_shared<HttpTransport>(nullptr, opts);
  Endpoints e;
  auto made = MakeServiceAccountTokenSource(ServiceAccountKey(server.url() + "/token"), "test", e,
                                            http, now);
  ASSERT_TRUE(made);
  auto source = *made;
  EXPECT_EQ(*source->Token(), "tok-1");
  offset_s = 3600 - 301;  // 5 min + 1 s before expiry: still cached
  EXPECT_EQ(*source->Token(), "tok-1");
  EXPECT_EQ(calls.load(), 1);
  offset_s = 3600 - 299;  // inside the 5-minute margin: refreshed
  EXPECT_EQ(*source->Token(), "tok-2");
  EXPECT_EQ(calls.load(), 2);

  // tok-2 expires at 3301 + 3600 = 6901 s. Refresh fails from 6601 s on: tok-2 stays in use.
  failing = true;
  offset_s = 6700;
  auto kept = source->Token();
  ASSERT_TRUE(kept) << kept.error().message;
  EXPECT_EQ(*kept, "tok-2");
  int after_first_failure = calls.load();
  EXPECT_GT(after_first_failure, 2);  // it did try
  offset_s = 6710;                    // within 15 s of the failure: no new attempt, no waiting
  EXPECT_EQ(*source->Token(), "tok-2");
  EXPECT_EQ(calls.load(), after_first_failure);
  offset_s = 6900;  // tried again (and failed again): still tok-2
  EXPECT_EQ(*source->Token(), "tok-2");
  EXPECT_GT(calls.load(), after_first_failure);
  offset_s = 6901;  // really expired now
  auto gone = source->Token();
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(gone.error().message.find("service account"), std::string::npos);
  failing = false;
  auto back = source->Token();
  ASSERT_TRUE(back);
  EXPECT_NE(*back, "tok-2");
}

TEST(GcpAuth, StaticTokenComesFirstAndTheSourceIsLoggedOnceWithoutTheToken) {
  {
    std::lock_guard lock(g_log_mu);
    g_log.clear();
  }
  SetLogSink(&CaptureLog);
  std::string path = WriteTemp(ServiceAccountKey("http://127.0.0.1:1/token").dump());
  auto config = Config::FromMap({{"GOOGLE_OAUTH_ACCESS_TOKEN", "ya29.static-secret"},
                                 {"GOOGLE_APPLICATION_CREDENTIALS", path}});
  for (int i = 0; i < 3; ++i) {
    auto source = MakeTokenSource(config, {});
    ASSERT_TRUE(source);
    EXPECT_EQ((*source)->Describe(), "GOOGLE_OAUTH_ACCESS_TOKEN");
    EXPECT_EQ(*(*source)->Token(), "ya29.static-secret");
  }
  SetLogSink(nullptr);
  std::lock_guard lock(g_log_mu);
  int source_lines = 0;
  for (const auto& line : g_log) {
    EXPECT_EQ(line.find("static-secret"), std::string::npos) << line;
    source_lines += line.rfind("gcp.credentials", 0) == 0 ? 1 : 0;
  }
  EXPECT_EQ(source_lines, 1);
  unlink(path.c_str());
}

TEST(GcpAuth, BadCredentialFilesAreClearErrors) {
  auto missing = MakeTokenSource(
      Config::FromMap({{"GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/key.json"}}), {});
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(missing.error().message.find("/nonexistent/key.json"), std::string::npos);

  std::string not_json = WriteTemp("{not json");
  auto parse = MakeTokenSource(Config::FromMap({{"GOOGLE_APPLICATION_CREDENTIALS", not_json}}), {});
  ASSERT_FALSE(parse);
  EXPECT_NE(parse.error().message.find("not JSON"), std::string::npos);

  std::string other = WriteTemp(R"({"type":"external_account"})");
  auto type = MakeTokenSource(Config::FromMap({{"GOOGLE_APPLICATION_CREDENTIALS", other}}), {});
  ASSERT_FALSE(type);
  EXPECT_NE(type.error().message.find("external_account"), std::string::npos);

  json key = ServiceAccountKey("http://127.0.0.1:1/token");
  key["private_key"] = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
  std::string bad_key = WriteTemp(key.dump());
  auto pem = MakeTokenSource(Config::FromMap({{"GOOGLE_APPLICATION_CREDENTIALS", bad_key}}), {});
  ASSERT_FALSE(pem);
  EXPECT_EQ(pem.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(pem.error().message.find("PEM"), std::string::npos);
  for (const auto& p : {not_json, other, bad_key}) {
    unlink(p.c_str());
  }
}

}  // namespace
}  // namespace agentbox::gcp
