// Migration benchmark (docs/benchmarks.md): a jail sandbox with a 10 MiB /workspace (ten 1 MiB
// files of random bytes) and three sessions, moved to docker by agentboxd-crashtest, N times.
// Prints, per run and as medians: the move's own total time and how long calls were held (from
// the daemon's answer), and what a client saw: a shell/run sent while the move runs, from its
// send to its answer. Needs root and a Docker engine with agentbox/base.
//   agentbox_migrate_bench [runs=5]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <thread>
#include <vector>

#include "migrate/migrate_common.h"

using namespace migrate;
using Clock = std::chrono::steady_clock;

namespace {

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty()      ? 0
         : v.size() % 2 ? v[v.size() / 2]
                        : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

}  // namespace

int main(int argc, char** argv) {
  const int runs = argc > 1 ? std::max(1, std::atoi(argv[1])) : 5;
  curl_global_init(CURL_GLOBAL_ALL);
  Daemon d(AGENTBOXD_CRASHTEST_BIN, "jail");
  if (auto why = WhyUnusable(d); !why.empty()) {
    std::cerr << "SKIPPED: " << why << "\n";
    return 77;
  }
  std::vector<double> total, held, client_wait, copy, create;
  for (int i = 0; i < runs; ++i) {
    const Reply c = d.Call("POST", "/v1/sandboxes", R"({"backend":"jail","ttl_s":900})");
    const std::string id = c.data().value("id", "");
    if (id.empty()) {
      std::cerr << "create failed: " << c.body << "\n";
      return 1;
    }
    Run(d, id, "setup",
        "cd /workspace && for i in 0 1 2 3 4 5 6 7 8 9; do head -c 1048576 /dev/urandom > f$i; "
        "done");
    MakeSessions(d, id);
    double waited_ms = -1;
    std::thread caller([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));  // once the move has begun
      const auto t = Clock::now();
      Run(d, id, "one", "echo during");
      waited_ms = std::chrono::duration<double, std::milli>(Clock::now() - t).count();
    });
    const Reply m =
        d.Call("POST", "/v1/sandboxes/" + id + "/migrate", R"({"backend":"docker"})", {}, 300);
    caller.join();
    if (m.status != 200) {
      std::cerr << "migrate failed: " << m.body << "\n";
      return 1;
    }
    const Json t = m.data()["timings_ms"];
    total.push_back(t["total"].get<double>());
    held.push_back(t["held"].get<double>());
    copy.push_back(t["copy"].get<double>());
    create.push_back(t["create"].get<double>());
    client_wait.push_back(waited_ms);
    std::printf(
        "run %d: total %.0f ms, held %.0f ms (create %.0f, copy %.0f), bytes %s, a call "
        "sent 50 ms in waited %.0f ms\n",
        i + 1, total.back(), held.back(), create.back(), copy.back(),
        m.data()["moved"]["workspace"]["bytes"].dump().c_str(), waited_ms);
    d.Call("DELETE", "/v1/sandboxes/" + id);
  }
  std::printf(
      "median of %d: total %.0f ms, held %.0f ms (create %.0f ms, copy %.0f ms), a call "
      "during the move waited %.0f ms\n",
      runs, Median(total), Median(held), Median(create), Median(copy), Median(client_wait));
  return 0;
}
