#include "fakes/tunnel_backend.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>

#include "common/time_util.h"

namespace agentbox::fakes {

TunnelBackend::TunnelBackend(std::string guest_binary, std::string state_dir,
                             daemon::TunnelEndpoint& endpoint,
                             std::function<std::string()> daemon_url)
    : guest_(std::move(guest_binary)),
      state_dir_(std::move(state_dir)),
      endpoint_(endpoint),
      url_(std::move(daemon_url)) {
  ::mkdir(state_dir_.c_str(), 0700);
}

TunnelBackend::~TunnelBackend() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [id, b] : boxes_) {
    ::kill(b.pid, SIGKILL);
    ::waitpid(b.pid, nullptr, 0);
    endpoint_.Unregister(id);
  }
}

ProbeResult TunnelBackend::Probe() {
  const bool ok = ::access(guest_.c_str(), X_OK) == 0;
  return {ok, ok ? "" : "guest binary missing", {"no isolation: test double"}};
}

Result<SandboxInfo> TunnelBackend::Create(const std::string& id, const SandboxSpec& spec) {
  if (auto v = ValidateCreate(id, spec); !v) {
    return tl::unexpected(v.error());
  }
  auto reg = endpoint_.Register(id);
  if (!reg) {
    return tl::unexpected(reg.error());
  }
  Box b;
  b.dir = state_dir_ + "/" + id;
  ::mkdir(b.dir.c_str(), 0700);
  ::mkdir((b.dir + "/workspace").c_str(), 0700);
  const std::string tokfile = b.dir + "/token";
  {
    std::ofstream out(tokfile);
    out << reg->token << "\n";
  }
  ::chmod(tokfile.c_str(), 0600);
  const std::string url = url_();
  const std::string workdir = b.dir + "/workspace";
  pid_t pid = ::fork();
  if (pid == 0) {
    ::setsid();
    for (const auto& [k, v] : spec.env) {
      ::setenv(k.c_str(), v.c_str(), 1);
    }
    ::execl(guest_.c_str(), guest_.c_str(), "serve", "--connect", url.c_str(), "--workdir",
            workdir.c_str(), "--token-file", tokfile.c_str(), "--log-level", "warn", nullptr);
    ::_exit(127);
  }
  if (pid < 0) {
    endpoint_.Unregister(id);
    return Fail(ErrnoError(errno, "fork"));
  }
  if (!endpoint_.WaitConnected(id, std::chrono::seconds(10))) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    endpoint_.Unregister(id);
    return Fail(ErrorCode::kUnavailable, "the guest of '" + id + "' never connected its tunnel");
  }
  b.pid = pid;
  b.info.id = id;
  b.info.backend = "process";
  b.info.state = SandboxState::kRunning;
  b.info.spec = spec;
  b.info.created_at = NowUnix();
  b.info.expires_at = b.info.created_at + static_cast<double>(spec.ttl_s);
  b.info.guest_endpoint = reg->guest_endpoint;
  b.info.guest_token = reg->token;
  std::lock_guard<std::mutex> lock(mu_);
  boxes_[id] = b;
  return b.info;
}

Result<SandboxInfo> TunnelBackend::Get(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = boxes_.find(id);
  if (it == boxes_.end()) {
    return Fail(SandboxNotFound(id));
  }
  return it->second.info;
}

Result<std::vector<SandboxInfo>> TunnelBackend::List() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<SandboxInfo> out;
  for (auto& [id, b] : boxes_) {
    out.push_back(b.info);
  }
  return out;
}

Result<void> TunnelBackend::Destroy(const std::string& id) {
  Box b;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = boxes_.find(id);
    if (it == boxes_.end()) {
      return Fail(SandboxNotFound(id));
    }
    b = it->second;
    boxes_.erase(it);
  }
  endpoint_.Unregister(id);
  ::kill(-b.pid, SIGKILL);
  ::kill(b.pid, SIGKILL);
  ::waitpid(b.pid, nullptr, 0);
  if (std::system(("rm -rf '" + b.dir + "'").c_str()) != 0) {
    return Fail(ErrorCode::kInternal, "cannot remove " + b.dir);
  }
  return {};
}

Result<void> TunnelBackend::SetExpiry(const std::string& id, double expires_at) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = boxes_.find(id);
  if (it == boxes_.end()) {
    return Fail(SandboxNotFound(id));
  }
  it->second.info.expires_at = expires_at;
  return {};
}

pid_t TunnelBackend::GuestPid(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = boxes_.find(id);
  return it == boxes_.end() ? -1 : it->second.pid;
}

}  // namespace agentbox::fakes
