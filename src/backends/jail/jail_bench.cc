// Measures the jail backend: create -> first exec latency, and memory per idle sandbox.
//
//   agentbox_jail_bench [--creates N] [--idle M] [--state-dir DIR] [--image IMAGE] [--verbose]
//
// --image: the sandboxes' image (any form of docs/images.md: an overlay root over its layers).
//
// With --image every sandbox is created from IMAGE (docs/images.md); the first create (the
// warm-up) then includes fetching and unpacking the image when the cache does not hold it yet,
// and is reported on its own.
// Prints figures; it is a benchmark program, not a test. Needs what the jail needs (see Probe).
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "backends/jail/jail_test_util.h"
#include "backends/jail/process.h"
#include "backends/jail/sandbox_record.h"
#include "common/log.h"

namespace {

using namespace agentbox;
using namespace agentbox::jail;
using namespace agentbox::jail::testing;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  return v[i];
}

// kB of a "Key:   N kB" line in a /proc file.
long KbField(const std::string& text, const std::string& key) {
  const size_t at = text.find(key + ":");
  return at == std::string::npos ? 0 : std::atol(text.c_str() + at + key.size() + 1);
}

struct Mem {
  long rss_kb = 0;
  long pss_kb = 0;
};

Mem MemOf(pid_t pid) {
  const std::string p = "/proc/" + std::to_string(pid);
  return {KbField(ReadText(p + "/status"), "VmRSS"), KbField(ReadText(p + "/smaps_rollup"), "Pss")};
}

// Every host process in the pid namespace of `pid` (the jail's processes).
std::vector<pid_t> JailProcesses(pid_t init) {
  std::error_code ec;
  const auto ns = std::filesystem::read_symlink("/proc/" + std::to_string(init) + "/ns/pid", ec);
  std::vector<pid_t> out;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) {
      continue;
    }
    if (std::filesystem::read_symlink(e.path() / "ns/pid", ec) == ns && !ec) {
      out.push_back(std::stoi(name));
    }
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  int creates = 20;
  int idle = 10;
  std::string state_dir;
  SandboxSpec spec;
  bool verbose = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--verbose") == 0) {
      verbose = true;  // keep the backend's log lines (jail.created has per-stage times)
    }
  }
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--creates") == 0) {
      creates = std::atoi(argv[i + 1]);
    } else if (std::strcmp(argv[i], "--idle") == 0) {
      idle = std::atoi(argv[i + 1]);
    } else if (std::strcmp(argv[i], "--state-dir") == 0) {
      state_dir = argv[i + 1];
    } else if (std::strcmp(argv[i], "--image") == 0) {
      spec.image = argv[i + 1];
    }
  }
  SetLogLevel(verbose ? LogLevel::kInfo : LogLevel::kWarn);
  TempDir tmp("agentbox-jail-bench");
  if (state_dir.empty()) {
    state_dir = tmp.path() + "/state";
  }
  JailBackend backend(TestOptions(state_dir));
  const ProbeResult probe = backend.Probe();
  if (!probe.usable) {
    std::fprintf(stderr, "jail unusable: %s\n", probe.reason.c_str());
    return 1;
  }
  for (const auto& l : probe.limitations) {
    std::printf("limitation: %s\n", l.c_str());
  }

  // Warm-up (page cache, first cgroup creation; with --image, fetching and unpacking it).
  const auto w0 = Clock::now();
  if (auto w = backend.Create("warmup", spec); w) {
    const auto w1 = Clock::now();
    Exec(*w, "true");
    if (!spec.image.empty()) {
      std::printf("first create from %s (fetch + unpack included)   %.1f ms, + first exec %.1f ms\n",
                  spec.image.c_str(), Ms(w1 - w0), Ms(Clock::now() - w1));
    }
    (void)backend.Destroy("warmup");
  } else {
    std::fprintf(stderr, "create failed: %s\n", w.error().message.c_str());
    return 1;
  }

  std::vector<double> create_ms, exec_ms, total_ms, destroy_ms;
  for (int i = 0; i < creates; ++i) {
    const std::string id = "bench" + std::to_string(i);
    const auto t0 = Clock::now();
    auto info = backend.Create(id, spec);
    const auto t1 = Clock::now();
    if (!info) {
      std::fprintf(stderr, "create failed: %s\n", info.error().message.c_str());
      return 1;
    }
    const ExecResult r = Exec(*info, "echo hi");
    const auto t2 = Clock::now();
    if (r.output != "hi\n") {
      std::fprintf(stderr, "exec failed: %s %s\n", r.error.c_str(), r.output.c_str());
      return 1;
    }
    (void)backend.Destroy(id);
    const auto t3 = Clock::now();
    create_ms.push_back(Ms(t1 - t0));
    exec_ms.push_back(Ms(t2 - t1));
    total_ms.push_back(Ms(t2 - t0));
    destroy_ms.push_back(Ms(t3 - t2));
  }
  auto report = [](const char* what, const std::vector<double>& v) {
    if (v.empty()) {
      return;
    }
    std::printf("%-28s p50 %7.2f ms   p90 %7.2f ms   max %7.2f ms   (n=%zu)\n", what,
                Percentile(v, 0.5), Percentile(v, 0.9), *std::max_element(v.begin(), v.end()),
                v.size());
  };
  report("create (to guest healthy)", create_ms);
  report("first exec `echo hi`", exec_ms);
  report("create -> first exec", total_ms);
  report("destroy", destroy_ms);

  // Memory of idle sandboxes: the helper plus every process of the jail, and what the machine
  // as a whole lost (MemAvailable), which also counts kernel objects (namespaces, page tables,
  // tmpfs and cgroup structures).
  const long avail_before = KbField(ReadText("/proc/meminfo"), "MemAvailable");
  std::vector<std::string> ids;
  for (int i = 0; i < idle; ++i) {
    const std::string id = "idle" + std::to_string(i);
    auto info = backend.Create(id, spec);
    if (!info) {
      std::fprintf(stderr, "create failed: %s\n", info.error().message.c_str());
      return 1;
    }
    Exec(*info, "true");  // one session, as an agent would have
    ids.push_back(id);
  }
  const long avail_after = KbField(ReadText("/proc/meminfo"), "MemAvailable");
  // The helper's own share of a create: from its main() to the guest's execve.
  std::vector<double> setup_ms;
  for (const auto& id : ids) {
    const std::string log = ReadText(backend.SandboxDir(id) + "/jail.log");
    if (const size_t at = log.find("setup_ms="); at != std::string::npos) {
      setup_ms.push_back(std::atof(log.c_str() + at + 9));
    }
  }
  if (!setup_ms.empty()) {
    report("helper main() -> guest execve", setup_ms);
  }
  long guest_rss = 0, guest_pss = 0, helper_rss = 0, helper_pss = 0, cg_kb = 0;
  for (const auto& id : ids) {
    auto rec = LoadSandboxRecord(backend.SandboxDir(id) + "/spec.json");
    if (!rec) {
      continue;
    }
    for (pid_t pid : JailProcesses(rec->init.pid)) {
      const Mem m = MemOf(pid);
      guest_rss += m.rss_kb;
      guest_pss += m.pss_kb;
    }
    const Mem h = MemOf(rec->helper.pid);
    helper_rss += h.rss_kb;
    helper_pss += h.pss_kb;
    for (const auto& cg : rec->cgroups) {
      const std::string usage = ReadText(cg + "/memory.usage_in_bytes");
      if (!usage.empty()) {
        cg_kb += std::atol(usage.c_str()) / 1024;
      }
    }
  }
  const double n = static_cast<double>(ids.size());
  std::printf("idle sandboxes: %zu\n", ids.size());
  std::printf("  jail processes (guest + sessions)  RSS %7.0f KiB   PSS %7.0f KiB  per sandbox\n",
              guest_rss / n, guest_pss / n);
  std::printf("  agentbox-jail helper               RSS %7.0f KiB   PSS %7.0f KiB  per sandbox\n",
              helper_rss / n, helper_pss / n);
  std::printf("  total                              RSS %7.0f KiB   PSS %7.0f KiB  per sandbox\n",
              (guest_rss + helper_rss) / n, (guest_pss + helper_pss) / n);
  if (cg_kb > 0) {
    std::printf("  memory cgroup usage (incl. tmpfs, kernel)   %7.0f KiB  per sandbox\n",
                cg_kb / n);
  }
  std::printf("  host MemAvailable drop                         %7.0f KiB  per sandbox\n",
              static_cast<double>(avail_before - avail_after) / n);
  for (const auto& id : ids) {
    (void)backend.Destroy(id);
  }
  return 0;
}
