#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "api/session_state.h"
#include "common/error.h"

namespace agentbox::guest {

// The text protocol between the guest and a session's shell. The shell reads its script from a
// control pipe; the guest writes a bootstrap (helpers, EXIT trap, restored state), then one
// command line per command. After each command the shell writes a state record to the status
// descriptor (kStatusFd for bash, kShStatusFd for POSIX sh), NUL-separated:
// (tag 'Q' instead of 'R' when written by the EXIT trap)
//   bash: "R<rc>\0C<pwd>\0V<declare -p>\0F<declare -f>\0X<declare -Fx>\0A<alias -p>\0"
//   sh:   "R<rc>\0C<pwd>\0P<export -p>\0"
// All of it uses builtins only (no fork per command), which is what keeps exec under a
// millisecond. This file is pure text processing so that it is unit-testable without a shell.

inline constexpr int kStatusFd = 253;
inline constexpr int kShStatusFd = 9;  // dash only accepts single-digit redirection fds
inline constexpr int kControlFd = 3;   // script is read via /dev/fd/3, then fd 3 is closed

int StatusFdFor(ShellKind kind);

// First text written to the control pipe: closes the control fd, defines helpers and the EXIT
// trap (so `exit N` still reports state), then restores `state` (variables, functions, aliases,
// options; cwd and environment are applied at spawn time).
std::string BootstrapScript(const SessionState& state);

// The restore part alone (bash): statements that recreate variables, functions, aliases and
// options at top level. Empty for sh.
std::string RestoreScript(const SessionState& state);

// How the command's standard streams are wired for one command.
enum class Stdio {
  kSession,  // inherit the session's stdin pipe and output pipes
  kNull,     // stdin from /dev/null (non-interactive tool calls)
  kPty,      // all three on the session's pseudo-terminal slave at `pty_path`
};

// One command line: restores `$?`, evals `command` at top level (so `cd`, `export`, functions
// and `declare` act on the session, exactly as typed at a prompt) and emits the state record.
// `command` must not contain NUL.
// With `exec_dir`, the command runs there and the session's cwd is restored afterwards.
std::string CommandLine(ShellKind kind, std::string_view command, int previous_exit_code,
                        Stdio stdio, const std::string& pty_path = {},
                        const std::string& exec_dir = {});

// Script for a one-shot shell (`bash -c`) that restores state and runs `command`: used for
// background processes, which must see the session's functions and variables.
std::string OneShotScript(const SessionState& state, std::string_view command);

// Incremental parser for state records arriving in arbitrary chunks.
class StatusParser {
 public:
  explicit StatusParser(ShellKind kind) : kind_(kind) {}
  // Appends bytes. Returns true once a complete record is available via Take().
  void Feed(std::string_view bytes);
  // Removes and returns the next complete record, if any.
  struct Record {
    int exit_code = 0;
    SessionState state;
    // Set when the variable/function dump could not be parsed: only exit_code and cwd are
    // valid, and the caller keeps the rest of its previous state.
    std::string partial_error;
    // Written by the EXIT trap: the shell ends after this record.
    bool exiting = false;
  };
  std::optional<Result<Record>> Take();

 private:
  ShellKind kind_;
  std::string buf_;
};

// Parses one complete record body (without trailing bytes). `base` supplies the fields that the
// record does not carry (e.g. the shell kind). Exposed for tests.
Result<StatusParser::Record> ParseRecord(ShellKind kind, std::string_view record);

// Parses bash `declare -p` output into `state` (env for exported scalars, variables otherwise),
// skipping bash's own special variables and the guest's `__ab_` helpers. Exposed for tests.
Result<void> ParseDeclareOutput(std::string_view text, SessionState& state);
// Parses POSIX `export -p` output (dash, busybox ash, bash --posix) into state.env.
Result<void> ParseExportOutput(std::string_view text, SessionState& state);

// Decodes one shell word as bash prints it: "double", $'ansi-c', 'single' or bare. Returns the
// value and advances `pos` past the word. Exposed for tests.
Result<std::string> DecodeShellWord(std::string_view text, size_t& pos);

}  // namespace agentbox::guest
