#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "common/json_util.h"

namespace agentbox {

// An IPv4 or IPv6 network, host bits cleared ("10.0.0.0/8", "fd00::/8").
struct Cidr {
  bool v6 = false;
  std::array<uint8_t, 16> addr{};  // v4 uses the first 4 bytes
  int prefix = 0;

  // "a.b.c.d[/n]" or "x::y[/n]"; a bare address is a /32 (/128). Host bits are cleared.
  // kInvalidArgument saying what is wrong.
  static Result<Cidr> Parse(std::string_view text);
  std::string ToString() const;
  // Whether every address of `other` lies in this network (same family only).
  bool Contains(const Cidr& other) const;
  friend bool operator==(const Cidr&, const Cidr&) = default;
};

// Destination ports [first, last], both inclusive, 1..65535.
struct PortRange {
  uint16_t first = 1;
  uint16_t last = 65535;
  friend bool operator==(const PortRange&, const PortRange&) = default;
};

// Traffic to `cidr` on one of `ports` (TCP and UDP); no ports = every port and protocol.
struct EgressRule {
  Cidr cidr;
  std::vector<PortRange> ports;
  friend bool operator==(const EgressRule&, const EgressRule&) = default;
};

// What a sandbox with network "egress" may reach. A new outbound connection is decided by the
// first of these that matches (docs/network.md):
//   1. the configured DNS resolvers on port 53: allowed (so DNS always works);
//   2. a `deny` rule: refused;
//   3. an `allow` rule: allowed;
//   4. a protected range (ProtectedRanges(): private, loopback, link-local incl. the cloud
//      metadata address 169.254.169.254, CGNAT, multicast) or an address of the host: refused;
//   5. anything else: allowed when default_allow, else refused.
// "Refused" means a TCP reset or an ICMP administratively-prohibited answer: never a silent drop,
// so a client fails at once instead of hanging.
struct EgressPolicy {
  std::vector<EgressRule> allow;
  std::vector<EgressRule> deny;
  bool default_allow = true;
  friend bool operator==(const EgressPolicy&, const EgressPolicy&) = default;
};

// The ranges refused unless an allow rule covers them (step 4 above), IPv4 then IPv6.
const std::vector<Cidr>& ProtectedRanges();

// At most this many rules in each of allow and deny, and port entries per rule.
inline constexpr size_t kMaxEgressRules = 64;
inline constexpr size_t kMaxEgressPorts = 32;

// The wire shape: {"allow": [{"cidr": "198.51.100.0/24", "ports": [443, "8000-8100"]}],
// "deny": [...], "default": "allow" | "deny"}; every field optional. `field` names the object in
// errors ("egress"). kInvalidArgument naming the offending element: "egress.allow[2].ports[0]:
// 70000 is not a port (1-65535)". IPv6 networks are accepted in deny rules only: sandboxes get
// no IPv6 route, so an IPv6 allow rule could never take effect and is refused rather than ignored.
Result<EgressPolicy> EgressPolicyFromJson(const Json& j, const std::string& field = "egress");
Json EgressPolicyToJson(const EgressPolicy& p);

}  // namespace agentbox
