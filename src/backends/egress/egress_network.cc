#include "backends/egress/egress_network.h"

#include <dirent.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <sstream>

#include "common/fs_util.h"
#include "common/json_util.h"
#include "common/log.h"
#include "common/sched_slice.h"
#include "common/unique_fd.h"

extern char** environ;

namespace agentbox::egress {
namespace {

std::string FindTool(const char* name) {
  for (const char* dir : {"/usr/sbin/", "/sbin/", "/usr/bin/", "/bin/"}) {
    const std::string p = std::string(dir) + name;
    if (::access(p.c_str(), X_OK) == 0) {
      return p;
    }
  }
  return "";
}

// Runs `argv` (argv[0] a tool name found by FindTool) with `input` on stdin; returns its output
// (stdout and stderr), or kInternal with that output when it exits non-zero.
Result<std::string> Run(std::vector<std::string> argv, const std::string& input = "") {
  const std::string path = FindTool(argv[0].c_str());
  if (path.empty()) {
    return Fail(ErrorCode::kUnavailable, argv[0] + " is not installed");
  }
  int in[2];
  int out[2];
  if (::pipe2(in, O_CLOEXEC) != 0) {
    return Fail(ErrnoError(errno, "pipe"));
  }
  UniqueFd in_r(in[0]), in_w(in[1]);
  if (::pipe2(out, O_CLOEXEC) != 0) {
    return Fail(ErrnoError(errno, "pipe"));
  }
  UniqueFd out_r(out[0]), out_w(out[1]);
  std::vector<char*> args;
  for (auto& a : argv) {
    args.push_back(a.data());
  }
  args.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in_r.Get(), 0);
  posix_spawn_file_actions_adddup2(&fa, out_w.Get(), 1);
  posix_spawn_file_actions_adddup2(&fa, out_w.Get(), 2);
  pid_t pid = -1;
  const DefaultSliceScope bulk;  // what agentboxd starts does not inherit its short slice
  const int rc = ::posix_spawn(&pid, path.c_str(), &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  in_r.Reset();
  out_w.Reset();
  if (rc != 0) {
    return Fail(ErrnoError(rc, "start " + path));
  }
  size_t off = 0;
  while (off < input.size()) {
    const ssize_t n = ::write(in_w.Get(), input.data() + off, input.size() - off);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      break;
    }
    off += static_cast<size_t>(n);
  }
  in_w.Reset();
  std::string text;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(out_r.Get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      break;
    }
    if (text.size() < (1u << 20)) {
      text.append(buf, static_cast<size_t>(n));
    }
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) {
      text.pop_back();
    }
    std::string cmd;
    for (const auto& a : argv) {
      cmd += (cmd.empty() ? "" : " ") + a;
    }
    return Fail(ErrorCode::kInternal, cmd + " failed: " + text);
  }
  return text;
}

Result<std::string> Iptables(std::vector<std::string> args) {
  args.insert(args.begin(), {"iptables", "-w", "5"});
  return Run(std::move(args));
}

bool LinkExists(const std::string& name) {
  return ::access(("/sys/class/net/" + name).c_str(), F_OK) == 0;
}

// Inserts rule `args` (after "-I <chain> 1") unless `iptables -C` finds it already.
Result<void> EnsureRule(const std::string& table, const std::string& chain,
                        const std::vector<std::string>& rule) {
  std::vector<std::string> check = {"-t", table, "-C", chain};
  check.insert(check.end(), rule.begin(), rule.end());
  if (Iptables(check)) {
    return {};
  }
  std::vector<std::string> insert = {"-t", table, "-I", chain, "1"};
  insert.insert(insert.end(), rule.begin(), rule.end());
  if (auto r = Iptables(insert); !r) {
    return Fail(r.error());
  }
  return {};
}

Result<void> EnsureTailRule(const std::string& chain, const std::vector<std::string>& rule) {
  std::vector<std::string> check = {"-C", chain};
  check.insert(check.end(), rule.begin(), rule.end());
  if (Iptables(check)) {
    return {};
  }
  std::vector<std::string> append = {"-A", chain};
  append.insert(append.end(), rule.begin(), rule.end());
  if (auto r = Iptables(append); !r) {
    return Fail(r.error());
  }
  return {};
}

}  // namespace

std::vector<std::string> NameserversOf(const std::string& resolv_conf) {
  std::vector<std::string> out;
  std::istringstream in(resolv_conf);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string key, value;
    words >> key >> value;
    if (key != "nameserver") {
      continue;
    }
    auto c = Cidr::Parse(value);
    if (c && !c->v6 && c->prefix == 32 && c->addr[0] != 127) {
      out.push_back(value);
    }
  }
  return out;
}

Result<EgressOptions> EgressOptionsFromConfig(const Config& cfg, int half) {
  EgressOptions o;
  const std::string pool_text = cfg.GetOr("AGENTBOX_EGRESS_POOL", "10.213.0.0/16");
  auto pool = Cidr::Parse(pool_text);
  if (!pool || pool->v6 || pool->prefix < 15 || pool->prefix > 28) {
    return Fail(ErrorCode::kInvalidArgument,
                "AGENTBOX_EGRESS_POOL='" + pool_text + "' must be an IPv4 network of /15 to /28");
  }
  // The two halves: one more prefix bit, set for the second.
  Cidr h = *pool;
  h.prefix += 1;
  if (half == 1) {
    h.addr[static_cast<size_t>(pool->prefix / 8)] |=
        static_cast<uint8_t>(0x80 >> (pool->prefix % 8));
  }
  o.pool = h;
  if (auto dns = cfg.Get("AGENTBOX_EGRESS_DNS")) {
    for (const std::string& d : cfg.GetList("AGENTBOX_EGRESS_DNS")) {
      auto c = Cidr::Parse(d);
      if (!c || c->v6 || c->prefix != 32) {
        return Fail(ErrorCode::kInvalidArgument,
                    "AGENTBOX_EGRESS_DNS: '" + d + "' is not an IPv4 address");
      }
      o.dns.push_back(c->ToString().substr(0, c->ToString().find('/')));
    }
  } else if (auto text = ReadSmallFile("/etc/resolv.conf", 1 << 16)) {
    o.dns = NameserversOf(*text);
  }
  if (auto p = cfg.Get("AGENTBOX_EGRESS_POLICY"); p && !p->empty()) {
    const Json j = ParseUntrustedJson(*p);
    if (j.is_discarded()) {
      return Fail(ErrorCode::kInvalidArgument, "AGENTBOX_EGRESS_POLICY is not JSON");
    }
    auto policy = EgressPolicyFromJson(j, "AGENTBOX_EGRESS_POLICY");
    if (!policy) {
      return Fail(policy.error());
    }
    o.default_policy = *policy;
  }
  return o;
}

EgressNetwork::EgressNetwork(EgressOptions opts) : opts_(std::move(opts)) {}

std::string EgressNetwork::WhyUnsupported() const {
  if (::geteuid() != 0) {
    return "network \"egress\" needs agentboxd to run as root (a veth pair, NAT and iptables "
           "rules in the host's network namespace)";
  }
  for (const char* tool : {"ip", "nsenter", "iptables", "iptables-restore"}) {
    if (FindTool(tool).empty()) {
      return std::string("network \"egress\" needs ") + tool +
             " (Debian packages iproute2, util-linux, iptables)";
    }
  }
  if (auto r = CheckPool(opts_.pool); !r) {
    return r.error().message;
  }
  return "";
}

std::string EgressNetwork::ResolvConf() const {
  std::string out = "# written by agentbox for network \"egress\"\n";
  for (const auto& d : opts_.dns) {
    out += "nameserver " + d + "\n";
  }
  out += "options timeout:2 attempts:2\n";
  return out;
}

Result<void> EgressNetwork::EnsurePoolRules() {
  if (pool_rules_) {
    return {};
  }
  const PoolChains pc = ChainsOf(opts_.pool);
  for (const std::string& chain : {pc.fwd, pc.in}) {
    (void)Iptables({"-N", chain});  // exists already after a restart: fine
  }
  // Links of the pool without their own entry (a partial attach) get nothing.
  for (const std::string& chain : {pc.fwd, pc.in}) {
    if (auto r = EnsureTailRule(chain, {"-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"});
        !r) {
      return r;
    }
    if (auto r = EnsureTailRule(chain, {"-j", "REJECT", "--reject-with", "icmp-admin-prohibited"});
        !r) {
      return r;
    }
  }
  // Inserted at the top, last first: the sandbox's new flows go through FWD; answers come back;
  // nothing from outside opens a flow to a sandbox; the host's own addresses go through IN.
  const std::string glob = pc.link_glob;
  for (const auto& rule : std::vector<std::vector<std::string>>{
           {"-o", glob, "-j", "DROP"},
           {"-o", glob, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"},
           {"-i", glob, "-j", pc.fwd}}) {
    if (auto r = EnsureRule("filter", "FORWARD", rule); !r) {
      return r;
    }
  }
  if (auto r = EnsureRule("filter", "INPUT", {"-i", glob, "-j", pc.in}); !r) {
    return r;
  }
  if (auto r = EnsureRule("nat", "POSTROUTING",
                          {"-s", opts_.pool.ToString(), "!", "-o", glob, "-j", "MASQUERADE"});
      !r) {
    return r;
  }
  auto forward = ReadSmallFile("/proc/sys/net/ipv4/ip_forward", 16);
  if (!forward || forward->empty() || (*forward)[0] != '1') {
    UniqueFd fd(::open("/proc/sys/net/ipv4/ip_forward", O_WRONLY | O_CLOEXEC));
    if (!fd || ::write(fd.Get(), "1\n", 2) != 2) {
      return Fail(ErrnoError(errno, "enable net.ipv4.ip_forward"));
    }
    Log(LogLevel::kInfo, "egress.ip_forward_enabled", "pool={}", opts_.pool.ToString());
  }
  pool_rules_ = true;
  return {};
}

Result<Attachment> EgressNetwork::Attach(pid_t pid, const EgressPolicy& policy) {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto r = EnsurePoolRules(); !r) {
    return Fail(r.error());
  }
  // Claim a slot: the kernel refuses a second link of the same name.
  std::optional<Slot> slot;
  const uint32_t n = SlotCount(opts_.pool);
  for (uint32_t i = 0; i < n && !slot; ++i) {
    Slot s = MakeSlot(opts_.pool, i);
    if (LinkExists(s.link) || LinkExists(s.peer)) {
      continue;
    }
    if (Run({"ip", "link", "add", s.link, "type", "veth", "peer", "name", s.peer})) {
      slot = s;
    }
  }
  if (!slot) {
    return Fail(ErrorCode::kUnavailable,
                "egress pool " + opts_.pool.ToString() + " has no free address left");
  }
  const Slot& s = *slot;
  auto undo = [&](const Error& e) -> Result<Attachment> {
    (void)Run({"ip", "link", "del", s.link});
    for (const auto& cmd : RemovalCommands(s)) {
      (void)Iptables(cmd);
    }
    return Fail(e);
  };
  // No IPv6 on the link: the sandbox gets no route to the host's IPv6 addresses either.
  {
    UniqueFd fd(::open(("/proc/sys/net/ipv6/conf/" + s.link + "/disable_ipv6").c_str(),
                       O_WRONLY | O_CLOEXEC));
    if (fd && ::write(fd.Get(), "1", 1) != 1) {
      return undo(ErrnoError(errno, "disable IPv6 on " + s.link));
    }
  }
  // Rules before the link carries anything.
  if (auto r =
          Run({"iptables-restore", "-w", "5", "--noflush"}, SandboxRules(s, policy, opts_.dns));
      !r) {
    return undo(r.error());
  }
  const std::string host_cidr = s.host_ip + "/" + s.prefix_len;
  for (const auto& cmd : std::vector<std::vector<std::string>>{
           {"ip", "addr", "add", host_cidr, "dev", s.link},
           {"ip", "link", "set", s.link, "up"},
           {"ip", "link", "set", s.peer, "netns", std::to_string(pid)}}) {
    if (auto r = Run(cmd); !r) {
      return undo(r.error());
    }
  }
  const std::string inside = "link set " + s.peer + " name eth0\n" + "addr add " + s.sandbox_ip +
                             "/" + s.prefix_len + " dev eth0\n" + "link set eth0 up\n" +
                             "link set lo up\n" + "route add default via " + s.host_ip + "\n";
  if (auto r = Run({"nsenter", "-t", std::to_string(pid), "-n", "ip", "-batch", "-"}, inside); !r) {
    return undo(r.error());
  }
  attached_.insert(s.link);
  Log(LogLevel::kInfo, "egress.attached", "link={} pid={} sandbox_ip={} allow={} deny={}", s.link,
      pid, s.sandbox_ip, policy.allow.size(), policy.deny.size());
  return Attachment{s.link, s.host_ip, s.sandbox_ip};
}

void EgressNetwork::Detach(const std::string& link) {
  const int64_t index = SlotOfLink(opts_.pool, link);
  if (index < 0) {
    return;
  }
  std::lock_guard<std::mutex> lock(mu_);
  const Slot s = MakeSlot(opts_.pool, static_cast<uint32_t>(index));
  for (const std::string& l : {s.link, s.peer}) {
    if (LinkExists(l)) {
      (void)Run({"ip", "link", "del", l});
    }
  }
  for (const auto& cmd : RemovalCommands(s)) {
    (void)Iptables(cmd);
  }
  attached_.erase(s.link);
}

std::vector<std::string> EgressNetwork::HostLinks() const {
  std::vector<std::string> out;
  DIR* d = ::opendir("/sys/class/net");
  if (d == nullptr) {
    return out;
  }
  std::vector<std::string> names;
  while (const dirent* e = ::readdir(d)) {
    names.emplace_back(e->d_name);
  }
  ::closedir(d);
  for (const std::string& name : names) {
    std::string link = name;
    if (!link.empty() && link.back() == 'p') {
      link.pop_back();  // a peer never moved into a sandbox
    }
    if (SlotOfLink(opts_.pool, link) >= 0) {
      out.push_back(link);
    }
  }
  return out;
}

std::vector<std::string> EgressNetwork::Chains() const {
  std::vector<std::string> out;
  auto text = Iptables({"-S"});
  if (!text) {
    return out;
  }
  std::istringstream in(*text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("-N ", 0) == 0) {
      const std::string link = LinkOfChain(opts_.pool, line.substr(3));
      if (!link.empty()) {
        out.push_back(link);
      }
    }
  }
  return out;
}

size_t EgressNetwork::Sweep(const std::set<std::string>& live) {
  std::set<std::string> gone;
  for (const auto& link : HostLinks()) {
    gone.insert(link);
  }
  for (const auto& link : Chains()) {
    gone.insert(link);
  }
  size_t removed = 0;
  for (const std::string& link : gone) {
    bool keep = live.count(link) != 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      keep = keep || attached_.count(link) != 0;
    }
    if (!keep) {
      Detach(link);
      ++removed;
      Log(LogLevel::kInfo, "egress.swept", "link={}", link);
    }
  }
  return removed;
}

void RemovePoolRules(const Cidr& pool) {
  const PoolChains pc = ChainsOf(pool);
  const std::string glob = pc.link_glob;
  const std::vector<std::vector<std::string>> hooks = {
      {"-D", "FORWARD", "-i", glob, "-j", pc.fwd},
      {"-D", "FORWARD", "-o", glob, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j",
       "ACCEPT"},
      {"-D", "FORWARD", "-o", glob, "-j", "DROP"},
      {"-D", "INPUT", "-i", glob, "-j", pc.in},
      {"-t", "nat", "-D", "POSTROUTING", "-s", pool.ToString(), "!", "-o", glob, "-j",
       "MASQUERADE"}};
  for (const auto& hook : hooks) {
    for (int i = 0; i < 8 && Iptables(hook); ++i) {
    }
  }
  std::vector<std::string> chains = {pc.fwd, pc.in};
  if (auto text = Iptables({"-S"})) {
    std::istringstream in(*text);
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("-N ", 0) == 0 && !LinkOfChain(pool, line.substr(3)).empty()) {
        chains.push_back(line.substr(3));
      }
    }
  }
  for (const auto& chain : chains) {
    (void)Iptables({"-F", chain});
  }
  for (const auto& chain : chains) {
    (void)Iptables({"-X", chain});
  }
}

}  // namespace agentbox::egress
