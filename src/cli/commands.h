#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "cli/client.h"

// The `agentbox` subcommands. Each returns the process exit status: 0 on success, kExitError
// (format.h) for the CLI's own failures after printing one line on stderr, and for `exec` and
// `shell` the remote command's status.
namespace agentbox::cli {

struct CreateArgs {
  std::string image;
  std::string backend;
  std::optional<int64_t> ttl_s;
  std::optional<int64_t> memory_mb;
  std::optional<double> cpus;
  std::optional<int64_t> pids;
  std::optional<int64_t> disk_mb;   // limits.disk_bytes, in MiB
  std::vector<std::string> env;     // KEY=VALUE (or KEY, taken from the local environment)
  std::vector<std::string> labels;  // KEY=VALUE
  bool read_only_root = false;      // EROFS outside /workspace, /tmp, /dev/shm, /run/agentbox
  bool json = false;
};

int Create(DaemonClient& client, const CreateArgs& a);
// Makes `image` available on the backend new sandboxes would use (or `backend`), printing the
// engine's progress to stderr.
int Pull(DaemonClient& client, const std::string& image, const std::string& backend);
int List(DaemonClient& client, bool json);
int Remove(DaemonClient& client, const std::vector<std::string>& ids);
int Info(DaemonClient& client);
// Shows the runtime flags (no arguments), or sets KEY=VALUE flags and removes `unset` ones
// (PUT /v1/flags), then prints the flags and where a new sandbox now goes.
int Flags(DaemonClient& client, const std::vector<std::string>& set,
          const std::vector<std::string>& unset);
int ExtendTimeout(DaemonClient& client, const std::string& id, int64_t seconds);

// The rollout of one backend against SANDBOX_BACKEND (rollout_commands.cc).
int RolloutStatus(DaemonClient& client, bool json);
// PUT /v1/flags: AGENTBOX_ROLLOUT_BACKEND=backend, AGENTBOX_ROLLOUT_PERCENTAGE=percentage, the
// kill switch removed. `force` overrides the daemon's refusal after a failed validation.
int RolloutSet(DaemonClient& client, const std::string& backend, int percentage, bool force);
// PUT /v1/flags AGENTBOX_ROLLOUT_KILL_SWITCH=true.
int RolloutStop(DaemonClient& client);
// Runs the agent-facing checks in a sandbox pinned to `backend`, prints a table (or JSON), and
// with `record` stores the verdict with the daemon. Exit 0 when every check passed, 1 otherwise.
int Conformance(DaemonClient& client, const std::string& backend, bool json, bool record);
// POST /v1/sandboxes/{id}/restart-guest: replaces a stuck guest; prints the sandbox's state.
int RestartGuest(DaemonClient& client, const std::string& id);
// POST /v1/sandboxes/{id}/migrate: moves the sandbox to backend `to`; prints what moved and what
// did not (migrate_commands.cc).
int Migrate(DaemonClient& client, const std::string& id, const std::string& to, bool json);
// POST /v1/admin/drain: moves every sandbox off `backend` (to `to`, or where the selector says),
// `concurrency` at a time, printing each result as it comes. Exit 1 when any move failed.
int Drain(DaemonClient& client, const std::string& backend, const std::string& to,
          int concurrency, bool json);

struct ExecArgs {
  std::string id;
  std::string session = "default";
  std::string cwd;
  double timeout_s = 0;  // 0 = no limit
  std::vector<std::string> command;
};

// POST shell/run: stdout and stderr separately, exit status = the command's (124 on timeout).
int Exec(DaemonClient& client, const ExecArgs& a);
// An interactive session on shell/exec + shell/view + shell/wait (+ shell/kill on Ctrl-C).
int Shell(DaemonClient& client, const std::string& id, const std::string& session);

int Upload(DaemonClient& client, const std::string& id, const std::string& local,
           const std::string& remote);
int Download(DaemonClient& client, const std::string& id, const std::string& remote,
             const std::string& local);
// cp SRC DST: one side is ID:PATH. Files go as uploads/downloads; directories (with
// `recursive`) as one tar stream through /api/v1/file/archive. An existing directory as DST
// receives SRC inside it, as with cp -r.
int Copy(DaemonClient& client, const std::string& src, const std::string& dst, bool recursive);

int ProcessList(DaemonClient& client, const std::string& id, const std::string& session, bool json);
int ProcessLogs(DaemonClient& client, const std::string& id, int64_t pid, bool follow);

struct KillArgs {
  std::string id;
  std::optional<int64_t> pid;
  std::string session;
  std::string pattern;
  std::string signal;  // name or number; empty = the guest's default (KILL)
};
int ProcessKill(DaemonClient& client, const KillArgs& a);

}  // namespace agentbox::cli
