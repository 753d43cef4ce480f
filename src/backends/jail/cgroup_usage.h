#pragma once

// What a jail's cgroups say it uses, for JailBackend::Metrics (jail_metrics.cc). Reads files
// only; the directories are the ones SandboxRecord::cgroups names (cgroup v1: one per
// controller; v2: one group).

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/error.h"

namespace agentbox::jail {

struct CgroupUsage {
  // Cumulative CPU time of the group's tasks (v2 cpu.stat usage_usec, v1 cpuacct.usage), when a
  // group accounts it. A v1 jail without a cpuacct group has none: see ProcessCpuUsec.
  std::optional<uint64_t> cpu_usec;
  std::optional<uint64_t> mem_usage;  // v2 memory.current, v1 memory.usage_in_bytes
  std::optional<uint64_t> mem_limit;  // memory.max / memory.limit_in_bytes; unset when unlimited
  uint64_t mem_cache = 0;             // file cache (v2 `file`, v1 `total_cache`)
  uint64_t mem_inactive_file = 0;     // the reclaimable part of it
  std::vector<pid_t> pids;            // processes of the group (cgroup.procs)
};

// Reads every directory of `paths` and merges what each has. kNotFound when none of them exists
// any more (the jail is gone).
Result<CgroupUsage> ReadCgroupUsage(const std::vector<std::string>& paths);

// For a jail without cgroups (an unprivileged agentboxd makes none): the processes of the pid
// namespace whose init is `init` (it and its descendants: orphans in a pid namespace are adopted
// by its init), from <proc_root>/*/stat, and their resident memory summed from VmRSS (a page
// shared by two of them counts twice). No cpu_usec: see ProcessCpuUsec. kNotFound when `init`
// is gone.
Result<CgroupUsage> ReadProcessTreeUsage(pid_t init, const std::string& proc_root = "/proc");

// CPU time (user + system, all threads) of each process of `pids` that still exists, in
// microseconds, from <proc_root>/<pid>/stat.
std::map<pid_t, uint64_t> ProcessCpuUsec(const std::vector<pid_t>& pids,
                                         const std::string& proc_root = "/proc");

// CPU time used between two ProcessCpuUsec readings: each process's growth, and all of the
// time of processes that appeared in between (they started within the window).
uint64_t CpuUsecBetween(const std::map<pid_t, uint64_t>& before,
                        const std::map<pid_t, uint64_t>& after);

}  // namespace agentbox::jail
