#pragma once

#include <climits>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "common/json_util.h"
#include "gcp/run.h"
#include "gcp/storage.h"

namespace agentbox::cloudrun {

// The two Google services the backend needs, as small interfaces: the production
// implementations (MakeGcpCloud) sit over src/gcp's clients, and unit tests use in-memory fakes
// (memory_cloud.h). Errors follow src/gcp: kNotFound, kConflict ("precondition" for a failed
// ifGenerationMatch), kForbidden, kUnavailable, ... and every message names the service.

// One bucket's objects. Thread-safe.
class ObjectStore {
 public:
  virtual ~ObjectStore() = default;
  virtual const std::string& bucket() const = 0;
  // The bucket exists and this identity can read it.
  virtual Result<void> CheckBucket() = 0;
  virtual Result<gcp::ObjectMeta> Stat(const std::string& name) = 0;
  virtual Result<gcp::ObjectData> Read(const std::string& name,
                                       std::optional<gcp::ByteRange> range = std::nullopt) = 0;
  // Streams the object into the file at `path` (created or truncated). An object larger than
  // `max_bytes` is kTooLarge, its transfer cut short.
  virtual Result<gcp::ObjectMeta> ReadToFile(const std::string& name, const std::string& path,
                                             uint64_t max_bytes = UINT64_MAX) = 0;
  // `if_generation_match`: 0 = must not exist; a generation = must still be that one.
  virtual Result<gcp::ObjectMeta> Insert(const std::string& name, std::string_view data,
                                         std::optional<int64_t> if_generation_match = std::nullopt,
                                         const std::string& content_type = "application/json") = 0;
  virtual Result<gcp::ObjectMeta> UploadFile(
      const std::string& name, const std::string& path,
      std::optional<int64_t> if_generation_match = std::nullopt) = 0;
  virtual Result<gcp::ListPage> List(const gcp::ListOptions& opts) = 0;
  virtual Result<void> Delete(const std::string& name,
                              std::optional<int64_t> if_generation_match = std::nullopt) = 0;
  virtual Result<size_t> DeletePrefix(const std::string& prefix) = 0;
  // Google API calls made so far (for the benchmark's "calls per exec").
  virtual uint64_t calls() const = 0;
};

// Every page of a listing, stopping once more than `limit` items were collected (0: no limit).
Result<gcp::ListResult> ListAll(ObjectStore& store, const std::string& prefix,
                                const std::string& delimiter, size_t limit = 0);

// Cloud Run jobs of one project and region. Job ids are short ids ("ab-..."); executions are
// full resource names as Cloud Run returns them. Thread-safe.
class JobRunner {
 public:
  virtual ~JobRunner() = default;
  // "projects/P/locations/R"
  virtual std::string parent() const = 0;
  // Creates the job and waits until Cloud Run has it. An existing job with this id is kConflict
  // (the caller decides whether it is its own retried create).
  virtual Result<void> CreateJob(const std::string& job_id, const Json& job) = 0;
  virtual Result<Json> GetJob(const std::string& job_id) = 0;
  // kNotFound when there is no such job.
  virtual Result<void> DeleteJob(const std::string& job_id) = 0;
  // Starts one execution with `overrides` (RunJobRequest.Overrides); returns its name.
  virtual Result<std::string> Run(const std::string& job_id, const Json& overrides) = 0;
  virtual Result<Json> GetExecution(const std::string& execution) = 0;
  // Tolerates an execution that already finished.
  virtual Result<void> Cancel(const std::string& execution) = 0;
  virtual Result<std::vector<Json>> ListTasks(const std::string& execution) = 0;
  virtual Result<std::vector<Json>> ListExecutions(const std::string& job_id) = 0;
  virtual uint64_t calls() const = 0;
};

struct Cloud {
  std::shared_ptr<ObjectStore> store;
  std::shared_ptr<JobRunner> jobs;
};

// What an execution's status says, as Cloud Run reports it (conditions, counts, times).
struct ExecutionStatus {
  bool done = false;
  bool started = false;  // startTime set, or a task ran
  bool succeeded = false;
  bool cancelled = false;
  std::string message;  // the Completed condition's message, when there is one
};
ExecutionStatus ParseExecution(const Json& execution);

// The last attempt's exit code of an execution's first task (lastAttemptResult.exitCode),
// when known.
std::optional<int> TaskExitCode(const std::vector<Json>& tasks);

}  // namespace agentbox::cloudrun
