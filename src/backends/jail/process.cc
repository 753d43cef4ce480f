#include "backends/jail/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <sstream>

#include "backends/jail/fs_util.h"
#include "common/sched_slice.h"

namespace agentbox::jail {
namespace {

// Direct system calls: glibc 2.36's <sys/pidfd.h> lacks C linkage for C++ callers.
int PidfdOpen(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }
int PidfdSendSignal(int pidfd, int sig) {
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}

struct StatFields {
  char state = '?';
  uint64_t start_time = 0;
};

Result<StatFields> ReadStat(pid_t pid) {
  auto text = ReadSmallFile("/proc/" + std::to_string(pid) + "/stat", 4096);
  if (!text) {
    return Fail(ErrorCode::kNotFound, "no process " + std::to_string(pid));
  }
  // The command name (field 2) may hold spaces and parentheses: parse after the last ')'.
  const size_t close = text->rfind(')');
  if (close == std::string::npos) {
    return Fail(ErrorCode::kInternal, "malformed /proc/" + std::to_string(pid) + "/stat");
  }
  std::istringstream rest(text->substr(close + 2));
  StatFields f;
  rest >> f.state;
  std::string skip;
  for (int field = 4; field < 22; ++field) {  // fields 4..21
    rest >> skip;
  }
  rest >> f.start_time;
  if (!rest) {
    return Fail(ErrorCode::kInternal, "malformed /proc/" + std::to_string(pid) + "/stat");
  }
  return f;
}

}  // namespace

const std::string& BootId() {
  static const std::string id = [] {
    auto text = ReadSmallFile("/proc/sys/kernel/random/boot_id", 128);
    std::string s = text ? *text : "";
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) {
      s.pop_back();
    }
    return s;
  }();
  return id;
}

Result<ProcessIdentity> IdentifyProcess(pid_t pid) {
  auto stat = ReadStat(pid);
  if (!stat) {
    return Fail(stat.error());
  }
  return ProcessIdentity{pid, stat->start_time, BootId()};
}

ProcessStatus GetProcessStatus(const ProcessIdentity& id) {
  if (id.pid <= 0 || id.boot_id != BootId()) {
    return ProcessStatus::kGone;
  }
  auto stat = ReadStat(id.pid);
  if (!stat || stat->start_time != id.start_time) {
    return ProcessStatus::kGone;
  }
  return stat->state == 'Z' || stat->state == 'X' ? ProcessStatus::kZombie
                                                  : ProcessStatus::kRunning;
}

Result<ProcessHandle> ProcessHandle::Open(const ProcessIdentity& id) {
  if (id.pid <= 0 || id.boot_id != BootId()) {
    return Fail(ErrorCode::kNotFound, "process is from another boot");
  }
  UniqueFd fd(PidfdOpen(id.pid));
  if (!fd) {
    return Fail(ErrnoError(errno, "pidfd_open " + std::to_string(id.pid)));
  }
  // Checked after opening: if the start time still matches now, the descriptor (which pins
  // whatever process had the pid when it was opened) refers to the recorded process.
  auto stat = ReadStat(id.pid);
  if (!stat || stat->start_time != id.start_time) {
    return Fail(ErrorCode::kNotFound, "process " + std::to_string(id.pid) + " is gone");
  }
  return ProcessHandle(id.pid, std::move(fd));
}

Result<void> ProcessHandle::Signal(int sig) const {
  if (PidfdSendSignal(fd_.Get(), sig) != 0 && errno != ESRCH) {
    return Fail(ErrnoError(errno, "signal process " + std::to_string(pid_)));
  }
  return {};
}

bool ProcessHandle::WaitExit(Clock::time_point deadline) const {
  for (;;) {
    struct pollfd p = {fd_.Get(), POLLIN, 0};
    const int n = ::poll(&p, 1, PollTimeoutMs(deadline));
    if (n > 0) {
      return true;
    }
    if (n == 0 && Clock::now() >= deadline) {
      return false;
    }
    if (n < 0 && errno != EINTR) {
      return false;
    }
  }
}

void ProcessHandle::ReapIfChild() const {
  siginfo_t info{};
  // P_PIDFD only ever reaps this very process, and only if it is our child.
  ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(fd_.Get()), &info, WEXITED | WNOHANG);
}

int PollTimeoutMs(Clock::time_point deadline) {
  const auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<int64_t>(left + 1, 0, 60000));
}

Result<ChildProcess> ChildProcess::Spawn(const Options& opts) {
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  if (opts.stdout_fd >= 0) {
    posix_spawn_file_actions_adddup2(&fa, opts.stdout_fd, 1);
  } else {
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  }
  if (opts.stderr_fd >= 0) {
    posix_spawn_file_actions_adddup2(&fa, opts.stderr_fd, 2);
  } else {
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  }
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  if (opts.new_session) {
    flags |= POSIX_SPAWN_SETSID;
  }
  posix_spawnattr_setflags(&attr, flags);

  std::vector<char*> argv;
  for (const auto& a : opts.argv) {
    argv.push_back(const_cast<char*>(a.c_str()));
  }
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (const auto& e : opts.env) {
    envp.push_back(const_cast<char*>(e.c_str()));
  }
  envp.push_back(nullptr);
  pid_t pid = -1;
  const DefaultSliceScope bulk;  // what agentboxd starts does not inherit its short slice
  const int rc = ::posix_spawn(&pid, opts.path.c_str(), &fa, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    return Fail(ErrnoError(rc, "spawn " + opts.path));
  }
  return ChildProcess(pid);
}

ChildProcess::~ChildProcess() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
}

Result<int> ChildProcess::Wait(Clock::time_point deadline) {
  UniqueFd fd(PidfdOpen(pid_));
  if (fd) {
    struct pollfd p = {fd.Get(), POLLIN, 0};
    for (;;) {
      const int n = ::poll(&p, 1, PollTimeoutMs(deadline));
      if (n > 0) {
        break;
      }
      if (n == 0 && Clock::now() >= deadline) {
        return Fail(ErrorCode::kTimeout, "process " + std::to_string(pid_) + " still runs");
      }
      if (n < 0 && errno != EINTR) {
        break;
      }
    }
  }
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0) {
    if (errno != EINTR) {
      return Fail(ErrnoError(errno, "waitpid"));
    }
  }
  pid_ = -1;
  return status;
}

}  // namespace agentbox::jail
