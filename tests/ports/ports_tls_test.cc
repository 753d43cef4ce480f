// Ports on agentboxd's TLS listener (the server's TLS bridge hands the relay the connection's
// plaintext: src/http/tls_bridge.h), and public ports across a daemon restart (kept in
// <state>/ports). The sandbox, its port_test_server and agentboxd are ports_fixture.h's.
#include "ports_fixture.h"

namespace agentbox::ports_test {
namespace {

TEST_P(Ports, TlsListenerRelaysHttpByPathAndByHostOnKeptAliveConnections) {
  auto tls = [&](const std::string& method, const std::string& url, std::vector<std::string> h,
                 const std::string& body = "", bool chunked = false) {
    Request r;
    r.method = method;
    r.url = url;
    h.push_back(std::string("Authorization: Bearer ") + kAliceKey);
    r.headers = h;
    r.body = body;
    r.chunked = chunked;
    r.ca_file = daemon_->ca_file();
    return Perform(curl_, r);
  };
  const std::string prefix = "/v1/sandboxes/" + id_ + "/ports/" + std::to_string(kPort);
  Reply r = tls("GET", daemon_->TlsUrl(prefix + "/over/tls?x=1"), {});
  ASSERT_EQ(r.status, 200) << r.body << "\n" << daemon_->log();
  Json j = r.json();
  EXPECT_EQ(j["target"], "/over/tls?x=1");
  EXPECT_FALSE(j.contains("authorization")) << r.body;
  EXPECT_EQ(j["x-forwarded-proto"], "https");
  EXPECT_EQ(j["x-forwarded-prefix"], prefix);
  // Bodies both ways through the bridge, with Content-Length and chunked, on one connection.
  const std::string big = Pattern(8u << 20);
  r = tls("POST", daemon_->TlsUrl(prefix + "/echo"), {"Content-Type: application/octet-stream"},
          big);
  ASSERT_EQ(r.status, 200);
  EXPECT_TRUE(r.body == big) << "echo of 8 MiB differs (" << r.body.size() << " bytes back)";
  EXPECT_EQ(r.connects, 0) << "the TLS connection was not kept alive";
  const std::string chunked = Pattern(1u << 20);
  r = tls("POST", daemon_->TlsUrl(prefix + "/echo"), {"Content-Type: application/octet-stream"},
          chunked, true);
  ASSERT_EQ(r.status, 200);
  EXPECT_TRUE(r.body == chunked) << r.body.size();
  r = tls("GET", daemon_->TlsUrl(prefix + "/big?n=20000000"), {});
  ASSERT_EQ(r.status, 200);
  EXPECT_TRUE(r.body == Pattern(20000000)) << r.body.size();
  EXPECT_EQ(r.connects, 0);
  // The same TLS connection then serves the native API, and a port request again.
  r = tls("GET", daemon_->TlsUrl("/v1/sandboxes/" + id_), {});
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.connects, 0);
  r = tls("GET", daemon_->TlsUrl(prefix + "/again"), {});
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.connects, 0);
  // By host name on the TLS listener.
  r = tls("GET", daemon_->TlsUrl("/from/host?q=1"), {"Host: " + daemon_->Host(id_, kPort)});
  ASSERT_EQ(r.status, 200) << r.body;
  j = r.json();
  EXPECT_EQ(j["target"], "/from/host?q=1");
  EXPECT_EQ(j["x-forwarded-proto"], "https");
  // A body ended by the service closing: passed on, then the TLS connection ends cleanly.
  r = tls("GET", daemon_->TlsUrl(prefix + "/close"), {});
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "until the end");
  // Auth is the same as anywhere: no key is 401, another key 404.
  Request anon;
  anon.url = daemon_->TlsUrl(prefix + "/private");
  anon.ca_file = daemon_->ca_file();
  CURL* c = curl_easy_init();
  EXPECT_EQ(Perform(c, anon).status, 401);
  anon.headers = {std::string("Authorization: Bearer ") + kBobKey};
  EXPECT_EQ(Perform(c, anon).status, 404);
  curl_easy_cleanup(c);
}

TEST_P(Ports, TlsListenerRelaysWebSocketsByPathAndByHost) {
  WebSocketRoundTrip(daemon_->tls_port(),
                     "/v1/sandboxes/" + id_ + "/ports/" + std::to_string(kPort) + "/ws",
                     "127.0.0.1", /*tls=*/true);
  WebSocketRoundTrip(daemon_->tls_port(), "/ws", daemon_->Host(id_, kPort), /*tls=*/true);
}

TEST_P(Ports, PublicPortsSurviveADaemonRestart) {
  const std::string control = "/v1/sandboxes/" + id_ + "/ports/" + std::to_string(kPort);
  ASSERT_EQ(Api("POST", control, R"({"public":true})").status, 200);
  ASSERT_EQ(Api("POST", "/v1/sandboxes/" + id_ + "/ports/18081", R"({"public":true})").status,
            200);
  ASSERT_EQ(Api("POST", "/v1/sandboxes/" + id_ + "/ports/18081", R"({"public":false})").status,
            200);
  ASSERT_TRUE(daemon_->Restart()) << daemon_->log();
  Reply got = Api("GET", control);
  ASSERT_EQ(got.status, 200) << got.body;
  EXPECT_EQ(got.json()["data"]["public"], true);
  EXPECT_EQ(Api("GET", "/v1/sandboxes/" + id_ + "/ports/18081").json()["data"]["public"], false);
  // Anyone reaches it again, by path and by host, with no credential.
  CURL* c = curl_easy_init();
  Request anon;
  anon.url = PathUrl("/after/restart");
  Reply r = Perform(c, anon);
  EXPECT_EQ(r.status, 200) << r.body << "\n" << daemon_->log();
  anon.url = daemon_->Url("/after/restart");
  anon.headers = {"Host: " + daemon_->Host(id_, kPort)};
  EXPECT_EQ(Perform(c, anon).status, 200);
  // Private again, and that too survives a restart.
  ASSERT_EQ(Api("POST", control, R"({"public":false})").status, 200);
  ASSERT_TRUE(daemon_->Restart()) << daemon_->log();
  anon.headers = {};
  anon.url = PathUrl("/after/second/restart");
  EXPECT_EQ(Perform(c, anon).status, 401);
  curl_easy_cleanup(c);
}

}  // namespace
}  // namespace agentbox::ports_test
