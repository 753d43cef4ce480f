#pragma once

#include <string>

#include "common/json_util.h"
#include "common/worker_pool.h"
#include "guest/files/file_ops.h"
#include "guest/processes/exec_manager.h"
#include "http/server.h"

namespace agentbox::guest {

// The guest's `exec/*` endpoints (docs/guest-api.md, "Programs with separate output streams"):
//   start {cmd, args?, envs?, cwd?, user?, user_fallback?, stdin?, tag?, pty?: {rows, cols}}
//                                                         -> NDJSON event stream
//   connect {pid | tag}                                   -> NDJSON event stream
//   list {}                                               -> {processes: [...]}
//   input {pid | tag, data (base64)}, close-stdin {pid | tag}, signal {pid | tag, signal}
//   resize {pid | tag, rows, cols}                        (a process started with a pty)
// Answers `op` (the path after /api/v1/exec/) on the io thread.
void HandleExec(ExecManager& exec, const std::string& op, const Json& body, http::Respond respond);

// The guest's `fs/*` endpoints (guest/files/fs_entries.h), run on `pool` like the file calls;
// `cfg` must outlive the pool's tasks. False (nothing answered) when `op` is not one of them.
bool HandleFs(WorkerPool& pool, const FileConfig& cfg, const std::string& op, Json body,
              const http::Respond& respond);

// Parses exec/start's body (exposed for tests).
Result<ExecSpec> ParseExecSpec(const Json& body);
// Parses {rows?, cols?} (1-1000 each; 24x80 when absent).
Result<ExecSpec::PtySize> ParsePtySize(const Json& body);

}  // namespace agentbox::guest
