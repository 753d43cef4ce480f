#pragma once

#include <sys/types.h>

#include <string>
#include <utility>
#include <vector>

#include "backends/jail/cgroup.h"
#include "backends/jail/jail_config.h"
#include "common/error.h"
#include "common/unique_fd.h"

namespace agentbox::jail {

// A jail whose first process has called execve. Owns that process: destroying a RunningJail
// that was not waited for kills it (SIGKILL ends the whole pid namespace), reaps it and removes
// its cgroups.
class RunningJail {
 public:
  RunningJail(pid_t pid, SandboxCgroup cgroup, UniqueFd output)
      : pid_(pid), cgroup_(std::move(cgroup)), output_(std::move(output)) {}
  RunningJail(RunningJail&& other) noexcept;
  RunningJail& operator=(RunningJail&&) = delete;
  RunningJail(const RunningJail&) = delete;
  RunningJail& operator=(const RunningJail&) = delete;
  ~RunningJail();

  // Host pid of the jail's init (pid 1 inside).
  pid_t pid() const { return pid_; }
  const std::vector<std::string>& cgroup_paths() const { return cgroup_.paths(); }

  // Blocks until the init exits (every other process of the jail is gone by then), reaps it and
  // removes the cgroups. Meanwhile copies the jail's stdout and stderr (one pipe) to `log_fd`,
  // at most `log_cap_bytes` of it: the log lives on the host's disk and the sandbox must not be
  // able to fill that (the rest is dropped, and counted in one last line). Returns the init's
  // wait status. Call once.
  int Wait(int log_fd, uint64_t log_cap_bytes);

 private:
  friend Result<RunningJail> Contain(const JailConfig& cfg);

  pid_t pid_ = -1;
  SandboxCgroup cgroup_;
  UniqueFd output_;  // read end of the jail's stdout/stderr pipe
};

// Builds the jail described by `cfg` and starts its first process. On success the process has
// exec'd cfg.exec.path; on failure nothing of the jail is left and the error names the step.
//
// Must run in a single-threaded process (the agentbox-jail helper): the child half runs between
// clone and execve with a copy of the whole address space, and uses ordinary library calls.
Result<RunningJail> Contain(const JailConfig& cfg);

// What Probe() needs to know about this kernel and process, for the helper's `probe` command.
struct ContainProbe {
  bool usable = false;
  std::string reason;  // one sentence when not usable
  std::vector<std::string> limitations;
};
ContainProbe ProbeContain();

}  // namespace agentbox::jail
