#include "guest/processes/process_manager.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <regex>

#include "common/log.h"
#include "common/time_util.h"
#include "common/utf8.h"
#include "guest/core/spawn.h"

namespace agentbox::guest {

namespace asio = boost::asio;

namespace {
struct SignalName {
  const char* name;
  int sig;
};
constexpr SignalName kSignals[] = {
    {"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT}, {"KILL", SIGKILL}, {"USR1", SIGUSR1},
    {"USR2", SIGUSR2}, {"TERM", SIGTERM}, {"CONT", SIGCONT}, {"STOP", SIGSTOP}, {"ALRM", SIGALRM}};
}  // namespace

Result<int> ParseSignal(const Json& v) {
  if (v.is_number_integer()) {
    const int64_t n = v.get<int64_t>();
    if (n < 1 || n > 64) {
      return Fail(FieldError("signal", "must be a signal number between 1 and 64"));
    }
    return static_cast<int>(n);
  }
  if (v.is_string()) {
    std::string s = v.get<std::string>();
    for (auto& c : s) {
      c = static_cast<char>(toupper(static_cast<unsigned char>(c)));
    }
    if (s.starts_with("SIG")) {
      s = s.substr(3);
    }
    for (const auto& sn : kSignals) {
      if (s == sn.name) {
        return sn.sig;
      }
    }
    return Fail(FieldError("signal", "unknown signal name '" + v.get<std::string>() + "'"));
  }
  return Fail(FieldError("signal", "must be a signal number or name"));
}

namespace {
// Reads what the pipe holds now. Returns false at EOF (every writer gone) or on error.
bool DrainPipe(ProcessManager::ProcLog& log, int fd, char* buf, size_t size) {
  for (;;) {
    ssize_t n = ::read(fd, buf, size);
    if (n > 0) {
      log.Append(std::string_view(buf, static_cast<size_t>(n)));
      continue;
    }
    return n < 0 && (errno == EAGAIN || errno == EINTR);
  }
}
}  // namespace

ProcessManager::ProcessManager(asio::io_context& io, ChildReaper& reaper, ShellInfo shell,
                               size_t log_cap, size_t max_records)
    : io_(io),
      reaper_(reaper),
      shell_(std::move(shell)),
      log_cap_(log_cap),
      max_records_(max_records) {}

ProcessManager::~ProcessManager() { KillAll(); }

Result<pid_t> ProcessManager::Start(const std::string& session_id, const std::string& command,
                                    const SessionState& state,
                                    const std::optional<std::string>& cwd,
                                    const std::vector<std::pair<std::string, std::string>>& env) {
  if (command.empty()) {
    return Fail(FieldError("command", "must not be empty"));
  }
  if (command.find('\0') != std::string::npos) {
    return Fail(FieldError("command", "must not contain NUL bytes"));
  }
  std::string dir = cwd.value_or(state.cwd);
  struct stat st {};
  if (dir.empty() || dir.find('\0') != std::string::npos || ::stat(dir.c_str(), &st) != 0 ||
      !S_ISDIR(st.st_mode)) {
    if (cwd) {
      return Fail(ErrorCode::kInvalidArgument, "cwd '" + dir + "' is not a directory");
    }
    dir = "/";
  }
  auto pipe = MakePipe(true);
  if (!pipe) {
    return Fail(pipe.error());
  }
  UniqueFd devnull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  SpawnOptions so;
  so.path = shell_.path;
  so.argv = ShellArgvPrefix(shell_);
  so.argv.push_back("-c");
  SessionState s = state;
  s.shell = shell_.kind;
  so.argv.push_back(OneShotScript(s, command));
  std::map<std::string, std::string> merged = state.env;
  for (const auto& [k, v] : env) {
    if (k.empty() || k.find('=') != std::string::npos || v.find('\0') != std::string::npos) {
      return Fail(FieldError("env", "names must be non-empty without '='; values without NUL"));
    }
    merged[k] = v;
  }
  for (const auto& [k, v] : merged) {
    so.env.push_back(k + "=" + v);
  }
  so.cwd = dir;
  so.fds = {{1, pipe->second.Get()}, {2, pipe->second.Get()}};
  if (devnull) {
    so.fds.insert(so.fds.begin(), {0, devnull.Get()});
  }
  auto pid = Spawn(so);
  if (!pid) {
    return Fail(pid.error());
  }
  auto p = std::make_shared<Proc>(log_cap_);
  p->info.pid = *pid;
  p->info.session_id = session_id;
  p->info.command = command;
  p->info.started_at = NowUnix();
  p->pipe = std::make_unique<asio::posix::stream_descriptor>(io_, pipe->first.Release());
  procs_[*pid] = p;
  std::weak_ptr<Proc> weak = p;
  reaper_.Watch(*pid, [weak](int status) {
    if (auto proc = weak.lock()) {
      // Everything the process wrote is in the pipe by now: log it before reporting the exit.
      if (proc->pipe && proc->pipe->is_open() &&
          !DrainPipe(proc->log, proc->pipe->native_handle(), proc->buf, sizeof(proc->buf))) {
        boost::system::error_code ignored;
        proc->pipe->close(ignored);
      }
      proc->info.running = false;
      proc->info.exit_code = ShellExitCode(status);
      proc->info.ended_at = NowUnix();
    }
  });
  ReadLoop(p);
  Log(LogLevel::kInfo, "process.started", "pid={} session={}", *pid, session_id);
  Prune();
  return *pid;
}

void ProcessManager::ReadLoop(const std::shared_ptr<Proc>& p) {
  // Wait-then-read (not async_read_some) so no output sits in a queued completion: on exit the
  // pipe can be drained synchronously and the log is complete when `running` turns false.
  std::weak_ptr<Proc> weak = p;
  p->pipe->async_wait(
      asio::posix::descriptor_base::wait_read, [this, weak](const boost::system::error_code& ec) {
        auto proc = weak.lock();
        if (!proc || ec || !proc->pipe->is_open()) {
          return;  // pruned or closed; `this` is not touched
        }
        if (!DrainPipe(proc->log, proc->pipe->native_handle(), proc->buf, sizeof(proc->buf))) {
          boost::system::error_code ignored;
          proc->pipe->close(ignored);  // EOF: every writer is gone
          return;
        }
        ReadLoop(proc);
      });
}

std::vector<ProcessInfo> ProcessManager::List(const std::optional<std::string>& session_id) const {
  std::vector<ProcessInfo> out;
  for (const auto& [pid, p] : procs_) {
    if (!session_id || p->info.session_id == *session_id) {
      out.push_back(p->info);
    }
  }
  return out;
}

Result<ProcessLogs> ProcessManager::Logs(pid_t pid, uint64_t offset, size_t max_bytes) const {
  auto it = procs_.find(pid);
  if (it == procs_.end()) {
    return Fail(ErrorCode::kNotFound, "process " + std::to_string(pid) + " not found");
  }
  const Proc& p = *it->second;
  RingBuffer::Slice s = p.log.Read(offset, max_bytes);
  ProcessLogs l;
  l.offset = s.offset;
  l.missed = s.missed;
  size_t skip = s.missed ? Utf8LeadingContinuations(s.bytes) : 0;
  size_t keep = Utf8CompletePrefix(s.bytes);
  if (keep < skip) {
    keep = skip;
  }
  // Hold back a split character unless it is the very end of a final log (process gone, pipe
  // closed): only then can no continuation byte follow.
  const bool final = !p.info.running && (!p.pipe || !p.pipe->is_open());
  if (final && s.next_offset == p.log.end_offset()) {
    keep = s.bytes.size();
  }
  l.output = s.bytes.substr(skip, keep - skip);
  l.offset = s.offset + skip;
  l.next_offset = s.offset + keep;
  l.running = p.info.running;
  l.exit_code = p.info.exit_code;
  return l;
}

Result<std::vector<pid_t>> ProcessManager::Kill(const KillRequest& req) {
  if (!req.pid && !req.session_id && !req.pattern) {
    Error e{ErrorCode::kValidation, "give one of 'pid', 'session_id' or 'pattern'"};
    e.field = "pid";
    return Fail(std::move(e));
  }
  std::optional<std::regex> re;
  if (req.pattern) {
    try {  // boundary: std::regex reports errors only by exception
      re.emplace(*req.pattern, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      return Fail(ErrorCode::kInvalidArgument, std::string("invalid pattern: ") + e.what());
    }
  }
  if (req.pid && !procs_.count(*req.pid)) {
    return Fail(ErrorCode::kNotFound, "process " + std::to_string(*req.pid) + " not found");
  }
  std::vector<pid_t> killed;
  for (auto& [pid, p] : procs_) {
    if (!p->info.running) {
      continue;
    }
    if (req.pid && pid != *req.pid) {
      continue;
    }
    if (req.session_id && p->info.session_id != *req.session_id) {
      continue;
    }
    if (re) {
      bool match = false;
      try {
        match = std::regex_search(p->info.command, *re);
      } catch (const std::regex_error&) {
        match = false;
      }
      if (!match) {
        continue;
      }
    }
    // The process leads its own group: signal the group so its children go too.
    if (::kill(-pid, req.signal) != 0 && ::kill(pid, req.signal) != 0) {
      continue;
    }
    killed.push_back(pid);
  }
  return killed;
}

size_t ProcessManager::running_count() const {
  size_t n = 0;
  for (const auto& [pid, p] : procs_) {
    n += p->info.running ? 1 : 0;
  }
  return n;
}

void ProcessManager::Prune() {
  // Keep every running process and the newest exited ones up to max_records in total.
  while (procs_.size() > max_records_) {
    auto oldest = procs_.end();
    for (auto it = procs_.begin(); it != procs_.end(); ++it) {
      if (!it->second->info.running &&
          (oldest == procs_.end() ||
           it->second->info.started_at < oldest->second->info.started_at)) {
        oldest = it;
      }
    }
    if (oldest == procs_.end()) {
      return;
    }
    procs_.erase(oldest);
  }
}

void ProcessManager::KillAll() {
  for (auto& [pid, p] : procs_) {
    if (p->info.running) {
      ::kill(-pid, SIGKILL);
    }
    reaper_.Forget(pid);
  }
}

}  // namespace agentbox::guest
