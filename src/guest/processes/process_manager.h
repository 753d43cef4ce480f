#pragma once

#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "api/session_state.h"
#include "common/error.h"
#include "common/ring_buffer.h"
#include "guest/core/child_reaper.h"
#include "guest/sessions/session.h"

namespace agentbox::guest {

struct ProcessInfo {
  pid_t pid = 0;
  std::string session_id;
  std::string command;
  bool running = true;
  std::optional<int> exit_code;
  double started_at = 0;  // unix seconds
  std::optional<double> ended_at;
};

struct ProcessLogs {
  std::string output;
  uint64_t offset = 0;       // absolute offset of output[0]
  uint64_t next_offset = 0;  // pass back to continue
  bool missed = false;       // bytes before `offset` were dropped by the cap
  bool running = false;
  std::optional<int> exit_code;
};

struct KillRequest {
  std::optional<pid_t> pid;
  std::optional<std::string> session_id;
  std::optional<std::string> pattern;  // ECMAScript regex searched in the command line
  int signal = 9;
};

// Background processes: started detached from any request, in their own session and process
// group, with stdout+stderr kept in a capped log that outlives the process.
// Threading: io thread only.
class ProcessManager {
 public:
  ProcessManager(boost::asio::io_context& io, ChildReaper& reaper, ShellInfo shell, size_t log_cap,
                 size_t max_records);
  ~ProcessManager();

  // Starts `command` in a shell restored from `state` (so session functions, variables and the
  // environment apply), in `cwd` (default: the session's), with `env` added.
  Result<pid_t> Start(const std::string& session_id, const std::string& command,
                      const SessionState& state, const std::optional<std::string>& cwd,
                      const std::vector<std::pair<std::string, std::string>>& env);
  std::vector<ProcessInfo> List(const std::optional<std::string>& session_id) const;
  Result<ProcessLogs> Logs(pid_t pid, uint64_t offset, size_t max_bytes) const;
  // Signals every matching running process group. kNotFound when a pid is unknown;
  // kInvalidArgument for a bad pattern or when no selector is given.
  Result<std::vector<pid_t>> Kill(const KillRequest& req);
  size_t running_count() const;
  void KillAll();

  // The capped log of one process (exposed for the pipe-draining helper).
  using ProcLog = RingBuffer;

 private:
  struct Proc {
    ProcessInfo info;
    RingBuffer log;
    std::unique_ptr<boost::asio::posix::stream_descriptor> pipe;
    char buf[8192];
    explicit Proc(size_t cap) : log(cap) {}
  };
  void ReadLoop(const std::shared_ptr<Proc>& p);
  void Prune();

  boost::asio::io_context& io_;
  ChildReaper& reaper_;
  ShellInfo shell_;
  size_t log_cap_;
  size_t max_records_;
  std::map<pid_t, std::shared_ptr<Proc>> procs_;
};

// Parses a signal given as a number or a name ("TERM", "SIGTERM", "kill"); kValidation otherwise.
Result<int> ParseSignal(const Json& value);

}  // namespace agentbox::guest
