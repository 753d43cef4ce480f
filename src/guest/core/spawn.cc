#include "guest/core/spawn.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>

extern char** environ;

namespace agentbox::guest {
namespace {

// RAII for the posix_spawn attribute objects.
struct SpawnAttrs {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  SpawnAttrs() {
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attr);
  }
  ~SpawnAttrs() {
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
  }
};

// fork + credentials + execve. Everything is prepared before fork(); the child makes raw
// syscalls only (no allocation, no locks, no glibc setxid broadcast) and reports the errno of a
// failed step through a close-on-exec pipe, which closes silently on a successful execve.
Result<pid_t> ForkWithCredentials(const SpawnOptions& opts, const std::vector<UniqueFd>& high,
                                  char* const* argv, char* const* envp) {
  auto report = MakePipe(false);
  if (!report) {
    return Fail(report.error());
  }
  const int report_fd = report->second.Get();
  const bool switch_user = opts.credentials.has_value();
  const uid_t uid = switch_user ? opts.credentials->first : 0;
  const gid_t gid = switch_user ? opts.credentials->second : 0;
  const bool ctty = opts.controlling_tty;
  const char* cwd = opts.cwd.empty() ? nullptr : opts.cwd.c_str();
  const pid_t pid = ::fork();
  if (pid < 0) {
    return Fail(ErrnoError(errno, "fork"));
  }
  if (pid == 0) {
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig) {
      ::sigaction(sig, &dfl, nullptr);  // SIGKILL/SIGSTOP fail harmlessly
    }
    sigset_t empty;
    sigemptyset(&empty);
    ::sigprocmask(SIG_SETMASK, &empty, nullptr);
    int step = 0;
    if (opts.new_session && ::setsid() < 0) {
      step = 1;
    }
    for (size_t i = 0; step == 0 && i < opts.fds.size(); ++i) {
      if (::dup2(high[i].Get(), opts.fds[i].first) < 0) {
        step = 2;
      }
    }
    if (step == 0 && ctty && ::ioctl(0, TIOCSCTTY, 0) != 0) {
      step = 7;
    }
    if (step == 0 && cwd && ::chdir(cwd) != 0) {
      step = 3;
    }
    if (step == 0 && switch_user &&
        (::syscall(SYS_setgroups, 1, &gid) != 0 || ::syscall(SYS_setresgid, gid, gid, gid) != 0)) {
      step = 4;
    }
    if (step == 0 && switch_user && ::syscall(SYS_setresuid, uid, uid, uid) != 0) {
      step = 5;
    }
    if (step == 0) {
      ::execve(opts.path.c_str(), argv, envp);
      step = 6;
    }
    const int msg[2] = {step, errno};
    [[maybe_unused]] ssize_t n = ::write(report_fd, msg, sizeof(msg));
    ::_exit(127);
  }
  report->second.Reset();
  int msg[2] = {0, 0};
  ssize_t n;
  do {
    n = ::read(report->first.Get(), msg, sizeof(msg));
  } while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(sizeof(msg))) {
    // The child exits 127 and is reaped by whoever reaps this process's children.
    static constexpr const char* kSteps[] = {"",       "setsid", "dup2",   "chdir",
                                             "setgid", "setuid", "execve", "TIOCSCTTY"};
    const int step = msg[0] >= 1 && msg[0] <= 7 ? msg[0] : 6;
    return Fail(ErrnoError(msg[1], std::string("spawn ") + opts.path + ": " + kSteps[step]));
  }
  return pid;
}

}  // namespace

Result<pid_t> Spawn(const SpawnOptions& opts) {
  if (opts.argv.empty() || opts.path.empty()) {
    return Fail(ErrorCode::kInternal, "spawn: empty argv");
  }
  // Move every source fd out of the range of the targets first, so that a dup2 onto a target
  // can never clobber a source that a later action still needs.
  std::vector<UniqueFd> high;
  high.reserve(opts.fds.size());
  int above = 3;
  for (const auto& [child_fd, parent_fd] : opts.fds) {
    above = std::max(above, child_fd + 1);
  }
  for (const auto& [child_fd, parent_fd] : opts.fds) {
    int h = fcntl(parent_fd, F_DUPFD_CLOEXEC, above);
    if (h < 0) {
      return Fail(ErrnoError(errno, "spawn: dup"));
    }
    high.emplace_back(h);
  }
  if (opts.credentials || opts.controlling_tty) {
    std::vector<char*> argv;
    for (const auto& s : opts.argv) {
      argv.push_back(const_cast<char*>(s.c_str()));
    }
    argv.push_back(nullptr);
    std::vector<char*> envp;
    for (const auto& s : opts.env) {
      envp.push_back(const_cast<char*>(s.c_str()));
    }
    envp.push_back(nullptr);
    return ForkWithCredentials(opts, high, argv.data(), envp.data());
  }
  SpawnAttrs a;
  for (size_t i = 0; i < opts.fds.size(); ++i) {
    posix_spawn_file_actions_adddup2(&a.actions, high[i].Get(), opts.fds[i].first);
  }
  if (!opts.cwd.empty()) {
    posix_spawn_file_actions_addchdir_np(&a.actions, opts.cwd.c_str());
  }
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  if (opts.new_session) {
    flags |= POSIX_SPAWN_SETSID;
  }
  posix_spawnattr_setflags(&a.attr, flags);
  sigset_t empty;
  sigemptyset(&empty);
  posix_spawnattr_setsigmask(&a.attr, &empty);
  sigset_t all;
  sigfillset(&all);
  posix_spawnattr_setsigdefault(&a.attr, &all);

  std::vector<char*> argv;
  for (const auto& s : opts.argv) {
    argv.push_back(const_cast<char*>(s.c_str()));
  }
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (const auto& s : opts.env) {
    envp.push_back(const_cast<char*>(s.c_str()));
  }
  envp.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, opts.path.c_str(), &a.actions, &a.attr, argv.data(), envp.data());
  if (rc != 0) {
    return Fail(ErrnoError(rc, "spawn " + opts.path));
  }
  return pid;
}

Result<std::pair<UniqueFd, UniqueFd>> MakePipe(bool nonblocking_read) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) {
    return Fail(ErrnoError(errno, "pipe"));
  }
  UniqueFd r(p[0]);
  UniqueFd w(p[1]);
  if (nonblocking_read) {
    fcntl(r.Get(), F_SETFL, fcntl(r.Get(), F_GETFL) | O_NONBLOCK);
  }
  return std::make_pair(std::move(r), std::move(w));
}

Result<Pty> OpenPty(unsigned short rows, unsigned short cols) {
  Pty p;
  p.master.Reset(posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK));
  if (!p.master) {
    return Fail(ErrnoError(errno, "posix_openpt"));
  }
  if (grantpt(p.master.Get()) != 0 || unlockpt(p.master.Get()) != 0) {
    return Fail(ErrnoError(errno, "unlockpt"));
  }
  char name[128];
  if (ptsname_r(p.master.Get(), name, sizeof(name)) != 0) {
    return Fail(ErrnoError(errno, "ptsname"));
  }
  p.slave_path = name;
  p.slave.Reset(open(name, O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!p.slave) {
    return Fail(ErrnoError(errno, "open " + p.slave_path));
  }
  winsize ws{};
  ws.ws_row = rows;
  ws.ws_col = cols;
  ioctl(p.master.Get(), TIOCSWINSZ, &ws);
  return p;
}

std::vector<std::string> CurrentEnvironment() {
  std::vector<std::string> out;
  for (char** e = environ; e && *e; ++e) {
    out.emplace_back(*e);
  }
  return out;
}

}  // namespace agentbox::guest
