#include "guest/processes/exec_manager.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <fstream>
#include <sstream>

#include "common/base64.h"
#include "common/fs_util.h"
#include "common/json_util.h"
#include "common/log.h"
#include "guest/core/spawn.h"

namespace agentbox::guest {

namespace asio = boost::asio;

Result<UserAccount> LookUpUser(const std::string& name, const std::string& passwd) {
  std::ifstream in(passwd);
  std::string line;
  while (std::getline(in, line)) {
    // name:password:uid:gid:gecos:home:shell
    std::vector<std::string> f;
    std::stringstream ss(line);
    std::string part;
    while (std::getline(ss, part, ':')) {
      f.push_back(part);
    }
    if (f.size() < 6 || f[0] != name) {
      continue;
    }
    UserAccount u;
    u.name = name;
    char* end = nullptr;
    u.uid = static_cast<uid_t>(std::strtoul(f[2].c_str(), &end, 10));
    u.gid = static_cast<gid_t>(std::strtoul(f[3].c_str(), &end, 10));
    u.home = f[5];
    u.shell = f.size() > 6 ? f[6] : "/bin/sh";
    return u;
  }
  return Fail(ErrorCode::kNotFound, "user '" + name + "' does not exist in the sandbox");
}

bool UidMapped(uid_t uid, const std::string& uid_map) {
  std::istringstream in(uid_map);
  uint64_t inside = 0;
  uint64_t outside = 0;
  uint64_t count = 0;
  while (in >> inside >> outside >> count) {
    if (uid >= inside && uid < inside + count) {
      return true;
    }
  }
  return false;
}

namespace {

constexpr size_t kReadChunk = 32 * 1024;

std::string Line(const Json& j) { return DumpJson(j) + "\n"; }

// `cmd` as an absolute path: a name without '/' is looked up in the PATH the process gets.
std::string FindProgram(const std::string& cmd, const std::vector<std::string>& env) {
  if (cmd.find('/') != std::string::npos) {
    return cmd;
  }
  std::string path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  for (const auto& e : env) {
    if (e.starts_with("PATH=")) {
      path = e.substr(5);
    }
  }
  std::stringstream ss(path);
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    const std::string candidate = (dir.empty() ? "." : dir) + "/" + cmd;
    if (::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
  }
  return cmd;  // spawn reports ENOENT
}

}  // namespace

struct ExecManager::Proc {
  ExecInfo info;
  std::unique_ptr<asio::posix::stream_descriptor> out;
  std::unique_ptr<asio::posix::stream_descriptor> err;
  UniqueFd stdin_fd;
  bool pty = false;  // `out` is the pty's master: read for output, written for input
  std::vector<std::weak_ptr<http::QueueSource>> streams;
  char buf[kReadChunk];
};

ExecManager::ExecManager(asio::io_context& io, ChildReaper& reaper,
                         std::vector<std::string> base_env)
    : io_(io), reaper_(reaper), base_env_(std::move(base_env)), keepalive_(io) {
  ArmKeepalive();
}

ExecManager::~ExecManager() {
  keepalive_.cancel();
  KillAll();
}

void ExecManager::ArmKeepalive() {
  // Streams idle for long (a background server) stay under every relay's idle limit.
  keepalive_.expires_after(std::chrono::seconds(15));
  keepalive_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) {
      return;
    }
    const std::string line = Line({{"event", "keepalive"}});
    for (auto& [pid, p] : procs_) {
      Emit(*p, line);
    }
    ArmKeepalive();
  });
}

Result<pid_t> ExecManager::Start(const ExecSpec& spec, std::shared_ptr<http::QueueSource> events) {
  if (spec.cmd.empty()) {
    return Fail(FieldError("cmd", "must not be empty"));
  }
  auto has_nul = [](const std::string& s) { return s.find('\0') != std::string::npos; };
  if (has_nul(spec.cmd) || std::any_of(spec.args.begin(), spec.args.end(), has_nul)) {
    return Fail(FieldError("args", "must not contain NUL bytes"));
  }
  std::optional<UserAccount> account;
  if (!spec.user.empty()) {
    auto u = LookUpUser(spec.user);
    if (u) {
      account = *u;
    } else if (spec.user_fallback && u.error().code == ErrorCode::kNotFound) {
      account = UserAccount{spec.user, ::geteuid(), ::getegid(), "/home/" + spec.user, "/bin/sh"};
    } else {
      return Fail(u.error());
    }
  }
  std::map<std::string, std::string> env;
  for (const auto& e : base_env_) {
    const size_t eq = e.find('=');
    if (eq != std::string::npos) {
      env[e.substr(0, eq)] = e.substr(eq + 1);
    }
  }
  std::optional<std::pair<uid_t, gid_t>> creds;
  if (account) {
    env["HOME"] = account->home;
    env["USER"] = account->name;
    env["LOGNAME"] = account->name;
    if (account->uid != ::geteuid()) {
      auto map = ReadSmallFile("/proc/self/uid_map");
      if (map && UidMapped(account->uid, *map)) {
        creds = std::make_pair(account->uid, account->gid);
      } else {
        // A user namespace that maps only root (an unprivileged jail): the command runs as the
        // guest's own user, with the account's home and names.
        Log(LogLevel::kDebug, "exec.user_unmapped", "user={} uid={}", account->name, account->uid);
      }
    }
  }
  for (const auto& [k, v] : spec.envs) {
    if (k.empty() || k.find('=') != std::string::npos || has_nul(k) || has_nul(v)) {
      return Fail(FieldError("envs", "names must be non-empty without '='; no NUL bytes"));
    }
    env[k] = v;
  }
  std::string dir;
  if (spec.cwd && !spec.cwd->empty()) {
    dir = *spec.cwd;
  } else if (account) {
    dir = account->home;
  } else if (auto it = env.find("HOME"); it != env.end()) {
    dir = it->second;
  }
  struct stat st {};
  if (dir.empty() || has_nul(dir) || ::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    if (spec.cwd && !spec.cwd->empty()) {
      return Fail(ErrorCode::kInvalidArgument, "cwd '" + dir + "' is not a directory");
    }
    dir = "/";
  }
  env["PWD"] = dir;
  SpawnOptions so;
  for (const auto& [k, v] : env) {
    so.env.push_back(k + "=" + v);
  }
  so.path = FindProgram(spec.cmd, so.env);
  so.argv.push_back(spec.cmd);
  so.argv.insert(so.argv.end(), spec.args.begin(), spec.args.end());
  so.cwd = dir;
  so.credentials = creds;
  std::optional<std::pair<UniqueFd, UniqueFd>> out, err, in;
  std::optional<Pty> pty;
  UniqueFd devnull;
  if (spec.pty) {
    auto t = OpenPty(spec.pty->rows, spec.pty->cols);
    if (!t) {
      return Fail(t.error());
    }
    pty.emplace(std::move(*t));
    so.fds = {{0, pty->slave.Get()}, {1, pty->slave.Get()}, {2, pty->slave.Get()}};
    so.controlling_tty = true;
  } else {
    auto o = MakePipe(true);
    auto e = MakePipe(true);
    if (!o || !e) {
      return Fail(!o ? o.error() : e.error());
    }
    out.emplace(std::move(*o));
    err.emplace(std::move(*e));
    if (spec.stdin) {
      auto i = MakePipe(false);
      if (!i) {
        return Fail(i.error());
      }
      in.emplace(std::move(*i));
      ::fcntl(in->second.Get(), F_SETFL, ::fcntl(in->second.Get(), F_GETFL) | O_NONBLOCK);
    } else {
      devnull.Reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    }
    so.fds = {
        {0, in ? in->first.Get() : devnull.Get()}, {1, out->second.Get()}, {2, err->second.Get()}};
  }
  auto pid = Spawn(so);
  if (!pid) {
    Error e = pid.error();
    if (e.sys_errno == ENOENT || e.sys_errno == EACCES) {
      e.code = ErrorCode::kInvalidArgument;
    }
    return Fail(std::move(e));
  }
  auto p = std::make_shared<Proc>();
  p->info.pid = *pid;
  p->info.spec = spec;
  p->info.spec.cwd = dir;
  if (pty) {
    // Our copy of the slave closes here: the master reads EIO once the process (and whatever
    // it started on the terminal) is gone.
    p->pty = true;
    p->out = std::make_unique<asio::posix::stream_descriptor>(io_, pty->master.Release());
  } else {
    p->out = std::make_unique<asio::posix::stream_descriptor>(io_, out->first.Release());
    p->err = std::make_unique<asio::posix::stream_descriptor>(io_, err->first.Release());
  }
  if (in) {
    p->stdin_fd = std::move(in->second);
  }
  if (events) {
    p->streams.push_back(events);
    events->Push(Line({{"event", "start"}, {"pid", *pid}}));
  }
  procs_[*pid] = p;
  std::weak_ptr<Proc> weak = p;
  reaper_.Watch(*pid, [this, weak](int status) {
    if (auto proc = weak.lock()) {
      Ended(proc, status);
    }
  });
  ReadLoop(p, false);
  ReadLoop(p, true);
  Log(LogLevel::kInfo, "exec.started", "pid={} cmd={} user={}", *pid, spec.cmd,
      spec.user.empty() ? "-" : spec.user);
  return *pid;
}

void ExecManager::Emit(Proc& p, const std::string& line, bool last) {
  for (auto it = p.streams.begin(); it != p.streams.end();) {
    if (auto s = it->lock()) {
      s->Push(line, last);
      ++it;
    } else {
      it = p.streams.erase(it);  // the client went away
    }
  }
}

void ExecManager::Drain(Proc& p, bool err) {
  auto& d = err ? p.err : p.out;
  if (!d || !d->is_open()) {
    return;
  }
  for (;;) {
    const ssize_t n = ::read(d->native_handle(), p.buf, sizeof(p.buf));
    if (n > 0) {
      Emit(p, Line({{"event", p.pty ? "pty"
                              : err ? "stderr"
                                    : "stdout"},
                    {"data", Base64Encode(std::string_view(p.buf, static_cast<size_t>(n)))}}));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      return;
    }
    boost::system::error_code ignored;
    d->close(ignored);  // EOF (a pty: EIO): every writer is gone
    return;
  }
}

void ExecManager::ReadLoop(const std::shared_ptr<Proc>& p, bool err) {
  auto& d = err ? p->err : p->out;
  if (!d || !d->is_open()) {
    return;
  }
  std::weak_ptr<Proc> weak = p;
  d->async_wait(asio::posix::descriptor_base::wait_read,
                [this, weak, err](const boost::system::error_code& ec) {
                  auto proc = weak.lock();
                  if (!proc || ec) {
                    return;
                  }
                  Drain(*proc, err);
                  ReadLoop(proc, err);
                });
}

void ExecManager::Ended(const std::shared_ptr<Proc>& p, int status) {
  // What the process wrote before exiting is in the pipes: send it before the end event. A
  // descendant that keeps the pipes open does not hold the end back.
  Drain(*p, false);
  Drain(*p, true);
  boost::system::error_code ignored;
  for (auto* d : {p->out.get(), p->err.get()}) {
    if (d) {
      d->close(ignored);
    }
  }
  Json end = {{"event", "end"}};
  if (WIFEXITED(status)) {
    end["exit_code"] = WEXITSTATUS(status);
    end["exited"] = true;
    end["status"] = "exit status " + std::to_string(WEXITSTATUS(status));
  } else {
    const int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    end["exit_code"] = -1;
    end["exited"] = false;
    end["signal"] = sig;
    end["status"] = std::string("signal: ") + (sig == SIGKILL   ? "killed"
                                               : sig == SIGTERM ? "terminated"
                                               : sig == SIGINT  ? "interrupt"
                                                                : std::to_string(sig));
  }
  Emit(*p, Line(end), true);
  procs_.erase(p->info.pid);
  Log(LogLevel::kInfo, "exec.ended", "pid={} status=\"{}\"", p->info.pid,
      end["status"].get<std::string>());
}

Result<pid_t> ExecManager::Resolve(std::optional<pid_t> pid,
                                   const std::optional<std::string>& tag) const {
  if (pid) {
    if (!procs_.count(*pid)) {
      return Fail(ErrorCode::kNotFound, "process with pid " + std::to_string(*pid) + " not found");
    }
    return *pid;
  }
  if (tag) {
    for (const auto& [p, proc] : procs_) {
      if (proc->info.spec.tag == tag) {
        return p;
      }
    }
    return Fail(ErrorCode::kNotFound, "process with tag '" + *tag + "' not found");
  }
  return Fail(FieldError("process", "give a pid or a tag"));
}

Result<void> ExecManager::Attach(pid_t pid, std::shared_ptr<http::QueueSource> events) {
  auto it = procs_.find(pid);
  if (it == procs_.end()) {
    return Fail(ErrorCode::kNotFound, "process with pid " + std::to_string(pid) + " not found");
  }
  events->Push(Line({{"event", "start"}, {"pid", pid}}));
  it->second->streams.push_back(std::move(events));
  return {};
}

std::vector<ExecInfo> ExecManager::List() const {
  std::vector<ExecInfo> out;
  for (const auto& [pid, p] : procs_) {
    out.push_back(p->info);
  }
  return out;
}

Result<void> ExecManager::WriteStdin(pid_t pid, std::string_view bytes) {
  auto it = procs_.find(pid);
  if (it == procs_.end()) {
    return Fail(ErrorCode::kNotFound, "process with pid " + std::to_string(pid) + " not found");
  }
  Proc& p = *it->second;
  const int fd =
      p.pty ? (p.out && p.out->is_open() ? p.out->native_handle() : -1) : p.stdin_fd.Get();
  if (fd < 0) {
    return Fail(ErrorCode::kConflict, "process " + std::to_string(pid) +
                                          " was started without stdin or its stdin is closed");
  }
  size_t off = 0;
  while (off < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + off, bytes.size() - off);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      if (errno == EAGAIN) {
        return Fail(ErrorCode::kConflict, "stdin of process " + std::to_string(pid) +
                                              " is full (the process does not read it)");
      }
      return Fail(ErrnoError(errno, "write stdin"));
    }
    off += static_cast<size_t>(n);
  }
  return {};
}

Result<void> ExecManager::Resize(pid_t pid, unsigned short rows, unsigned short cols) {
  auto it = procs_.find(pid);
  if (it == procs_.end()) {
    return Fail(ErrorCode::kNotFound, "process with pid " + std::to_string(pid) + " not found");
  }
  Proc& p = *it->second;
  if (!p.pty || !p.out || !p.out->is_open()) {
    return Fail(ErrorCode::kConflict, "process " + std::to_string(pid) + " has no pty");
  }
  winsize ws{};
  ws.ws_row = rows;
  ws.ws_col = cols;
  if (::ioctl(p.out->native_handle(), TIOCSWINSZ, &ws) != 0) {
    return Fail(ErrnoError(errno, "resize the pty"));
  }
  return {};
}

Result<void> ExecManager::CloseStdin(pid_t pid) {
  auto it = procs_.find(pid);
  if (it == procs_.end()) {
    return Fail(ErrorCode::kNotFound, "process with pid " + std::to_string(pid) + " not found");
  }
  it->second->stdin_fd.Reset();
  return {};
}

Result<void> ExecManager::Signal(pid_t pid, int sig) {
  if (!procs_.count(pid)) {
    return Fail(ErrorCode::kNotFound, "process with pid " + std::to_string(pid) + " not found");
  }
  if (::kill(-pid, sig) != 0 && ::kill(pid, sig) != 0) {
    return Fail(ErrnoError(errno, "kill " + std::to_string(pid)));
  }
  return {};
}

void ExecManager::KillAll() {
  for (auto& [pid, p] : procs_) {
    ::kill(-pid, SIGKILL);
    reaper_.Forget(pid);
  }
}

}  // namespace agentbox::guest
