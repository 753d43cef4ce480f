#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/unique_fd.h"

namespace agentbox::jail {

using Clock = std::chrono::steady_clock;

// A process as recorded in a sandbox's state: its pid plus its start time (clock ticks after
// boot, /proc/PID/stat field 22) and the boot id, so a recycled pid is never taken for it.
struct ProcessIdentity {
  pid_t pid = 0;
  uint64_t start_time = 0;
  std::string boot_id;

  friend bool operator==(const ProcessIdentity&, const ProcessIdentity&) = default;
};

// The identity of the process `pid` now. kNotFound if there is none.
Result<ProcessIdentity> IdentifyProcess(pid_t pid);

enum class ProcessStatus {
  kRunning,  // the recorded process exists and has not exited
  kZombie,   // the recorded process exited and waits to be reaped by its parent
  kGone,     // no such process any more (or its pid now names another process)
};
ProcessStatus GetProcessStatus(const ProcessIdentity& id);

// A pidfd for a recorded process, verified against its identity: signals sent through it
// can never reach a process that reused the pid.
class ProcessHandle {
 public:
  // kNotFound if the recorded process is gone (exited and reaped, or the pid was reused).
  static Result<ProcessHandle> Open(const ProcessIdentity& id);

  pid_t pid() const { return pid_; }
  Result<void> Signal(int sig) const;
  // Waits until the process has exited (it may still be a zombie). False on timeout.
  bool WaitExit(Clock::time_point deadline) const;
  // Reaps the process if it is a child of this process and has exited; no-op otherwise.
  void ReapIfChild() const;

 private:
  ProcessHandle(pid_t pid, UniqueFd fd) : pid_(pid), fd_(std::move(fd)) {}
  pid_t pid_;
  UniqueFd fd_;
};

// The boot id of the running kernel (/proc/sys/kernel/random/boot_id).
const std::string& BootId();

// A child process started with posix_spawn (safe in a multi-threaded process). Owns it: if it
// was neither waited for nor detached, the destructor kills (SIGKILL) and reaps it.
class ChildProcess {
 public:
  struct Options {
    std::string path;               // absolute path of the executable
    std::vector<std::string> argv;  // argv[0] included
    std::vector<std::string> env;   // "NAME=value"; empty: no environment at all
    int stdout_fd = -1;             // -1: /dev/null
    int stderr_fd = -1;             // -1: /dev/null
    bool new_session = false;       // setsid(): no terminal signals from the caller's session
  };
  // stdin is /dev/null; no other descriptor of the caller is inherited.
  static Result<ChildProcess> Spawn(const Options& opts);

  ChildProcess(ChildProcess&& other) noexcept : pid_(std::exchange(other.pid_, -1)) {}
  ChildProcess& operator=(ChildProcess&&) = delete;
  ~ChildProcess();

  pid_t pid() const { return pid_; }
  // Waits for the child to exit and reaps it; returns its wait status. kTimeout at the
  // deadline (the child is left running and owned).
  Result<int> Wait(Clock::time_point deadline);
  // Gives up ownership: the child runs on and the destructor leaves it alone.
  pid_t Detach() { return std::exchange(pid_, -1); }

 private:
  explicit ChildProcess(pid_t pid) : pid_(pid) {}
  pid_t pid_ = -1;
};

// Milliseconds left until `deadline`, for poll(2): 0 when passed, capped at one minute.
int PollTimeoutMs(Clock::time_point deadline);

}  // namespace agentbox::jail
