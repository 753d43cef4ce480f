#include "guest/core/self_protect.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <chrono>

namespace agentbox::guest {
namespace {

TEST(SelfProtectTest, OnlyPidOneTellsSignalsFromInsideItsSandbox) {
  // pid 1 of a namespace: a sender inside has a pid there; one outside shows as 0.
  EXPECT_TRUE(SentFromInsideSandbox(1, SI_USER, 42));
  EXPECT_TRUE(SentFromInsideSandbox(1, SI_TKILL, 7));
  EXPECT_FALSE(SentFromInsideSandbox(1, SI_USER, 0));
  EXPECT_FALSE(SentFromInsideSandbox(1, SI_KERNEL, 42));  // raised by the kernel (e.g. a tty)
  // Not an init (tests, a guest run by hand): every signal counts.
  EXPECT_FALSE(SentFromInsideSandbox(1234, SI_USER, 42));
}

// (That the programs it execs are dumpable again, so the workload can debug its own processes,
// is shown on every backend by tests/conformance/guest_protection_test.cc.)
TEST(SelfProtectTest, TheGuestBecomesNonDumpable) {
  // In a child, so this test process keeps its own setting.
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    _exit(ProtectFromSandbox() && prctl(PR_GET_DUMPABLE) == 0 ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(SelfProtectTest, ShutdownSignalsReachTheGuestFromOutsideItsSandbox) {
  boost::asio::io_context io;
  ShutdownSignals signals(io, {SIGUSR1});
  int got = 0;
  signals.AsyncWait([&](int sig) { got = sig; });
  ASSERT_EQ(kill(getpid(), SIGUSR1), 0);  // not pid 1 here: accepted
  io.run_for(std::chrono::seconds(5));
  EXPECT_EQ(got, SIGUSR1);
}

}  // namespace
}  // namespace agentbox::guest
