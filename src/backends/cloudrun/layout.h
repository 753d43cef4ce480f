#pragma once

#include <optional>
#include <string>

#include "api/sandbox_backend.h"
#include "backends/cloudrun/cloudrun_options.h"
#include "common/json_util.h"

namespace agentbox::cloudrun {

// Where everything lives: objects in the bucket, mounts in the job's container, job ids.
//
//   agentbox/guest/<sha256>/agentbox-guest      the static guest, by content (mounted read-only)
//   sandboxes/<id>/sandbox.json                 the sandbox's record (spec, owner, expiry, job)
//   sandboxes/<id>/workspace/...                /workspace (a read-write Cloud Storage volume)
//   sandboxes/<id>/sessions/<sid>/head.json     the session: current snapshot, running command
//   sandboxes/<id>/sessions/<sid>/runs/<r>.json one execution's result (run-once output, whose
//                                               `state` is the snapshot the next command reads)
namespace layout {

// Every guest version of the bucket (agentbox/guest/), read-only: a job's command is the guest of
// its creation, and each execution runs the daemon's current guest through it ("exec").
inline constexpr const char* kGuestMount = "/agentbox/guests";
inline constexpr const char* kSessionsMount = "/agentbox/sessions";
inline constexpr const char* kWorkspace = "/workspace";
inline constexpr const char* kContainerName = "sandbox";

std::string GuestDir(const std::string& sha256);   // "agentbox/guest/<sha>" (no trailing '/')
std::string SandboxPrefix(const std::string& id);  // "sandboxes/<id>/"
std::string RecordObject(const std::string& id);
std::string WorkspacePrefix(const std::string& id);  // "sandboxes/<id>/workspace/"
std::string SessionsPrefix(const std::string& id);   // "sandboxes/<id>/sessions/"
// Session ids are free text: bytes outside [A-Za-z0-9_-] (and a leading '.') become %XX, so
// the encoded id is one safe path segment in object names and in the container.
std::string EncodeSessionId(const std::string& sid);
std::string DecodeSessionId(const std::string& encoded);
std::string HeadObject(const std::string& id, const std::string& sid);
std::string RunObject(const std::string& id, const std::string& sid, const std::string& run);
// The same result file as the execution sees it through the sessions mount.
std::string RunPath(const std::string& sid, const std::string& run);
// Maps an object of the sessions prefix to the container path (for --state).
std::string ContainerPathOf(const std::string& id, const std::string& object);

// Deterministic Cloud Run job id of a sandbox: "ab-" + the id in lower case with other
// characters as '-', cut to fit, + "-" + 8 hex digits of a hash of the exact id (ids that
// differ only in case or punctuation stay apart). At most 63 characters, [a-z0-9-].
std::string JobId(const std::string& sandbox_id);
// A Google label value: lower case, [a-z0-9_-], at most 63 characters.
std::string LabelValue(const std::string& s);

}  // namespace layout

// The Cloud Run job of one sandbox (v2 Job JSON): one task, maxRetries 0, the spec's env and
// limits, the guest from the bucket as the command, /workspace and the sessions prefix as
// read-write volumes. `guest_dir` is layout::GuestDir of the uploaded guest: the job's command.
Result<Json> BuildJob(const CloudRunOptions& o, const std::string& id, const SandboxSpec& spec,
                      const std::string& guest_dir);

// One command's execution: run-once's arguments and the execution's timeout.
struct RunRequest {
  std::string session_id;
  std::string run_id;
  std::string command;
  std::string state_object;  // the previous result whose state is the input; empty: fresh
  std::string exec_dir;
  std::optional<double> timeout_s;  // the command's own timeout (run-once kills it: 124)
  bool combined_output = true;      // shell/exec: one stream; shell/run: stdout and stderr apart
  size_t output_cap = 1 << 20;
  // The daemon's guest (layout::GuestDir); empty or the job's own: the job's command runs
  // run-once itself, else it execs this one first.
  std::string guest_dir;
  std::string job_guest_dir;
};
Json BuildOverrides(const CloudRunOptions& o, const std::string& sandbox_id, const RunRequest& r);

// Session mode: the execution that runs `agentbox-guest serve --connect <tunnel_url>` for the
// whole life of the sandbox (timeout_s, at most kMaxTaskTimeoutS). The token travels in the
// execution's environment (AGENTBOX_GUEST_TOKEN, which the guest reads and removes from its own
// environment before any session starts), never in its arguments.
Json BuildSessionOverrides(const CloudRunOptions& o, const std::string& token, double timeout_s,
                           const std::string& guest_dir, const std::string& job_guest_dir);

// "<n>s" as a protobuf Duration, at least 1 s.
std::string DurationSeconds(double seconds);

}  // namespace agentbox::cloudrun
