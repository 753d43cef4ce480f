#include "backends/egress/egress_rules.h"

#include <arpa/inet.h>

#include <cstdio>

namespace agentbox::egress {
namespace {

uint32_t V4(const Cidr& c) {
  return (uint32_t{c.addr[0]} << 24) | (uint32_t{c.addr[1]} << 16) | (uint32_t{c.addr[2]} << 8) |
         uint32_t{c.addr[3]};
}

std::string Dotted(uint32_t a) {
  return std::to_string(a >> 24) + "." + std::to_string((a >> 16) & 255) + "." +
         std::to_string((a >> 8) & 255) + "." + std::to_string(a & 255);
}

std::string Hex4(uint32_t v) {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "%04x", v & 0xffff);
  return buf;
}

// iptables' multiport takes at most 15 ports, a range counting as two.
std::vector<std::string> PortGroups(const std::vector<PortRange>& ports) {
  std::vector<std::string> out;
  std::string cur;
  int weight = 0;
  for (const PortRange& p : ports) {
    const int w = p.first == p.last ? 1 : 2;
    if (weight + w > 15) {
      out.push_back(cur);
      cur.clear();
      weight = 0;
    }
    if (!cur.empty()) {
      cur.push_back(',');
    }
    cur.append(std::to_string(p.first));
    if (p.first != p.last) {
      cur.push_back(':');
      cur.append(std::to_string(p.last));
    }
    weight += w;
  }
  if (!cur.empty()) {
    out.push_back(cur);
  }
  return out;
}

void Refuse(std::string& out, const std::string& head, const std::string& match_tail = "") {
  out += head + " -p tcp" + match_tail + " -j REJECT --reject-with tcp-reset\n";
  out += head + match_tail + " -j REJECT --reject-with icmp-admin-prohibited\n";
}

// Rules for `rule`, one verdict: "ACCEPT" or refuse.
void RuleLines(std::string& out, const std::string& chain, const EgressRule& rule, bool accept) {
  const std::string head = "-A " + chain + " -d " + rule.cidr.ToString();
  if (rule.ports.empty()) {
    if (accept) {
      out += head + " -j ACCEPT\n";
    } else {
      Refuse(out, head);
    }
    return;
  }
  for (const std::string& group : PortGroups(rule.ports)) {
    for (const char* proto : {"tcp", "udp"}) {
      const std::string match =
          head + " -p " + proto + " -m multiport --dports " + group;
      if (accept) {
        out += match + " -j ACCEPT\n";
      } else if (std::string(proto) == "tcp") {
        out += match + " -j REJECT --reject-with tcp-reset\n";
      } else {
        out += match + " -j REJECT --reject-with icmp-admin-prohibited\n";
      }
    }
  }
}

}  // namespace

Result<void> CheckPool(const Cidr& pool) {
  if (pool.v6 || pool.prefix < 16 || pool.prefix > 29) {
    return Fail(ErrorCode::kInvalidArgument,
                "egress pool " + pool.ToString() + " must be an IPv4 network of /16 to /29");
  }
  return {};
}

uint32_t SlotCount(const Cidr& pool) { return 1u << (30 - pool.prefix); }

std::string PoolTag(const Cidr& pool) {
  uint32_t h = 2166136261u;
  for (char c : pool.ToString()) {
    h = (h ^ static_cast<unsigned char>(c)) * 16777619u;
  }
  return Hex4(h ^ (h >> 16));
}

Slot MakeSlot(const Cidr& pool, uint32_t index) {
  Slot s;
  s.tag = PoolTag(pool);
  s.index = index;
  s.link = "ab" + s.tag + Hex4(index);
  s.peer = s.link + "p";
  s.chain = "ABX-" + s.tag + "-" + Hex4(index);
  s.fwd_chain = s.chain + "F";
  const uint32_t net = V4(pool) + 4 * index;
  s.host_ip = Dotted(net + 1);
  s.sandbox_ip = Dotted(net + 2);
  return s;
}

int64_t SlotOfLink(const Cidr& pool, const std::string& link) {
  const std::string prefix = "ab" + PoolTag(pool);
  if (link.size() != prefix.size() + 4 || link.compare(0, prefix.size(), prefix) != 0) {
    return -1;
  }
  uint32_t v = 0;
  for (char c : link.substr(prefix.size())) {
    const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) {
      return -1;
    }
    v = v * 16 + static_cast<uint32_t>(d);
  }
  return v < SlotCount(pool) ? static_cast<int64_t>(v) : -1;
}

std::string LinkOfChain(const Cidr& pool, const std::string& chain) {
  const std::string prefix = "ABX-" + PoolTag(pool) + "-";
  std::string rest = chain.compare(0, prefix.size(), prefix) == 0 ? chain.substr(prefix.size())
                                                                   : std::string();
  if (!rest.empty() && rest.back() == 'F') {
    rest.pop_back();
  }
  if (rest.size() != 4) {
    return "";
  }
  const std::string link = "ab" + PoolTag(pool) + rest;
  return SlotOfLink(pool, link) >= 0 ? link : "";
}

PoolChains ChainsOf(const Cidr& pool) {
  const std::string tag = PoolTag(pool);
  return {"ABX-" + tag + "-FWD", "ABX-" + tag + "-IN", "ab" + tag + "+"};
}

std::string SandboxRules(const Slot& slot, const EgressPolicy& policy,
                         const std::vector<std::string>& resolvers) {
  const std::string fwd = "ABX-" + slot.tag + "-FWD";
  const std::string in = "ABX-" + slot.tag + "-IN";
  const std::string& c = slot.chain;
  std::string out = "*filter\n";
  out += ":" + c + " - [0:0]\n";
  out += ":" + slot.fwd_chain + " - [0:0]\n";
  // A sandbox that changes its own address gets nothing through.
  out += "-A " + c + " ! -s " + slot.sandbox_ip + "/32 -j DROP\n";
  out += "-A " + c + " -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n";
  for (const std::string& r : resolvers) {
    for (const char* proto : {"udp", "tcp"}) {
      out += "-A " + c + " -d " + r + "/32 -p " + proto + " --dport 53 -j ACCEPT\n";
    }
  }
  for (const EgressRule& r : policy.deny) {
    if (!r.cidr.v6) {
      RuleLines(out, c, r, false);
    }
  }
  for (const EgressRule& r : policy.allow) {
    RuleLines(out, c, r, true);
  }
  for (const Cidr& p : ProtectedRanges()) {
    if (!p.v6) {
      Refuse(out, "-A " + c + " -d " + p.ToString());
    }
  }
  out += "-A " + slot.fwd_chain + " -j " + c + "\n";
  if (policy.default_allow) {
    out += "-A " + slot.fwd_chain + " -j ACCEPT\n";
  } else {
    Refuse(out, "-A " + slot.fwd_chain);
  }
  out += "-I " + fwd + " 1 -i " + slot.link + " -j " + slot.fwd_chain + "\n";
  out += "-I " + in + " 1 -i " + slot.link + " -j " + c + "\n";
  out += "COMMIT\n";
  return out;
}

std::vector<std::vector<std::string>> RemovalCommands(const Slot& slot) {
  const std::string fwd = "ABX-" + slot.tag + "-FWD";
  const std::string in = "ABX-" + slot.tag + "-IN";
  return {{"-D", fwd, "-i", slot.link, "-j", slot.fwd_chain},
          {"-D", in, "-i", slot.link, "-j", slot.chain},
          {"-F", slot.fwd_chain},
          {"-X", slot.fwd_chain},
          {"-F", slot.chain},
          {"-X", slot.chain}};
}

}  // namespace agentbox::egress
