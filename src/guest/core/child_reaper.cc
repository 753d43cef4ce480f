#include "guest/core/child_reaper.h"

#include <sys/prctl.h>
#include <sys/wait.h>

#include <csignal>

namespace agentbox::guest {

ChildReaper::ChildReaper(boost::asio::io_context& io) : signals_(io, SIGCHLD) {
  // Orphaned grandchildren (a background job whose shell was restarted) are re-parented to us
  // and reaped here instead of lingering as zombies.
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  Arm();
}

void ChildReaper::Arm() {
  signals_.async_wait([this](const boost::system::error_code& ec, int) {
    if (ec) {
      return;
    }
    ReapNow();
    Arm();
  });
}

void ChildReaper::Watch(pid_t pid, ExitCallback cb) { watchers_[pid] = std::move(cb); }

void ChildReaper::Forget(pid_t pid) { watchers_.erase(pid); }

void ChildReaper::ReapNow() {
  for (;;) {
    int status = 0;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid <= 0) {
      return;
    }
    auto it = watchers_.find(pid);
    if (it == watchers_.end()) {
      continue;  // an orphan we adopted
    }
    ExitCallback cb = std::move(it->second);
    watchers_.erase(it);
    cb(status);
  }
}

int ShellExitCode(int wait_status) {
  if (WIFEXITED(wait_status)) {
    return WEXITSTATUS(wait_status);
  }
  if (WIFSIGNALED(wait_status)) {
    return 128 + WTERMSIG(wait_status);
  }
  return 255;
}

}  // namespace agentbox::guest
