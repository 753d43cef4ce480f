#pragma once

#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "api/session_state.h"
#include "common/error.h"
#include "common/ring_buffer.h"
#include "common/unique_fd.h"
#include "guest/core/child_reaper.h"
#include "guest/sessions/shell_script.h"

namespace agentbox::guest {

// Which shell runs sessions on this root filesystem, found once at start-up.
struct ShellInfo {
  ShellKind kind = ShellKind::kBash;
  std::string path;  // absolute
};
// argv up to (not including) the script: {path, --noprofile, --norc} for bash, {path, "sh"} for
// a busybox binary, {path} for other shells.
std::vector<std::string> ShellArgvPrefix(const ShellInfo& shell);

// Looks for bash in the usual places (or `preferred` when given), else POSIX sh.
Result<ShellInfo> DetectShell(const std::string& preferred = {});

struct SessionConfig {
  ShellInfo shell;
  size_t output_cap = 1 << 20;  // bytes of console output kept per session
  size_t history_cap = 200;     // console entries kept per session
  std::string user = "root";
  std::string hostname = "sandbox";
};

struct ExecOptions {
  std::string command;
  std::optional<std::string> exec_dir;  // cwd for this command only
  std::optional<double> timeout_s;      // kill the process group after this long
  Stdio stdio = Stdio::kSession;
  bool separate_streams = false;  // keep this command's stdout and stderr apart (shell/run)
};

// What is known about the session's current or most recent command.
struct CommandView {
  std::string command;
  bool running = false;
  std::optional<int> exit_code;
  bool timed_out = false;
  bool killed = false;
  std::string output;  // combined stdout+stderr (console order), UTF-8 complete
  bool output_truncated = false;
  std::string stdout_text;  // only with separate_streams
  std::string stderr_text;
  std::string cwd;
};

struct ConsoleEntry {
  std::string ps1;
  std::string command;
  std::string output;
};

// One named shell session: a long-lived shell process whose state is captured as data after
// every command (see shell_script.h). The shell is respawned from the last captured state when
// it dies (`exit`, timeout, kill), so the session stays usable and keeps its state.
// Threading: every method must be called on the io_context's thread.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(boost::asio::io_context& io, ChildReaper& reaper, std::string id, SessionState initial,
          const SessionConfig& cfg);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  const std::string& id() const { return id_; }
  // Gives a pre-warmed spare session its real name when it is handed out.
  void Rename(std::string id) { id_ = std::move(id); }
  // Starts the shell now instead of at the first command (pre-warming).
  Result<void> Warm();

  // Starts a command. kConflict if one is running; kInvalidArgument for NUL bytes or a missing
  // exec_dir; kInternal if the shell cannot be started.
  Result<void> Start(const ExecOptions& opts);
  // Calls `done(completed)` once the current command completes, or with false after `wait`.
  // Called immediately (posted) when no command runs.
  void WaitFor(std::chrono::milliseconds wait, std::function<void(bool completed)> done);
  bool running() const { return current_ && current_->running; }
  // Current or last command; nullopt before the first command.
  std::optional<CommandView> Current() const;
  // Feeds the running command's stdin (or terminal). kInvalidArgument when nothing runs.
  Result<void> WriteInput(std::string_view input);
  // Kills the running command's whole process group. Returns whether it was running.
  bool Kill();
  std::vector<ConsoleEntry> Console() const;
  // Last captured state (after the last completed command).
  const SessionState& state() const { return state_; }
  // Ends the shell and everything in its process group.
  void Shutdown();

  // Live output, for streaming: the console (all commands' output in arrival order) with
  // absolute offsets, a count of finished commands, and one-shot notifications of either.
  RingBuffer::Slice ReadConsole(uint64_t from, size_t max) const { return console_.Read(from, max); }
  uint64_t console_end() const { return console_.end_offset(); }
  // Offset where the current (or last) command's output starts; the console end if none.
  uint64_t command_start() const { return current_ ? current_->console_start : console_.end_offset(); }
  uint64_t completions() const { return completions_; }
  bool shut_down() const { return shut_down_; }
  // Calls `notify` once, on the next output or command completion (io thread).
  void NotifyOnChange(std::function<void()> notify) { watchers_.push_back(std::move(notify)); }

 private:
  struct Command {
    std::string command;
    std::string ps1;
    bool running = true;
    std::optional<int> exit_code;
    bool timed_out = false;
    bool killed = false;
    uint64_t console_start = 0;
    uint64_t console_end = 0;
    bool separate = false;
    std::unique_ptr<RingBuffer> out;
    std::unique_ptr<RingBuffer> err;
    bool pty = false;
  };
  struct Waiter {
    std::unique_ptr<boost::asio::steady_timer> timer;
    std::function<void(bool)> done;
  };

  Result<void> EnsurePipes();
  Result<void> EnsureShell();
  Result<void> EnsurePty();
  void ReadLoop(boost::asio::posix::stream_descriptor& d, int which);
  void DrainOne(boost::asio::posix::stream_descriptor& d, int which);
  void DrainStatus();
  void OnOutput(int which, std::string_view bytes);
  void OnStatusBytes(std::string_view bytes);
  void DrainAll();
  void OnShellExit(pid_t pid, int status);
  void Complete(int exit_code);
  void WriteControl(std::string text);
  void PumpControl();
  std::string Ps1() const;
  void CloseShell();

  boost::asio::io_context& io_;
  ChildReaper& reaper_;
  std::string id_;
  SessionConfig cfg_;
  SessionState state_;

  // Session-lifetime pipes: the guest keeps both ends so new shells can inherit them.
  UniqueFd stdin_r_, stdin_w_, stdin_drain_;
  UniqueFd out_w_, err_w_, status_w_;
  std::unique_ptr<boost::asio::posix::stream_descriptor> out_r_, err_r_, status_r_, pty_r_;
  std::optional<std::string> pty_path_;
  UniqueFd pty_slave_;
  int pty_master_fd_ = -1;
  char bufs_[4][16384];

  // The current shell instance.
  pid_t shell_pid_ = -1;
  std::unique_ptr<boost::asio::posix::stream_descriptor> control_;
  std::deque<std::string> control_queue_;
  bool control_writing_ = false;
  StatusParser parser_;

  RingBuffer console_;
  std::optional<Command> current_;
  struct HistoryEntry {
    std::string ps1;
    std::string command;
    uint64_t start = 0;
    uint64_t end = 0;
  };
  std::deque<HistoryEntry> history_;    // finished commands, as ranges of console_
  std::map<uint64_t, Waiter> waiters_;  // by id, so a late timer finds nothing
  uint64_t next_waiter_id_ = 0;
  std::unique_ptr<boost::asio::steady_timer> timeout_timer_;
  bool kill_requested_ = false;
  bool timeout_fired_ = false;
  uint64_t completions_ = 0;
  bool shut_down_ = false;
  std::vector<std::function<void()>> watchers_;
  void FireWatchers();
};

}  // namespace agentbox::guest
