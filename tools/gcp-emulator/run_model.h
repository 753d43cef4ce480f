#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "api_error.h"
#include "common/json_util.h"
#include "executor.h"

// Cloud Run Admin v2 resources as JSON (google.cloud.run.v2 protos, lowerCamelCase, int64 as
// strings, enums answered as names): validation of what clients send, and the state the
// emulator keeps for jobs, executions and tasks.
namespace agentbox::gcpemu {

// Rewrites enum values a client sent as integers ($alt=json;enum-encoding=int, as the Node.js
// client's REST fallback does) to their names: launchStage, executionEnvironment,
// emptyDir.medium, vpcAccess.egress.
void NormalizeJobEnums(Json& job);

// "600s", "1.5s" -> duration; nullopt when malformed.
std::optional<std::chrono::milliseconds> ParseDuration(const Json& v);
std::string FormatDuration(std::chrono::milliseconds d);

// Checks a Job body (after NormalizeJobEnums) for what the emulator can run, and fills Cloud
// Run's defaults (taskCount 1, maxRetries 3, timeout 600s, launchStage GA, ...). 400 with the
// field's path otherwise.
ApiResult<void> ValidateAndDefaultJob(Json& job);
bool ValidJobId(const std::string& id);

// Applies RunJobRequest.overrides to a copy of the job's ExecutionTemplate: containerOverrides
// (args replace, or clear with clearArgs; env merges by name), taskCount, timeout.
ApiResult<Json> ApplyOverrides(const Json& execution_template, const Json& overrides);

enum class TaskPhase { kPending, kRunning, kSucceeded, kFailed, kCancelled };

struct TaskState {
  int index = 0;
  TaskPhase phase = TaskPhase::kPending;
  int retried = 0;
  double start = 0;
  double completion = 0;
  std::optional<AttemptResult> last;
};

struct ExecutionState {
  std::string name;  // projects/P/locations/R/jobs/J/executions/E
  std::string job_name;
  std::string uid;
  std::string operation;  // the :run operation's name
  Json labels = Json::object();
  Json annotations = Json::object();
  Json task_template;  // TaskTemplate after overrides
  int task_count = 1;
  int parallelism = 0;
  double create = 0;
  double start = 0;
  double completion = 0;
  bool cancel_requested = false;
  bool deleted = false;
  std::string failure;  // message of the Completed condition when failed
  std::vector<TaskState> tasks;
  bool done() const { return completion > 0; }
};

std::string ShortName(const std::string& resource_name);  // last path segment
Json ExecutionJson(const ExecutionState& e);
Json TaskJson(const ExecutionState& e, const TaskState& t);
Json ExecutionToDisk(const ExecutionState& e);
ExecutionState ExecutionFromDisk(const Json& j);

// The google.longrunning.Operation for a job create/delete (done at once).
Json DoneOperation(const std::string& name, const Json& resource, const char* type);
// The :run operation: metadata is the execution; done (with response or error) once it ends.
Json RunOperation(const ExecutionState& e);

// The TaskSpec of one attempt: image, command, args, env (the template's plus Cloud Run's
// CLOUD_RUN_* variables), limits, timeout, GCS volumes as bind mounts of buckets_root/{bucket}.
ApiResult<TaskSpec> BuildTaskSpec(const ExecutionState& e, int index, int attempt,
                                  const std::string& buckets_root);

}  // namespace agentbox::gcpemu
