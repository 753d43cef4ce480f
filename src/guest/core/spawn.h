#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/error.h"
#include "common/unique_fd.h"

namespace agentbox::guest {

struct SpawnOptions {
  std::string path;               // absolute path of the executable
  std::vector<std::string> argv;  // argv[0] included
  std::vector<std::string> env;   // "NAME=value"
  std::string cwd;                // empty: inherit
  // {child_fd, parent_fd}: the child gets a copy of parent_fd at child_fd. Every other
  // descriptor of the parent is close-on-exec and does not leak into the child.
  std::vector<std::pair<int, int>> fds;
  bool new_session = true;  // setsid(): own session and process group (pgid == pid)
  // When set, the child switches to this user and group (supplementary groups: just `gid`)
  // before execve. Needs CAP_SETUID/CAP_SETGID and the ids mapped in the user namespace.
  std::optional<std::pair<uid_t, gid_t>> credentials;
  // Makes the child's stdin (a terminal) its controlling terminal (TIOCSCTTY; needs
  // new_session). The child is then forked, as with credentials.
  bool controlling_tty = false;
};

// Starts a child with posix_spawn (vfork-fast, safe in a multi-threaded process): signal mask
// cleared and every signal disposition reset to default. Returns the child's pid. With
// `credentials` or `controlling_tty` it forks instead (posix_spawn cannot change users); the child then makes only
// async-signal-safe calls until execve, and a failure before execve is returned here.
Result<pid_t> Spawn(const SpawnOptions& opts);

// Creates a pipe with both ends close-on-exec; `nonblocking_read` sets O_NONBLOCK on the read
// end only.
Result<std::pair<UniqueFd, UniqueFd>> MakePipe(bool nonblocking_read);

// Opens a pseudo-terminal: master (non-blocking, close-on-exec), an open slave kept by the
// caller so the master never reads EIO between commands, and the slave's path.
struct Pty {
  UniqueFd master;
  UniqueFd slave;
  std::string slave_path;
};
Result<Pty> OpenPty(unsigned short rows, unsigned short cols);

// Environment of this process as "NAME=value" strings.
std::vector<std::string> CurrentEnvironment();

}  // namespace agentbox::guest
