#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "api/egress_policy.h"
#include "common/error.h"

namespace agentbox::egress {

// Names and addresses of one sandbox's link, derived from its slot in a pool (pure functions,
// no system calls). A pool of prefix p holds 2^(30-p) slots of a /30 each: slot n is the network
// pool + 4n, the host end .1 and the sandbox end .2 of it.
//
// Every name carries a tag (4 hex digits of a hash of the pool), so daemons or backends with
// different pools never touch each other's links or chains:
//   host end of the veth  ab<tag><slot, 4 hex>     e.g. ab3f2a001c   (the kernel's 15-byte limit)
//   its peer until moved  ab<tag><slot>p
//   policy chain          ABX-<tag>-<slot>         (filter table; jumped to from FWD and IN)
//   forward chain         ABX-<tag>-<slot>F        (the policy, then the default verdict)
//   per-pool chains       ABX-<tag>-FWD, ABX-<tag>-IN
struct Slot {
  std::string tag;
  uint32_t index = 0;
  std::string link;       // host end
  std::string peer;       // sandbox end before it is moved and renamed eth0
  std::string chain;      // policy chain
  std::string fwd_chain;  // forward chain
  std::string host_ip;    // dotted quad
  std::string sandbox_ip;
  std::string prefix_len = "30";
};

// kInvalidArgument unless `pool` is IPv4 with a prefix of 16 to 29.
Result<void> CheckPool(const Cidr& pool);
uint32_t SlotCount(const Cidr& pool);
std::string PoolTag(const Cidr& pool);
Slot MakeSlot(const Cidr& pool, uint32_t index);
// The slot of a link name of this pool's tag; -1 if `link` is not one.
int64_t SlotOfLink(const Cidr& pool, const std::string& link);
// The link a per-sandbox chain belongs to ("ABX-3f2a-001c" or "...F"); empty if not one.
std::string LinkOfChain(const Cidr& pool, const std::string& chain);

struct PoolChains {
  std::string fwd;  // ABX-<tag>-FWD
  std::string in;   // ABX-<tag>-IN
  std::string link_glob;  // ab<tag>+ (iptables interface wildcard)
};
PoolChains ChainsOf(const Cidr& pool);

// The iptables-restore input (filter table, --noflush) that creates or replaces the sandbox's
// chains and hooks them into the pool's FWD and IN chains. Order inside the policy chain:
// source check (anything but the sandbox's own address is dropped), established flows, DNS to
// `resolvers`, deny rules, allow rules, protected ranges; the forward chain then applies the
// default. Refusals are TCP resets for TCP and ICMP admin-prohibited otherwise.
std::string SandboxRules(const Slot& slot, const EgressPolicy& policy,
                         const std::vector<std::string>& resolvers);

// The iptables arguments (after "iptables -w") that unhook and delete the sandbox's chains, in
// order; each may fail on its own when that part is already gone.
std::vector<std::vector<std::string>> RemovalCommands(const Slot& slot);

}  // namespace agentbox::egress
