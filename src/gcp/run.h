#pragma once

#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/error.h"
#include "gcp/endpoints.h"
#include "gcp/transport.h"

namespace agentbox::gcp {

using Json = nlohmann::json;

// Cloud Run Admin API v2, jobs subset. Names are full resource names
// ("projects/P/locations/R/jobs/J", ".../executions/E", ".../operations/O"); parents are
// "projects/P/locations/R". Bodies are the v2 JSON (lowerCamelCase). Calls block; thread-safe.
class RunClient {
 public:
  RunClient(std::shared_ptr<HttpTransport> http, Endpoints endpoints);

  // POST {parent}/jobs?jobId=ID -> the long-running Operation. A job with that id already there
  // is kConflict (ALREADY_EXISTS): with deterministic ids a retried create lands there too, so
  // callers check the existing job with GetJob rather than assume.
  Result<Json> CreateJob(const std::string& parent, const std::string& job_id, const Json& job);
  Result<Json> GetJob(const std::string& job_name);
  // DELETE -> Operation. kNotFound when the job is gone, except after a retried attempt (the
  // lost attempt deleted it): then an empty object. Same for DeleteExecution.
  Result<Json> DeleteJob(const std::string& job_name);
  // POST {job}:run with body {"overrides": overrides} (overrides may be null: no body fields).
  // Returns the Operation; its metadata is the Execution and metadata.name its name. Not retried
  // after the request may have reached the service (only on 429/503/connect failures).
  Result<Json> RunJob(const std::string& job_name, const Json& overrides);

  Result<Json> GetExecution(const std::string& execution_name);
  // Every execution of a job (all pages).
  Result<std::vector<Json>> ListExecutions(const std::string& job_name);
  // POST {execution}:cancel. An execution that already finished (FAILED_PRECONDITION) is not an
  // error: returns the execution as it is.
  Result<Json> CancelExecution(const std::string& execution_name);
  Result<Json> DeleteExecution(const std::string& execution_name);
  // Every task of an execution (all pages).
  Result<std::vector<Json>> ListTasks(const std::string& execution_name);

  Result<Json> GetOperation(const std::string& operation_name);
  // Polls the operation until done or `deadline` (kTimeout). A done operation with `error`
  // becomes that error (status code mapped as for HTTP); else the operation is returned.
  Result<Json> WaitOperation(const std::string& operation_name,
                             std::chrono::steady_clock::time_point deadline);

  // The execution has finished (completionTime, or condition Completed succeeded/failed).
  static bool ExecutionDone(const Json& execution);

 private:
  Result<Json> Call(const std::string& method, const std::string& path, const Json* body,
                    bool idempotent = true);
  std::shared_ptr<HttpTransport> http_;
  Endpoints endpoints_;
};

}  // namespace agentbox::gcp
