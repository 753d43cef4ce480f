#include "backends/jail/contain.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "backends/jail/caps.h"
#include "backends/jail/namespaces.h"
#include "backends/jail/result_util.h"
#include "common/unique_fd.h"

namespace agentbox::jail {
namespace {

// The pipes between the helper and the jail's child.
struct ChildPipes {
  int go = -1;       // read: one byte when the parent's half is done
  int report = -1;   // write: the error, if setup fails (close-on-exec)
  int seccomp = -1;  // read: the filter program, compiled by the parent meanwhile
  int output = -1;   // write: becomes stdout and stderr
};

// The child's half of the jail: every kernel concern in its fixed order. Returns only on
// failure; on success execve replaced the process.
Result<void> ContainChild(const JailConfig& cfg, MountPlan& plan, const ChildPipes& pipes);

// Makes the jail die with the helper that supervises it.
Result<void> DieWithHelper() {
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) {
    return Fail(ErrnoError(errno, "prctl(PR_SET_PDEATHSIG)"));
  }
  return {};
}

// stdout and stderr become the output pipe that the helper copies to the sandbox's log (the
// helper's own stdout is its report pipe), every other descriptor is closed by execve, and the
// working directory is set.
Result<void> PrepareExec(const ExecConfig& exec, int output_fd) {
  if (::dup2(output_fd, STDOUT_FILENO) < 0 || ::dup2(output_fd, STDERR_FILENO) < 0) {
    return Fail(ErrnoError(errno, "dup2 output pipe -> stdout, stderr"));
  }
  if (::close_range(3, ~0u, CLOSE_RANGE_CLOEXEC) != 0) {
    return Fail(ErrnoError(errno, "close_range"));
  }
  if (::chdir(exec.cwd.c_str()) != 0) {
    return Fail(ErrnoError(errno, "chdir " + exec.cwd));
  }
  return {};
}

Result<void> Exec(const ExecConfig& exec) {
  std::vector<char*> argv;
  for (const auto& a : exec.argv) {
    argv.push_back(const_cast<char*>(a.c_str()));
  }
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (const auto& e : exec.env) {
    envp.push_back(const_cast<char*>(e.c_str()));
  }
  envp.push_back(nullptr);
  ::execve(exec.path.c_str(), argv.data(), envp.data());
  return Fail(ErrnoError(errno, "execve " + exec.path));
}

Result<void> ContainChild(const JailConfig& cfg, MountPlan& plan, const ChildPipes& pipes) {
  JAIL_RETURN_IF_ERROR(EnterMountNamespace(plan));      // mount ns: sources, private, tmpfs root
  JAIL_RETURN_IF_ERROR(BecomeNamespaceRoot(cfg.user));  // user ns: root inside, nobody outside
  JAIL_RETURN_IF_ERROR(EnterCgroupNamespace());         // cgroup ns: its groups are its root
  JAIL_RETURN_IF_ERROR(SetHostname(cfg.hostname));      // uts ns
  JAIL_RETURN_IF_ERROR(SetupNetwork(cfg.net));          // net ns: loopback only
  JAIL_RETURN_IF_ERROR(BuildRootAndPivot(plan));        // mount ns: binds, /proc, /dev, pivot
  JAIL_RETURN_IF_ERROR(ApplyRlimits(cfg.rlimits));
  JAIL_RETURN_IF_ERROR(DropCapabilities(cfg.caps));
  JAIL_RETURN_IF_ERROR(SetNoNewPrivs());
  JAIL_RETURN_IF_ERROR(DieWithHelper());
  JAIL_RETURN_IF_ERROR(PrepareExec(cfg.exec, pipes.output));
  JAIL_RETURN_IF_ERROR(LoadSeccompProgram(cfg.seccomp, pipes.seccomp));  // last before execve
  return Exec(cfg.exec);
}

void WriteAll(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    const ssize_t n = ::write(fd, s.data() + off, s.size() - off);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return;
    }
    off += static_cast<size_t>(n);
  }
}

// Runs in the cloned child: waits for the parent to finish its half (id maps, cgroups), then
// contains itself. Never returns.
[[noreturn]] void RunChild(const JailConfig& cfg, MountPlan& plan, const ChildPipes& pipes) {
  char byte = 0;
  ssize_t n;
  do {
    n = ::read(pipes.go, &byte, 1);
  } while (n < 0 && errno == EINTR);
  if (n != 1) {
    ::_exit(126);  // the parent gave up
  }
  auto r = ContainChild(cfg, plan, pipes);
  WriteAll(pipes.report, r ? std::string("unknown failure") : r.error().message);
  ::_exit(127);
}

void KillAndReap(pid_t pid) {
  ::kill(pid, SIGKILL);
  while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
  }
}

Result<std::pair<UniqueFd, UniqueFd>> Pipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return Fail(ErrnoError(errno, "pipe2"));
  }
  return std::make_pair(UniqueFd(fds[0]), UniqueFd(fds[1]));
}

// clone(2) without a new stack: the child continues on a copy of this one, as after fork.
pid_t CloneProcess(unsigned long flags) {
  return static_cast<pid_t>(
      ::syscall(SYS_clone, flags | SIGCHLD, nullptr, nullptr, nullptr, nullptr));
}

}  // namespace

RunningJail::RunningJail(RunningJail&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      cgroup_(std::move(other.cgroup_)),
      output_(std::move(other.output_)) {}

RunningJail::~RunningJail() {
  if (pid_ > 0) {
    KillAndReap(pid_);
  }
  // cgroup_'s destructor removes the groups.
}

int RunningJail::Wait(int log_fd, uint64_t log_cap_bytes) {
  // The init's exit is seen through a pidfd; its output until the pipe's last writer is gone.
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0)));
  uint64_t written = 0;
  uint64_t dropped = 0;
  bool exited = !pidfd;  // without a pidfd, only drain the output, then wait
  char buf[65536];
  while (output_ || !exited) {
    struct pollfd fds[2] = {{output_.Get(), POLLIN, 0}, {pidfd.Get(), POLLIN, 0}};
    if (::poll(fds, exited ? 1 : 2, -1) < 0) {
      continue;  // EINTR: a signal for the jail (see helper_main.cc), handled there
    }
    if (fds[0].revents != 0) {
      const ssize_t got = ::read(output_.Get(), buf, sizeof(buf));
      if (got > 0) {
        const uint64_t room = written < log_cap_bytes ? log_cap_bytes - written : 0;
        const uint64_t keep = std::min<uint64_t>(room, static_cast<uint64_t>(got));
        if (keep > 0) {
          WriteAll(log_fd, std::string(buf, keep));
        }
        written += keep;
        dropped += static_cast<uint64_t>(got) - keep;
      } else if (got == 0 || errno != EINTR) {
        output_.Reset();  // every writer is gone
      }
    }
    if (!exited && fds[1].revents != 0) {
      exited = true;
    }
  }
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0) {
    if (errno != EINTR) {
      status = 0;
      break;
    }
  }
  pid_ = -1;
  if (dropped > 0) {
    WriteAll(log_fd, "[agentbox-jail: " + std::to_string(dropped) +
                         " bytes of output dropped past the log cap of " +
                         std::to_string(log_cap_bytes) + " bytes]\n");
  }
  (void)RemoveCgroups(cgroup_.Release(), std::chrono::seconds(10));
  return status;
}

Result<RunningJail> Contain(const JailConfig& cfg) {
  // Parent half. Host paths are opened and cgroups made while this process still sees the host.
  MountNsConfig mounts = cfg.mount;
  mounts.sysfs = !cfg.net.share_host;
  auto plan = PrepareMounts(mounts);
  if (!plan) {
    return Fail(plan.error());
  }
  if (mounts.overlay.enabled()) {
    // Idmapped layers need the host's CAP_SYS_ADMIN: made here, attached by the child.
    auto overlay = PrepareOverlay(mounts.overlay, cfg.user);
    if (!overlay) {
      return Fail(overlay.error());
    }
    plan->overlay = std::move(*overlay);
  }
  auto cgroup = SandboxCgroup::Create(cfg.cgroup);
  if (!cgroup) {
    return Fail(cgroup.error());
  }
  auto go = Pipe();
  auto report = Pipe();
  auto seccomp = Pipe();
  auto output = Pipe();
  if (!go || !report || !seccomp || !output) {
    return Fail(!go        ? go.error()
                : !report  ? report.error()
                : !seccomp ? seccomp.error()
                           : output.error());
  }
  const pid_t pid = CloneProcess(CloneFlags(cfg.net));
  if (pid < 0) {
    return Fail(ErrnoError(errno, "clone new namespaces"));
  }
  if (pid == 0) {
    go->second.Reset();
    report->first.Reset();
    seccomp->second.Reset();
    output->first.Reset();
    RunChild(cfg, *plan,
             {go->first.Get(), report->second.Get(), seccomp->first.Get(), output->second.Get()});
  }
  // From here on, failure kills the child.
  RunningJail jail(pid, std::move(*cgroup), std::move(output->first));
  go->first.Reset();
  report->second.Reset();
  seccomp->first.Reset();
  output->second.Reset();
  JAIL_RETURN_IF_ERROR(WriteIdMaps(pid, cfg.user));
  JAIL_RETURN_IF_ERROR(jail.cgroup_.Attach(pid));  // before its cgroup namespace exists
  if (::write(go->second.Get(), "g", 1) != 1) {
    return Fail(ErrnoError(errno, "release the jail's child"));
  }
  go->second.Reset();
  // While the child builds its namespaces, compile its system call filter.
  JAIL_RETURN_IF_ERROR(WriteSeccompProgram(cfg.seccomp, seccomp->second.Get()));
  seccomp->second.Reset();
  // The report pipe is close-on-exec: EOF with nothing read means execve succeeded.
  std::string error;
  char buf[1024];
  for (;;) {
    const ssize_t n = ::read(report->first.Get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      break;
    }
    error.append(buf, static_cast<size_t>(n));
  }
  if (!error.empty()) {
    return Fail(ErrorCode::kInternal, "jail setup: " + error);
  }
  return jail;
}

ContainProbe ProbeContain() {
  ContainProbe probe;
  const pid_t pid = CloneProcess(CloneFlags(NetNsConfig{}));
  if (pid < 0) {
    const int err = errno;
    switch (err) {
      case EPERM:
      case EACCES:
        probe.reason =
            "Creating user namespaces is not permitted here (kernel.unprivileged_userns_clone, "
            "an AppArmor or SELinux policy, or a container's seccomp profile forbids it).";
        break;
      case EINVAL:
        probe.reason = "The kernel lacks user, mount, pid, network, IPC or UTS namespaces.";
        break;
      case ENOSPC:
      case EUSERS:
        probe.reason = "The user namespace limit is reached (user.max_user_namespaces).";
        break;
      default:
        probe.reason = std::string("Creating namespaces failed: ") + std::strerror(err) + ".";
    }
    return probe;
  }
  if (pid == 0) {
    // A fresh /proc is the mount a locked-down container most often forbids.
    if (::mount("none", "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
      ::_exit(10);
    }
    if (::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) {
      ::_exit(11);
    }
    if (::unshare(CLONE_NEWCGROUP) != 0) {
      ::_exit(12);
    }
    ::_exit(0);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 255;
  if (code == 10 || code == 11) {
    probe.reason =
        "Mounting a fresh /proc in a new namespace is not permitted (a container that masks "
        "parts of /proc forbids it).";
    return probe;
  }
  if (code == 12) {
    probe.reason = "The kernel lacks cgroup namespaces.";
    return probe;
  }
  if (code != 0) {
    probe.reason = "A test jail failed to start (exit status " + std::to_string(code) + ").";
    return probe;
  }
  probe.usable = true;
  if (auto layout = DiscoverCgroups()) {
    probe.limitations = CgroupLimitations(*layout);
  }
  if (::geteuid() != 0) {
    probe.limitations.push_back(
        "single-id user mapping: only root exists inside a sandbox (not running as root)");
  }
  return probe;
}

}  // namespace agentbox::jail
