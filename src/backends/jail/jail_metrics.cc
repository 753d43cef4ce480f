// JailBackend::Metrics: the sandbox's cgroups and its disk, read from the host.
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <map>
#include <thread>

#include "backends/disk/disk.h"
#include "backends/jail/cgroup_usage.h"
#include "backends/jail/jail_backend.h"
#include "backends/jail/process.h"
#include "common/time_util.h"

namespace agentbox::jail {

namespace {

// Long enough for a few scheduler ticks (per-process times count in 10 ms ticks), short enough
// for an interactive call.
constexpr auto kCpuWindow = std::chrono::milliseconds(250);

}  // namespace

Result<SandboxMetrics> JailBackend::Metrics(const std::string& id) {
  auto rec = LoadRecord(id);
  if (!rec) {
    return Fail(rec.error());
  }
  if (GetProcessStatus(rec->init) != ProcessStatus::kRunning) {
    return Fail(ErrorCode::kUnavailable, "sandbox '" + id + "' is not running");
  }
  SandboxMetrics m;
  const auto& limits = rec->spec.limits;
  const long host_cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
  m.cpu_count = limits.cpus ? *limits.cpus : static_cast<double>(host_cpus > 0 ? host_cpus : 1);

  // CPU: the group's cumulative time twice, kCpuWindow apart. Without a group that accounts CPU
  // (cgroup v1 with no cpuacct group for the jail), the times of its processes instead.
  // An unprivileged jail has no cgroups: its processes are then read from /proc.
  auto read_usage = [&rec] {
    return rec->cgroups.empty() ? ReadProcessTreeUsage(rec->init.pid)
                                : ReadCgroupUsage(rec->cgroups);
  };
  auto first = read_usage();
  if (!first) {
    return Fail(ErrorCode::kUnavailable, "sandbox '" + id + "': " + first.error().message);
  }
  const auto procs_before = first->cpu_usec ? std::map<pid_t, uint64_t>{}
                                            : ProcessCpuUsec(first->pids);
  const auto t0 = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(kCpuWindow);
  auto second = read_usage();
  if (!second) {
    return Fail(ErrorCode::kUnavailable, "sandbox '" + id + "': " + second.error().message);
  }
  const double window_us =
      std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
  uint64_t used_us = 0;
  if (first->cpu_usec && second->cpu_usec) {
    used_us = *second->cpu_usec > *first->cpu_usec ? *second->cpu_usec - *first->cpu_usec : 0;
  } else {
    used_us = CpuUsecBetween(procs_before, ProcessCpuUsec(second->pids));
  }
  m.window_s = window_us / 1e6;
  m.cpu_used_pct = std::min(100.0, 100.0 * static_cast<double>(used_us) /
                                       (window_us * std::max(m.cpu_count, 0.01)));

  // Memory: what the group is charged, less the file cache the kernel can take back (without
  // cgroups: its processes' resident memory).
  const uint64_t usage = second->mem_usage.value_or(0);
  m.mem_cache_bytes = second->mem_cache;
  m.mem_used_bytes = usage > second->mem_inactive_file ? usage - second->mem_inactive_file : 0;
  if (second->mem_limit) {
    m.mem_total_bytes = *second->mem_limit;
  } else if (limits.memory_bytes) {
    m.mem_total_bytes = *limits.memory_bytes;
  } else {
    m.mem_total_bytes = static_cast<uint64_t>(::sysconf(_SC_PHYS_PAGES)) *
                        static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  }

  // Disk: the sandbox's own filesystem, else the one holding its directory (shared).
  const std::string dir = SandboxDir(id);
  if (auto u = disk::UsageOf(dir + "/disk")) {
    m.disk_used_bytes = u->used_bytes;
    m.disk_total_bytes = u->size_bytes;
    m.disk_source = "sandbox_disk";
  } else {
    struct statvfs v {};
    if (::statvfs(dir.c_str(), &v) != 0) {
      return Fail(ErrnoError(errno, "statvfs " + dir));
    }
    m.disk_total_bytes = static_cast<uint64_t>(v.f_blocks) * v.f_frsize;
    m.disk_used_bytes = static_cast<uint64_t>(v.f_blocks - v.f_bfree) * v.f_frsize;
    m.disk_source = "host_filesystem";
  }
  m.timestamp = NowUnix();
  return m;
}

}  // namespace agentbox::jail
