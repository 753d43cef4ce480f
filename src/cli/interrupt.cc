#include "cli/interrupt.h"

#include <signal.h>

#include <csignal>

namespace agentbox::cli {

namespace {

volatile std::sig_atomic_t g_interrupted = 0;

void OnSigint(int) { g_interrupted = 1; }

}  // namespace

void InstallInterruptHandler() {
  struct sigaction sa {};
  sa.sa_handler = OnSigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: blocking reads must notice the signal
  ::sigaction(SIGINT, &sa, nullptr);
}

bool InterruptPending() { return g_interrupted != 0; }

void ClearInterrupt() { g_interrupted = 0; }

}  // namespace agentbox::cli
