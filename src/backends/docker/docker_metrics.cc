#include "backends/docker/docker_metrics.h"

#include <sys/statvfs.h>

#include <algorithm>

#include "backends/docker/container_request.h"
#include "backends/docker/docker_backend.h"
#include "backends/docker/sandbox_disk.h"
#include "common/json_util.h"
#include "common/time_util.h"

namespace agentbox::docker {

namespace {

uint64_t U64(const Json& j, const char* key) {
  return j.is_object() && j.contains(key) && j[key].is_number_unsigned() ? j[key].get<uint64_t>()
                                                                         : 0;
}

const Json& Obj(const Json& j, const char* key) {
  static const Json empty = Json::object();
  return j.is_object() && j.contains(key) && j[key].is_object() ? j[key] : empty;
}

}  // namespace

Result<SandboxMetrics> MetricsFromStats(const Json& stats, std::optional<double> cpus) {
  const Json& cpu = Obj(stats, "cpu_stats");
  const Json& pre = Obj(stats, "precpu_stats");
  const Json& mem = Obj(stats, "memory_stats");
  const uint64_t total = U64(Obj(cpu, "cpu_usage"), "total_usage");
  const uint64_t system = U64(cpu, "system_cpu_usage");
  if (system == 0 || !mem.contains("usage")) {
    return Fail(ErrorCode::kBadGateway,
                "the Docker engine's stats carry no CPU or memory reading (is the container "
                "running?)");
  }
  uint64_t online = U64(cpu, "online_cpus");
  if (online == 0 && Obj(cpu, "cpu_usage").contains("percpu_usage") &&
      cpu["cpu_usage"]["percpu_usage"].is_array()) {
    online = cpu["cpu_usage"]["percpu_usage"].size();
  }
  online = std::max<uint64_t>(online, 1);
  SandboxMetrics m;
  m.cpu_count = cpus ? *cpus : static_cast<double>(online);
  const uint64_t pre_total = U64(Obj(pre, "cpu_usage"), "total_usage");
  const uint64_t pre_system = U64(pre, "system_cpu_usage");
  if (pre_system > 0 && system > pre_system && total >= pre_total) {
    // system_cpu_usage counts every online CPU: the window is its growth over `online`.
    const double window_ns = static_cast<double>(system - pre_system) / static_cast<double>(online);
    m.window_s = window_ns / 1e9;
    m.cpu_used_pct = std::min(100.0, 100.0 * static_cast<double>(total - pre_total) /
                                         (window_ns * std::max(m.cpu_count, 0.01)));
  }
  const Json& ms = Obj(mem, "stats");
  const uint64_t usage = U64(mem, "usage");
  // cgroup v2 engines: file / inactive_file; v1: cache / total_inactive_file.
  const uint64_t inactive =
      ms.contains("inactive_file") ? U64(ms, "inactive_file") : U64(ms, "total_inactive_file");
  m.mem_cache_bytes = ms.contains("file") ? U64(ms, "file") : U64(ms, "cache");
  m.mem_used_bytes = usage > inactive ? usage - inactive : 0;
  m.mem_total_bytes = U64(mem, "limit");
  return m;
}

Result<SandboxMetrics> DockerBackend::Metrics(const std::string& id) {
  auto c = InspectOurs(id);
  if (!c) {
    return Fail(c.error());
  }
  auto info = InfoFromInspect(*c);
  if (!info) {
    return Fail(info.error());
  }
  if (info->state != SandboxState::kRunning) {
    return Fail(ErrorCode::kUnavailable, "sandbox '" + id + "' is not running");
  }
  // stream=false without one-shot: the engine waits for a second reading (about 1 s) so the
  // answer holds the CPU used between the two.
  auto r = engine_.Call("GET", "/containers/" + ContainerName(id) + "/stats?stream=false", {},
                        std::chrono::seconds(20));
  if (!r) {
    return Fail(r.error());
  }
  if (r->status == 404) {
    return Fail(SandboxNotFound(id));
  }
  if (r->status != 200) {
    return Fail(EngineError(*r, "stats of container " + ContainerName(id)));
  }
  const Json stats = ParseUntrustedJson(r->body);
  auto m = MetricsFromStats(stats, info->spec.limits.cpus);
  if (!m) {
    return Fail(m.error());
  }
  const std::string dir = SandboxDir(id);
  if (auto u = disk::UsageOf(dir + "/disk")) {
    m->disk_used_bytes = u->used_bytes;
    m->disk_total_bytes = u->size_bytes;
    m->disk_source = "sandbox_disk";
  } else {
    // No disk of its own: the container's writable layer, on the engine's filesystem.
    auto sized = engine_.Call("GET", "/containers/" + ContainerName(id) + "/json?size=1");
    if (sized && sized->status == 200) {
      const Json j = ParseUntrustedJson(sized->body);
      m->disk_used_bytes = U64(j, "SizeRw");
    }
    auto engine_info = engine_.Call("GET", "/info");
    if (engine_info && engine_info->status == 200) {
      const Json j = ParseUntrustedJson(engine_info->body);
      const std::string root = j.is_object() ? ValueOr(j, "DockerRootDir", "") : "";
      struct statvfs v {};
      if (!root.empty() && ::statvfs(root.c_str(), &v) == 0) {
        m->disk_total_bytes = static_cast<uint64_t>(v.f_blocks) * v.f_frsize;
      }
    }
    m->disk_source = "writable_layer";
  }
  m->timestamp = NowUnix();
  return m;
}

}  // namespace agentbox::docker
