// Crash consistency at the daemon's level (docs/reliability.md): the backends' start-up sweeps,
// and Idempotency-Key on POST /v1/sandboxes.
#include "backends/pool/warm_pool.h"
#include "common/crash_point.h"
#include "common/log.h"
#include "common/time_util.h"
#include "daemon/api_detail.h"
#include "daemon/auth.h"
#include "daemon/daemon_api.h"

namespace agentbox::daemon {

void DaemonApi::RecoverBackends() {
  metrics_.Describe("agentbox_recovered_total", "counter",
                    "What the start-up sweep repaired after a crash, by backend and what: "
                    "create_rolled_back and destroy_finished count sandboxes; process, cgroup, "
                    "mount, id_slot, directory and container count leftovers removed; "
                    "pool_leftover counts unclaimed warm-pool sandboxes of a pool now off.");
  for (const auto& [name, backend] : backends_) {
    const auto start = detail::Clock::now();
    auto report = backend->Recover();
    const double ms =
        std::chrono::duration<double, std::milli>(detail::Clock::now() - start).count();
    if (!report) {
      Log(LogLevel::kWarn, "daemon.recovery_failed", "backend={} error=\"{}\"", name,
          report.error().message);
      continue;
    }
    std::string what;
    for (const auto& [kind, n] : *report) {
      metrics_.Increment("agentbox_recovered_total", {{"backend", name}, {"what", kind}}, n);
      what += (what.empty() ? "" : ",") + kind + ":" + std::to_string(n);
    }
    Log(report->empty() ? LogLevel::kDebug : LogLevel::kWarn, "daemon.recovered",
        "backend={} repaired=\"{}\" ms={:.1f}", name, what, ms);
  }
}

bool DaemonApi::IsPoolLeftover(const SandboxInfo& info) {
  const auto it = info.spec.labels.find(pool::kPoolLabel);
  return info.spec.owner.empty() && it != info.spec.labels.end() &&
         it->second == pool::kPoolLabelValue;
}

void DaemonApi::DestroyPoolLeftovers(const std::string& backend_name, SandboxBackend& backend,
                                     const std::vector<SandboxInfo>& leftovers) {
  // Before the daemon serves: the sweep's promise (every sandbox listed, or gone with nothing
  // left) holds once Start returns. At most the pool's size per spec key, a few.
  for (const auto& info : leftovers) {
    auto r = backend.Destroy(info.id);
    Log(r ? LogLevel::kInfo : LogLevel::kWarn, "daemon.pool_leftover_destroyed",
        "id={} backend={} destroyed={}", info.id, backend_name, r ? "true" : r.error().message);
    if (r) {
      metrics_.Increment("agentbox_recovered_total",
                         {{"backend", backend_name}, {"what", "pool_leftover"}});
    }
  }
}

void DaemonApi::ResolveIdempotencyKeys() {
  std::lock_guard<std::mutex> lock(mu_);
  const int n = idempotency_.ResolvePending(
      [this](const std::string& owner, const std::string& digest) -> std::optional<std::string> {
        for (const auto& [id, e] : sandboxes_) {
          auto it = e.info.spec.labels.find(kIdempotencyLabel);
          if (e.info.spec.owner == owner && it != e.info.spec.labels.end() &&
              it->second == digest) {
            return id;
          }
        }
        return std::nullopt;
      });
  if (n > 0) {
    Log(LogLevel::kInfo, "idempotency.resolved_after_crash", "keys={}", n);
  }
}

bool DaemonApi::BeginIdempotentCreate(const http::Request& req, const Json& body,
                                      const Caller& caller, http::Respond& respond,
                                      std::string* digest) {
  const std::string key = req.Header("idempotency-key");
  if (key.empty()) {
    return true;
  }
  if (auto why = IdempotencyStore::InvalidKey(key)) {
    respond(JsonErrStatus(400, *why));
    return false;
  }
  // The body as parsed, keys sorted: the same request with other spacing or key order matches.
  const std::string body_hash = Sha256Hex(DumpJson(body));
  auto waiter = [this, caller, respond](const std::string& id, int status,
                                        const std::string& failure_body) {
    if (id.empty()) {
      http::Response r;
      r.status = status;
      r.body = failure_body;
      return respond(std::move(r));
    }
    ReplayCreate(id, caller, respond);
  };
  auto begun = idempotency_.Begin(caller.owner, key, body_hash, waiter);
  if (!begun) {
    respond(JsonErr(begun.error()));
    return false;
  }
  switch (begun->outcome) {
    case IdempotencyStore::Outcome::kMismatch:
      respond(JsonErrStatus(422,
                            "Idempotency-Key '" + key +
                                "' was already used with a different request body; use a new key"));
      return false;
    case IdempotencyStore::Outcome::kReplay:
      ReplayCreate(begun->id, caller, respond);
      return false;
    case IdempotencyStore::Outcome::kWaiting:
      Log(LogLevel::kInfo, "idempotency.waiting", "owner={}", caller.owner);
      return false;
    case IdempotencyStore::Outcome::kNew:
      break;
  }
  *digest = begun->digest;
  CrashPoint("daemon.create.key_recorded");
  respond = [this, d = begun->digest, respond](http::Response r) {
    if (r.status != 201) {
      idempotency_.Abandon(d, r.status, r.body);
    }
    respond(std::move(r));
  };
  return true;
}

void DaemonApi::ReplayCreate(const std::string& id, const Caller& caller,
                             const http::Respond& respond) {
  auto e = Find(id, caller);
  if (!e) {
    return respond(JsonErrStatus(
        409, "sandbox '" + id +
                 "', created by an earlier request with this Idempotency-Key, no longer exists; "
                 "use a new key to create another"));
  }
  Log(LogLevel::kInfo, "idempotency.replayed", "id={} owner={}", id, caller.owner);
  http::Response r = JsonOk(SandboxJson(*e), 201);
  r.headers.emplace_back("Idempotent-Replayed", "true");
  respond(std::move(r));
}

}  // namespace agentbox::daemon
