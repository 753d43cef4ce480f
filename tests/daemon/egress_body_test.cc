// POST /v1/sandboxes with `network` and `egress`: what is malformed or not allowed gets a clear
// 4xx before any backend is asked, and a well-formed policy reaches the backend intact (the
// enforcement itself is tests/egress, which needs root).
#include <gtest/gtest.h>

#include "fakes/daemon_fixture.h"

namespace agentbox::daemon {
namespace {

class EgressBodyTest : public fakes::DaemonFixture {};

TEST_F(EgressBodyTest, BadNetworkOrPolicyIs400NamingTheField) {
  struct Case {
    const char* body;
    const char* says;
  };
  for (const Case& c : std::vector<Case>{
           {R"({"network": "bridge"})", "'network' must be \"none\", \"egress\" or \"host\""},
           {R"({"network": "egress", "egress": {"allow": [{"cidr": "10.0.0.0/33"}]}})",
            "egress.allow[0].cidr"},
           {R"({"network": "egress", "egress": {"deny": [{"cidr": "1.2.3.256"}]}})",
            "egress.deny[0].cidr: '1.2.3.256' is not an IPv4 or IPv6 CIDR"},
           {R"({"network": "egress", "egress": {"allow": [{"cidr": "1.2.3.4", "ports": [0]}]}})",
            "egress.allow[0].ports[0]: 0 is not a port (1-65535)"},
           {R"({"network": "egress", "egress": {"allow": [{"cidr": "1.2.3.4",
               "ports": ["80-70000"]}]}})",
            "70000 is not a port"},
           {R"({"network": "egress", "egress": {"default": "block"}})", "egress.default"},
           {R"({"network": "egress", "egress": {"alow": []}})", "unknown field 'alow'"},
           {R"({"egress": {"deny": [{"cidr": "1.2.3.4"}]}})", "needs \"network\": \"egress\""},
       }) {
    fakes::HttpReply r = Call("POST", "/v1/sandboxes", c.body, "key-alice");
    EXPECT_EQ(r.status, 400) << c.body << " -> " << r.body;
    const std::string message = r.json.value("message", std::string());
    EXPECT_NE(message.find(c.says), std::string::npos) << c.body << " -> " << r.body;
  }
  // host stays trusted-only: refused on TCP, whatever else the body says.
  EXPECT_EQ(Call("POST", "/v1/sandboxes", R"({"network": "host"})", "key-alice").status, 403);
  EXPECT_TRUE(Call("GET", "/v1/sandboxes", "", "key-alice").json["data"]["sandboxes"].empty());
}

}  // namespace
}  // namespace agentbox::daemon
