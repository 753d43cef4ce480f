#include "guest/sessions/session.h"

#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>
#include <csignal>

#include "common/log.h"
#include "common/utf8.h"
#include "guest/core/spawn.h"

namespace agentbox::guest {

namespace asio = boost::asio;

namespace {

enum Stream { kOut = 0, kErr = 1, kStatus = 2, kPtyOut = 3 };

bool IsDirectory(const std::string& p) {
  struct stat st {};
  return !p.empty() && ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool IsExecutable(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(p.c_str(), X_OK) == 0;
}

// Output slice [from, to) of `ring` as complete UTF-8: a character cut at the front by the cap
// is skipped, and one still arriving at the end is held back while the command runs.
std::string Slice(const RingBuffer& ring, uint64_t from, uint64_t to, bool running,
                  bool* truncated) {
  if (to < from) {
    to = from;
  }
  RingBuffer::Slice s = ring.Read(from, static_cast<size_t>(to - from));
  if (truncated) {
    *truncated = s.missed;
  }
  std::string out = std::move(s.bytes);
  if (s.missed) {
    out.erase(0, Utf8LeadingContinuations(out));
  }
  if (running) {
    out.resize(Utf8CompletePrefix(out));
  }
  return out;
}

}  // namespace

std::vector<std::string> ShellArgvPrefix(const ShellInfo& shell) {
  std::vector<std::string> argv{shell.path};
  if (shell.kind == ShellKind::kBash) {
    argv.push_back("--noprofile");
    argv.push_back("--norc");
  } else if (shell.path.ends_with("/busybox")) {
    argv.push_back("sh");
  }
  return argv;
}

Result<ShellInfo> DetectShell(const std::string& preferred) {
  if (!preferred.empty()) {
    if (!IsExecutable(preferred)) {
      return Fail(ErrorCode::kInvalidArgument, "shell '" + preferred + "' is not executable");
    }
    const bool bash = preferred.ends_with("bash");
    return ShellInfo{bash ? ShellKind::kBash : ShellKind::kSh, preferred};
  }
  for (const char* p : {"/bin/bash", "/usr/bin/bash", "/usr/local/bin/bash"}) {
    if (IsExecutable(p)) {
      return ShellInfo{ShellKind::kBash, p};
    }
  }
  for (const char* p : {"/bin/sh", "/usr/bin/sh", "/bin/busybox"}) {
    if (IsExecutable(p)) {
      return ShellInfo{ShellKind::kSh, p};
    }
  }
  return Fail(ErrorCode::kUnavailable, "no shell found: neither bash nor sh is installed");
}

Session::Session(asio::io_context& io, ChildReaper& reaper, std::string id, SessionState initial,
                 const SessionConfig& cfg)
    : io_(io),
      reaper_(reaper),
      id_(std::move(id)),
      cfg_(cfg),
      state_(std::move(initial)),
      parser_(cfg.shell.kind),
      console_(cfg.output_cap) {
  state_.shell = cfg_.shell.kind;
}

Session::~Session() { Shutdown(); }

Result<void> Session::EnsurePipes() {
  if (out_r_) {
    return {};
  }
  auto in = MakePipe(false);
  auto out = MakePipe(true);
  auto err = MakePipe(true);
  auto st = MakePipe(true);
  if (!in || !out || !err || !st) {
    return Fail(ErrorCode::kInternal,
                "cannot create session pipes: " + std::string(strerror(errno)));
  }
  stdin_r_ = std::move(in->first);
  stdin_w_ = std::move(in->second);
  // Input writes never block the server: a command that does not read simply gets an error.
  fcntl(stdin_w_.Get(), F_SETFL, fcntl(stdin_w_.Get(), F_GETFL) | O_NONBLOCK);
  out_w_ = std::move(out->second);
  err_w_ = std::move(err->second);
  status_w_ = std::move(st->second);
  out_r_ = std::make_unique<asio::posix::stream_descriptor>(io_, out->first.Release());
  err_r_ = std::make_unique<asio::posix::stream_descriptor>(io_, err->first.Release());
  status_r_ = std::make_unique<asio::posix::stream_descriptor>(io_, st->first.Release());
  ReadLoop(*out_r_, kOut);
  ReadLoop(*err_r_, kErr);
  ReadLoop(*status_r_, kStatus);
  return {};
}

Result<void> Session::EnsurePty() {
  if (pty_r_) {
    return {};
  }
  auto pty = OpenPty(40, 120);
  if (!pty) {
    return Fail(pty.error());
  }
  pty_path_ = pty->slave_path;
  pty_slave_ = std::move(pty->slave);
  pty_master_fd_ = pty->master.Get();
  pty_r_ = std::make_unique<asio::posix::stream_descriptor>(io_, pty->master.Release());
  ReadLoop(*pty_r_, kPtyOut);
  return {};
}

Result<void> Session::EnsureShell() {
  if (shell_pid_ > 0) {
    return {};
  }
  auto ctl = MakePipe(false);
  if (!ctl) {
    return Fail(ctl.error());
  }
  SpawnOptions so;
  so.path = cfg_.shell.path;
  so.argv = ShellArgvPrefix(cfg_.shell);
  so.argv.push_back(IsDirectory("/proc/self/fd") ? "/proc/self/fd/3" : "/dev/fd/3");
  for (const auto& [k, v] : state_.env) {
    so.env.push_back(k + "=" + v);
  }
  so.cwd = IsDirectory(state_.cwd) ? state_.cwd : "/";
  so.fds = {{0, stdin_r_.Get()},
            {1, out_w_.Get()},
            {2, err_w_.Get()},
            {kControlFd, ctl->first.Get()},
            {StatusFdFor(cfg_.shell.kind), status_w_.Get()}};
  auto pid = Spawn(so);
  if (!pid) {
    return Fail(ErrorCode::kInternal, "cannot start shell: " + pid.error().message);
  }
  shell_pid_ = *pid;
  std::weak_ptr<Session> weak = weak_from_this();
  const pid_t p = *pid;
  reaper_.Watch(p, [weak, p](int status) {
    if (auto self = weak.lock()) {
      self->OnShellExit(p, status);
    }
  });
  control_ = std::make_unique<asio::posix::stream_descriptor>(io_, ctl->second.Release());
  control_queue_.clear();
  control_writing_ = false;
  parser_ = StatusParser(cfg_.shell.kind);
  WriteControl(BootstrapScript(state_));
  Log(LogLevel::kDebug, "session.shell_started", "session={} pid={} shell={}", id_, p,
      cfg_.shell.path);
  return {};
}

void Session::ReadLoop(asio::posix::stream_descriptor& d, int which) {
  // Wait for readability and read ourselves, rather than async_read_some: asio's speculative
  // reads would hold bytes in a queued completion where the state record's handler cannot see
  // them, and a command's last output would land after its completion.
  auto self = shared_from_this();
  d.async_wait(asio::posix::descriptor_base::wait_read,
               [self, &d, which](const boost::system::error_code& ec) {
                 if (ec || !d.is_open()) {
                   return;  // closed on shutdown
                 }
                 if (which == kStatus) {
                   self->DrainStatus();
                 } else {
                   self->DrainOne(d, which);
                 }
                 if (d.is_open()) {
                   self->ReadLoop(d, which);
                 }
               });
}

void Session::DrainOne(asio::posix::stream_descriptor& d, int which) {
  for (;;) {
    ssize_t n = ::read(d.native_handle(), bufs_[which], sizeof(bufs_[which]));
    if (n <= 0) {
      return;
    }
    OnOutput(which, std::string_view(bufs_[which], static_cast<size_t>(n)));
  }
}

void Session::DrainStatus() {
  for (;;) {
    ssize_t n =
        status_r_ ? ::read(status_r_->native_handle(), bufs_[kStatus], sizeof(bufs_[kStatus])) : -1;
    if (n <= 0) {
      return;
    }
    OnStatusBytes(std::string_view(bufs_[kStatus], static_cast<size_t>(n)));
  }
}

void Session::FireWatchers() {
  std::vector<std::function<void()>> w;
  w.swap(watchers_);
  for (auto& f : w) {
    f();
  }
}

void Session::OnOutput(int which, std::string_view bytes) {
  console_.Append(bytes);
  FireWatchers();
  if (current_ && current_->running && current_->separate) {
    (which == kErr ? current_->err : current_->out)->Append(bytes);
  }
}

void Session::OnStatusBytes(std::string_view bytes) {
  parser_.Feed(bytes);
  while (auto rec = parser_.Take()) {
    if (!*rec) {
      Log(LogLevel::kWarn, "session.bad_state_record", "session={} error=\"{}\"", id_,
          rec->error().message);
      if (current_ && current_->running) {
        DrainAll();
        Complete(-1);  // the command ended; its status was unreadable
      }
      continue;
    }
    if (!(*rec)->partial_error.empty()) {
      Log(LogLevel::kWarn, "session.state_unparsed", "session={} error=\"{}\"", id_,
          (*rec)->partial_error);
      state_.cwd = (*rec)->state.cwd;
      state_.last_exit_code = (*rec)->exit_code;
    } else {
      const ShellKind kind = state_.shell;
      state_ = std::move((*rec)->state);
      state_.shell = kind;
    }
    if ((*rec)->exiting) {
      // The shell is on its way out (`exit`, `exec`, errexit): forget it now so the next
      // command starts a fresh shell instead of writing into a dying one.
      reaper_.Forget(shell_pid_);
      CloseShell();
    }
    if (current_ && current_->running) {
      DrainAll();
      Complete((*rec)->exit_code);
    }
  }
}

void Session::DrainAll() {
  // Everything a finished command wrote precedes its state record, and reads only ever happen
  // here or in ReadLoop's handler (never held by asio), so reading each pipe to EAGAIN now
  // collects all of the command's output, in order.
  for (auto [d, which] : {std::pair{out_r_.get(), int{kOut}}, std::pair{err_r_.get(), int{kErr}},
                          std::pair{pty_r_.get(), int{kPtyOut}}}) {
    if (d && d->is_open()) {
      DrainOne(*d, which);
    }
  }
}

void Session::OnShellExit(pid_t pid, int status) {
  if (pid != shell_pid_) {
    return;
  }
  // A state record written by the EXIT trap (`exit N`) may still be in the pipe.
  DrainStatus();
  DrainAll();
  if (current_ && current_->running) {
    int rc = ShellExitCode(status);
    if (timeout_fired_) {
      current_->timed_out = true;
      rc = 124;
    } else if (kill_requested_) {
      current_->killed = true;
    }
    Complete(rc);
  }
  Log(LogLevel::kDebug, "session.shell_exited", "session={} pid={} code={}", id_, pid,
      ShellExitCode(status));
  CloseShell();
}

void Session::CloseShell() {
  shell_pid_ = -1;
  control_.reset();
  control_queue_.clear();
  control_writing_ = false;
  parser_ = StatusParser(cfg_.shell.kind);
}

void Session::Complete(int exit_code) {
  Command& c = *current_;
  c.running = false;
  c.exit_code = exit_code;
  c.console_end = console_.end_offset();
  history_.push_back({c.ps1, c.command, c.console_start, c.console_end});
  while (history_.size() > cfg_.history_cap) {
    history_.pop_front();
  }
  if (timeout_timer_) {
    timeout_timer_->cancel();
    timeout_timer_.reset();
  }
  kill_requested_ = false;
  timeout_fired_ = false;
  ++completions_;
  FireWatchers();
  std::map<uint64_t, Waiter> waiters;
  waiters.swap(waiters_);
  for (auto& [id, w] : waiters) {
    w.timer->cancel();
    w.done(true);
  }
}

void Session::WriteControl(std::string text) {
  control_queue_.push_back(std::move(text));
  PumpControl();
}

void Session::PumpControl() {
  if (control_writing_ || control_queue_.empty() || !control_) {
    return;
  }
  control_writing_ = true;
  auto self = shared_from_this();
  asio::async_write(*control_, asio::buffer(control_queue_.front()),
                    [self, ctl = control_.get()](const boost::system::error_code& ec, size_t) {
                      if (self->control_.get() != ctl) {
                        return;  // shell replaced meanwhile
                      }
                      self->control_writing_ = false;
                      if (ec) {
                        self->control_queue_.clear();  // shell gone; its exit is handled
                        return;
                      }
                      self->control_queue_.pop_front();
                      self->PumpControl();
                    });
}

std::string Session::Ps1() const {
  std::string cwd = state_.cwd;
  auto home = state_.env.find("HOME");
  if (home != state_.env.end() && !home->second.empty() && home->second != "/" &&
      cwd.starts_with(home->second) &&
      (cwd.size() == home->second.size() || cwd[home->second.size()] == '/')) {
    cwd = "~" + cwd.substr(home->second.size());
  }
  return cfg_.user + "@" + cfg_.hostname + ":" + cwd + " $";
}

Result<void> Session::Warm() {
  if (auto r = EnsurePipes(); !r) {
    return r;
  }
  return EnsureShell();
}

Result<void> Session::Start(const ExecOptions& opts) {
  if (running()) {
    return Fail(ErrorCode::kConflict, "session '" + id_ +
                                          "' is still running a command; wait for it, write to "
                                          "it or kill it first");
  }
  if (opts.command.find('\0') != std::string::npos) {
    return Fail(FieldError("command", "must not contain NUL bytes"));
  }
  std::string exec_dir;
  if (opts.exec_dir && !opts.exec_dir->empty()) {
    exec_dir = *opts.exec_dir;
    if (exec_dir.find('\0') != std::string::npos || !IsDirectory(exec_dir)) {
      return Fail(ErrorCode::kInvalidArgument, "exec_dir '" + exec_dir + "' is not a directory");
    }
  }
  if (auto r = EnsurePipes(); !r) {
    return r;
  }
  if (opts.stdio == Stdio::kPty) {
    if (auto r = EnsurePty(); !r) {
      return r;
    }
  }
  if (auto r = EnsureShell(); !r) {
    return r;
  }
  // Input the previous command left unread must not leak into this one.
  int avail = 0;
  if (ioctl(stdin_r_.Get(), FIONREAD, &avail) == 0 && avail > 0) {
    std::string junk(static_cast<size_t>(avail), '\0');
    ssize_t ignored = ::read(stdin_r_.Get(), junk.data(), junk.size());
    (void)ignored;
  }
  DrainAll();  // output of earlier background jobs belongs before this command

  Command c;
  c.command = opts.command;
  c.ps1 = Ps1();
  c.console_start = console_.end_offset();
  c.separate = opts.separate_streams;
  c.pty = opts.stdio == Stdio::kPty;
  if (c.separate) {
    c.out = std::make_unique<RingBuffer>(cfg_.output_cap);
    c.err = std::make_unique<RingBuffer>(cfg_.output_cap);
  }
  current_ = std::move(c);
  kill_requested_ = false;
  timeout_fired_ = false;
  WriteControl(CommandLine(cfg_.shell.kind, opts.command, state_.last_exit_code, opts.stdio,
                           pty_path_.value_or(""), exec_dir));
  if (opts.timeout_s && *opts.timeout_s > 0) {
    timeout_timer_ = std::make_unique<asio::steady_timer>(io_);
    timeout_timer_->expires_after(
        std::chrono::microseconds(static_cast<int64_t>(*opts.timeout_s * 1e6)));
    std::weak_ptr<Session> weak = weak_from_this();
    timeout_timer_->async_wait([weak](const boost::system::error_code& ec) {
      auto self = weak.lock();
      if (ec || !self || !self->running() || self->shell_pid_ <= 0) {
        return;
      }
      self->timeout_fired_ = true;
      ::kill(-self->shell_pid_, SIGKILL);
    });
  }
  return {};
}

void Session::WaitFor(std::chrono::milliseconds wait, std::function<void(bool)> done) {
  if (!running()) {
    asio::post(io_, [done = std::move(done)] { done(true); });
    return;
  }
  const uint64_t id = next_waiter_id_++;
  Waiter& w = waiters_[id];
  w.timer = std::make_unique<asio::steady_timer>(io_);
  w.done = std::move(done);
  w.timer->expires_after(wait);
  std::weak_ptr<Session> weak = weak_from_this();
  w.timer->async_wait([weak, id](const boost::system::error_code& ec) {
    auto self = weak.lock();
    if (ec || !self) {
      return;
    }
    auto it = self->waiters_.find(id);
    if (it == self->waiters_.end()) {
      return;
    }
    auto cb = std::move(it->second.done);
    self->waiters_.erase(it);
    cb(false);
  });
}

std::optional<CommandView> Session::Current() const {
  if (!current_) {
    return std::nullopt;
  }
  const Command& c = *current_;
  CommandView v;
  v.command = c.command;
  v.running = c.running;
  v.exit_code = c.exit_code;
  v.timed_out = c.timed_out;
  v.killed = c.killed;
  const uint64_t end = c.running ? console_.end_offset() : c.console_end;
  v.output = Slice(console_, c.console_start, end, c.running, &v.output_truncated);
  if (c.separate) {
    bool t1 = false;
    bool t2 = false;
    v.stdout_text = Slice(*c.out, 0, c.out->end_offset(), c.running, &t1);
    v.stderr_text = Slice(*c.err, 0, c.err->end_offset(), c.running, &t2);
    v.output_truncated = v.output_truncated || t1 || t2;
  }
  v.cwd = state_.cwd;
  return v;
}

Result<void> Session::WriteInput(std::string_view input) {
  if (!running()) {
    return Fail(ErrorCode::kInvalidArgument,
                "no command is running in session '" + id_ + "' to receive input");
  }
  const int fd = current_->pty ? pty_master_fd_ : stdin_w_.Get();
  size_t off = 0;
  while (off < input.size()) {
    ssize_t n = ::write(fd, input.data() + off, input.size() - off);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      if (errno == EAGAIN) {
        return Fail(ErrorCode::kConflict,
                    "input not fully accepted (" + std::to_string(off) +
                        " bytes written): the command is not reading its input");
      }
      return Fail(ErrnoError(errno, "write to command input"));
    }
    off += static_cast<size_t>(n);
  }
  return {};
}

bool Session::Kill() {
  if (!running() || shell_pid_ <= 0) {
    return false;
  }
  kill_requested_ = true;
  ::kill(-shell_pid_, SIGKILL);
  return true;
}

std::vector<ConsoleEntry> Session::Console() const {
  std::vector<ConsoleEntry> out;
  for (const auto& h : history_) {
    out.push_back({h.ps1, h.command, Slice(console_, h.start, h.end, false, nullptr)});
  }
  if (current_ && current_->running) {
    out.push_back({current_->ps1, current_->command,
                   Slice(console_, current_->console_start, console_.end_offset(), true, nullptr)});
  }
  return out;
}

void Session::Shutdown() {
  shut_down_ = true;
  FireWatchers();  // streams see the session end
  if (shell_pid_ > 0) {
    reaper_.Forget(shell_pid_);
    ::kill(-shell_pid_, SIGKILL);
    shell_pid_ = -1;
  }
  for (auto& [id, w] : waiters_) {
    w.timer->cancel();
  }
  waiters_.clear();
  if (timeout_timer_) {
    timeout_timer_->cancel();
  }
  boost::system::error_code ignored;
  for (auto* d : {out_r_.get(), err_r_.get(), status_r_.get(), pty_r_.get(), control_.get()}) {
    if (d && d->is_open()) {
      d->close(ignored);
    }
  }
}

}  // namespace agentbox::guest
