#pragma once

#include <map>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/json_util.h"

namespace agentbox {

// Which shell a session runs in. kBash keeps the full state; kSh (busybox/dash images without
// bash) keeps the working directory and exported environment only.
enum class ShellKind { kBash, kSh };

const char* ShellKindName(ShellKind kind);

// A shell session's state as data: everything needed to continue the session in a fresh shell,
// on this machine or another. Produced by capturing a shell after each command and consumed by
// restoring it into a new shell; serialised as JSON for run-once executors and snapshots.
struct SessionState {
  ShellKind shell = ShellKind::kBash;
  std::string cwd;
  // Exported variables with a value (the environment children see).
  std::map<std::string, std::string> env;
  // bash only: one re-evaluable `declare ...` statement per non-exported (or exported but
  // valueless, or array) variable, in the order bash printed them.
  std::vector<std::string> variables;
  // bash only: `declare -f` output (function definitions), re-evaluable as a whole.
  std::string functions;
  // bash only: names of functions marked for export (`export -f`).
  std::vector<std::string> exported_functions;
  // bash only: `alias -p` output, re-evaluable as a whole.
  std::string aliases;
  // bash only: enabled `set -o` options (SHELLOPTS) and `shopt` options (BASHOPTS),
  // colon-separated.
  std::string set_options;
  std::string shopt_options;
  // Exit code of the last command, restored as `$?`.
  int last_exit_code = 0;

  friend bool operator==(const SessionState&, const SessionState&) = default;
};

Json SessionStateToJson(const SessionState& s);
// Validates shape and types; unknown keys are ignored so newer writers stay readable.
Result<SessionState> SessionStateFromJson(const Json& j);

}  // namespace agentbox
