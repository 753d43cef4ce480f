#include "fakes/tunnel_backend.h"

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <climits>
#include <fstream>
#include <thread>

#include "common/time_util.h"

extern char** environ;

namespace agentbox::fakes {
namespace {

// What the child does to see the host's root with the sandbox's directory at /workspace, all
// prepared before fork() so that the child only makes system calls.
struct RootView {
  std::string root;                                        // a tmpfs becomes the new root here
  std::vector<std::pair<std::string, std::string>> binds;  // host dir -> its place in `root`
  std::vector<std::pair<std::string, std::string>> links;  // symlink target -> its place
  std::string workspace_src, workspace_dst;
};

RootView PlanRootView(const std::string& box_dir) {
  RootView v;
  v.root = box_dir + "/root";
  ::mkdir(v.root.c_str(), 0755);
  DIR* d = ::opendir("/");
  while (dirent* e = d ? ::readdir(d) : nullptr) {
    const std::string n = e->d_name;
    if (n == "." || n == ".." || n == "workspace") {
      continue;
    }
    struct stat st {};
    if (::lstat(("/" + n).c_str(), &st) != 0) {
      continue;
    }
    if (S_ISLNK(st.st_mode)) {
      char target[PATH_MAX];
      const ssize_t len = ::readlink(("/" + n).c_str(), target, sizeof(target) - 1);
      if (len > 0) {
        v.links.emplace_back(std::string(target, static_cast<size_t>(len)), v.root + "/" + n);
      }
    } else if (S_ISDIR(st.st_mode)) {
      // /tmp first: the sandbox's directories live below it, and binding it before anything
      // else was mounted in the new root keeps the view from copying itself.
      auto at = n == "tmp" ? v.binds.begin() : v.binds.end();
      v.binds.insert(at, {"/" + n, v.root + "/" + n});
    }
  }
  if (d) {
    ::closedir(d);
  }
  v.workspace_src = box_dir + "/workspace";
  v.workspace_dst = v.root + "/workspace";
  return v;
}

// In the child, after fork(): system calls only. Exit codes 120..125 say which step failed.
void EnterRootView(const RootView& v) {
  if (::unshare(CLONE_NEWNS) != 0) {
    ::_exit(120);
  }
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    ::_exit(121);
  }
  if (::mount("tmpfs", v.root.c_str(), "tmpfs", 0, "mode=0755") != 0) {
    ::_exit(122);
  }
  for (const auto& [src, dst] : v.binds) {
    ::mkdir(dst.c_str(), 0755);
    if (::mount(src.c_str(), dst.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0) {
      ::_exit(123);
    }
  }
  for (const auto& [target, dst] : v.links) {
    if (::symlink(target.c_str(), dst.c_str()) != 0) {
      ::_exit(124);
    }
  }
  ::mkdir(v.workspace_dst.c_str(), 0755);
  if (::mount(v.workspace_src.c_str(), v.workspace_dst.c_str(), nullptr, MS_BIND, nullptr) != 0 ||
      ::chroot(v.root.c_str()) != 0 || ::chdir("/") != 0) {
    ::_exit(125);
  }
}

std::vector<char*> CStrings(std::vector<std::string>& v) {
  std::vector<char*> out;
  for (auto& s : v) {
    out.push_back(s.data());
  }
  out.push_back(nullptr);
  return out;
}

}  // namespace

TunnelBackend::TunnelBackend(std::string guest_binary, std::string state_dir,
                             daemon::TunnelEndpoint& endpoint,
                             std::function<std::string()> daemon_url, TunnelBackendOptions options)
    : guest_(std::move(guest_binary)),
      state_dir_(std::move(state_dir)),
      endpoint_(endpoint),
      url_(std::move(daemon_url)),
      opts_(std::move(options)) {
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

Result<pid_t> TunnelBackend::Spawn(const std::string& id, const Box& b) {
  const std::string tokfile = b.dir + "/token";
  std::vector<std::string> args = {guest_, "serve",        "--connect", url_(),        "--workdir",
                                   "",     "--token-file", tokfile,     "--log-level", "warn"};
  args[5] = opts_.workspace_at_root ? "/workspace" : b.dir + "/workspace";
  if (!opts_.ca_file.empty()) {
    args.insert(args.end(), {"--ca-file", opts_.ca_file});
  }
  std::map<std::string, std::string> vars;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string kv = *e;
    vars[kv.substr(0, kv.find('='))] = kv;
  }
  for (const auto& kv : b.env) {  // the spec's environment wins
    vars[kv.substr(0, kv.find('='))] = kv;
  }
  std::vector<std::string> env;
  for (auto& [k, kv] : vars) {
    env.push_back(std::move(kv));
  }
  std::vector<char*> argv = CStrings(args);
  std::vector<char*> envp = CStrings(env);
  RootView view;
  if (opts_.workspace_at_root) {
    view = PlanRootView(b.dir);
  }
  const std::string log = b.dir + "/guest.log";
  pid_t pid = ::fork();
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // a crashed test daemon leaves no guest redialling
    ::setsid();
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd >= 0) {
      ::dup2(fd, STDERR_FILENO);
    }
    if (opts_.workspace_at_root) {
      EnterRootView(view);
    }
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  if (pid < 0) {
    return Fail(ErrnoError(errno, "fork"));
  }
  {
    std::ofstream out(b.dir + "/guest.pid");
    out << pid << "\n";
  }
  if (!endpoint_.WaitConnected(id, std::chrono::seconds(10))) {
    int status = 0;
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    std::ifstream in(log);
    std::string tail((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (tail.size() > 2000) {
      tail = tail.substr(tail.size() - 2000);
    }
    return Fail(ErrorCode::kUnavailable,
                "the guest of '" + id + "' never connected its tunnel (exit status " +
                    std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1) +
                    "; 120-125: its root view could not be set up): " + tail);
  }
  return pid;
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
  ::mkdir((b.dir + "/workspace").c_str(), 0755);
  const std::string tokfile = b.dir + "/token";
  {
    std::ofstream out(tokfile);
    out << reg->token << "\n";
  }
  ::chmod(tokfile.c_str(), 0600);
  for (const auto& [k, v] : spec.env) {
    b.env.push_back(k + "=" + v);
  }
  auto pid = Spawn(id, b);
  if (!pid) {
    endpoint_.Unregister(id);
    return tl::unexpected(pid.error());
  }
  b.pid = *pid;
  b.info.id = id;
  b.info.backend = opts_.name;
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

Result<SandboxInfo> TunnelBackend::RestartGuest(const std::string& id) {
  Box b;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = boxes_.find(id);
    if (it == boxes_.end()) {
      return Fail(SandboxNotFound(id));
    }
    b = it->second;
  }
  ::kill(b.pid, SIGKILL);
  ::waitpid(b.pid, nullptr, 0);
  // The killed guest's connection closes with it; wait until the daemon has seen that, so that
  // the wait below is for the new guest's tunnel.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (endpoint_.Connected(id) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  auto pid = Spawn(id, b);
  if (!pid) {
    return tl::unexpected(pid.error());
  }
  std::lock_guard<std::mutex> lock(mu_);
  auto it = boxes_.find(id);
  if (it == boxes_.end()) {
    ::kill(*pid, SIGKILL);
    ::waitpid(*pid, nullptr, 0);
    return Fail(SandboxNotFound(id));
  }
  it->second.pid = *pid;
  return it->second.info;
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
