#pragma once

#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/unique_fd.h"
#include "guest/core/child_reaper.h"
#include "http/queue_source.h"

namespace agentbox::guest {

// One program to run as it is given (no session state, no shell prologue): the process model
// of E2B's envd, which the daemon's E2B layer (daemon/e2b/) relays.
struct ExecSpec {
  std::string cmd;                            // program; looked up in PATH when not absolute
  std::vector<std::string> args;              // argv[1..]
  std::map<std::string, std::string> envs;    // added to the guest's environment
  std::optional<std::string> cwd;             // default: the user's home, else "/"
  std::string user;                           // account in /etc/passwd; empty: the guest's own
  // When `user` has no account (an image whose /etc is read-only, such as the jail's host
  // root): run as the guest's own identity with HOME=/home/USER and USER/LOGNAME set, instead of
  // failing with kNotFound.
  bool user_fallback = false;
  bool stdin = false;                         // a pipe the caller writes (else /dev/null)
  std::optional<std::string> tag;
  // A pseudo-terminal of this size as stdin, stdout, stderr and controlling terminal (E2B's
  // `pty`): output comes as "pty" events, input is written to the terminal.
  struct PtySize {
    unsigned short rows = 24;
    unsigned short cols = 80;
  };
  std::optional<PtySize> pty;
};

struct ExecInfo {
  pid_t pid = 0;
  ExecSpec spec;
};

struct UserAccount {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
  std::string home;
  std::string shell;
};

// Finds `name` in a passwd(5) file (parsed here: a static guest has no NSS). kNotFound if absent.
Result<UserAccount> LookUpUser(const std::string& name, const std::string& passwd = "/etc/passwd");

// Whether `uid` is mapped in `uid_map` (a /proc/PID/uid_map text): a user namespace that maps
// only root cannot switch to another user.
bool UidMapped(uid_t uid, const std::string& uid_map);

// Processes started by exec/start. Each one's stdout and stderr are read separately and sent,
// base64-encoded, as NDJSON event lines to every stream attached to it:
//   {"event":"start","pid":N}  {"event":"stdout"|"stderr","data":"<base64>"}
//   {"event":"keepalive"}      {"event":"end","exit_code":N,"exited":B,"status":"..."}
// With a pty, output is {"event":"pty","data":"<base64>"} instead of stdout/stderr.
// A stream attached later sees output from then on. A process is forgotten when it ends.
// Threading: io thread only (the event streams may be pulled from any thread).
class ExecManager {
 public:
  ExecManager(boost::asio::io_context& io, ChildReaper& reaper, std::vector<std::string> base_env);
  ~ExecManager();

  // Starts `spec`; `events` gets its start event and everything after. kInvalidArgument for a
  // missing cwd, kNotFound for an unknown user.
  Result<pid_t> Start(const ExecSpec& spec, std::shared_ptr<http::QueueSource> events);
  // The pid of a running process chosen by pid or by tag; kNotFound otherwise.
  Result<pid_t> Resolve(std::optional<pid_t> pid, const std::optional<std::string>& tag) const;
  // Attaches `events` to a running process (a start event first).
  Result<void> Attach(pid_t pid, std::shared_ptr<http::QueueSource> events);
  std::vector<ExecInfo> List() const;
  // kConflict when the process was started without stdin (or a pty) or its pipe is full.
  Result<void> WriteStdin(pid_t pid, std::string_view bytes);
  // Sets the size of a process's pty (TIOCSWINSZ; the process gets SIGWINCH). kConflict when
  // it has none.
  Result<void> Resize(pid_t pid, unsigned short rows, unsigned short cols);
  Result<void> CloseStdin(pid_t pid);
  // Signals the process's group (it leads its own session).
  Result<void> Signal(pid_t pid, int sig);
  void KillAll();

 private:
  struct Proc;
  void ReadLoop(const std::shared_ptr<Proc>& p, bool err);
  void Drain(Proc& p, bool err);
  void Emit(Proc& p, const std::string& line, bool last = false);
  void Ended(const std::shared_ptr<Proc>& p, int status);
  void ArmKeepalive();

  boost::asio::io_context& io_;
  ChildReaper& reaper_;
  std::vector<std::string> base_env_;
  std::map<pid_t, std::shared_ptr<Proc>> procs_;
  boost::asio::steady_timer keepalive_;
};

}  // namespace agentbox::guest
