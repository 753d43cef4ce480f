#pragma once

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "api/sandbox_backend.h"
#include "api/tunnel_registry.h"
#include "backends/cloudrun/cloud.h"
#include "backends/cloudrun/cloudrun_options.h"
#include "backends/cloudrun/guest_server.h"
#include "backends/cloudrun/sessions.h"
#include "backends/cloudrun/workspace_files.h"
#include "http/server.h"

namespace agentbox::cloudrun {

// Sandboxes on Google Cloud Run Jobs, in two modes (docs/cloudrun.md):
// - job mode: one job per sandbox, one execution per command running the static guest's run-once
//   from a read-only Cloud Storage volume, session snapshots and /workspace in the bucket
//   (layout.h);
// - session mode (session_mode.cc): one long execution per sandbox running `agentbox-guest serve
//   --connect <AGENTBOX_PUBLIC_URL>/v1/tunnel`; the guest dials back through the daemon's tunnel
//   endpoint (TunnelRegistry), whose socket is the sandbox's guest_endpoint. A monitor thread
//   replaces an execution that ends while the sandbox lives and tells the daemon (GuestEvents),
//   which restores the sessions; their snapshots are kept in the bucket (KeepSessionState).
//
// Nothing lives in the daemon: every sandbox is its record in the bucket, so get/list/destroy
// survive restarts and several agentboxd replicas on the same project and bucket share the
// sandboxes. The guest API of all its sandboxes is served in-process on one unix socket
// (GuestServer), which is every sandbox's guest_endpoint. Thread-safe.
class CloudRunBackend final : public SandboxBackend {
 public:
  // `tunnels`: where session-mode sandboxes register (null: session mode is refused).
  CloudRunBackend(CloudRunOptions opts, Cloud cloud, TunnelRegistry* tunnels = nullptr);
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
  // Session mode: cancels the execution and starts a new one (same token, same endpoint).
  Result<SandboxInfo> RestartGuest(const std::string& id) override;
  // Session mode (a warm pool hands out started executions): records owner, labels, expiry.
  Result<SandboxInfo> Claim(const std::string& id, const SandboxSpec& spec,
                            double expires_at) override;
  void SetGuestEvents(GuestEvents events) override;
  // sandboxes/<id>/kept-sessions/<sid>.json, written off the caller's thread.
  void KeepSessionState(const std::string& id, const std::string& session,
                        const Json& kept) override;
  Result<Json> KeptSessionStates(const std::string& id) override;

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
    std::string mode = "job";  // "job" or "session"
    std::string execution;     // session mode: the execution the guest runs in (last known)
    std::string tunnel_url;    // session mode: where that execution's guest dials (its daemon)
    int64_t generation = 0;
  };
  // A session-mode sandbox this daemon serves (its tunnel is registered here).
  struct Live {
    std::string token;
    std::string endpoint;
    std::string execution;
    std::string job_id;
    bool replacing = false;   // a new execution is being started (monitor: hands off)
    bool destroying = false;  // Destroy runs: nothing is started any more
    // The guest dials this daemon (the record's tunnel_url is ours): only then does the monitor
    // replace a lost execution, so replicas with other URLs never start a second one.
    bool owned = true;
    std::string failed;  // a replacement failed for good: why
  };
  // session_mode.cc
  Result<SandboxInfo> CreateSession(Record r, const Json& job);
  // Registers the tunnel of a session record if this daemon has not yet (after a restart),
  // and fills in the info's endpoint, token, state and detail from what this daemon knows.
  Result<void> AttachSession(Record& r);
  // Starts an execution of the guest for `r` and waits until it dialled back. On failure the
  // execution is cancelled; the caller cleans up the rest.
  Result<std::string> StartGuest(const Record& r, const std::string& token);
  void Monitor();
  void Replace(const std::string& id, const std::string& why);
  // Records the sandbox's current execution and that its guest dials this daemon.
  Result<void> WriteExecution(const std::string& id, const std::string& execution);
  void CancelExecutions(const std::string& job_id);
  std::string SessionDetail(const Record& r, const std::string& execution) const;

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
  // Session snapshots are written in the order they were kept.
  boost::asio::strand<boost::asio::io_context::executor_type> keep_strand_{io_.get_executor()};
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

  TunnelRegistry* tunnels_;
  std::map<std::string, Live> live_;  // session-mode sandboxes, by id; guarded by mu_
  std::mutex events_mu_;
  GuestEvents events_;  // guarded by events_mu_
  std::condition_variable monitor_cv_;
  bool stopping_ = false;               // guarded by mu_
  std::vector<std::thread> replacers_;  // guarded by mu_; joined by the destructor
  std::thread monitor_;
};

}  // namespace agentbox::cloudrun
