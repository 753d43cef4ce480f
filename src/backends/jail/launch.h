#pragma once

#include <string>
#include <vector>

#include "backends/jail/process.h"
#include "common/error.h"

namespace agentbox::jail {

// The last `n` bytes of a log file (trailing newlines dropped), for error messages.
std::string LogTail(const std::string& path, size_t n = 600);

// Reads one '\n'-terminated line from `fd` (the helper's report). Empty at EOF; kTimeout at
// the deadline.
Result<std::string> ReadLine(int fd, Clock::time_point deadline);

// Waits until the guest answers GET /api/v1/health on `socket`. Wakes on the socket's creation
// (inotify on `run_dir`), and fails at once if the helper exits (`helper_pipe` hangs up).
Result<void> WaitForGuest(const std::string& socket, const std::string& run_dir,
                          const std::string& token, int helper_pipe, Clock::time_point deadline);

// A jail whose guest answers.
struct LaunchedJail {
  ChildProcess helper;  // still owned: detach it once the sandbox is recorded
  ProcessIdentity helper_id;
  ProcessIdentity init_id;
  std::vector<std::string> cgroups;  // as the helper reported them
  Clock::time_point spawning;        // when the helper was started
  Clock::time_point jailed;          // when it reported the jail
};

// Starts `helper_binary run <dir>/jail.json` in a new session (its stderr appended to
// <dir>/jail.log), reads its report and waits until the guest answers its health check on
// <dir>/run/guest.sock with `token`. On failure the init (when it was reported) and the helper
// are killed; cgroups the helper made may be left for the caller to remove.
Result<LaunchedJail> LaunchJail(const std::string& helper_binary, const std::string& dir,
                                const std::string& token, Clock::time_point deadline);

}  // namespace agentbox::jail
