#include "daemon/crash_hooks.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <string>

#include "common/crash_point.h"

namespace agentbox::daemon {
namespace {

std::string g_point;  // set once before any thread starts, read-only afterwards
long g_pass = 1;
std::atomic<long> g_seen{0};

void CrashAt(std::string_view point) {
  if (point != g_point || g_seen.fetch_add(1) + 1 != g_pass) {
    return;
  }
  // One write(2), no allocation: other threads keep running until the signal lands.
  char line[256];
  const std::string_view head = "agentboxd-crashtest: crash point ";
  size_t n = 0;
  for (std::string_view part : {head, point, std::string_view("\n")}) {
    for (char c : part) {
      if (n < sizeof(line)) {
        line[n++] = c;
      }
    }
  }
  (void)!::write(STDERR_FILENO, line, n);
  ::kill(::getpid(), SIGKILL);
  ::pause();
}

}  // namespace

void InstallTestCrashHandler() {
  const char* at = std::getenv("AGENTBOX_TEST_CRASH_AT");
  if (at == nullptr || *at == '\0') {
    return;
  }
  g_point = at;
  if (const size_t hash = g_point.find('#'); hash != std::string::npos) {
    g_pass = std::max(1L, std::strtol(g_point.c_str() + hash + 1, nullptr, 10));
    g_point.resize(hash);
  }
  InstallCrashHandler(&CrashAt);
}

}  // namespace agentbox::daemon
