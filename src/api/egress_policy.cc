#include "api/egress_policy.h"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

namespace agentbox {
namespace {

Error Bad(const std::string& where, const std::string& what) {
  return Error{ErrorCode::kInvalidArgument, where + ": " + what};
}

Result<int> ParseSmallInt(std::string_view s, int max) {
  int v = -1;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size() || v < 0 || v > max) {
    return Fail(ErrorCode::kInvalidArgument, "bad number");
  }
  return v;
}

Result<PortRange> ParsePorts(const Json& j, const std::string& where) {
  auto port = [&](int64_t v) -> Result<uint16_t> {
    if (v < 1 || v > 65535) {
      return Fail(Bad(where, std::to_string(v) + " is not a port (1-65535)"));
    }
    return static_cast<uint16_t>(v);
  };
  if (j.is_number_integer()) {
    auto p = port(j.get<int64_t>());
    if (!p) {
      return Fail(p.error());
    }
    return PortRange{*p, *p};
  }
  if (!j.is_string()) {
    return Fail(Bad(where, "must be a port number or a \"first-last\" string"));
  }
  const std::string s = j.get<std::string>();
  const size_t dash = s.find('-');
  auto first = ParseSmallInt(s.substr(0, dash), 99999);
  auto last = dash == std::string::npos ? first : ParseSmallInt(s.substr(dash + 1), 99999);
  if (!first || !last) {
    return Fail(Bad(where, "'" + s + "' is not a port or a \"first-last\" port range"));
  }
  auto a = port(*first);
  auto b = port(*last);
  if (!a || !b) {
    return Fail(!a ? a.error() : b.error());
  }
  if (*a > *b) {
    return Fail(Bad(where, "'" + s + "': the first port is above the last"));
  }
  return PortRange{*a, *b};
}

Result<std::vector<EgressRule>> ParseRules(const Json& j, const std::string& where, bool allow) {
  std::vector<EgressRule> out;
  if (j.is_null()) {
    return out;
  }
  if (!j.is_array()) {
    return Fail(Bad(where, "must be an array of {\"cidr\", \"ports\"} objects"));
  }
  if (j.size() > kMaxEgressRules) {
    return Fail(Bad(where, "has more than " + std::to_string(kMaxEgressRules) + " rules"));
  }
  for (size_t i = 0; i < j.size(); ++i) {
    const std::string at = where + "[" + std::to_string(i) + "]";
    const Json& r = j[i];
    if (!r.is_object()) {
      return Fail(Bad(at, "must be an object {\"cidr\": \"198.51.100.0/24\", \"ports\": [443]}"));
    }
    for (const auto& [k, v] : r.items()) {
      if (k != "cidr" && k != "ports") {
        return Fail(Bad(at, "unknown field '" + k + "' (known: cidr, ports)"));
      }
    }
    auto c = r.find("cidr");
    if (c == r.end() || !c->is_string()) {
      return Fail(Bad(at + ".cidr", "is required and must be a string"));
    }
    auto cidr = Cidr::Parse(c->get<std::string>());
    if (!cidr) {
      return Fail(Bad(at + ".cidr", cidr.error().message));
    }
    if (allow && cidr->v6) {
      return Fail(Bad(at + ".cidr", "IPv6 cannot be allowed: sandboxes have no IPv6 route"));
    }
    EgressRule rule{*cidr, {}};
    if (auto p = r.find("ports"); p != r.end() && !p->is_null()) {
      if (!p->is_array() || p->empty() || p->size() > kMaxEgressPorts) {
        return Fail(Bad(at + ".ports", "must be an array of 1 to " +
                                           std::to_string(kMaxEgressPorts) + " ports or ranges"));
      }
      for (size_t k = 0; k < p->size(); ++k) {
        auto range = ParsePorts((*p)[k], at + ".ports[" + std::to_string(k) + "]");
        if (!range) {
          return Fail(range.error());
        }
        rule.ports.push_back(*range);
      }
    }
    out.push_back(std::move(rule));
  }
  return out;
}

}  // namespace

Result<Cidr> Cidr::Parse(std::string_view text) {
  const std::string s(text);
  const size_t slash = s.find('/');
  const std::string host = s.substr(0, slash);
  Cidr c;
  c.v6 = host.find(':') != std::string::npos;
  if (::inet_pton(c.v6 ? AF_INET6 : AF_INET, host.c_str(), c.addr.data()) != 1) {
    return Fail(ErrorCode::kInvalidArgument, "'" + s + "' is not an IPv4 or IPv6 CIDR");
  }
  const int max = c.v6 ? 128 : 32;
  c.prefix = max;
  if (slash != std::string::npos) {
    auto n = ParseSmallInt(s.substr(slash + 1), max);
    if (!n) {
      return Fail(ErrorCode::kInvalidArgument, "'" + s + "': the prefix length must be 0 to " +
                                                   std::to_string(max));
    }
    c.prefix = *n;
  }
  for (int bit = c.prefix; bit < max; ++bit) {
    c.addr[static_cast<size_t>(bit / 8)] &= static_cast<uint8_t>(~(0x80 >> (bit % 8)));
  }
  return c;
}

std::string Cidr::ToString() const {
  char buf[INET6_ADDRSTRLEN] = {};
  ::inet_ntop(v6 ? AF_INET6 : AF_INET, addr.data(), buf, sizeof(buf));
  return std::string(buf) + "/" + std::to_string(prefix);
}

bool Cidr::Contains(const Cidr& other) const {
  if (v6 != other.v6 || other.prefix < prefix) {
    return false;
  }
  for (int bit = 0; bit < prefix; ++bit) {
    const size_t byte = static_cast<size_t>(bit / 8);
    const uint8_t mask = static_cast<uint8_t>(0x80 >> (bit % 8));
    if ((addr[byte] & mask) != (other.addr[byte] & mask)) {
      return false;
    }
  }
  return true;
}

const std::vector<Cidr>& ProtectedRanges() {
  static const std::vector<Cidr> kRanges = [] {
    std::vector<Cidr> out;
    for (const char* r : {"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8",
                          "169.254.0.0/16", "172.16.0.0/12", "192.168.0.0/16", "224.0.0.0/4",
                          "240.0.0.0/4", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8"}) {
      out.push_back(*Cidr::Parse(r));
    }
    return out;
  }();
  return kRanges;
}

Result<EgressPolicy> EgressPolicyFromJson(const Json& j, const std::string& field) {
  EgressPolicy p;
  if (j.is_null()) {
    return p;
  }
  if (!j.is_object()) {
    return Fail(Bad(field, "must be an object {\"allow\": [...], \"deny\": [...], \"default\"}"));
  }
  for (const auto& [k, v] : j.items()) {
    if (k != "allow" && k != "deny" && k != "default") {
      return Fail(Bad(field, "unknown field '" + k + "' (known: allow, deny, default)"));
    }
  }
  auto allow = ParseRules(j.value("allow", Json()), field + ".allow", true);
  if (!allow) {
    return Fail(allow.error());
  }
  auto deny = ParseRules(j.value("deny", Json()), field + ".deny", false);
  if (!deny) {
    return Fail(deny.error());
  }
  p.allow = std::move(*allow);
  p.deny = std::move(*deny);
  if (auto d = j.find("default"); d != j.end() && !d->is_null()) {
    if (!d->is_string() || (*d != "allow" && *d != "deny")) {
      return Fail(Bad(field + ".default", "must be \"allow\" or \"deny\""));
    }
    p.default_allow = *d == "allow";
  }
  return p;
}

Json EgressPolicyToJson(const EgressPolicy& p) {
  auto rules = [](const std::vector<EgressRule>& rs) {
    Json out = Json::array();
    for (const auto& r : rs) {
      Json rule = {{"cidr", r.cidr.ToString()}};
      if (!r.ports.empty()) {
        Json ports = Json::array();
        for (const auto& pr : r.ports) {
          if (pr.first == pr.last) {
            ports.push_back(pr.first);
          } else {
            ports.push_back(std::to_string(pr.first) + "-" + std::to_string(pr.last));
          }
        }
        rule["ports"] = ports;
      }
      out.push_back(rule);
    }
    return out;
  };
  return {{"allow", rules(p.allow)},
          {"deny", rules(p.deny)},
          {"default", p.default_allow ? "allow" : "deny"}};
}

}  // namespace agentbox
