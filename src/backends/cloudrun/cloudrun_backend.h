#pragma once

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "api/sandbox_backend.h"
#include "backends/cloudrun/cloud.h"
#include "backends/cloudrun/cloudrun_options.h"
#include "backends/cloudrun/guest_server.h"
#include "backends/cloudrun/sessions.h"
#include "backends/cloudrun/workspace_files.h"
#include "http/server.h"

namespace agentbox::cloudrun {

// Sandboxes on Google Cloud Run Jobs in per-command ("job") mode: one job per sandbox, one
// execution per command running the static guest's run-once from a read-only Cloud Storage
// volume, session snapshots and /workspace in the bucket (layout.h).
//
// Nothing lives in the daemon: every sandbox is its record in the bucket, so get/list/destroy
// survive restarts and several agentboxd replicas on the same project and bucket share the
// sandboxes. The guest API of all its sandboxes is served in-process on one unix socket
// (GuestServer), which is every sandbox's guest_endpoint. Thread-safe.
class CloudRunBackend final : public SandboxBackend {
 public:
  CloudRunBackend(CloudRunOptions opts, Cloud cloud);
  ~CloudRunBackend() override;

  std::string_view Name() const override { return "cloudrun"; }
  // Guest binary present, credentials found and the bucket reachable (one Storage call).
  ProbeResult Probe() override;
  Capabilities GetCapabilities() const override;
  // Writes the record (kConflict if the id exists), uploads the guest once per content, and
  // creates the job; starts no execution.
  Result<SandboxInfo> Create(const std::string& id, const SandboxSpec& spec) override;
  Result<SandboxInfo> Get(const std::string& id) override;
  Result<std::vector<SandboxInfo>> List() override;
  // Cancels running executions, deletes the job and every object of the sandbox (the record
  // last). kNotFound when there is no record.
  Result<void> Destroy(const std::string& id) override;
  Result<void> SetExpiry(const std::string& id, double expires_at) override;

  const CloudRunOptions& options() const { return opts_; }
  // Google API calls made so far by this backend (Storage + Run), for benchmarks.
  uint64_t GoogleCalls() const;
  // The unix socket every sandbox's guest API is served on.
  std::string SocketPath() const { return opts_.state_dir + "/guest.sock"; }

 private:
  struct Record {
    SandboxInfo info;
    std::string job_id;
    std::string job_guest;  // layout::GuestDir of the job's command
    std::string secret;
    int64_t generation = 0;
  };
  Result<void> EnsureServer();
  Result<std::string> EnsureGuest();  // -> layout::GuestDir
  Result<Record> ReadRecord(const std::string& id);
  Json RecordJson(const Record& r) const;
  Result<Record> RecordFromJson(const Json& j) const;
  Result<SandboxRef> Resolve(const std::string& token);

  CloudRunOptions opts_;
  Cloud cloud_;
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  std::unique_ptr<SessionEngine> sessions_;
  std::unique_ptr<WorkspaceFiles> files_;
  std::unique_ptr<GuestServer> guest_;
  std::unique_ptr<http::Server> server_;
  std::vector<std::thread> threads_;

  std::mutex mu_;
  bool serving_ = false;   // guarded by mu_
  std::string guest_dir_;  // guarded by mu_: uploaded guest, once known
  struct Cached {
    SandboxRef ref;
    std::string secret;
    std::chrono::steady_clock::time_point at;
  };
  std::map<std::string, Cached> tokens_;  // guarded by mu_
};

}  // namespace agentbox::cloudrun
