// Network "egress" on the jail and docker backends, against servers in a network namespace the
// test builds (test_net.h): what the policy allows is reachable, what it denies is refused at
// once (not a hang), ports are matched, the host's addresses, its loopback services, the
// metadata address and private ranges are unreachable unless allowed, DNS works, and links and
// rules are gone after destroy and after a crash. Needs root; skips with the reason otherwise.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <thread>

#include "backends/docker/docker_backend.h"
#include "backends/docker/host_dir.h"
#include "backends/egress/egress_rules.h"
#include "backends/jail/jail_backend.h"
#include "backends/jail/jail_test_util.h"
#include "backends/jail/sandbox_record.h"
#include "test_net.h"

namespace agentbox::egress_test {
namespace {

using jail::testing::Exec;
using jail::testing::ExecResult;
using jail::testing::TempDir;

struct Reach {
  bool ok = false;
  std::string output;
  double ms = 0;
};

// What a TCP connection from inside the sandbox to ip:port gets.
Reach Connect(const SandboxInfo& info, const std::string& ip, int port) {
  const auto start = std::chrono::steady_clock::now();
  const ExecResult r = Exec(info, "timeout 10 bash -c 'exec 3<>/dev/tcp/" + ip + "/" +
                                      std::to_string(port) + " && cat <&3' 2>&1");
  Reach out;
  out.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
               .count();
  out.output = r.output + r.error;
  out.ok = r.returncode == 0 && r.output.find("ok " + std::to_string(port)) != std::string::npos;
  return out;
}

// A refusal is quick and says so: a reset ("Connection refused") or an ICMP answer ("No route
// to host"); never the 10 s timeout of a silent drop.
void ExpectRefused(const Reach& r, const std::string& what) {
  EXPECT_FALSE(r.ok) << what << ": " << r.output;
  EXPECT_LT(r.ms, 3000) << what << " took " << r.ms << " ms: " << r.output;
  EXPECT_TRUE(r.output.find("refused") != std::string::npos ||
              r.output.find("No route to host") != std::string::npos ||
              r.output.find("unreachable") != std::string::npos)
      << what << ": " << r.output;
  std::printf("[egress] refused %-34s in %6.1f ms: %s", what.c_str(), r.ms,
              r.output.empty() ? "\n" : r.output.c_str());
}

void ExpectReached(const Reach& r, const std::string& what) {
  EXPECT_TRUE(r.ok) << what << ": " << r.output;
  std::printf("[egress] reached %-34s in %6.1f ms\n", what.c_str(), r.ms);
}

EgressPolicy Policy(const std::string& json) {
  auto p = EgressPolicyFromJson(Json::parse(json));
  EXPECT_TRUE(p) << json;
  return p ? *p : EgressPolicy{};
}

// The host's IPv4 addresses but loopback.
std::vector<std::string> HostAddresses() {
  std::vector<std::string> out;
  ifaddrs* ifs = nullptr;
  if (::getifaddrs(&ifs) != 0) {
    return out;
  }
  for (ifaddrs* i = ifs; i != nullptr; i = i->ifa_next) {
    if (i->ifa_addr == nullptr || i->ifa_addr->sa_family != AF_INET ||
        std::string(i->ifa_name) == "lo") {
      continue;
    }
    char ip[INET_ADDRSTRLEN];
    ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, ip, sizeof(ip));
    out.emplace_back(ip);
  }
  ::freeifaddrs(ifs);
  return out;
}

// A TCP listener on every host address (INADDR_ANY), port chosen by the kernel.
struct HostListener {
  int fd = -1;
  int port = 0;
  HostListener() {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    socklen_t len = sizeof(a);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 && ::listen(fd, 16) == 0 &&
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
      port = ntohs(a.sin_port);
    }
  }
  ~HostListener() { ::close(fd); }
};

bool LinkExists(const std::string& link) {
  return ::access(("/sys/class/net/" + link).c_str(), F_OK) == 0;
}

bool ChainsOf(const std::string& link) {
  std::string rules;
  Sh("iptables -w 5 -S", &rules);
  return rules.find("-i " + link + " ") != std::string::npos;
}

class EgressTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (std::string why = WhyNoTestNet(); !why.empty()) {
      GTEST_SKIP() << "SKIPPED: " << why;
    }
    const bool docker = GetParam() == "docker";
    // Each backend its own documentation range, pool and table: the two can run side by side.
    prefix_ = docker ? "203.0.113" : "198.51.100";
    pool_ = docker ? "10.214.128.0/17" : "10.214.0.0/17";
    net_ = std::make_unique<TestNet>(prefix_, pool_, docker ? 4215 : 4214);
    if (std::string err = net_->Up(); !err.empty()) {
      FAIL() << "test network: " << err;
    }
    egress_.pool = *Cidr::Parse(pool_);
    egress_.dns = {net_->Address(53)};
    if (docker) {
      const char* host = std::getenv("DOCKER_HOST");
      auto sock = docker::SocketFromDockerHost(host ? host : "");
      if (!sock) {
        GTEST_SKIP() << "SKIPPED: " << sock.error().message;
      }
      docker_opts_.state_dir = tmp_.path() + "/docker";
      docker_opts_.socket_path = *sock;
      docker_opts_.guest_binary = AGENTBOX_GUEST_BINARY;
      docker_opts_.egress = egress_;
      docker_opts_.ready_disks = 0;
      backend_ = std::make_unique<docker::DockerBackend>(docker_opts_);
    } else {
      std::string why;
      if (!jail::testing::JailsAvailable(&why)) {
        GTEST_SKIP() << "SKIPPED: jail sandboxes cannot run here: " << why;
      }
      jail_opts_ = jail::testing::TestOptions(tmp_.path() + "/jail");
      jail_opts_.egress = egress_;
      jail_opts_.ready_disks = 0;
      backend_ = std::make_unique<jail::JailBackend>(jail_opts_);
    }
    ProbeResult p = backend_->Probe();
    if (!p.usable) {
      GTEST_SKIP() << "SKIPPED: " << GetParam() << " is not usable here: " << p.reason;
    }
  }

  void TearDown() override {
    if (backend_) {
      for (const auto& id : ids_) {
        (void)backend_->Destroy(id);
      }
      backend_.reset();
    }
    if (!pool_.empty() && WhyNoTestNet().empty()) {
      egress::RemovePoolRules(*Cidr::Parse(pool_));  // the per-pool hooks, too
    }
  }

  SandboxInfo Create(const std::string& id, std::optional<EgressPolicy> policy) {
    SandboxSpec spec;
    spec.network = NetworkMode::kEgress;
    spec.egress = std::move(policy);
    spec.limits.disk_bytes = std::nullopt;
    ids_.push_back(id);
    auto info = backend_->Create(id, spec);
    EXPECT_TRUE(info) << (info ? "" : info.error().message);
    return info ? *info : SandboxInfo{};
  }

  // The host end of the sandbox's veth, as the backend recorded it.
  std::string LinkOf(const std::string& id) {
    if (GetParam() == "docker") {
      auto meta = docker::LoadMeta(docker_opts_.state_dir + "/" + id);
      return meta ? meta->egress_link : "";
    }
    auto rec = jail::LoadSandboxRecord(jail_opts_.state_dir + "/" + id + "/spec.json");
    return rec ? rec->egress_link : "";
  }

  std::string prefix_, pool_;
  TempDir tmp_{"agentbox-egress-test"};
  std::unique_ptr<TestNet> net_;
  egress::EgressOptions egress_;
  jail::JailBackendOptions jail_opts_;
  docker::DockerBackendOptions docker_opts_;
  std::unique_ptr<SandboxBackend> backend_;
  std::vector<std::string> ids_;
};

TEST_P(EgressTest, AllowedIsReachedDeniedIsRefusedAtOnce) {
  const SandboxInfo sb = Create("eg-deny", Policy(R"({"deny": [{"cidr": ")" + net_->Address(3) +
                                                  R"("}]})"));
  ExpectReached(Connect(sb, net_->Address(2), 80), "public server (default allow)");
  ExpectRefused(Connect(sb, net_->Address(3), 80), "deny rule /32");
  // The sandbox has its own eth0 with an address of the pool, and no way to change it.
  const ExecResult cap = Exec(sb, "grep CapBnd /proc/self/status");
  const uint64_t bnd = std::strtoull(cap.output.substr(cap.output.find(':') + 1).c_str(), nullptr, 16);
  EXPECT_EQ(bnd & (1ull << 12), 0u) << "CAP_NET_ADMIN in the bounding set: " << cap.output;
  EXPECT_NE(Exec(sb, "cat /proc/net/dev").output.find("eth0"), std::string::npos);
}

TEST_P(EgressTest, PortRules) {
  const SandboxInfo sb = Create(
      "eg-ports", Policy(R"({"default": "deny", "allow": [{"cidr": ")" + prefix_ +
                         R"(.0/24", "ports": [80, "9000-9001"]}]})"));
  ExpectReached(Connect(sb, net_->Address(2), 80), "allowed port 80");
  ExpectReached(Connect(sb, net_->Address(2), 9000), "allowed port range 9000-9001");
  ExpectRefused(Connect(sb, net_->Address(2), 8080), "port 8080 (not allowed)");
}

TEST_P(EgressTest, HostAddressesAndLoopbackAreUnreachable) {
  HostListener listener;
  ASSERT_GT(listener.port, 0);
  const SandboxInfo sb = Create("eg-host", std::nullopt);  // the default policy
  for (const std::string& ip : HostAddresses()) {
    ExpectRefused(Connect(sb, ip, listener.port), "host address " + ip);
  }
  const Reach lo = Connect(sb, "127.0.0.1", listener.port);  // the sandbox's own loopback
  EXPECT_FALSE(lo.ok) << lo.output;
  // The control: allowed explicitly, the host's address on the test network answers.
  const SandboxInfo allowed = Create(
      "eg-host-ok", Policy(R"({"allow": [{"cidr": ")" + net_->Address(1) + R"("}]})"));
  const ExecResult r = Exec(allowed, "timeout 5 bash -c 'exec 3<>/dev/tcp/" + net_->Address(1) +
                                         "/" + std::to_string(listener.port) + "' && echo open");
  EXPECT_EQ(r.output, "open\n") << "the host address allowed explicitly is reachable";
}

TEST_P(EgressTest, MetadataAndPrivateRangesAreRefusedUnlessAllowed) {
  const SandboxInfo sb = Create("eg-meta", std::nullopt);
  ExpectRefused(Connect(sb, "169.254.169.254", 80), "metadata 169.254.169.254");
  ExpectRefused(Connect(sb, "192.168.251.1", 80), "private 192.168.251.1");
  // The same servers answer a sandbox that allows them: refused by policy, not by absence.
  const SandboxInfo allowed =
      Create("eg-meta-ok", Policy(R"({"allow": [{"cidr": "169.254.169.254/32"},
                                                {"cidr": "192.168.0.0/16", "ports": [80]}]})"));
  ExpectReached(Connect(allowed, "169.254.169.254", 80), "metadata allowed explicitly");
  ExpectReached(Connect(allowed, "192.168.251.1", 80), "private allowed explicitly");
}

TEST_P(EgressTest, DnsWorksUnderDefaultDeny) {
  const SandboxInfo sb = Create("eg-dns", Policy(R"({"default": "deny"})"));
  EXPECT_NE(Exec(sb, "cat /etc/resolv.conf").output.find("nameserver " + net_->Address(53)),
            std::string::npos);
  const ExecResult r = Exec(sb, "getent ahostsv4 web.egress.test | head -1");
  EXPECT_EQ(r.output.substr(0, r.output.find(' ')), net_->Address(2)) << r.output;
  std::printf("[egress] DNS web.egress.test -> %s", r.output.c_str());
  ExpectRefused(Connect(sb, net_->Address(2), 80), "default deny");
}

TEST_P(EgressTest, DestroyAndRecoveryLeaveNoLinkOrRule) {
  const SandboxInfo sb = Create("eg-clean", std::nullopt);
  const std::string link = LinkOf(sb.id);
  ASSERT_FALSE(link.empty());
  EXPECT_TRUE(LinkExists(link));
  EXPECT_TRUE(ChainsOf(link));
  ASSERT_TRUE(backend_->Destroy(sb.id));
  EXPECT_FALSE(LinkExists(link));
  EXPECT_FALSE(ChainsOf(link));

  // A create that died after the link was made and before the sandbox was recorded: the next
  // daemon's recovery removes the sandbox, its link and its rules.
  const SandboxInfo crashed = Create("eg-crash", std::nullopt);
  const std::string crashed_link = LinkOf(crashed.id);
  ASSERT_FALSE(crashed_link.empty());
  if (GetParam() == "docker") {
    auto& d = static_cast<docker::DockerBackend&>(*backend_);
    auto meta = docker::LoadMeta(d.SandboxDir(crashed.id));
    ASSERT_TRUE(meta);
    meta->egress_link.clear();  // as before SaveMeta named it
    ASSERT_TRUE(docker::SaveMeta(d.SandboxDir(crashed.id), *meta));
    backend_ = std::make_unique<docker::DockerBackend>(docker_opts_);
  } else {
    ASSERT_EQ(::unlink((jail_opts_.state_dir + "/" + crashed.id + "/spec.json").c_str()), 0);
    backend_ = std::make_unique<jail::JailBackend>(jail_opts_);
  }
  auto report = backend_->Recover();
  ASSERT_TRUE(report) << report.error().message;
  EXPECT_GE((*report)["egress_rules"], 1);
  EXPECT_EQ((*report)["create_rolled_back"], 1);  // the sandbox went with it: no half sandbox
  EXPECT_FALSE(backend_->Get(crashed.id));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (LinkExists(crashed_link) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // a namespace dies async
  }
  EXPECT_FALSE(LinkExists(crashed_link));
  EXPECT_FALSE(ChainsOf(crashed_link));
}

INSTANTIATE_TEST_SUITE_P(Backends, EgressTest, ::testing::Values("jail", "docker"),
                         [](const auto& p) { return p.param; });

}  // namespace
}  // namespace agentbox::egress_test

int main(int argc, char** argv) {
  if (argc == 3 && std::strcmp(argv[1], "--egress-serve") == 0) {
    return agentbox::egress_test::ServeMain(argv[2]);
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
