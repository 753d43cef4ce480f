#include "fakes/process_backend.h"

#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <utility>
#include <thread>
#include <vector>

#include "common/strings.h"
#include "common/time_util.h"

namespace agentbox::fakes {

namespace {
bool SocketAccepts(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}
// Starts an agentbox-guest serving on DIR/guest.sock over DIR/workspace and waits until it
// accepts connections.
Result<pid_t> SpawnGuest(const std::string& guest, const std::string& dir,
                         const std::map<std::string, std::string>& env) {
  const std::string sock = dir + "/guest.sock";
  ::unlink(sock.c_str());
  // Everything the child needs is built here: the daemon is multi-threaded, so between fork and
  // execve the child must not allocate (another thread may hold the allocator's lock, which
  // ASan's allocator makes likely).
  std::vector<std::string> args = {guest,         "serve",        "--listen",
                                   "unix:" + sock, "--workdir",    dir + "/workspace",
                                   "--token-file", dir + "/token", "--log-level",
                                   "warn"};
  std::map<std::string, std::string> env_map;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string kv = *e;
    const size_t eq = kv.find('=');
    if (eq != std::string::npos) {
      env_map[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
  }
  for (const auto& [k, v] : env) {
    env_map[k] = v;
  }
  std::vector<std::string> env_list;
  for (const auto& [k, v] : env_map) {
    env_list.push_back(k + "=" + v);
  }
  std::vector<char*> argv;
  std::vector<char*> envp;
  for (auto& a : args) {
    argv.push_back(a.data());
  }
  for (auto& e : env_list) {
    envp.push_back(e.data());
  }
  argv.push_back(nullptr);
  envp.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::setsid();
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  if (pid < 0) {
    return Fail(ErrnoError(errno, "fork"));
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!SocketAccepts(sock)) {
    if (std::chrono::steady_clock::now() > deadline || ::waitpid(pid, nullptr, WNOHANG) == pid) {
      ::kill(pid, SIGKILL);
      return Fail(ErrorCode::kUnavailable, "guest did not start");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return pid;
}

}  // namespace

ProcessBackend::ProcessBackend(std::string guest_binary, std::string state_dir, std::string name)
    : guest_(std::move(guest_binary)), state_dir_(std::move(state_dir)), name_(std::move(name)) {
  ::mkdir(state_dir_.c_str(), 0700);
}

ProcessBackend::~ProcessBackend() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [id, b] : boxes_) {
    ::kill(b.pid, SIGKILL);
    ::waitpid(b.pid, nullptr, 0);
  }
}

ProbeResult ProcessBackend::Probe() {
  if (engine_down_) {
    return {false, *EngineDown(), {}};
  }
  return {::access(guest_.c_str(), X_OK) == 0,
          ::access(guest_.c_str(), X_OK) == 0 ? "" : "guest binary missing",
          {"no isolation: test double"}};
}

Result<SandboxInfo> ProcessBackend::Create(const std::string& id, const SandboxSpec& spec) {
  for (int n = fail_creates_.load(); n > 0;) {
    if (fail_creates_.compare_exchange_weak(n, n - 1)) {
      return Fail(ErrorCode::kUnavailable, "process backend told to fail");
    }
  }
  Box b;
  b.dir = state_dir_ + "/" + id;
  ::mkdir(b.dir.c_str(), 0700);
  ::mkdir((b.dir + "/workspace").c_str(), 0700);
  const std::string sock = b.dir + "/guest.sock";
  const std::string token = RandomId(32);
  { std::ofstream(b.dir + "/token") << token << "\n"; }
  auto pid = SpawnGuest(guest_, b.dir, spec.env);
  if (!pid) {
    return Fail(pid.error());
  }
  b.pid = *pid;
  b.info.id = id;
  b.info.backend = name_;
  b.info.state = SandboxState::kRunning;
  b.info.spec = spec;
  b.info.created_at = NowUnix();
  b.info.expires_at = b.info.created_at + static_cast<double>(spec.ttl_s);
  b.info.guest_endpoint = "unix:" + sock;
  b.info.guest_token = token;
  std::lock_guard<std::mutex> lock(mu_);
  boxes_[id] = b;
  return b.info;
}

Result<SandboxInfo> ProcessBackend::Get(const std::string& id) {
  if (engine_down_) {
    return Fail(ErrorCode::kUnavailable, "the process engine is not reachable");
  }
  std::lock_guard<std::mutex> lock(mu_);
  auto it = boxes_.find(id);
  if (it == boxes_.end()) {
    return Fail(ErrorCode::kNotFound, "sandbox '" + id + "' not found");
  }
  SandboxInfo info = it->second.info;
  if (::kill(it->second.pid, 0) != 0) {
    info.state = SandboxState::kFailed;
  }
  return info;
}

Result<std::vector<SandboxInfo>> ProcessBackend::List() {
  if (engine_down_) {
    return Fail(ErrorCode::kUnavailable, "the process engine is not reachable");
  }
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<SandboxInfo> out;
  for (auto& [id, b] : boxes_) {
    out.push_back(b.info);
  }
  return out;
}

Result<void> ProcessBackend::Destroy(const std::string& id) {
  Box b;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = boxes_.find(id);
    if (it == boxes_.end()) {
      return Fail(ErrorCode::kNotFound, "sandbox '" + id + "' not found");
    }
    b = it->second;
    boxes_.erase(it);
  }
  ::kill(-b.pid, SIGKILL);
  ::kill(b.pid, SIGKILL);
  ::waitpid(b.pid, nullptr, 0);
  std::string cmd = "rm -rf '" + b.dir + "'";
  if (std::system(cmd.c_str()) != 0) {
    return Fail(ErrorCode::kInternal, "cannot remove " + b.dir);
  }
  return {};
}

Result<void> ProcessBackend::SetExpiry(const std::string& id, double expires_at) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = boxes_.find(id);
  if (it == boxes_.end()) {
    return Fail(ErrorCode::kNotFound, "sandbox '" + id + "' not found");
  }
  it->second.info.expires_at = expires_at;
  return {};
}

Result<void> ProcessBackend::Prepare(const SandboxSpec& spec, const ProgressFn& progress) {
  if (spec.image.starts_with("missing/")) {
    return Fail(ErrorCode::kNotFound, "image '" + spec.image + "' not found and no registry");
  }
  if (spec.image.starts_with("remote/") || spec.image.starts_with("flaky/")) {
    progress("Pulling " + spec.image);
    progress("Downloading layer 1/1");
    if (spec.image.starts_with("flaky/")) {
      return Fail(ErrorCode::kUnavailable, "registry went away pulling " + spec.image);
    }
    progress("Pull complete");
  }
  return {};
}

}  // namespace agentbox::fakes

namespace agentbox::fakes {

Result<SandboxInfo> ProcessBackend::Claim(const std::string& id, const SandboxSpec& spec,
                                          double expires_at) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = boxes_.find(id);
  if (it == boxes_.end()) {
    return Fail(ErrorCode::kNotFound, "sandbox '" + id + "' not found");
  }
  if (::kill(it->second.pid, 0) != 0) {
    return Fail(ErrorCode::kUnavailable, "sandbox '" + id + "' is not running");
  }
  it->second.info.spec.owner = spec.owner;
  it->second.info.spec.labels = spec.labels;
  it->second.info.expires_at = expires_at;
  return it->second.info;
}

pid_t ProcessBackend::GuestPid(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = boxes_.find(id);
  return it == boxes_.end() ? -1 : it->second.pid;
}

}  // namespace agentbox::fakes

namespace agentbox::fakes {

std::optional<std::string> ProcessBackend::EngineDown() {
  if (!engine_down_) {
    return std::nullopt;
  }
  return "The process engine at " + state_dir_ + " is not answering: stopped by the test.";
}

void ProcessBackend::SetEngineDown(bool down, bool stop_guests) {
  engine_down_ = down;
  if (!stop_guests) {
    return;
  }
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [id, b] : boxes_) {
    ::kill(-b.pid, SIGKILL);
    ::kill(b.pid, SIGKILL);
    ::waitpid(b.pid, nullptr, 0);
  }
}

Result<SandboxInfo> ProcessBackend::RestartGuest(const std::string& id) {
  if (!engine_) {
    return SandboxBackend::RestartGuest(id);
  }
  if (engine_down_) {
    return Fail(ErrorCode::kUnavailable, "the process engine is not reachable");
  }
  std::lock_guard<std::mutex> lock(mu_);
  auto it = boxes_.find(id);
  if (it == boxes_.end()) {
    return Fail(SandboxNotFound(id));
  }
  Box& b = it->second;
  ::kill(-b.pid, SIGKILL);
  ::kill(b.pid, SIGKILL);
  ::waitpid(b.pid, nullptr, 0);
  auto pid = SpawnGuest(guest_, b.dir, b.info.spec.env);
  if (!pid) {
    return Fail(pid.error());
  }
  b.pid = *pid;
  return b.info;
}

Result<void> ProcessBackend::CrashGuest(const std::string& id) {
  if (!RestartGuest(id)) {
    return Fail(ErrorCode::kNotFound, "cannot crash the guest of '" + id + "'");
  }
  std::lock_guard<std::mutex> lock(mu_);
  restarted_.push_back(id);
  return {};
}

std::vector<std::string> ProcessBackend::GuestsRestarted() {
  std::lock_guard<std::mutex> lock(mu_);
  return std::exchange(restarted_, {});
}

}  // namespace agentbox::fakes
