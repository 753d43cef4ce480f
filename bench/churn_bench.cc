// Churn (issue 10 §3, docs/reliability.md): create/destroy cycles against one agentboxd, then
// counts what sandboxes can leave behind and fails (exit 1) on any leak: mounts (this process's
// /proc/self/mountinfo, under the state directory), cgroups named agentbox/<id>, id slots, loop
// devices backed by the state directory, directories under the state directory, processes whose
// command line names it, containers (docker), and the daemon's open descriptors and threads.
//
//   agentbox-churn-bench --cycles 1000 --backend jail       # the documented run
//   agentbox-churn-bench --cycles 100 --backend jail        # CI (ctest)
#include <CLI/CLI.hpp>
#include <atomic>
#include <iostream>
#include <mutex>
#include <set>
#include <thread>

#include "reliability_harness.h"

namespace {

using reliability::Answer;
using reliability::Client;
using reliability::Json;
using reliability::SteadyClock;
using namespace std::chrono_literals;

// Everything on the host that belongs to sandboxes of this daemon, counted.
struct Census {
  long mounts = 0, cgroups = 0, slots = 0, loops = 0, dirs = 0, processes = 0, containers = 0;
  long fds = 0, threads = 0;
  std::vector<std::string> detail;  // what was found, for a leak report
};

// `ids`: the sandboxes this run made (other daemons on the host have cgroups beside them).
Census Count(const crash::Daemon& d, const std::string& backend,
             const std::set<std::string>& ids) {
  Census c;
  const std::string state = d.state();
  const std::string bstate = d.backend_state();
  std::istringstream mounts(crash::ReadFile("/proc/self/mountinfo"));
  for (std::string line; std::getline(mounts, line);) {
    std::istringstream f(line);
    std::string a, b, cc, e, point;
    f >> a >> b >> cc >> e >> point;
    if (point.starts_with(state + "/")) {
      ++c.mounts;
      c.detail.push_back("mount " + point);
    }
  }
  for (const char* controller : {"memory", "pids", "cpu", "unified", "systemd"}) {
    std::istringstream cg(crash::ReadFile("/proc/self/cgroup"));
    std::string own;
    for (std::string line; std::getline(cg, line);) {
      const size_t x = line.find(':');
      const size_t y = line.find(':', x + 1);
      const std::string names = line.substr(x + 1, y - x - 1);
      const std::string want = controller;
      if ((want == "unified" && names.empty()) || names == want || names == "name=" + want ||
          names.find(want + ",") == 0 || names.ends_with("," + want)) {
        own = line.substr(y + 1);
      }
    }
    const std::string parent =
        std::string("/sys/fs/cgroup/") + controller + (own == "/" ? "" : own) + "/agentbox";
    for (const auto& name : crash::Entries(parent)) {
      if (ids.count(name) != 0) {
        ++c.cgroups;
        c.detail.push_back("cgroup " + parent + "/" + name);
      }
    }
  }
  c.slots = static_cast<long>(crash::Entries(bstate + "/.slots").size());
  for (const auto& dev : crash::Entries("/sys/block")) {
    const std::string backing = crash::ReadFile("/sys/block/" + dev + "/loop/backing_file");
    if (backing.starts_with(state + "/")) {
      ++c.loops;
      c.detail.push_back("loop " + dev + " " + backing);
    }
  }
  for (const auto& name : crash::Entries(bstate)) {
    if (name.starts_with("sb-")) {
      ++c.dirs;
      c.detail.push_back("directory " + bstate + "/" + name);
    }
  }
  for (const auto& pid : crash::Entries("/proc")) {
    if (pid.find_first_not_of("0123456789") != std::string::npos ||
        std::to_string(d.pid()) == pid) {
      continue;
    }
    std::string cmd = crash::ReadFile("/proc/" + pid + "/cmdline");
    for (char& ch : cmd) {
      ch = ch == '\0' ? ' ' : ch;
    }
    if (cmd.find(bstate + "/") != std::string::npos) {
      ++c.processes;
      c.detail.push_back("process " + pid + " " + cmd);
    }
  }
  if (backend == "docker") {
    c.containers = static_cast<long>(crash::ContainerIds(bstate).size());
  }
  const reliability::Sample s = reliability::SampleOf(d.pid(), 0);
  c.fds = s.fds;
  c.threads = s.threads;
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  std::string daemon = AGENTBOXD_BIN;
  std::string backend = "jail";
  int cycles = 1000;
  int parallel = 4;
  long fd_tolerance = 2;
  CLI::App app{"agentboxd churn: create/destroy cycles, then leaks counted (docs/reliability.md)"};
  app.add_option("--daemon", daemon, "agentboxd binary");
  app.add_option("--backend", backend, "jail or docker");
  app.add_option("--cycles", cycles, "create/exec/destroy cycles");
  app.add_option("--parallel", parallel, "clients doing cycles at once");
  app.add_option("--fd-tolerance", fd_tolerance, "daemon fds allowed above the start");
  CLI11_PARSE(app, argc, argv);
  curl_global_init(CURL_GLOBAL_ALL);

  std::set<std::string> made;  // every sandbox id this run created
  crash::Daemon d(daemon, backend);
  if (const int rc = reliability::StartDaemon(d, backend); rc != 0) {
    return rc;
  }
  {
    Client probe(d.socket());
    // One cycle first: lazily made things (disk template, engine connections, worker threads)
    // are not leaks.
    const Answer a = probe.Call("POST", "/v1/sandboxes", R"({"ttl_s":600})", 120);
    made.insert(a.data().value("id", "none"));
    probe.Call("DELETE", "/v1/sandboxes/" + a.data().value("id", "none"), "", 120);
  }
  std::this_thread::sleep_for(500ms);
  const Census before = Count(d, backend, made);
  std::cout << "machine: " << reliability::MachineLine() << "\n";

  std::atomic<int> next{0};
  std::atomic<long> failed{0};
  std::mutex mu;
  std::vector<double> create_ms, destroy_ms;
  std::set<std::string> made_ids;
  const auto t0 = SteadyClock::now();
  std::vector<std::thread> workers;
  for (int w = 0; w < parallel; ++w) {
    workers.emplace_back([&] {
      Client c(d.socket());
      for (int i = next++; i < cycles; i = next++) {
        const Answer created =
            c.Call("POST", "/v1/sandboxes", R"({"ttl_s":600,"labels":{"suite":"churn"}})", 120);
        const std::string id = created.data().value("id", "");
        if (created.status != 201 || id.empty()) {
          ++failed;
          std::printf("create failed: %ld %s\n", created.status,
                      created.body.substr(0, 300).c_str());
          continue;
        }
        const Answer ran = c.Call("POST", "/v1/sandboxes/" + id + "/api/v1/shell/exec",
                                  R"({"command":"echo churn > /tmp/x && cat /tmp/x","wait_seconds":20})");
        if (ran.status != 200 || ran.data().value("output", "") != "churn\n") {
          ++failed;
          std::printf("exec failed: %ld %s\n", ran.status, ran.body.substr(0, 300).c_str());
        }
        const Answer gone = c.Call("DELETE", "/v1/sandboxes/" + id, "", 120);
        if (gone.status != 200) {
          ++failed;
          std::printf("destroy failed: %ld %s\n", gone.status, gone.body.substr(0, 300).c_str());
        }
        std::lock_guard lock(mu);
        made_ids.insert(id);
        create_ms.push_back(created.ms);
        destroy_ms.push_back(gone.ms);
        if ((i + 1) % 100 == 0) {
          std::printf("[ progress ] %d cycles\n", i + 1);
          std::fflush(stdout);
        }
      }
    });
  }
  for (auto& t : workers) {
    t.join();
  }
  const double elapsed = std::chrono::duration<double>(SteadyClock::now() - t0).count();
  // Destroy answers once the sandbox is gone; give the daemon's idle connections a moment.
  std::this_thread::sleep_for(1s);
  made.insert(made_ids.begin(), made_ids.end());
  const Census after = Count(d, backend, made);

  std::printf("\nchurn: backend=%s cycles=%d parallel=%d in %.1f s (%.1f cycles/s), failed=%ld\n",
              backend.c_str(), cycles, parallel, elapsed, cycles / elapsed, failed.load());
  std::printf("create p50=%.1f ms p99=%.1f ms; destroy p50=%.1f ms p99=%.1f ms\n",
              reliability::Percentile(create_ms, 0.5), reliability::Percentile(create_ms, 0.99),
              reliability::Percentile(destroy_ms, 0.5), reliability::Percentile(destroy_ms, 0.99));
  struct Row {
    const char* what;
    long before, after, allowed;
  };
  const Row rows[] = {
      {"mounts", before.mounts, after.mounts, 0},
      {"cgroups", before.cgroups, after.cgroups, 0},
      {"id_slots", before.slots, after.slots, 0},
      {"loop_devices", before.loops, after.loops, 0},
      {"directories", before.dirs, after.dirs, 0},
      {"processes", before.processes, after.processes, 0},
      {"containers", before.containers, after.containers, 0},
      {"daemon_fds", before.fds, after.fds, fd_tolerance},
      {"daemon_threads", before.threads, after.threads, 0},
  };
  int leaks = 0;
  for (const auto& r : rows) {
    const bool leaked = r.after - r.before > r.allowed;
    std::printf("[ figures ] %-15s before=%ld after=%ld %s\n", r.what, r.before, r.after,
                leaked ? "LEAK" : "ok");
    leaks += leaked ? 1 : 0;
  }
  if (leaks != 0) {
    for (const auto& x : after.detail) {
      std::printf("  found: %s\n", x.c_str());
    }
  }
  const bool listed_empty = crash::Http(d.socket(), "GET", "http://agentboxd/v1/sandboxes")
                                .body.find("\"sandboxes\":[]") != std::string::npos;
  if (!listed_empty) {
    std::printf("FAIL: the daemon still lists sandboxes\n");
  }
  d.Stop();
  const bool pass = leaks == 0 && failed == 0 && listed_empty;
  std::printf("%s: %d leak kinds, %ld failed operations\n", pass ? "PASS" : "FAIL", leaks,
              failed.load());
  return pass ? 0 : 1;
}
