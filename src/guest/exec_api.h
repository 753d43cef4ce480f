#pragma once

#include <string>

#include "common/json_util.h"
#include "guest/processes/exec_manager.h"
#include "http/server.h"

namespace agentbox::guest {

// The guest's `exec/*` endpoints (docs/guest-api.md, "Programs with separate output streams"):
//   start {cmd, args?, envs?, cwd?, user?, user_fallback?, stdin?, tag?}  -> NDJSON event stream
//   connect {pid | tag}                                   -> NDJSON event stream
//   list {}                                               -> {processes: [...]}
//   input {pid | tag, data (base64)}, close-stdin {pid | tag}, signal {pid | tag, signal}
// Answers `op` (the path after /api/v1/exec/) on the io thread.
void HandleExec(ExecManager& exec, const std::string& op, const Json& body, http::Respond respond);

// Parses exec/start's body (exposed for tests).
Result<ExecSpec> ParseExecSpec(const Json& body);

}  // namespace agentbox::guest
