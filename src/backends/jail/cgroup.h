#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "api/cpu_bandwidth.h"

#include "common/error.h"

namespace agentbox::jail {

// Resource limits of one jail, enforced by cgroups.
struct CgroupConfig {
  // Group created for the jail, relative to `parent`, e.g. "agentbox/<id>".
  std::string name;
  // Path inside each hierarchy under which `name` is created. Empty: the default of
  // CgroupLayout (v1: the creating process's own cgroup, so sandboxes are accounted within the
  // daemon's group; v2: the hierarchy's root when writable).
  std::string parent;
  std::optional<uint64_t> memory_bytes;  // memory (and memory+swap on v1 when available)
  std::optional<uint32_t> pids;          // processes + threads
  std::optional<double> cpus;            // CFS quota in cores, e.g. 0.5
  // CPU weight (cgroup v2 scale: 1..10000, 100 the default; v1 cpu.shares = weight * 1024 / 100)
  // of the group, and of the group above it (`name`'s parent, e.g. "agentbox": every sandbox
  // together). With a weight, the group is made even without a quota, so that a sandbox is one
  // scheduling entity however many processes it has (its fair share, not one per process), and
  // all sandboxes together weigh `parent_cpu_weight` against agentboxd's threads. Best effort:
  // without a usable cpu controller the weights are left out (no error).
  std::optional<uint32_t> cpu_weight;
  std::optional<uint32_t> parent_cpu_weight;
};

// The weights the jail backend gives (CgroupConfig::cpu_weight): each sandbox the default, all
// sandboxes together half of the default (one of agentboxd's threads weighs the default).
inline constexpr uint32_t kSandboxCpuWeight = 100;
inline constexpr uint32_t kSandboxesCpuWeight = agentbox::kSandboxesCpuWeight;

enum class CgroupVersion { kNone, kV1, kV2 };

// The hierarchies usable here: cgroup v2 when /sys/fs/cgroup is cgroup2, else v1 hierarchies
// found in /proc/self/mountinfo. The *_own paths are the absolute directories under which
// sandbox groups go by default: on v1 this process's own group in each hierarchy; on v2 the
// hierarchy's root when writable (a v2 group holding processes, as this process's own does,
// cannot give controllers to child groups), else this process's own group.
struct CgroupLayout {
  CgroupVersion version = CgroupVersion::kNone;
  std::string memory_root;  // v1: the memory hierarchy's mount point; v2: the unified mount
  std::string memory_own;   // this process's group in it (absolute directory)
  std::string pids_root, pids_own;
  std::string cpu_root, cpu_own;
  bool memsw = false;  // v1 memory.memsw.* present (swap accounting on)
};
Result<CgroupLayout> DiscoverCgroups();

// Human-readable limits of cgroup support for Probe(): empty when every limit works.
std::vector<std::string> CgroupLimitations(const CgroupLayout& layout);

// The cgroups of one jail: one group per v1 controller that has a limit, or one v2 group.
// Owns the directories: they are removed (tasks killed) on destruction unless Release()d.
class SandboxCgroup {
 public:
  // Creates the groups and writes the limits. Fails if a limit is set whose controller is not
  // available or not writable (then nothing is left behind).
  static Result<SandboxCgroup> Create(const CgroupConfig& cfg);

  SandboxCgroup(SandboxCgroup&& other) noexcept;
  SandboxCgroup& operator=(SandboxCgroup&& other) noexcept;
  SandboxCgroup(const SandboxCgroup&) = delete;
  SandboxCgroup& operator=(const SandboxCgroup&) = delete;
  ~SandboxCgroup();

  // Moves `pid` (a process, with all its threads) into every group.
  Result<void> Attach(pid_t pid) const;
  const std::vector<std::string>& paths() const { return paths_; }
  // Gives up ownership: the directories outlive this object.
  std::vector<std::string> Release();

 private:
  SandboxCgroup() = default;
  std::vector<std::string> paths_;
};

// Kills every task in each group of `paths` and removes the directories, waiting up to
// `timeout` for the tasks to exit. Groups already gone count as removed. Safe to call
// concurrently from several processes for the same paths.
Result<void> RemoveCgroups(const std::vector<std::string>& paths,
                           std::chrono::milliseconds timeout);

}  // namespace agentbox::jail
