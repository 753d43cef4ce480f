#include "test_net.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

extern char** environ;

namespace agentbox::egress_test {
namespace {

constexpr int kPorts[] = {80, 8080, 9000};

std::string SelfExe() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
}

bool CanConnect(const std::string& ip, int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  ::close(fd);
  return ok;
}

// The DNS answer to `q` (a query of `n` bytes): A <answer> for names under egress.test, no
// records for other types there, NXDOMAIN elsewhere.
std::vector<uint8_t> DnsAnswer(const uint8_t* q, size_t n, const uint8_t answer[4]) {
  if (n < 12) {
    return {};
  }
  size_t pos = 12;
  std::string name;
  while (pos < n && q[pos] != 0) {
    const size_t len = q[pos];
    if (pos + 1 + len > n) {
      return {};
    }
    if (!name.empty()) {
      name.push_back('.');
    }
    name.append(reinterpret_cast<const char*>(q + pos + 1), len);
    pos += 1 + len;
  }
  if (pos + 5 > n) {
    return {};
  }
  const size_t qend = pos + 5;  // the zero label, type, class
  const uint16_t type = static_cast<uint16_t>((q[pos + 1] << 8) | q[pos + 2]);
  const bool ours = name.size() >= 11 && name.compare(name.size() - 11, 11, "egress.test") == 0;
  std::vector<uint8_t> out(q, q + qend);
  out[2] = 0x81;                                    // response, recursion desired
  out[3] = static_cast<uint8_t>(ours ? 0x80 : 0x83);  // recursion available; NXDOMAIN if not ours
  out[4] = 0, out[5] = 1;                           // one question
  out[6] = 0, out[7] = (ours && type == 1) ? 1 : 0;
  out[8] = out[9] = out[10] = out[11] = 0;
  if (ours && type == 1) {
    const uint8_t rr[] = {0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4};
    out.insert(out.end(), rr, rr + sizeof(rr));
    out.insert(out.end(), answer, answer + 4);
  }
  return out;
}

}  // namespace

int Sh(const std::string& command, std::string* out) {
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  if (p == nullptr) {
    return -1;
  }
  std::string text;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) {
    text.append(buf, n);
  }
  const int status = ::pclose(p);
  if (out != nullptr) {
    *out = text;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string WhyNoTestNet() {
  if (::geteuid() != 0) {
    return "the egress tests need root (network namespaces, veths, iptables)";
  }
  for (const char* tool : {"ip", "iptables", "nsenter"}) {
    if (Sh(std::string("command -v ") + tool) != 0) {
      return std::string("the egress tests need ") + tool;
    }
  }
  return "";
}

TestNet::TestNet(std::string prefix, std::string pool, int table)
    : prefix_(std::move(prefix)), pool_(std::move(pool)), table_(table) {
  const std::string pid = std::to_string(::getpid());
  ns_ = "abt-" + pid;
  host_if_ = "abt" + pid + "h";
  peer_if_ = "abt" + pid + "s";
}

TestNet::~TestNet() {
  if (server_pid_ > 0) {
    ::kill(server_pid_, SIGKILL);
    ::waitpid(server_pid_, nullptr, 0);
  }
  const std::string t = std::to_string(table_);
  Sh("ip rule del from " + pool_ + " lookup " + t + " priority " + t);
  Sh("ip route flush table " + t);
  Sh("ip link del " + host_if_);
  Sh("ip netns del " + ns_);
}

std::string TestNet::Up() {
  const std::string t = std::to_string(table_);
  const std::string in_ns = "ip netns exec " + ns_ + " ";
  for (const std::string& cmd : std::vector<std::string>{
           "ip netns add " + ns_,
           "ip link add " + host_if_ + " type veth peer name " + peer_if_,
           "ip link set " + peer_if_ + " netns " + ns_,
           "ip addr add " + prefix_ + ".1/24 dev " + host_if_,
           "ip link set " + host_if_ + " up",
           in_ns + "ip link set lo up",
           in_ns + "ip link set " + peer_if_ + " up",
           in_ns + "ip addr add " + prefix_ + ".2/24 dev " + peer_if_,
           in_ns + "ip addr add " + prefix_ + ".3/32 dev " + peer_if_,
           in_ns + "ip addr add " + prefix_ + ".53/32 dev " + peer_if_,
           in_ns + "ip addr add 169.254.169.254/32 dev " + peer_if_,
           in_ns + "ip addr add 192.168.251.1/32 dev " + peer_if_,
           in_ns + "ip route add default via " + prefix_ + ".1",
           "ip route add 169.254.169.254/32 via " + prefix_ + ".2 table " + t,
           "ip route add 192.168.251.1/32 via " + prefix_ + ".2 table " + t,
           "ip rule add from " + pool_ + " lookup " + t + " priority " + t,
       }) {
    std::string out;
    if (Sh(cmd, &out) != 0) {
      return cmd + ": " + out;
    }
  }
  const std::string self = SelfExe();
  std::vector<std::string> argv = {"/usr/sbin/ip", "netns", "exec", ns_, self, "--egress-serve",
                                   prefix_};
  if (::access(argv[0].c_str(), X_OK) != 0) {
    argv[0] = "/sbin/ip";
  }
  std::vector<char*> args;
  for (auto& a : argv) {
    args.push_back(a.data());
  }
  args.push_back(nullptr);
  pid_t pid = -1;
  if (::posix_spawn(&pid, args[0], nullptr, nullptr, args.data(), environ) != 0) {
    return "cannot start the test servers";
  }
  server_pid_ = pid;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!CanConnect(prefix_ + ".2", 9000)) {
    if (std::chrono::steady_clock::now() > deadline) {
      return "the test servers did not start";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return "";
}

int ServeMain(const std::string& prefix) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  std::vector<pollfd> fds;
  std::vector<int> ports;
  for (int port : kPorts) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || ::listen(fd, 64) != 0) {
      std::perror("listen");
      return 1;
    }
    fds.push_back({fd, POLLIN, 0});
    ports.push_back(port);
  }
  const int dns = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in d{};
  d.sin_family = AF_INET;
  d.sin_port = htons(53);
  // Bound to the resolver's own address, so that answers come from it (a wildcard socket would
  // answer from the interface's first address, which the client's resolver ignores).
  ::inet_pton(AF_INET, (prefix + ".53").c_str(), &d.sin_addr);
  if (::bind(dns, reinterpret_cast<sockaddr*>(&d), sizeof(d)) != 0) {
    std::perror("bind 53");
    return 1;
  }
  fds.push_back({dns, POLLIN, 0});
  uint8_t answer[4];
  ::inet_pton(AF_INET, (prefix + ".2").c_str(), answer);
  for (;;) {
    if (::poll(fds.data(), fds.size(), -1) < 0) {
      continue;
    }
    for (size_t i = 0; i < ports.size(); ++i) {
      if (fds[i].revents & POLLIN) {
        const int c = ::accept4(fds[i].fd, nullptr, nullptr, SOCK_CLOEXEC);
        if (c >= 0) {
          const std::string msg = "ok " + std::to_string(ports[i]) + "\n";
          (void)!::write(c, msg.data(), msg.size());
          ::close(c);
        }
      }
    }
    if (fds.back().revents & POLLIN) {
      uint8_t q[512];
      sockaddr_in from{};
      socklen_t len = sizeof(from);
      const ssize_t n = ::recvfrom(dns, q, sizeof(q), 0, reinterpret_cast<sockaddr*>(&from), &len);
      if (n > 0) {
        auto a = DnsAnswer(q, static_cast<size_t>(n), answer);
        if (!a.empty()) {
          ::sendto(dns, a.data(), a.size(), 0, reinterpret_cast<sockaddr*>(&from), len);
        }
      }
    }
  }
}

}  // namespace agentbox::egress_test
