#pragma once

// Child processes for the tests that run agentboxd (or the GCP emulator) as a separate process:
// started with its stderr appended to a log, polled until it answers, stopped and reaped.
// Header-only: those tests link libcurl, not the fakes library.

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <thread>
#include <vector>

namespace agentbox::test_support {

// Starts `args` (args[0] is the binary's path) with its stderr appended to `log` and, when
// `stdout_fd` is given, its stdout on that descriptor. Returns the child's pid (-1 when fork
// failed); a child that cannot exec exits 127.
inline pid_t Spawn(const std::vector<std::string>& args, const std::string& log,
                   int stdout_fd = -1) {
  std::vector<std::string> copy = args;
  std::vector<char*> argv;
  for (auto& a : copy) {
    argv.push_back(a.data());
  }
  argv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    if (stdout_fd >= 0) {
      dup2(stdout_fd, STDOUT_FILENO);
    }
    FILE* f = freopen(log.c_str(), "a", stderr);
    (void)f;
    execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

// SIGTERM to `pid` (when it is one), waits for it to exit and sets it to -1.
inline void Stop(pid_t& pid) {
  if (pid > 0) {
    kill(pid, SIGTERM);
    waitpid(pid, nullptr, 0);
    pid = -1;
  }
}

// Calls `ready` every 20 ms until it returns true (then true) or `within` has passed (false).
inline bool PollUntil(std::chrono::milliseconds within, const std::function<bool()>& ready) {
  const auto deadline = std::chrono::steady_clock::now() + within;
  while (std::chrono::steady_clock::now() < deadline) {
    if (ready()) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

}  // namespace agentbox::test_support
