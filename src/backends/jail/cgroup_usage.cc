#include "backends/jail/cgroup_usage.h"

#include <dirent.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace agentbox::jail {

namespace {

std::optional<std::string> ReadText(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return std::nullopt;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::optional<uint64_t> ReadNumber(const std::string& path) {
  auto text = ReadText(path);
  if (!text) {
    return std::nullopt;
  }
  try {
    size_t used = 0;
    const uint64_t v = std::stoull(*text, &used);
    return v;
  } catch (...) {
    return std::nullopt;  // "max", empty
  }
}

// `key value` lines (cpu.stat, memory.stat).
std::map<std::string, uint64_t> ReadKeyed(const std::string& path) {
  std::map<std::string, uint64_t> out;
  std::ifstream in(path);
  std::string key;
  uint64_t value = 0;
  while (in >> key >> value) {
    out[key] = value;
  }
  return out;
}

bool IsDir(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

// v1 reports "no limit" as a page-rounded LLONG_MAX.
constexpr uint64_t kV1Unlimited = 1ull << 62;

}  // namespace

Result<CgroupUsage> ReadCgroupUsage(const std::vector<std::string>& paths) {
  CgroupUsage u;
  bool any = false;
  for (const auto& dir : paths) {
    if (!IsDir(dir)) {
      continue;
    }
    any = true;
    if (u.pids.empty()) {
      std::ifstream procs(dir + "/cgroup.procs");
      for (pid_t pid = 0; procs >> pid;) {
        u.pids.push_back(pid);
      }
    }
    if (!u.cpu_usec) {
      if (auto stat = ReadKeyed(dir + "/cpu.stat"); stat.count("usage_usec")) {
        u.cpu_usec = stat["usage_usec"];  // v2
      } else if (auto ns = ReadNumber(dir + "/cpuacct.usage")) {
        u.cpu_usec = *ns / 1000;  // v1, nanoseconds
      }
    }
    if (!u.mem_usage) {
      if (auto cur = ReadNumber(dir + "/memory.current")) {  // v2
        u.mem_usage = cur;
        u.mem_limit = ReadNumber(dir + "/memory.max");  // unset for "max"
        auto stat = ReadKeyed(dir + "/memory.stat");
        u.mem_cache = stat["file"];
        u.mem_inactive_file = stat["inactive_file"];
      } else if (auto used = ReadNumber(dir + "/memory.usage_in_bytes")) {  // v1
        u.mem_usage = used;
        if (auto lim = ReadNumber(dir + "/memory.limit_in_bytes"); lim && *lim < kV1Unlimited) {
          u.mem_limit = lim;
        }
        auto stat = ReadKeyed(dir + "/memory.stat");
        u.mem_cache = stat.count("total_cache") ? stat["total_cache"] : stat["cache"];
        u.mem_inactive_file = stat.count("total_inactive_file") ? stat["total_inactive_file"]
                                                                : stat["inactive_file"];
      }
    }
  }
  if (!any) {
    return Fail(ErrorCode::kNotFound, "the sandbox's cgroups are gone");
  }
  return u;
}

Result<CgroupUsage> ReadProcessTreeUsage(pid_t init, const std::string& proc_root) {
  // pid -> parent of every process; "pid (comm) state ppid ...", comm may hold spaces and ')'.
  std::map<pid_t, pid_t> parent;
  if (DIR* d = ::opendir(proc_root.c_str())) {
    while (const dirent* e = ::readdir(d)) {
      char* end = nullptr;
      const long pid = std::strtol(e->d_name, &end, 10);
      if (end == e->d_name || *end != '\0' || pid <= 0) {
        continue;
      }
      auto stat = ReadText(proc_root + "/" + e->d_name + "/stat");
      const size_t close = stat ? stat->rfind(')') : std::string::npos;
      if (close == std::string::npos) {
        continue;  // gone meanwhile
      }
      std::istringstream rest(stat->substr(close + 1));
      std::string state;
      long ppid = 0;
      if (rest >> state >> ppid) {
        parent[static_cast<pid_t>(pid)] = static_cast<pid_t>(ppid);
      }
    }
    ::closedir(d);
  }
  if (!parent.count(init)) {
    return Fail(ErrorCode::kNotFound, "the sandbox's processes are gone");
  }
  CgroupUsage u;
  uint64_t rss_kib = 0;
  for (const auto& [pid, ppid] : parent) {
    bool inside = pid == init;
    // Walk up to init or the top; pid namespaces nest, so the chain is short.
    for (pid_t up = ppid; !inside && up > 1;) {
      inside = up == init;
      auto it = parent.find(up);
      up = it == parent.end() ? 0 : it->second;
    }
    if (!inside) {
      continue;
    }
    u.pids.push_back(pid);
    std::ifstream status(proc_root + "/" + std::to_string(pid) + "/status");
    for (std::string line; std::getline(status, line);) {
      if (line.rfind("VmRSS:", 0) == 0) {
        rss_kib += std::strtoull(line.c_str() + 6, nullptr, 10);
        break;
      }
    }
  }
  u.mem_usage = rss_kib * 1024;
  return u;
}

std::map<pid_t, uint64_t> ProcessCpuUsec(const std::vector<pid_t>& pids,
                                         const std::string& proc_root) {
  static const long ticks = ::sysconf(_SC_CLK_TCK);
  std::map<pid_t, uint64_t> out;
  for (pid_t pid : pids) {
    auto text = ReadText(proc_root + "/" + std::to_string(pid) + "/stat");
    if (!text) {
      continue;  // exited
    }
    // The command name (field 2) may hold spaces and parentheses: fields count from the last ')'.
    const size_t close = text->rfind(')');
    if (close == std::string::npos) {
      continue;
    }
    std::istringstream in(text->substr(close + 1));
    std::string field;
    uint64_t utime = 0, stime = 0;
    // After ')': state(3) ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt
    // utime(14) stime(15).
    for (int i = 3; i <= 13 && (in >> field); ++i) {
    }
    if (!(in >> utime >> stime)) {
      continue;
    }
    out[pid] = (utime + stime) * 1'000'000 / static_cast<uint64_t>(ticks > 0 ? ticks : 100);
  }
  return out;
}

uint64_t CpuUsecBetween(const std::map<pid_t, uint64_t>& before,
                        const std::map<pid_t, uint64_t>& after) {
  uint64_t total = 0;
  for (const auto& [pid, usec] : after) {
    auto it = before.find(pid);
    if (it == before.end()) {
      total += usec;
    } else if (usec > it->second) {
      total += usec - it->second;
    }
  }
  return total;
}

}  // namespace agentbox::jail
