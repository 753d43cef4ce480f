#pragma once

#include <algorithm>
#include <cstdint>

namespace agentbox {

// How a `cpus` limit becomes a CFS bandwidth limit (jail: cpu.cfs_quota_us / cpu.max; docker:
// CpuQuota / CpuPeriod), in microseconds. The period is 10 ms, not the kernel's 100 ms: a sandbox
// limited to one CPU whose processes run on every core burns its quota in a fraction of the
// period and stalls the other sandboxes meanwhile, for at most one period
// (docs/reliability.md §4). Small limits get a longer period, so that the quota stays at or above
// the kernel's 1 ms minimum and the limit is exact (0.01 CPU: 1 ms every 100 ms).
struct CpuBandwidth {
  int64_t quota_us;
  int64_t period_us;
};
inline CpuBandwidth CpuBandwidthOf(double cpus) {
  const double period = std::clamp(1000.0 / cpus, 10000.0, 1000000.0);
  const auto period_us = static_cast<int64_t>(period);
  return {std::max<int64_t>(1000, static_cast<int64_t>(cpus * period + 0.5)), period_us};
}

// The CPU weight of all sandboxes of a backend together (cgroup v2 scale, 100 the default; v1
// cpu.shares = weight * 1024 / 100): half of one agentboxd thread, so that the daemon's work for
// every sandbox keeps its share however busy the sandboxes are (jail: the `agentbox` group;
// docker: the containers' cgroup parent, docs/reliability.md §4).
inline constexpr uint32_t kSandboxesCpuWeight = 50;

}  // namespace agentbox
