#pragma once

#include <sys/types.h>

#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "api/egress_policy.h"
#include "backends/egress/egress_rules.h"
#include "common/config.h"
#include "common/error.h"

namespace agentbox::egress {

struct EgressOptions {
  Cidr pool = *Cidr::Parse("10.213.0.0/17");
  // IPv4 resolvers written to the sandbox's /etc/resolv.conf and always reachable on port 53.
  std::vector<std::string> dns;
  // The policy of a sandbox that asks for network "egress" without one.
  EgressPolicy default_policy;
};

// AGENTBOX_EGRESS_POOL (default 10.213.0.0/16; the jail backend takes its first half, docker
// the second: `half` 0 or 1), AGENTBOX_EGRESS_DNS (comma-separated IPv4 addresses; default the
// non-loopback IPv4 nameservers of the host's /etc/resolv.conf) and AGENTBOX_EGRESS_POLICY (the
// default policy as JSON, the shape of the create body's `egress`). kInvalidArgument naming the
// key when a value is malformed.
Result<EgressOptions> EgressOptionsFromConfig(const Config& cfg, int half);

// The IPv4 nameservers of resolv.conf text, loopback ones left out (a sandbox cannot reach the
// host's loopback).
std::vector<std::string> NameserversOf(const std::string& resolv_conf);

// One sandbox's link as attached.
struct Attachment {
  std::string link;  // host end of the veth; what Detach and the backend's record name
  std::string host_ip;
  std::string sandbox_ip;
};

// Outbound networking for sandboxes with their own network namespace: a veth pair per sandbox
// (the sandbox's end is its eth0), NAT to the host's network, and the sandbox's EgressPolicy as
// iptables rules in the host's namespace, where the sandbox cannot change them (it has no
// capability in the host's namespace, and its own address is checked). Runs `ip`, `nsenter`
// and `iptables[-restore]`; needs root. Thread-safe; one instance per pool and process.
class EgressNetwork {
 public:
  explicit EgressNetwork(EgressOptions opts);

  // Empty when egress can work here; else one sentence why not (not root, a tool missing).
  std::string WhyUnsupported() const;
  const EgressOptions& options() const { return opts_; }
  // "nameserver <ip>" lines (and options) for the sandbox's /etc/resolv.conf.
  std::string ResolvConf() const;

  // Gives the network namespace of process `pid` an eth0 with the next free address of the
  // pool and a default route through the host, and installs `policy`. A free slot is one whose
  // link name the kernel does not hold (creating it is the claim, so two creators never share a
  // slot). On failure nothing of it is left. kUnavailable when the pool is exhausted.
  Result<Attachment> Attach(pid_t pid, const EgressPolicy& policy);
  // Removes the link (if its namespace still exists) and its rules. Missing parts are fine.
  void Detach(const std::string& link);
  // Removes links and chains of this pool that belong to no live sandbox: `live` lists the
  // links of sandboxes the caller keeps; links attached by this object and not yet detached are
  // kept too (creates in flight). Returns how many links or chain pairs were removed.
  size_t Sweep(const std::set<std::string>& live);

 private:
  Result<void> EnsurePoolRules();
  std::vector<std::string> HostLinks() const;
  std::vector<std::string> Chains() const;

  EgressOptions opts_;
  std::mutex mu_;
  bool pool_rules_ = false;
  std::set<std::string> attached_;  // links this object attached and has not detached
};

// Removes every rule and chain of `pool` from the host's tables, the per-pool hooks included
// (EgressNetwork installs those once and leaves them, harmless without links). For tests and for
// taking a pool out of use; links of the pool must be gone first.
void RemovePoolRules(const Cidr& pool);

}  // namespace agentbox::egress
