#pragma once

#include <string_view>

namespace agentbox {

// Crash injection for the crash-consistency suite (tests/crash, docs/reliability.md).
//
// Multi-step operations call CrashPoint("backend.op.step") between their side effects. Nothing
// happens unless a handler was installed, and only the test build of the daemon
// (agentboxd-crashtest, src/daemon/crash_hooks.cc) installs one: the production agentboxd has no
// code path that installs it, so neither a client nor a configuration file can make it crash.
// With no handler a crash point costs one relaxed atomic load.
using CrashHandler = void (*)(std::string_view point);

// Installs `handler` for the whole process (nullptr removes it). Thread-safe.
void InstallCrashHandler(CrashHandler handler);

// Calls the installed handler with `point`, which may end the process there and then.
void CrashPoint(std::string_view point);

}  // namespace agentbox
