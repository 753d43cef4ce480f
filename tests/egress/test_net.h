#pragma once

// A small network the egress tests build around the sandboxes, with nothing real behind it:
//
//   network namespace "abt-<pid>" (the "servers"), joined to the host by a veth:
//     <prefix>.2/24  the allowed server          <prefix>.1  the host's end
//     <prefix>.3/32  a server a deny rule names  <prefix>.53 the DNS server
//     169.254.169.254/32  a stand-in for the cloud metadata server
//     192.168.251.1/32    a private address
//   TCP servers on ports 80, 8080 and 9000 of every address answer "ok <port>"; a DNS server
//   on UDP 53 answers A queries for *.egress.test with <prefix>.2.
//
// The metadata and private addresses are routed to the namespace only for traffic from the
// sandboxes' pool (a policy-routing rule and a table of the test's own), so the host's own
// routes (a real metadata server) are untouched. Everything is removed on destruction, also
// after a failed test.

#include <string>

namespace agentbox::egress_test {

class TestNet {
 public:
  // `prefix`: the first three octets of a documentation /24 ("198.51.100"); `pool`: the
  // sandboxes' egress pool (source of the policy route); `table`: a routing table number.
  TestNet(std::string prefix, std::string pool, int table);
  ~TestNet();
  TestNet(const TestNet&) = delete;
  TestNet& operator=(const TestNet&) = delete;

  // Builds it all and starts the servers; empty on success, else what failed.
  std::string Up();
  std::string Address(int last_octet) const { return prefix_ + "." + std::to_string(last_octet); }

 private:
  std::string prefix_, pool_, ns_, host_if_, peer_if_;
  int table_;
  int server_pid_ = -1;
};

// Empty when the tests can run here (root, ip, iptables); else why not.
std::string WhyNoTestNet();

// `sh -c command`: its exit status, output into `out` when given.
int Sh(const std::string& command, std::string* out = nullptr);

// The servers' main (the test binary run with --egress-serve <prefix> in the namespace).
int ServeMain(const std::string& prefix);

}  // namespace agentbox::egress_test
