#include "guest/tunnel_client.h"

#include <gtest/gtest.h>

namespace agentbox::guest {
namespace {

TEST(TunnelUrl, ParsesHostPortAndPath) {
  auto u = ParseTunnelUrl("ws://127.0.0.1:8093/v1/tunnel");
  ASSERT_TRUE(u) << u.error().message;
  EXPECT_FALSE(u->tls);
  EXPECT_EQ(u->host, "127.0.0.1");
  EXPECT_EQ(u->port, "8093");
  EXPECT_EQ(u->target, "/v1/tunnel");
  u = ParseTunnelUrl("wss://agentbox.example.com/v1/tunnel");
  ASSERT_TRUE(u);
  EXPECT_TRUE(u->tls);
  EXPECT_EQ(u->port, "443");
  u = ParseTunnelUrl("ws://[::1]:9/x?y=1");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->host, "::1");
  EXPECT_EQ(u->port, "9");
  EXPECT_EQ(u->target, "/x?y=1");
  u = ParseTunnelUrl("ws://host");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->port, "80");
  EXPECT_EQ(u->target, "/");
}

TEST(TunnelUrl, RefusesOtherSchemesAndBadPorts) {
  for (const char* bad :
       {"http://h/v1/tunnel", "h:1/x", "ws://", "ws://h:port/x", "ws://h:/x", "ws://[::1/x"}) {
    EXPECT_FALSE(ParseTunnelUrl(bad)) << bad;
  }
}

}  // namespace
}  // namespace agentbox::guest
