#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "api/sandbox_backend.h"
#include "common/json_util.h"
#include "common/metrics.h"
#include "common/worker_pool.h"
#include "daemon/auth.h"
#include "daemon/backend_watch.h"
#include "daemon/e2b/e2b_api.h"
#include "daemon/guest_health.h"
#include "daemon/idempotency.h"
#include "daemon/migration_gate.h"
#include "daemon/migration_journal.h"
#include "daemon/port_relay.h"
#include "daemon/session_keeper.h"
#include "daemon/validation.h"
#include "http/client.h"
#include "http/server.h"
#include "http/transfer_threads.h"
#include "selector/selector.h"

namespace agentbox::daemon {

struct DaemonOptions {
  // Without `selection`, every new sandbox goes to default_backend (no fallback): tests and
  // single-backend embeddings. agentboxd always passes the settings parsed from its config.
  std::string default_backend = "jail";
  std::optional<selector::Settings> selection;
  std::map<std::string, std::string> backend_config_errors;  // backends not built, and why
  // Called on every /metrics scrape to refresh gauges the daemon does not own (warm pools).
  std::function<void(Metrics&)> collect_metrics;
  std::vector<std::string> pinnable_backends;  // backends a caller may request by name
  std::string spool_dir = "/tmp";              // uploads are spooled here before forwarding
  int64_t default_ttl_s = 3600;
  int64_t max_ttl_s = 7 * 86400;
  size_t max_sandboxes_per_owner = 64;
  // Runtime flags (GET/PUT /v1/flags): loads every configuration source with the given
  // overrides on top, the highest precedence (rollout.md). Unset: flags cannot be changed.
  std::function<Result<Config>(const std::map<std::string, std::string>& flags)> load_config;
  // Where runtime flags are kept across restarts (agentboxd: <state>/flags.json); empty: not kept.
  std::string flags_file;
  // How long relayed calls wait for a guest (daemon/guest_health.h).
  GuestDeadlines guest_deadlines;
  // The state directory, and the free space it must keep (AGENTBOX_MIN_FREE_BYTES): below it new
  // sandboxes get 507 and /readyz is 503 (disk_floor.h). 0: no floor.
  std::string state_dir = "/tmp";
  uint64_t min_free_bytes = 0;
  // Where each sandbox's session snapshots are kept across daemon restarts (agentboxd:
  // <state>/sessions; daemon/session_keeper.h). Empty: in memory only.
  std::string sessions_dir;
  // Idempotency-Key of POST /v1/sandboxes (daemon/idempotency.h): where keys are kept
  // (agentboxd: <state>/idempotency; empty: in memory only) and for how long.
  std::string idempotency_dir;
  double idempotency_ttl_s = 86400;
  // The E2B-compatible API (daemon/e2b/, docs/e2b.md): templates and default lifetime.
  e2b::E2bOptions e2b;
  // AGENTBOX_DOMAIN: sandbox ports are served by host name as `{port}-{id}.{domain}` (empty: by
  // path only; docs/ports.md).
  std::string domain;
  // Where ports made public are kept across daemon restarts (agentboxd: <state>/ports;
  // daemon/port_access.h). Empty: in memory only.
  std::string ports_dir;
  // Moves between backends (daemon/migrate.cc, docs/migration.md): where their journal is kept
  // (agentboxd: <state>/migrations; empty: nowhere, so a crash mid-move is not repaired), how
  // long a call to a moving sandbox waits before its 409, the Retry-After it then carries, and
  // how long a move waits for the calls already running.
  std::string migrations_dir;
  double migration_hold_s = 30;
  double migration_retry_after_s = 5;
  double migration_quiesce_s = 10;
  // Tests only: called at each step of a move ("created", "copied", "restored"); an error
  // fails the move there, as a failure of that step would.
  std::function<Result<void>(const std::string& step)> migration_hook;
};

// One sandbox the daemon knows: pinned to the backend that created it.
struct SandboxEntry {
  SandboxInfo info;
  SandboxBackend* backend = nullptr;
  std::string reason;  // why that backend was chosen
};

// The daemon's REST API (sandbox-api.md §2). Sandbox lifecycle calls run on a worker pool
// (backends block); guest calls are forwarded asynchronously over each sandbox's unix socket.
// Thread-safe.
class DaemonApi : public http::Dispatcher {
  // The E2B layer translates onto this API: it runs native routes (Route), finds sandboxes
  // (Find), and talks to guests through the same client, deadlines and upload relay.
  friend class e2b::E2bApi;
  // The port relay checks callers, finds sandboxes and gates guest calls as the API does.
  friend class PortRelay;

 public:
  DaemonApi(boost::asio::io_context& io, std::map<std::string, SandboxBackend*> backends,
            ApiKeys keys, DaemonOptions options);
  ~DaemonApi() override;

  // Finds the sandboxes every backend already holds (after a restart) and starts the TTL reaper.
  void Start();
  // From now on new requests get 503 and the TTL reaper stops; in-flight requests finish.
  // Sandboxes keep running.
  void BeginDrain();
  size_t in_flight() const { return in_flight_.load(); }

  std::unique_ptr<http::BodySink> StreamBody(const http::Request& req) override;
  void Handle(http::Request req, http::Respond respond) override;
  // Uploads, downloads and archives are relayed on raw connections (bulk_relay.cc).
  bool WantsRaw(const http::Request& req) override;
  // On TLS listeners only sandbox ports go raw (through the server's TLS bridge); uploads and
  // downloads take the streamed path there.
  bool WantsRawOverTls(const http::Request& req) override;
  void HandleRaw(http::Request req, http::RawConnection conn) override;

  Metrics& metrics() { return metrics_; }
  selector::Selector& selector() { return *selector_; }
  // The runtime flags in force (PUT /v1/flags), for reloads that re-read every source.
  std::map<std::string, std::string> flags() const;

 private:
  struct Caller {
    std::string owner;
    bool admin = false;
  };
  std::optional<Caller> Authenticate(const http::Request& req) const;
  // `looked_up`: unknown ids were already looked up in shared backends (shared_sandboxes.cc).
  // `gated`: the call already passed the migration gate (AfterMove).
  void Route(const http::Request& req, const Caller& caller, http::Respond respond,
             bool looked_up = false, bool gated = false);
  // An id this daemon does not know may be a sandbox another daemon created on a shared
  // backend: looks it up off the I/O thread and routes the request again. False when no
  // backend shares state (the request goes on as usual).
  bool LookUpShared(const std::string& id, const http::Request& req, const Caller& caller,
                    const http::Respond& respond);
  // Registers sandboxes that shared backends hold but this daemon does not know yet, and
  // forgets those they no longer hold. Blocks (run on the pool).
  void SyncShared();
  // Whether any backend shares its sandboxes between replicas (Capabilities::shared_state).
  bool HasSharedBackend() const;
  // Asks the shared backends for `id` and records it when one holds it. Blocks: worker pool only.
  void FindShared(const std::string& id);
  // Relays one bulk transfer between the client's connection `fd` and the guest; runs on a
  // transfer thread and answers on `fd` (bulk_relay.cc).
  void RelayBulk(const http::Request& req, int fd, std::string buffered);
  // Sends a spooled upload (the E2B API's) to the sandbox's guest and answers `done`.
  void RelayUpload(const SandboxEntry& entry, const std::string& query,
                   const std::string& content_type, std::shared_ptr<UniqueFd> file, uint64_t size,
                   const http::Respond& done, const std::string& op = "file/upload");
  // Drops a shared backend's sandbox that another daemon destroyed.
  void ForgetShared(const std::string& id);
  void Create(const http::Request& req, const Caller& caller, http::Respond respond);
  // Idempotency-Key of a create (daemon/crash_recovery.cc). False when it answered the request
  // itself (a replay, a mismatch, a wait for the first request, a bad key); true when the create
  // goes on: then `digest` is the key's label value (empty without a key) and `respond` forgets
  // the key if the create fails.
  bool BeginIdempotentCreate(const http::Request& req, const Json& body, const Caller& caller,
                             http::Respond& respond, std::string* digest);
  void ReplayCreate(const std::string& id, const Caller& caller, const http::Respond& respond);
  // Start-up (daemon/crash_recovery.cc): each backend's sweep, logged and counted in
  // agentbox_recovered_total; then the keys a crash left pending, resolved.
  void RecoverBackends();
  void ResolveIdempotencyKeys();
  // An unclaimed sandbox of a warm pool (empty owner, label agentbox.pool=warm) that a backend
  // lists: its pool is switched off in this daemon (a running pool hides and adopts its own), so
  // no client can ever claim it. Destroyed at start-up instead of living out its pooled TTL
  // (an hour), counted in agentbox_recovered_total{what="pool_leftover"}.
  static bool IsPoolLeftover(const SandboxInfo& info);
  void DestroyPoolLeftovers(const std::string& backend_name, SandboxBackend& backend,
                            const std::vector<SandboxInfo>& leftovers);
  void List(const Caller& caller, http::Respond respond);
  void GetOne(const std::string& id, const Caller& caller, http::Respond respond);
  void Destroy(const std::string& id, const Caller& caller, http::Respond respond);
  void ExtendTtl(const std::string& id, const http::Request& req, const Caller& caller,
                 http::Respond respond);
  void Forward(const std::string& id, const std::string& rest, const http::Request& req,
               const Caller& caller, http::Respond respond);
  void Stream(const std::string& id, const std::string& session, const http::Request& req,
              const Caller& caller, http::Respond respond);
  void Pull(const http::Request& req, const Caller& caller, http::Respond respond);
  // GET /v1/sandboxes/{id}/metrics (daemon/metrics_routes.cc): 501 for a backend without
  // Capabilities::metrics.
  void GetMetrics(const std::string& id, const Caller& caller, http::Respond respond);
  // POST /v1/sandboxes/{id}/restart-guest (daemon/restart_guest.cc).
  void RestartGuest(const std::string& id, const Caller& caller, http::Respond respond);
  // /v1/sandboxes/{id}/api/v1/supervisor/timeout/{op}: the sandbox's TTL in the shape of
  // ai-manus's supervisor timeout (daemon/supervisor_timeout.cc).
  void SupervisorTimeout(const std::string& id, const std::string& op, const http::Request& req,
                         const Caller& caller, http::Respond respond);
  // Probes the engines that hold sandboxes and brings their sandboxes back when an engine
  // answers again (daemon/engine_recovery.cc); from the reaper's tick.
  void WatchEngines();
  void RecoverSandbox(const SandboxEntry& e);  // worker thread
  // Hands every backend the callbacks for guests it replaces on its own, and the session
  // keeper the backends' durable session copies (daemon/guest_events.cc); UnwireBackends undoes
  // the first before the daemon goes away.
  void WireBackends();
  void UnwireBackends();
  // The engine started the guest of `e` again on its own, or the daemon found the sandbox after
  // a restart with sessions kept: restores its sessions once the guest answers (`why` says
  // which). Worker thread.
  void RestoreSessions(const SandboxEntry& e, const std::string& why);
  // At start: loads the session snapshots kept for the sandboxes found again (`complete`: every
  // backend listed its sandboxes, so files of others can go) and restores them where the guest
  // lost them (it restarted while the daemon was down).
  void RestoreKeptSessions(bool complete);
  // Moves between backends (daemon/migrate.cc, daemon/drain.cc). Migrate answers POST
  // /v1/sandboxes/{id}/migrate; Drain POST /v1/admin/drain (local socket only).
  void Migrate(const std::string& id, const http::Request& req, const Caller& caller,
               http::Respond respond);
  void Drain(const http::Request& req, const Caller& caller, http::Respond respond);
  // Moves sandbox `id` to backend `to` (empty: the selector's choice, never one of `exclude`)
  // and returns what the migrate call answers. The caller has closed the gate of `id`; it is
  // open again on return. On failure the sandbox is where it was, untouched, and nothing is
  // left on the target. Blocks (worker thread).
  Result<Json> MoveSandbox(const std::string& id, const std::string& to,
                           const std::vector<std::string>& exclude);
  // Runs `go` with `respond` now unless sandbox `id` is moving; then once the move ended, or
  // answers 409 with Retry-After when it outlasts migration_hold_s. Counted in flight for the
  // move (which waits for such calls) until answered.
  void AfterMove(const std::string& id, http::Respond respond,
                 std::function<void(http::Respond)> go);
  // `respond` that also tells the gate the admitted call to `id` was answered.
  http::Respond Admitted(const std::string& id, http::Respond respond);
  http::Response MovingResponse(const std::string& id, const std::string& why) const;
  // At start, after the backends' lists: finishes the moves a crash interrupted after their
  // switch, and rolls back the others (daemon/migration_journal.h).
  void ResolveMigrations();
  void Info(http::Respond respond);
  void GetFlags(const Caller& caller, http::Respond respond);
  void PutFlags(const http::Request& req, const Caller& caller, http::Respond respond);
  // GET/PUT /v1/backends/{name}/validation (admin_routes.cc).
  void Validation(const std::string& backend, const http::Request& req, const Caller& caller,
                  http::Respond respond);
  void Ready(http::Respond respond);
  void RenderMetrics(http::Respond respond);
  void RenderMetricsNow(http::Respond respond);

  std::optional<SandboxEntry> Find(const std::string& id, const Caller& caller) const;
  void Reap();
  void ArmReaper();
  http::Respond Track(http::Respond respond);
  void Count(const std::string& backend, const std::string& op, bool ok, double seconds);
  // Counts one request relayed to a guest and begun at `start`: an error unless the guest was
  // reached and answered below 500.
  void CountRelayed(const std::string& backend, const std::string& op,
                    const Result<http::ClientResponse>& r,
                    std::chrono::steady_clock::time_point start);

  boost::asio::io_context& io_;
  std::map<std::string, SandboxBackend*> backends_;
  ApiKeys keys_;
  DaemonOptions opts_;
  http::UnixHttpClient client_;
  WorkerPool pool_;
  Metrics metrics_;
  GuestHealth health_;      // which guests stopped answering
  BackendWatch watch_;      // which engines stopped answering
  SessionKeeper sessions_;  // the last state of every session, to restore a restarted guest
  IdempotencyStore idempotency_;
  std::unique_ptr<BackendValidations> validations_;  // last shadow validation per backend
  std::unique_ptr<selector::Selector> selector_;
  mutable std::mutex flags_mu_;
  std::map<std::string, std::string> flags_;  // guarded by flags_mu_
  mutable std::mutex mu_;
  std::map<std::string, SandboxEntry> sandboxes_;
  boost::asio::steady_timer reaper_;
  uint64_t reaps_ = 0;  // ArmReaper's rounds (every 2 s)
  std::atomic<size_t> in_flight_{0};
  std::atomic<bool> draining_{false};
  MigrationGate gate_;        // sandboxes being moved, and the calls to them
  MigrationJournal journal_;  // the moves under way, for a restart after a crash
  std::unique_ptr<e2b::E2bApi> e2b_;
  std::unique_ptr<PortRelay> ports_;  // services inside sandboxes (port_relay.h)
  http::TransferThreads bulk_;        // last: its threads use the members above
};

// The envelope of the daemon API (same shape as the guest's).
http::Response JsonOk(Json data, int status = 200);
http::Response JsonErr(const Error& e);
http::Response JsonErrStatus(int status, const std::string& message);

Json SandboxJson(const SandboxEntry& e);
// The body of GET /v1/sandboxes/{id}/metrics (metrics_routes.cc).
Json SandboxMetricsJson(const std::string& id, const SandboxMetrics& m);

}  // namespace agentbox::daemon
