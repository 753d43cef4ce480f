#include "daemon/port_access.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

namespace agentbox::daemon {
namespace {

http::Request Req(const std::string& target, const std::string& host = "") {
  http::Request r;
  r.method = "GET";
  r.target = target;
  const size_t q = target.find('?');
  r.path = target.substr(0, q);
  r.query = q == std::string::npos ? "" : target.substr(q + 1);
  if (!host.empty()) {
    r.headers["host"] = host;
  }
  return r;
}

TEST(PortAccess, PathTargetsKeepTheRestAndDropTheToken) {
  auto t = PathTarget(Req("/v1/sandboxes/sb-1/ports/3000/a/b%20c?x=1&agentbox_token=T&y=2"));
  ASSERT_TRUE(t);
  EXPECT_EQ(t->id, "sb-1");
  EXPECT_EQ(t->port, 3000);
  EXPECT_EQ(t->upstream_target, "/a/b%20c?x=1&y=2");
  EXPECT_EQ(t->prefix, "/v1/sandboxes/sb-1/ports/3000");
  EXPECT_FALSE(t->by_host);
  t = PathTarget(Req("/v1/sandboxes/sb-1/ports/3000/"));
  ASSERT_TRUE(t);
  EXPECT_EQ(t->upstream_target, "/");
  EXPECT_FALSE(PathTarget(Req("/v1/sandboxes/sb-1/ports/3000")));  // the control API
  EXPECT_FALSE(PathTarget(Req("/v1/sandboxes/sb-1/ports/3000?x=1")));
  EXPECT_FALSE(PathTarget(Req("/v1/sandboxes/sb-1/api/v1/file/read")));
  t = PathTarget(Req("/v1/sandboxes/sb-1/ports/99999/"));
  ASSERT_TRUE(t);
  EXPECT_EQ(t->port, 0);  // a relay target with a bad port: 400
}

TEST(PortAccess, HostTargets) {
  auto t = HostTarget(Req("/x?agentbox_token=T", "8080-sb-ab12.Sandboxes.Example.com:443"),
                      "sandboxes.example.com");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->id, "sb-ab12");
  EXPECT_EQ(t->port, 8080);
  EXPECT_EQ(t->upstream_target, "/x");
  EXPECT_TRUE(t->by_host);
  // The domain may carry the clients' port.
  EXPECT_TRUE(HostTarget(Req("/", "1-sb-x.localtest.me:8080"), "localtest.me:8080"));
  EXPECT_FALSE(HostTarget(Req("/", "sandboxes.example.com"), "sandboxes.example.com"));
  EXPECT_FALSE(HostTarget(Req("/", "8080-sb-x.example.org"), "sandboxes.example.com"));
  EXPECT_FALSE(HostTarget(Req("/", "8080-sb-x.evilsandboxes.example.com"), "sandboxes.example.com"));
  EXPECT_FALSE(HostTarget(Req("/", "8080-sb-x.sandboxes.example.com"), ""));
  EXPECT_FALSE(HostTarget(Req("/", "nodash.sandboxes.example.com"), "sandboxes.example.com"));
  t = HostTarget(Req("/", "http-sb-x.sandboxes.example.com"), "sandboxes.example.com");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->port, 0);
}

TEST(PortAccess, TokensArePerSandboxAndPort) {
  const std::string a = PortAccessToken("secret", "sb-1", 3000);
  EXPECT_EQ(a.size(), 32u);
  EXPECT_EQ(a, PortAccessToken("secret", "sb-1", 3000));
  EXPECT_NE(a, PortAccessToken("secret", "sb-1", 3001));
  EXPECT_NE(a, PortAccessToken("secret", "sb-2", 3000));
  EXPECT_NE(a, PortAccessToken("other", "sb-1", 3000));
  EXPECT_EQ(PortAccessToken("", "sb-1", 3000), "");
}

TEST(PortAccess, CookiesAndQueries) {
  EXPECT_EQ(CookieWithout("a=1; agentbox_port_token=x; b=2", kPortTokenCookie), "a=1; b=2");
  EXPECT_EQ(CookieWithout("agentbox_port_token=x", kPortTokenCookie), "");
  EXPECT_EQ(CookieValue("a=1;agentbox_port_token=x", kPortTokenCookie), "x");
  EXPECT_FALSE(CookieValue("a=1", kPortTokenCookie));
  EXPECT_EQ(QueryWithout("agentbox_token=1&a=2&agentbox%5Ftoken=3", kPortTokenParam), "a=2");
  EXPECT_EQ(QueryWithout("", kPortTokenParam), "");
  EXPECT_EQ(ParsePortNumber("65535"), 65535);
  for (const char* bad : {"0", "65536", "", "+1", "1e3", "123456"}) {
    EXPECT_EQ(ParsePortNumber(bad), 0) << bad;
  }
}

TEST(PortAccess, PublicPorts) {
  PublicPorts p;
  ASSERT_TRUE(p.Set("sb-1", 80, true));
  ASSERT_TRUE(p.Set("sb-1", 81, true));
  ASSERT_TRUE(p.Set("sb-2", 80, true));
  EXPECT_TRUE(p.Contains("sb-1", 80));
  ASSERT_TRUE(p.Set("sb-1", 81, false));
  EXPECT_FALSE(p.Contains("sb-1", 81));
  p.Forget("sb-1");
  EXPECT_FALSE(p.Contains("sb-1", 80));
  EXPECT_TRUE(p.Contains("sb-2", 80));
}

TEST(PortAccess, PublicPortsSurviveARestartAndGoWithTheirSandbox) {
  char tmpl[] = "/tmp/agentbox-public-ports-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = std::string(tmpl) + "/ports";  // made on the first Set
  {
    PublicPorts p(dir);
    ASSERT_TRUE(p.Set("sb-1", 3000, true));
    ASSERT_TRUE(p.Set("sb-1", 8080, true));
    ASSERT_TRUE(p.Set("sb-1", 8080, false));
    ASSERT_TRUE(p.Set("sb-2", 443, true));
    ASSERT_TRUE(p.Set("sb-3", 22, true));
  }
  // Junk and files of invalid ids are skipped, not trusted.
  std::ofstream(dir + "/sb-4.json") << "{not json";
  std::ofstream(dir + "/sb-5.json") << R"({"sandbox":"other","public":[80]})";
  {
    PublicPorts p(dir);  // the daemon started again
    EXPECT_TRUE(p.Contains("sb-1", 3000));
    EXPECT_FALSE(p.Contains("sb-1", 8080));
    EXPECT_TRUE(p.Contains("sb-2", 443));
    EXPECT_TRUE(p.Contains("sb-3", 22));
    EXPECT_FALSE(p.Contains("sb-5", 80));
    p.Forget("sb-2");  // destroyed
    EXPECT_FALSE(std::filesystem::exists(dir + "/sb-2.json"));
    p.Retain({"sb-1"});  // sb-3 went away while the daemon was down
    EXPECT_FALSE(p.Contains("sb-3", 22));
    EXPECT_FALSE(std::filesystem::exists(dir + "/sb-3.json"));
  }
  PublicPorts again(dir);
  EXPECT_TRUE(again.Contains("sb-1", 3000));
  EXPECT_FALSE(again.Contains("sb-2", 443));
  EXPECT_FALSE(again.Contains("sb-3", 22));
  std::filesystem::remove_all(tmpl);
}

}  // namespace
}  // namespace agentbox::daemon
