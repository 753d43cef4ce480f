#include "backends/jail/cgroup.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <fstream>
#include <sstream>
#include <thread>
#include <utility>

#include "api/cpu_bandwidth.h"
#include "backends/jail/result_util.h"
#include "common/unique_fd.h"

#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

namespace agentbox::jail {
namespace {


bool Exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, sep)) {
    out.push_back(cur);
  }
  return out;
}

bool HasItem(const std::string& comma_list, const std::string& item) {
  for (const auto& x : Split(comma_list, ',')) {
    if (x == item) {
      return true;
    }
  }
  return false;
}

Result<void> WriteValue(const std::string& path, const std::string& value) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) {
    return Fail(ErrnoError(errno, "open " + path));
  }
  if (::write(fd.Get(), value.data(), value.size()) != static_cast<ssize_t>(value.size())) {
    return Fail(ErrnoError(errno, "write '" + value + "' to " + path));
  }
  return {};
}

// Joins a hierarchy's mount point with a group path, given the mount's own root within the
// hierarchy (non-"/" when the hierarchy is mounted from a subgroup, as in containers).
std::string GroupDir(const std::string& mount_point, const std::string& mount_root,
                     std::string group) {
  if (mount_root != "/" && group.rfind(mount_root, 0) == 0) {
    group = group.substr(mount_root.size());
  }
  if (group.empty() || group == "/") {
    return mount_point;
  }
  return mount_point + (group[0] == '/' ? "" : "/") + group;
}

std::string ParentDir(const std::string& root, const std::string& own, const std::string& parent) {
  if (parent.empty()) {
    return own;
  }
  return GroupDir(root, "/", parent);
}

// mkdir -p for `rel` under `base`. On v2 each level enables the controllers for the next one.
Result<std::string> MakeGroup(const std::string& base, const std::string& rel, bool v2) {
  std::string dir = base;
  for (const auto& part : Split(rel, '/')) {
    if (part.empty()) {
      continue;
    }
    if (v2) {
      // Best effort: a controller already enabled, or not delegated to us, is reported when the
      // limit file is written.
      for (const char* c : {"+memory", "+pids", "+cpu"}) {
        (void)WriteValue(dir + "/cgroup.subtree_control", c);
      }
    }
    dir += "/" + part;
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
      return Fail(ErrnoError(errno, "create cgroup " + dir));
    }
  }
  return dir;
}

// The weights of a sandbox's cpu group `dir` and of its parent (CgroupConfig::cpu_weight), in
// `file` (cpu.weight or cpu.shares) at `scale` per 100 of weight. Best effort.
void WriteWeights(const std::string& dir, const CgroupConfig& cfg, const char* file, int scale) {
  auto write = [&](const std::string& group, std::optional<uint32_t> weight) {
    if (weight && Exists(group + "/" + file)) {
      const uint64_t w = std::clamp<uint64_t>(*weight, 1, 10000);
      (void)WriteValue(group + "/" + file, std::to_string(std::max<uint64_t>(2, w * scale / 100)));
    }
  };
  write(dir, cfg.cpu_weight);
  write(dir.substr(0, dir.find_last_of('/')), cfg.parent_cpu_weight);
}

std::string ReadLine(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

std::vector<pid_t> ReadProcs(const std::string& dir) {
  std::vector<pid_t> pids;
  std::ifstream in(dir + "/cgroup.procs");
  pid_t pid = 0;
  while (in >> pid) {
    pids.push_back(pid);
  }
  return pids;
}

}  // namespace

Result<CgroupLayout> DiscoverCgroups() {
  CgroupLayout layout;
  std::ifstream cg("/proc/self/cgroup");
  std::vector<std::pair<std::string, std::string>> own;  // controllers -> path
  for (std::string line; std::getline(cg, line);) {
    const size_t a = line.find(':');
    const size_t b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) {
      continue;
    }
    own.emplace_back(line.substr(a + 1, b - a - 1), line.substr(b + 1));
  }
  struct statfs sfs {};
  const bool unified = ::statfs("/sys/fs/cgroup", &sfs) == 0 && sfs.f_type == CGROUP2_SUPER_MAGIC;

  std::ifstream mi("/proc/self/mountinfo");
  for (std::string line; std::getline(mi, line);) {
    const size_t dash = line.find(" - ");
    if (dash == std::string::npos) {
      continue;
    }
    const auto pre = Split(line.substr(0, dash), ' ');
    const auto post = Split(line.substr(dash + 3), ' ');
    if (pre.size() < 5 || post.size() < 3) {
      continue;
    }
    const std::string& root = pre[3];
    const std::string& mount_point = pre[4];
    const std::string& fstype = post[0];
    const std::string& super_opts = post[2];
    if (unified && fstype == "cgroup2" && mount_point == "/sys/fs/cgroup") {
      for (const auto& [ctrls, path] : own) {
        if (ctrls.empty()) {
          std::string dir = GroupDir(mount_point, root, path);
          // v2 lets a group give controllers to child groups only if it holds no processes
          // itself (the root excepted). This process sits in its own group, so sandboxes go
          // under the hierarchy's root when that is writable (as root), like Docker's cgroupfs
          // driver; otherwise cgroup_parent must name a delegated, empty subtree.
          if (dir != mount_point && ::access(mount_point.c_str(), W_OK) == 0) {
            dir = mount_point;
          }
          layout.version = CgroupVersion::kV2;
          layout.memory_root = layout.pids_root = layout.cpu_root = mount_point;
          layout.memory_own = layout.pids_own = layout.cpu_own = dir;
        }
      }
    } else if (!unified && fstype == "cgroup") {
      for (const auto& [ctrls, path] : own) {
        const std::string dir = GroupDir(mount_point, root, path);
        if (HasItem(super_opts, "memory") && HasItem(ctrls, "memory")) {
          layout.memory_root = mount_point;
          layout.memory_own = dir;
        }
        if (HasItem(super_opts, "pids") && HasItem(ctrls, "pids")) {
          layout.pids_root = mount_point;
          layout.pids_own = dir;
        }
        if (HasItem(super_opts, "cpu") && HasItem(ctrls, "cpu")) {
          layout.cpu_root = mount_point;
          layout.cpu_own = dir;
        }
      }
    }
  }
  if (!unified &&
      !(layout.memory_root.empty() && layout.pids_root.empty() && layout.cpu_root.empty())) {
    layout.version = CgroupVersion::kV1;
    layout.memsw = Exists(layout.memory_own + "/memory.memsw.limit_in_bytes");
  }
  return layout;
}

std::vector<std::string> CgroupLimitations(const CgroupLayout& layout) {
  std::vector<std::string> out;
  if (layout.version == CgroupVersion::kNone) {
    out.push_back("cgroup limits unavailable: no cgroup hierarchy is mounted");
    return out;
  }
  const bool v2 = layout.version == CgroupVersion::kV2;
  if (v2) {
    const auto controllers = Split(ReadLine(layout.memory_own + "/cgroup.controllers"), ' ');
    for (const std::string c : {"memory", "pids", "cpu"}) {
      if (std::find(controllers.begin(), controllers.end(), c) == controllers.end()) {
        out.push_back(c + " limit unavailable: the " + c + " controller is not available in " +
                      layout.memory_own);
      }
    }
  }
  auto check = [&](const std::string& own, const char* what) {
    if (own.empty()) {
      out.push_back(std::string(what) + " limit unavailable: no " + what + " cgroup controller");
    } else if (::access(own.c_str(), W_OK) != 0) {
      out.push_back(std::string("cgroup limits unavailable: ") +
                    (::geteuid() == 0 ? "cgroup " + own + " is not writable"
                                      : std::string("not root and no delegated cgroup")));
    }
  };
  check(layout.memory_own, "memory");
  if (!v2) {
    check(layout.pids_own, "pids");
    check(layout.cpu_own, "cpu");
    if (!layout.memory_own.empty() && !layout.memsw) {
      out.push_back("swap not limited: memory.memsw accounting is off (swapaccount=0)");
    }
  }
  // Several controllers failing for the same reason say it once.
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

Result<SandboxCgroup> SandboxCgroup::Create(const CgroupConfig& cfg) {
  if (cfg.name.empty()) {
    return Fail(ErrorCode::kInvalidArgument, "cgroup: empty group name");
  }
  auto layout = DiscoverCgroups();
  if (!layout) {
    return Fail(layout.error());
  }
  SandboxCgroup cg;
  auto need = [&](const std::string& own, const char* what) -> Result<void> {
    if (own.empty()) {
      return Fail(ErrorCode::kUnavailable,
                  std::string(what) + " limit requested but no " + what + " cgroup is available");
    }
    return {};
  };
  if (layout->version == CgroupVersion::kV2) {
    if (!cfg.memory_bytes && !cfg.pids && !cfg.cpus && !cfg.cpu_weight) {
      return cg;
    }
    auto dir = MakeGroup(ParentDir(layout->memory_root, layout->memory_own, cfg.parent), cfg.name,
                         /*v2=*/true);
    if (!dir && !cfg.memory_bytes && !cfg.pids && !cfg.cpus) {
      return cg;  // weights only: best effort
    }
    if (!dir) {
      return Fail(dir.error());
    }
    cg.paths_.push_back(*dir);
    for (const auto& [wanted, file] : {std::pair{cfg.memory_bytes.has_value(), "memory.max"},
                                       std::pair{cfg.pids.has_value(), "pids.max"},
                                       std::pair{cfg.cpus.has_value(), "cpu.max"}}) {
      if (wanted && !Exists(*dir + "/" + file)) {
        return Fail(ErrorCode::kUnavailable,
                    std::string("cgroup v2: ") + file + " missing in " + *dir +
                        ": the controller is not delegated to its parent (set cgroup_parent to "
                        "an empty, delegated subtree)");
      }
    }
    if (cfg.memory_bytes) {
      JAIL_RETURN_IF_ERROR(WriteValue(*dir + "/memory.max", std::to_string(*cfg.memory_bytes)));
      if (Exists(*dir + "/memory.swap.max")) {
        JAIL_RETURN_IF_ERROR(WriteValue(*dir + "/memory.swap.max", "0"));
      }
    }
    if (cfg.pids) {
      JAIL_RETURN_IF_ERROR(WriteValue(*dir + "/pids.max", std::to_string(*cfg.pids)));
    }
    if (cfg.cpus) {
      const CpuBandwidth b = CpuBandwidthOf(*cfg.cpus);
      JAIL_RETURN_IF_ERROR(WriteValue(*dir + "/cpu.max", std::to_string(b.quota_us) + " " +
                                                             std::to_string(b.period_us)));
    }
    WriteWeights(*dir, cfg, "cpu.weight", 100);
    return cg;
  }
  if (cfg.memory_bytes) {
    JAIL_RETURN_IF_ERROR(need(layout->memory_own, "memory"));
    auto dir =
        MakeGroup(ParentDir(layout->memory_root, layout->memory_own, cfg.parent), cfg.name, false);
    if (!dir) {
      return Fail(dir.error());
    }
    cg.paths_.push_back(*dir);
    const std::string v = std::to_string(*cfg.memory_bytes);
    JAIL_RETURN_IF_ERROR(WriteValue(*dir + "/memory.limit_in_bytes", v));
    if (Exists(*dir + "/memory.memsw.limit_in_bytes")) {
      JAIL_RETURN_IF_ERROR(WriteValue(*dir + "/memory.memsw.limit_in_bytes", v));
    }
  }
  if (cfg.pids) {
    JAIL_RETURN_IF_ERROR(need(layout->pids_own, "pids"));
    auto dir =
        MakeGroup(ParentDir(layout->pids_root, layout->pids_own, cfg.parent), cfg.name, false);
    if (!dir) {
      return Fail(dir.error());
    }
    cg.paths_.push_back(*dir);
    JAIL_RETURN_IF_ERROR(WriteValue(*dir + "/pids.max", std::to_string(*cfg.pids)));
  }
  if (cfg.cpus || (cfg.cpu_weight && !layout->cpu_own.empty())) {
    JAIL_RETURN_IF_ERROR(need(layout->cpu_own, "cpu"));
    auto dir = MakeGroup(ParentDir(layout->cpu_root, layout->cpu_own, cfg.parent), cfg.name, false);
    if (!dir) {
      if (!cfg.cpus) {
        return cg;  // weights are best effort
      }
      return Fail(dir.error());
    }
    cg.paths_.push_back(*dir);
    WriteWeights(*dir, cfg, "cpu.shares", 1024);
  }
  if (cfg.cpus) {
    const std::string* dir = &cg.paths_.back();
    const CpuBandwidth b = CpuBandwidthOf(*cfg.cpus);
    JAIL_RETURN_IF_ERROR(WriteValue(*dir + "/cpu.cfs_period_us", std::to_string(b.period_us)));
    JAIL_RETURN_IF_ERROR(WriteValue(*dir + "/cpu.cfs_quota_us", std::to_string(b.quota_us)));
  }
  return cg;
}

SandboxCgroup::SandboxCgroup(SandboxCgroup&& other) noexcept
    : paths_(std::exchange(other.paths_, {})) {}

SandboxCgroup& SandboxCgroup::operator=(SandboxCgroup&& other) noexcept {
  if (this != &other) {
    (void)RemoveCgroups(paths_, std::chrono::seconds(5));
    paths_ = std::exchange(other.paths_, {});
  }
  return *this;
}

SandboxCgroup::~SandboxCgroup() {
  if (!paths_.empty()) {
    (void)RemoveCgroups(paths_, std::chrono::seconds(5));
  }
}

Result<void> SandboxCgroup::Attach(pid_t pid) const {
  for (const auto& dir : paths_) {
    JAIL_RETURN_IF_ERROR(WriteValue(dir + "/cgroup.procs", std::to_string(pid)));
  }
  return {};
}

std::vector<std::string> SandboxCgroup::Release() { return std::exchange(paths_, {}); }

Result<void> RemoveCgroups(const std::vector<std::string>& paths,
                           std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (const auto& dir : paths) {
    for (;;) {
      if (::rmdir(dir.c_str()) == 0 || errno == ENOENT) {
        break;
      }
      if (errno != EBUSY) {
        return Fail(ErrnoError(errno, "remove cgroup " + dir));
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        return Fail(ErrorCode::kTimeout, "cgroup " + dir + " still has tasks");
      }
      // Still populated: kill what is left. v1 offers no exit notification for a group, so
      // retry on a short, bounded back-off until the tasks are gone.
      if (Exists(dir + "/cgroup.kill")) {
        (void)WriteValue(dir + "/cgroup.kill", "1");
      } else {
        for (pid_t pid : ReadProcs(dir)) {
          ::kill(pid, SIGKILL);
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  return {};
}

}  // namespace agentbox::jail
