#pragma once

namespace agentbox::cli {

// Ctrl-C handling for commands that run something remotely (exec, shell): SIGINT is recorded
// instead of killing the CLI, so the command can stop the remote process (shell/kill) first.
// The handler is installed without SA_RESTART: a blocking read() returns EINTR.

// Installs the SIGINT handler. Idempotent.
void InstallInterruptHandler();
// Whether a SIGINT arrived since the last ClearInterrupt(). Async-signal-safe.
bool InterruptPending();
void ClearInterrupt();

}  // namespace agentbox::cli
