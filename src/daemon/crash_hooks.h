#pragma once

// Test build only (agentboxd-crashtest): never linked into agentboxd.
namespace agentbox::daemon {

// Installs a crash handler (common/crash_point.h) that kills this process with SIGKILL, as
// `kill -9` would, at the crash point named by AGENTBOX_TEST_CRASH_AT (`point`, or `point#N` for
// its N-th pass). Without the variable nothing is installed.
void InstallTestCrashHandler();

}  // namespace agentbox::daemon
