// Policy parsing (api/egress_policy.h) and the iptables rules made from it: pure functions, no
// root needed. What the rules do to real traffic is tested by tests/egress (root).
#include "backends/egress/egress_rules.h"

#include <gtest/gtest.h>

#include "backends/egress/egress_network.h"

namespace agentbox::egress {
namespace {

Result<EgressPolicy> Parse(const char* text) {
  return EgressPolicyFromJson(Json::parse(text));
}

TEST(Cidr, ParsesClearsHostBitsAndContains) {
  auto c = Cidr::Parse("10.1.2.3/8");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->ToString(), "10.0.0.0/8");
  EXPECT_EQ(Cidr::Parse("198.51.100.7")->ToString(), "198.51.100.7/32");
  EXPECT_EQ(Cidr::Parse("fd00::1/8")->ToString(), "fd00::/8");
  EXPECT_TRUE(c->Contains(*Cidr::Parse("10.200.0.0/16")));
  EXPECT_FALSE(c->Contains(*Cidr::Parse("11.0.0.0/16")));
  EXPECT_FALSE(c->Contains(*Cidr::Parse("0.0.0.0/0")));
  for (const char* bad : {"", "10.0.0.0/33", "300.1.1.1/8", "10.0.0.0/", "10.0.0.0/-1", "abc",
                          "fd00::/129", "10.0.0.0/8x"}) {
    EXPECT_FALSE(Cidr::Parse(bad)) << bad;
  }
}

TEST(EgressPolicy, ParsesTheWireShapeAndRoundTrips) {
  auto p = Parse(R"({"allow": [{"cidr": "198.51.100.0/24", "ports": [80, "8000-8100"]}],
                     "deny": [{"cidr": "198.51.100.9"}], "default": "deny"})");
  ASSERT_TRUE(p) << p.error().message;
  ASSERT_EQ(p->allow.size(), 1u);
  EXPECT_EQ(p->allow[0].ports, (std::vector<PortRange>{{80, 80}, {8000, 8100}}));
  EXPECT_EQ(p->deny[0].cidr.ToString(), "198.51.100.9/32");
  EXPECT_FALSE(p->default_allow);
  auto back = EgressPolicyFromJson(EgressPolicyToJson(*p));
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, *p);
  EXPECT_TRUE(Parse("{}")->default_allow);
}

TEST(EgressPolicy, BadInputNamesTheElement) {
  struct Case {
    const char* body;
    const char* says;
  };
  for (const Case& c : std::vector<Case>{
           {R"({"allow": [{"cidr": "10.0.0.0/33"}]})", "egress.allow[0].cidr"},
           {R"({"allow": [{"cidr": "1.2.3.4", "ports": [70000]}]})",
            "egress.allow[0].ports[0]: 70000 is not a port"},
           {R"({"allow": [{"cidr": "1.2.3.4", "ports": [0]}]})", "is not a port"},
           {R"({"deny": [{"cidr": "1.2.3.4", "ports": ["90-80"]}]})", "above the last"},
           {R"({"deny": [{"cidr": "1.2.3.4", "ports": ["http"]}]})", "'http' is not a port"},
           {R"({"deny": [{"cidr": "1.2.3.4", "ports": []}]})", "egress.deny[0].ports"},
           {R"({"deny": [{"cidr": "1.2.3.4", "proto": "tcp"}]})", "unknown field 'proto'"},
           {R"({"deny": [{}]})", "egress.deny[0].cidr: is required"},
           {R"({"allow": [{"cidr": "2001:db8::/32"}]})", "IPv6 cannot be allowed"},
           {R"({"allow": "1.2.3.4"})", "egress.allow: must be an array"},
           {R"({"default": "maybe"})", "egress.default"},
           {R"({"rules": []})", "unknown field 'rules'"},
           {R"([])", "egress: must be an object"},
       }) {
    auto p = Parse(c.body);
    ASSERT_FALSE(p) << c.body;
    EXPECT_EQ(p.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(p.error().message.find(c.says), std::string::npos) << p.error().message;
  }
  std::string many = R"({"deny": [)";
  for (size_t i = 0; i <= kMaxEgressRules; ++i) {
    many += std::string(i ? "," : "") + R"({"cidr": "1.2.3.4"})";
  }
  EXPECT_FALSE(EgressPolicyFromJson(Json::parse(many + "]}")));
}

TEST(EgressPolicy, ProtectedRangesCoverMetadataPrivateAndLoopback) {
  auto covered = [](const char* a) {
    for (const Cidr& r : ProtectedRanges()) {
      if (r.Contains(*Cidr::Parse(a))) {
        return true;
      }
    }
    return false;
  };
  for (const char* a : {"169.254.169.254", "10.1.2.3", "172.20.0.1", "192.168.1.1", "127.0.0.1",
                        "100.64.0.1", "fd12::1", "fe80::1", "::1"}) {
    EXPECT_TRUE(covered(a)) << a;
  }
  for (const char* a : {"198.51.100.1", "8.8.8.8", "2001:db8::1"}) {
    EXPECT_FALSE(covered(a)) << a;
  }
}

TEST(EgressRules, SlotNamesAndAddresses) {
  const Cidr pool = *Cidr::Parse("10.213.0.0/17");
  EXPECT_EQ(SlotCount(pool), 8192u);
  const Slot s = MakeSlot(pool, 5);
  EXPECT_EQ(s.host_ip, "10.213.0.21");
  EXPECT_EQ(s.sandbox_ip, "10.213.0.22");
  EXPECT_LE(s.peer.size(), 15u);  // IFNAMSIZ - 1
  EXPECT_EQ(SlotOfLink(pool, s.link), 5);
  EXPECT_EQ(SlotOfLink(pool, "eth0"), -1);
  EXPECT_EQ(SlotOfLink(*Cidr::Parse("10.213.128.0/17"), s.link), -1);  // another pool's tag
  EXPECT_EQ(LinkOfChain(pool, s.chain), s.link);
  EXPECT_EQ(LinkOfChain(pool, s.fwd_chain), s.link);
  EXPECT_EQ(LinkOfChain(pool, ChainsOf(pool).fwd), "");
  EXPECT_TRUE(CheckPool(pool));
  EXPECT_FALSE(CheckPool(*Cidr::Parse("10.0.0.0/8")));
}

TEST(EgressRules, OrderIsSourceDnsDenyAllowProtectedThenDefault) {
  const Slot s = MakeSlot(*Cidr::Parse("10.213.0.0/17"), 1);
  auto policy = Parse(R"({"allow": [{"cidr": "10.9.0.0/16", "ports": [443]}],
                          "deny": [{"cidr": "198.51.100.7"}], "default": "deny"})");
  ASSERT_TRUE(policy);
  const std::string rules = SandboxRules(s, *policy, {"192.0.2.53"});
  auto at = [&](const std::string& needle) {
    const size_t p = rules.find(needle);
    EXPECT_NE(p, std::string::npos) << needle << "\n" << rules;
    return p;
  };
  const size_t spoof = at("! -s " + s.sandbox_ip + "/32 -j DROP");
  const size_t dns = at("-d 192.0.2.53/32 -p udp --dport 53 -j ACCEPT");
  const size_t deny = at("-d 198.51.100.7/32 -p tcp -j REJECT --reject-with tcp-reset");
  const size_t allow = at("-d 10.9.0.0/16 -p tcp -m multiport --dports 443 -j ACCEPT");
  const size_t priv = at("-d 10.0.0.0/8 -p tcp -j REJECT");
  const size_t meta = at("-d 169.254.0.0/16 -j REJECT --reject-with icmp-admin-prohibited");
  EXPECT_LT(spoof, dns);
  EXPECT_LT(dns, deny);
  EXPECT_LT(deny, allow);
  EXPECT_LT(allow, priv);
  EXPECT_LT(allow, meta);
  at("-A " + s.fwd_chain + " -j REJECT --reject-with icmp-admin-prohibited");
  at("-I ABX-" + s.tag + "-IN 1 -i " + s.link + " -j " + s.chain);
  EXPECT_EQ(rules.find("-A " + s.fwd_chain + " -j ACCEPT"), std::string::npos);
}

TEST(EgressRules, ManyPortsAreSplitIntoMultiportGroups) {
  const Slot s = MakeSlot(*Cidr::Parse("10.213.0.0/17"), 0);
  EgressPolicy p;
  EgressRule r{*Cidr::Parse("198.51.100.0/24"), {}};
  for (uint16_t i = 0; i < 20; ++i) {
    r.ports.push_back({static_cast<uint16_t>(1000 + 2 * i), static_cast<uint16_t>(1001 + 2 * i)});
  }
  p.allow.push_back(r);
  const std::string rules = SandboxRules(s, p, {});
  size_t groups = 0;
  for (size_t pos = 0; (pos = rules.find("-p tcp -m multiport", pos)) != std::string::npos; ++pos) {
    ++groups;
  }
  EXPECT_EQ(groups, 3u);  // 20 ranges, 7 per group (a range counts two of multiport's 15)
}

TEST(EgressConfig, PoolHalvesDnsAndDefaultPolicy) {
  auto jail = EgressOptionsFromConfig(
      Config::FromMap({{"AGENTBOX_EGRESS_POOL", "10.50.0.0/16"},
                       {"AGENTBOX_EGRESS_DNS", "192.0.2.53, 192.0.2.54"},
                       {"AGENTBOX_EGRESS_POLICY", R"({"default": "deny"})"}}),
      0);
  ASSERT_TRUE(jail) << jail.error().message;
  EXPECT_EQ(jail->pool.ToString(), "10.50.0.0/17");
  EXPECT_EQ(jail->dns, (std::vector<std::string>{"192.0.2.53", "192.0.2.54"}));
  EXPECT_FALSE(jail->default_policy.default_allow);
  auto docker = EgressOptionsFromConfig(Config::FromMap({{"AGENTBOX_EGRESS_POOL", "10.50.0.0/16"}}),
                                        1);
  ASSERT_TRUE(docker);
  EXPECT_EQ(docker->pool.ToString(), "10.50.128.0/17");
  for (const auto& bad : std::map<std::string, std::string>{
           {"AGENTBOX_EGRESS_POOL", "10.0.0.0/8"},
           {"AGENTBOX_EGRESS_DNS", "dns.example"},
           {"AGENTBOX_EGRESS_POLICY", "{"}}) {
    EXPECT_FALSE(EgressOptionsFromConfig(Config::FromMap({bad}), 0)) << bad.first;
  }
  EXPECT_EQ(NameserversOf("nameserver 127.0.0.53\nnameserver 192.0.2.1\nnameserver ::1\n"),
            std::vector<std::string>{"192.0.2.1"});
}

}  // namespace
}  // namespace agentbox::egress
