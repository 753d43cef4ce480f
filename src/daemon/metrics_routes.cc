// GET /v1/sandboxes/{id}/metrics: what a sandbox uses right now (SandboxBackend::Metrics), also
// behind the E2B API's getMetrics (daemon/e2b/e2b_api.cc).
#include <chrono>

#include "daemon/daemon_api.h"

namespace agentbox::daemon {

Json SandboxMetricsJson(const std::string& id, const SandboxMetrics& m) {
  return {{"sandbox_id", id},
          {"timestamp", m.timestamp},
          {"cpu_count", m.cpu_count},
          {"cpu_used_pct", m.cpu_used_pct},
          {"cpu_window_s", m.window_s},
          {"mem_used_bytes", m.mem_used_bytes},
          {"mem_cache_bytes", m.mem_cache_bytes},
          {"mem_total_bytes", m.mem_total_bytes},
          {"disk_used_bytes", m.disk_used_bytes},
          {"disk_total_bytes", m.disk_total_bytes},
          {"disk_source", m.disk_source}};
}

void DaemonApi::GetMetrics(const std::string& id, const Caller& caller, http::Respond respond) {
  auto e = Find(id, caller);
  if (!e) {
    return respond(JsonErr({ErrorCode::kNotFound, "sandbox '" + id + "' not found"}));
  }
  if (!e->backend->GetCapabilities().metrics) {
    return respond(JsonErrStatus(
        501, "the " + e->info.backend +
                 " backend does not report metrics (its sandboxes run on machines agentboxd "
                 "cannot see; docs/api.md)"));
  }
  // Off the I/O thread: the reading spans a CPU window (jail 250 ms, docker the engine's ~1 s).
  pool_.Post([this, e = *e, respond] {
    using Clock = std::chrono::steady_clock;
    const auto start = Clock::now();
    auto m = e.backend->Metrics(e.info.id);
    Count(e.info.backend, "metrics", m.has_value() || HttpStatus(m.error().code) < 500,
          std::chrono::duration<double>(Clock::now() - start).count());
    if (!m) {
      return respond(JsonErr(m.error()));
    }
    respond(JsonOk(SandboxMetricsJson(e.info.id, *m)));
  });
}

}  // namespace agentbox::daemon
