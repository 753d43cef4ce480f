#pragma once

#include <optional>
#include <string>

#include "common/error.h"
#include "common/json_util.h"
#include "guest/sessions/session.h"

namespace agentbox::guest {

struct RunOnceOptions {
  std::string state_path;  // empty: a fresh session from this process's environment and cwd
  std::string command;
  // When set: the working directory of a fresh session (no state_path), entered first.
  std::string workdir;
  // When set: the working directory of this command only (shell/exec's exec_dir).
  std::string exec_dir;
  // stdout and stderr through one pipe, as shell/exec shows them (`output` in their exact
  // order; `stdout`/`stderr` stay empty). Otherwise apart, as shell/run shows them.
  bool combined_output = false;
  std::string out_path;  // "-" writes to stdout
  std::optional<double> timeout_s;
  std::string shell;  // empty: detect
  size_t output_cap = 1 << 20;
};

// Executes one command against a session snapshot, using exactly the session code of `serve`,
// and produces {exit_code, stdout, stderr, output (both streams in arrival order), timed_out,
// output_truncated, state}; a request the session refuses (an exec_dir that is not a directory)
// gives {error: {code, message}, exit_code: null, state (unchanged)}. This is the
// executor job-based backends run. Failure means the command could not be run at all.
Result<Json> RunOnce(const RunOnceOptions& opts);

// RunOnce plus writing the result atomically to opts.out_path.
Result<void> RunOnceToFile(const RunOnceOptions& opts);

}  // namespace agentbox::guest
