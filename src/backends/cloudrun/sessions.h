#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "backends/cloudrun/cloud.h"
#include "backends/cloudrun/cloudrun_options.h"
#include "backends/cloudrun/layout.h"

namespace agentbox::cloudrun {

// The command a session is running: recorded in head.json before its execution starts, so
// that a second exec (from this daemon or another replica) sees the session busy.
struct RunningCommand {
  std::string run;
  std::string command;
  std::string kind;       // "exec" (shell/exec) or "run" (shell/run)
  std::string execution;  // empty until the execution was created
  double started_at = 0;  // unix seconds
  double timeout_s = 0;   // the command's timeout
};

// How the last command ended.
struct LastCommand {
  std::string run;
  std::string command;
  std::string kind;
  std::optional<int> exit_code;
  bool timed_out = false;
  bool killed = false;
  std::string result_object;   // its run-once result (output); empty when none was written
  std::string error;           // the execution failed around the command, or the request: why
  bool request_error = false;  // `error` is the request's fault (400), not the service's
};

// sandboxes/<id>/sessions/<sid>/head.json: the one object two writers race on. Every change is
// written with ifGenerationMatch of the generation read, so a lost race is seen, never silent.
struct Head {
  std::string session_id;
  std::string state_object;  // the result whose `state` the next command starts from
  std::string cwd = "/workspace";
  std::optional<RunningCommand> running;
  std::optional<LastCommand> last;
  int64_t generation = 0;  // of the object read; 0: the session does not exist yet
};
Json HeadToJson(const Head& h);
Result<Head> HeadFromJson(const Json& j);

struct SandboxRef {
  std::string id;
  std::string job_id;
  std::string job_guest;  // layout::GuestDir of the guest the job was created with
  std::string guest;      // the daemon's current guest (executions run it); empty: the job's
  std::optional<uint64_t> disk_bytes;  // limits.disk_bytes (or the default): bounds file writes
};

// What a command's caller gets back once it completed.
struct Outcome {
  LastCommand last;
  std::string cwd;
  Json result;  // the run-once result (output, stdout, stderr, ...) or null
};

// Runs commands as executions and keeps sessions in the bucket (see layout.h). One monitor
// thread per running command polls its execution, then promotes the result into head.json; a
// command started by another replica gets a monitor here when someone waits for it, and the
// generation precondition lets exactly one of them promote. Thread-safe.
class SessionEngine {
 public:
  SessionEngine(const CloudRunOptions& opts, Cloud cloud, boost::asio::io_context& io);
  ~SessionEngine();  // stops polling (executions keep running; any replica can finish them)

  struct StartRequest {
    std::string command;
    std::string kind = "exec";
    std::string exec_dir;
    std::optional<double> timeout_s;
  };
  // Records the command in head.json and starts its execution. kConflict when the session is
  // running one already (here or on another replica).
  struct Started {
    std::string run;
    std::string cwd;  // the session's working directory before the command
  };
  Result<Started> Start(const SandboxRef& sb, const std::string& sid, const StartRequest& req);

  // Calls `done(outcome)` on the io thread (it must not block) once run `run` of the session
  // completed, or `done(nullopt)` after `wait`. Follows runs started elsewhere.
  void Wait(const SandboxRef& sb, const std::string& sid, const std::string& run,
            std::chrono::milliseconds wait, std::function<void(std::optional<Outcome>)> done);

  Result<Head> ReadHead(const std::string& id, const std::string& sid);
  // The run-once result object (null when `object` is empty).
  Result<Json> ReadResult(const std::string& object);
  // Cancels the running execution. Returns false when nothing was running.
  Result<bool> Kill(const SandboxRef& sb, const std::string& sid);
  // The session ids of a sandbox.
  Result<std::vector<std::string>> List(const std::string& id);
  // Deletes a session (cancelling its command). kNotFound when it does not exist.
  Result<void> Delete(const SandboxRef& sb, const std::string& sid);
  // A session from a snapshot (shell/restore). kConflict when the id exists.
  Result<Head> Restore(const std::string& id, const std::string& sid, const Json& state);
  // Cancels every running execution of the sandbox (destroy). Best effort.
  void CancelAll(const SandboxRef& sb);

 private:
  struct Completion;
  std::shared_ptr<Completion> CompletionFor(const SandboxRef& sb, const std::string& sid,
                                            const RunningCommand& running, bool start_monitor);
  void Monitor(SandboxRef sb, std::string sid, RunningCommand running,
               std::shared_ptr<Completion> c);
  // `st`: the execution's last status as read (no second read).
  Outcome Examine(const SandboxRef& sb, const std::string& sid, const RunningCommand& running,
                  const std::string& execution, bool never_started, const std::string& why,
                  const ExecutionStatus& st);
  // Writes the outcome into head.json unless another writer did; returns what head says now.
  // `replaced`: the snapshot object this promotion superseded (empty if none).
  // `cached`: head as this engine last wrote it (tried first, saving a read; a stale one fails
  // its precondition and head is read again).
  Outcome Promote(const SandboxRef& sb, const std::string& sid, const RunningCommand& running,
                  Outcome out, std::string* replaced, std::optional<Head> cached);
  Result<gcp::ObjectMeta> WriteHead(const std::string& id, const Head& h);
  bool Stale(const RunningCommand& r) const;
  bool Sleep(std::chrono::milliseconds d);  // false when stopping

  CloudRunOptions opts_;
  Cloud cloud_;
  boost::asio::io_context& io_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::map<std::string, std::shared_ptr<Completion>> completions_;  // key: id/sid/run
  int active_monitors_ = 0;  // guarded by mu_; the destructor waits for 0
};

}  // namespace agentbox::cloudrun
