#pragma once

#include <functional>
#include <map>
#include <mutex>
#include <string>

#include "backends/cloudrun/cloud.h"

namespace agentbox::cloudrun {

// In-memory fakes of the two services, for unit tests without a network. They keep Google's
// semantics that the backend relies on: generations and ifGenerationMatch (kConflict
// "precondition"), list prefixes/delimiters/pages, and executions whose status tests drive.

class MemoryObjectStore final : public ObjectStore {
 public:
  explicit MemoryObjectStore(std::string bucket = "test-bucket") : bucket_(std::move(bucket)) {}
  const std::string& bucket() const override { return bucket_; }
  Result<void> CheckBucket() override;
  Result<gcp::ObjectMeta> Stat(const std::string& name) override;
  Result<gcp::ObjectData> Read(const std::string& name,
                               std::optional<gcp::ByteRange> range) override;
  Result<gcp::ObjectMeta> ReadToFile(const std::string& name, const std::string& path,
                                     uint64_t max_bytes) override;
  Result<gcp::ObjectMeta> Insert(const std::string& name, std::string_view data,
                                 std::optional<int64_t> if_generation_match,
                                 const std::string& content_type) override;
  Result<gcp::ObjectMeta> UploadFile(const std::string& name, const std::string& path,
                                     std::optional<int64_t> if_generation_match) override;
  Result<gcp::ListPage> List(const gcp::ListOptions& opts) override;
  Result<void> Delete(const std::string& name, std::optional<int64_t> if_generation_match) override;
  Result<size_t> DeletePrefix(const std::string& prefix) override;
  uint64_t calls() const override;

  // Test controls.
  bool bucket_exists = true;
  std::map<std::string, std::string> Names() const;  // name -> data

 private:
  struct Object {
    std::string data;
    int64_t generation = 0;
  };
  gcp::ObjectMeta Meta(const std::string& name, const Object& o) const;
  std::string bucket_;
  mutable std::mutex mu_;
  std::map<std::string, Object> objects_;
  int64_t next_generation_ = 1000;
  mutable uint64_t calls_ = 0;
};

// Executions run a test-supplied function when they are created (synchronously, inside Run):
// it may write result objects and decides the execution's status.
struct FakeExecution {
  Json overrides;
  bool started = true;
  bool done = true;
  bool succeeded = true;
  bool cancelled = false;
  std::optional<int> exit_code = 0;  // the task's lastAttemptResult
  std::string message;
};

class FakeJobRunner final : public JobRunner {
 public:
  using Executor = std::function<void(const std::string& job_id, FakeExecution& e)>;
  explicit FakeJobRunner(Executor executor) : executor_(std::move(executor)) {}

  std::string parent() const override { return "projects/test-project/locations/us-central1"; }
  Result<void> CreateJob(const std::string& job_id, const Json& job) override;
  Result<Json> GetJob(const std::string& job_id) override;
  Result<void> DeleteJob(const std::string& job_id) override;
  Result<std::string> Run(const std::string& job_id, const Json& overrides) override;
  Result<Json> GetExecution(const std::string& execution) override;
  Result<void> Cancel(const std::string& execution) override;
  Result<std::vector<Json>> ListTasks(const std::string& execution) override;
  Result<std::vector<Json>> ListExecutions(const std::string& job_id) override;
  uint64_t calls() const override;

  // Test controls.
  std::map<std::string, Json> Jobs() const;
  size_t executions() const;
  // Completes a running execution as the executor would have.
  void Finish(const std::string& execution, const std::function<void(FakeExecution&)>& change);
  std::string last_execution() const;

 private:
  Executor executor_;
  mutable std::mutex mu_;
  std::map<std::string, Json> jobs_;
  std::map<std::string, FakeExecution> executions_;
  std::string last_;
  mutable uint64_t calls_ = 0;
};

}  // namespace agentbox::cloudrun
