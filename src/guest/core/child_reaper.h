#pragma once

#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <functional>
#include <unordered_map>

namespace agentbox::guest {

// Reaps every child of the process (and, as a subreaper or PID 1, every orphaned descendant)
// on the io_context's thread, and tells the watcher of a pid how it ended. Children must be
// watched on the io thread right after they are spawned (before the loop runs again), so no
// exit can be missed. Not thread-safe: use from the io thread only.
class ChildReaper {
 public:
  using ExitCallback = std::function<void(int wait_status)>;

  explicit ChildReaper(boost::asio::io_context& io);
  void Watch(pid_t pid, ExitCallback cb);
  void Forget(pid_t pid);
  // Reaps whatever has exited now (also called on each SIGCHLD).
  void ReapNow();

 private:
  void Arm();
  boost::asio::signal_set signals_;
  std::unordered_map<pid_t, ExitCallback> watchers_;
};

// Exit code in shell convention: the code for a normal exit, 128 + signal for a kill.
int ShellExitCode(int wait_status);

}  // namespace agentbox::guest
