#include "backends/jail/launch.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <optional>

#include "backends/jail/unix_http.h"
#include "common/fs_util.h"
#include "common/json_util.h"
#include "common/unique_fd.h"

namespace agentbox::jail {

// The last `n` bytes of a log file, for error messages.
std::string LogTail(const std::string& path, size_t n) {
  auto text = ReadSmallFile(path, 1 << 20);
  if (!text) {
    return "";
  }
  std::string s = text->size() > n ? text->substr(text->size() - n) : *text;
  while (!s.empty() && s.back() == '\n') {
    s.pop_back();
  }
  return s;
}

// Reads one '\n'-terminated line from `fd` (the helper's report). Empty at EOF.
Result<std::string> ReadLine(int fd, Clock::time_point deadline) {
  std::string line;
  char buf[4096];
  for (;;) {
    struct pollfd p = {fd, POLLIN, 0};
    const int n = ::poll(&p, 1, PollTimeoutMs(deadline));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n == 0 && Clock::now() >= deadline) {
      return Fail(ErrorCode::kTimeout, "the jail helper did not report in time");
    }
    if (n <= 0) {
      continue;
    }
    const ssize_t got = ::read(fd, buf, sizeof(buf));
    if (got < 0 && errno == EINTR) {
      continue;
    }
    if (got <= 0) {
      return line;
    }
    line.append(buf, static_cast<size_t>(got));
    if (const size_t nl = line.find('\n'); nl != std::string::npos) {
      return line.substr(0, nl);
    }
  }
}

// Waits until the guest answers GET /api/v1/health on `socket`. Wakes on the socket's creation
// (inotify on its directory), and fails at once if the helper exits (`helper_pipe` hangs up).
Result<void> WaitForGuest(const std::string& socket, const std::string& run_dir,
                          const std::string& token, int helper_pipe, Clock::time_point deadline) {
  UniqueFd ino(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
  if (!ino || ::inotify_add_watch(ino.Get(), run_dir.c_str(), IN_CREATE) < 0) {
    return Fail(ErrnoError(errno, "inotify on " + run_dir));
  }
  for (;;) {
    auto r = UnixHttpRequest(socket, "GET", "/api/v1/health", token, "", deadline);
    if (r && r->status == 200) {
      return {};
    }
    if (r) {
      return Fail(ErrorCode::kUnavailable,
                  "guest health answered " + std::to_string(r->status) + ": " + r->body);
    }
    const int err = r.error().sys_errno;
    if (err != ENOENT && err != ECONNREFUSED) {
      return Fail(r.error());
    }
    // ENOENT: wait for the socket to be created. ECONNREFUSED: it is bound but not yet
    // listening, which lasts microseconds; poll again after at most a millisecond.
    struct pollfd fds[2] = {{ino.Get(), POLLIN, 0}, {helper_pipe, POLLIN, 0}};
    const int timeout =
        err == ECONNREFUSED ? std::min(1, PollTimeoutMs(deadline)) : PollTimeoutMs(deadline);
    if (::poll(fds, 2, timeout) < 0 && errno != EINTR) {
      return Fail(ErrnoError(errno, "poll"));
    }
    if (fds[1].revents != 0) {
      return Fail(ErrorCode::kUnavailable, "the sandbox exited while starting");
    }
    char drain[4096];
    while (::read(ino.Get(), drain, sizeof(drain)) > 0) {
    }
    if (Clock::now() >= deadline) {
      return Fail(ErrorCode::kTimeout, "the guest did not answer its health check in time");
    }
  }
}

Result<LaunchedJail> LaunchJail(const std::string& helper_binary, const std::string& dir,
                                const std::string& token, Clock::time_point deadline) {
  const std::string config_path = dir + "/jail.json";
  const std::string log_path = dir + "/jail.log";
  const std::string run = dir + "/run";
  UniqueFd log(::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (!log) {
    return Fail(ErrnoError(errno, "create " + log_path));
  }
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return Fail(ErrnoError(errno, "pipe2"));
  }
  UniqueFd report(fds[0]);
  UniqueFd report_w(fds[1]);
  ChildProcess::Options o;
  o.path = helper_binary;
  o.argv = {"agentbox-jail", "run", config_path};
  o.stdout_fd = report_w.Get();
  o.stderr_fd = log.Get();
  o.new_session = true;  // terminal signals to the daemon's session do not reach sandboxes
  const auto spawning = Clock::now();
  auto helper = ChildProcess::Spawn(o);
  if (!helper) {
    return Fail(helper.error());
  }
  report_w.Reset();
  log.Reset();
  const pid_t helper_pid = helper->pid();
  std::optional<ProcessIdentity> init;
  // Until the guest answers, a failure kills what was started (the helper by ChildProcess).
  auto fail = [&](Error e) -> Result<LaunchedJail> {
    if (init) {
      if (auto h = ProcessHandle::Open(*init)) {
        (void)h->Signal(SIGKILL);
        h->WaitExit(Clock::now() + std::chrono::seconds(5));
      }
    }
    return Fail(std::move(e));
  };

  auto line = ReadLine(report.Get(), deadline);
  const auto jailed = Clock::now();
  if (!line) {
    return fail(line.error());
  }
  auto j = ParseJsonObject(*line);
  if (line->empty() || !j) {
    return fail({ErrorCode::kUnavailable, "the jail helper failed: " + LogTail(log_path)});
  }
  if (!j->value("ok", false)) {
    return fail({ErrorCode::kUnavailable, j->value("error", std::string("jail setup failed"))});
  }
  const pid_t init_pid = j->value("init_pid", 0);
  auto cgroups = j->value("cgroups", std::vector<std::string>());
  auto helper_id = IdentifyProcess(helper_pid);
  auto init_id = IdentifyProcess(init_pid);
  if (!helper_id || !init_id) {
    return fail(
        {ErrorCode::kUnavailable, "the sandbox exited while starting: " + LogTail(log_path)});
  }
  init = *init_id;
  if (auto r = WaitForGuest(run + "/guest.sock", run, token, report.Get(), deadline); !r) {
    return fail({r.error().code, r.error().message + "; log: " + LogTail(log_path)});
  }
  return LaunchedJail{std::move(*helper), *helper_id, *init_id,
                      std::move(cgroups), spawning,   jailed};
}

}  // namespace agentbox::jail
