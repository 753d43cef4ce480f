// Services inside sandboxes reached through agentboxd (docs/ports.md), on every backend named in
// AGENTBOX_CONFORMANCE_BACKENDS: port_test_server (static, uploaded into the sandbox) serves HTTP
// and a WebSocket echo on the sandbox's loopback, with the sandbox's default `network: none`,
// and the suite reaches it by path and by host name over agentboxd's TCP listener, with API
// keys, access tokens, cookies and public ports; headless Chromium loads a page from it.
#include "ports_fixture.h"

namespace agentbox::ports_test {
namespace {

TEST_P(Ports, HttpByPathStreamsBodiesOnKeptAliveConnections) {
  // The rest of the path and the query reach the service; the API key does not.
  Reply r = Port("GET", "/hello/there?x=1&y=2");
  ASSERT_EQ(r.status, 200) << r.body;
  Json j = r.json();
  EXPECT_EQ(j["target"], "/hello/there?x=1&y=2");
  EXPECT_FALSE(j.contains("authorization")) << r.body;
  EXPECT_EQ(j["x-forwarded-prefix"], "/v1/sandboxes/" + id_ + "/ports/" + std::to_string(kPort));
  // Large bodies both ways, with Content-Length and chunked, on the same connection.
  const std::string big = Pattern(24u << 20);
  r = Port("POST", "/echo", big, {"Content-Type: application/octet-stream"});
  ASSERT_EQ(r.status, 200);
  EXPECT_TRUE(r.body == big) << "echo of 24 MiB differs (" << r.body.size() << " bytes back)";
  EXPECT_EQ(r.connects, 0) << "the connection was not kept alive";
  const std::string chunked = Pattern(3u << 20);
  r = Port("POST", "/echo", chunked, {"Content-Type: application/octet-stream"}, true);
  ASSERT_EQ(r.status, 200);
  EXPECT_TRUE(r.body == chunked) << "chunked echo differs (" << r.body.size() << " bytes back)";
  r = Port("GET", "/chunked?n=5000000");
  ASSERT_EQ(r.status, 200);
  EXPECT_NE(r.headers.find("chunked"), std::string::npos) << r.headers;
  EXPECT_TRUE(r.body == Pattern(5000000)) << r.body.size();
  r = Port("GET", "/big?n=40000000");
  ASSERT_EQ(r.status, 200);
  EXPECT_TRUE(r.body == Pattern(40000000)) << r.body.size();
  EXPECT_EQ(r.connects, 0) << "the connection was not kept alive";
  // The same connection then serves the native API (it went back to the HTTP server).
  Request native;
  native.url = daemon_->Url("/v1/sandboxes/" + id_);
  native.headers = {std::string("Authorization: Bearer ") + kAliceKey};
  r = Perform(curl_, native);
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.connects, 0);
  // A body ended by the service closing: passed on, and the client's connection closes too.
  r = Port("GET", "/close");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "until the end");
  // HEAD: no body.
  r = Port("HEAD", "/big?n=1000");
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(r.body.empty());
}

TEST_P(Ports, HttpByHostName) {
  Reply r = ByHost("/from/host?q=1", {std::string("Authorization: Bearer ") + kAliceKey});
  ASSERT_EQ(r.status, 200) << r.body;
  Json j = r.json();
  EXPECT_EQ(j["target"], "/from/host?q=1");
  EXPECT_EQ(j["host"], daemon_->Host(id_, kPort));
  EXPECT_FALSE(j.contains("authorization"));
  // Every path on that host is the service's, the daemon's own paths included.
  r = ByHost("/v1/sandboxes", {std::string("Authorization: Bearer ") + kAliceKey});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json()["target"], "/v1/sandboxes");
  // The port's own Authorization reaches it when the caller is let in otherwise (a token).
  r = ByHost("/app?" + std::string("agentbox_token=") + Token(), {"Authorization: Basic dXNlcjo="});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json()["authorization"], "Basic dXNlcjo=");
  EXPECT_EQ(r.json()["target"], "/app");
  // The control API names the host.
  r = Api("GET", "/v1/sandboxes/" + id_ + "/ports/" + std::to_string(kPort));
  EXPECT_EQ(r.json()["data"]["host"], daemon_->Host(id_, kPort));
}

TEST_P(Ports, WebSocketByPathAndByHost) {
  WebSocketRoundTrip(daemon_->tcp_port(),
                     "/v1/sandboxes/" + id_ + "/ports/" + std::to_string(kPort) + "/ws",
                     "127.0.0.1");
  WebSocketRoundTrip(daemon_->tcp_port(), "/ws", daemon_->Host(id_, kPort));
}

TEST_P(Ports, OnlyTheOwnerTokenHoldersOrEveryoneWhenPublic) {
  Request r;
  r.url = PathUrl("/private");
  CURL* c = curl_easy_init();
  // No key: 401 with a message; another key: 404 (as the native API), a wrong key: 401.
  Reply out = Perform(c, r);
  EXPECT_EQ(out.status, 401) << out.body;
  EXPECT_NE(out.json().value("message", "").find("private"), std::string::npos) << out.body;
  r.headers = {std::string("Authorization: Bearer ") + kBobKey};
  EXPECT_EQ(Perform(c, r).status, 404);
  r.headers = {"Authorization: Bearer not-a-key"};
  EXPECT_EQ(Perform(c, r).status, 401);
  r.headers = {"Host: " + daemon_->Host(id_, kPort), std::string("Authorization: Bearer ") + kBobKey};
  r.url = daemon_->Url("/private");
  EXPECT_EQ(Perform(c, r).status, 404);
  // The access token: in the query once, then its cookie (what a browser does).
  const std::string token = Token();
  ASSERT_EQ(token.size(), 32u);
  r.headers = {};
  r.url = PathUrl("/page?agentbox_token=" + token + "&keep=1");
  out = Perform(c, r);
  ASSERT_EQ(out.status, 200) << out.body;
  EXPECT_EQ(out.json()["target"], "/page?keep=1");
  EXPECT_NE(out.headers.find("agentbox_port_token=" + token), std::string::npos) << out.headers;
  r.url = PathUrl("/next");
  r.headers = {"Cookie: theme=dark; agentbox_port_token=" + token};
  out = Perform(c, r);
  ASSERT_EQ(out.status, 200) << out.body;
  EXPECT_EQ(out.json()["cookie"], "theme=dark");  // the token cookie stays with agentboxd
  r.headers = {"Cookie: agentbox_port_token=" + std::string(32, '0')};
  EXPECT_EQ(Perform(c, r).status, 401);
  // A token is good for its port only.
  r.headers = {};
  r.url = daemon_->Url("/v1/sandboxes/" + id_ + "/ports/18081/x?agentbox_token=" + token);
  EXPECT_EQ(Perform(c, r).status, 401);
  // Public: anyone, by path and by host; private again: refused again.
  Reply set = Api("POST", "/v1/sandboxes/" + id_ + "/ports/" + std::to_string(kPort),
                  R"({"public":true})");
  ASSERT_EQ(set.status, 200) << set.body;
  EXPECT_EQ(set.json()["data"]["public"], true);
  r.headers = {};
  r.url = PathUrl("/open");
  EXPECT_EQ(Perform(c, r).status, 200);
  r.url = daemon_->Url("/open");
  r.headers = {"Host: " + daemon_->Host(id_, kPort)};
  EXPECT_EQ(Perform(c, r).status, 200);
  // Other ports of the sandbox stay private.
  r.headers = {"Host: " + daemon_->Host(id_, 18081)};
  EXPECT_EQ(Perform(c, r).status, 401);
  // Bob cannot change it.
  Request bob;
  bob.method = "POST";
  bob.url = daemon_->Url("/v1/sandboxes/" + id_ + "/ports/" + std::to_string(kPort));
  bob.headers = {std::string("Authorization: Bearer ") + kBobKey};
  bob.body = R"({"public":false})";
  EXPECT_EQ(Perform(c, bob).status, 404);
  ASSERT_EQ(Api("POST", "/v1/sandboxes/" + id_ + "/ports/" + std::to_string(kPort),
                R"({"public":false})")
                .status,
            200);
  r.url = PathUrl("/open");
  r.headers = {};
  EXPECT_EQ(Perform(c, r).status, 401);
  curl_easy_cleanup(c);
}

TEST_P(Ports, ClearErrors) {
  // Nothing listening: 502 saying so.
  Request r;
  r.url = PathUrl("/", 18099);
  r.headers = {std::string("Authorization: Bearer ") + kAliceKey};
  CURL* c = curl_easy_init();
  Reply out = Perform(c, r);
  EXPECT_EQ(out.status, 502) << out.body;
  EXPECT_NE(out.json().value("message", "").find("nothing is listening on port 18099"),
            std::string::npos)
      << out.body;
  // Bad ports: 400, by path, by host and on the control API.
  for (const std::string port : {"0", "65536", "http", "-1"}) {
    r.url = daemon_->Url("/v1/sandboxes/" + id_ + "/ports/" + port + "/");
    out = Perform(c, r);
    EXPECT_EQ(out.status, 400) << port << ": " << out.body;
  }
  r.url = daemon_->Url("/");
  r.headers = {"Host: 99999-" + id_ + "." + kDomain, std::string("Authorization: Bearer ") + kAliceKey};
  EXPECT_EQ(Perform(c, r).status, 400);
  EXPECT_EQ(Api("GET", "/v1/sandboxes/" + id_ + "/ports/abc").status, 400);
  EXPECT_EQ(Api("POST", "/v1/sandboxes/" + id_ + "/ports/8080", R"({"public":"yes"})").status, 422);
  // Unknown sandbox: 404.
  r.url = daemon_->Url("/v1/sandboxes/sb-doesnotexist/ports/8080/");
  r.headers = {std::string("Authorization: Bearer ") + kAliceKey};
  out = Perform(c, r);
  EXPECT_EQ(out.status, 404) << out.body;
  r.url = daemon_->Url("/");
  r.headers = {"Host: 8080-sb-doesnotexist." + std::string(kDomain)};
  EXPECT_EQ(Perform(c, r).status, 404);
  curl_easy_cleanup(c);
}

// Headless Chromium (Debian's `chromium`) loads a page served inside the sandbox, by host name and
// by path, with only the port's access token in the first URL: the page is red, and its style
// sheet (fetched with the token's cookie) paints it #12ab34.
TEST_P(Ports, ChromiumLoadsAPageFromTheSandbox) {
  const char* candidates[] = {"/usr/bin/chromium", "/usr/bin/chromium-browser"};
  std::string chromium;
  for (const char* c : candidates) {
    if (access(c, X_OK) == 0) {
      chromium = c;
    }
  }
  if (chromium.empty()) {
    GTEST_SKIP() << "chromium is not installed (scripts/install-deps.sh installs Debian's "
                    "chromium): the browser test cannot run";
  }
  const std::string token = Token();
  const std::string host_url =
      "http://" + daemon_->Host(id_, kPort) + "/page.html?agentbox_token=" + token;
  const std::string path_url = PathUrl("/page.html?agentbox_token=" + token);
  for (const std::string& url : {host_url, path_url}) {
    char dir_tmpl[] = "/tmp/agentbox-ports-chromium-XXXXXX";
    ASSERT_NE(mkdtemp(dir_tmpl), nullptr);
    const std::string dir = dir_tmpl;
    const std::string shot = dir + "/shot.png";
    const std::string cmd = "'" + chromium +
                            "' --headless --no-sandbox --disable-gpu --no-first-run "
                            "--user-data-dir='" + dir + "/profile' --window-size=320,240 "
                            "--host-resolver-rules='MAP *." + kDomain + " 127.0.0.1' "
                            "--screenshot='" + shot + "' '" + url + "' >'" + dir +
                            "/chromium.log' 2>&1";
    const int rc = system(cmd.c_str());
    std::ifstream log(dir + "/chromium.log");
    std::stringstream ls;
    ls << log.rdbuf();
    ASSERT_EQ(rc, 0) << cmd << "\n" << ls.str();
    auto img = ReadPng(shot);
    ASSERT_TRUE(img.has_value()) << "no readable screenshot at " << shot << "\n" << ls.str();
    ASSERT_GE(img->width, 100u);
    ASSERT_GE(img->height, 100u);
    const size_t at = ((img->height / 2) * img->width + img->width / 2) * 3;
    const int r = img->rgb[at], g = img->rgb[at + 1], b = img->rgb[at + 2];
    EXPECT_TRUE(std::abs(r - 0x12) <= 2 && std::abs(g - 0xab) <= 2 && std::abs(b - 0x34) <= 2)
        << url << ": centre pixel is rgb(" << r << "," << g << "," << b
        << "), expected #12ab34 (red: the style sheet was refused)";
    int rc2 = system(("rm -rf '" + dir + "'").c_str());
    (void)rc2;
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, Ports, ::testing::ValuesIn(Backends()),
                         [](const ::testing::TestParamInfo<std::string>& p) {
                           std::string n = p.param;
                           for (auto& ch : n) {
                             ch = ch == '-' ? '_' : ch;
                           }
                           return n;
                         });

}  // namespace
}  // namespace agentbox::ports_test
