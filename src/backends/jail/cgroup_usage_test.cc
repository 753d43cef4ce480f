// The cgroup readings behind JailBackend::Metrics: cgroup v1 and v2 files laid out in a
// temporary directory, the CPU times of real processes, and Metrics on a real jail.
#include "backends/jail/cgroup_usage.h"

#include <gtest/gtest.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "backends/jail/jail_test_fixture.h"

namespace agentbox::jail {
namespace {

using namespace agentbox::jail::testing;

void Write(const std::string& path, const std::string& text) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path) << text;
}

TEST(CgroupUsage, ReadsV2) {
  TempDir tmp;
  const std::string g = tmp.path() + "/v2";
  Write(g + "/cgroup.procs", "12\n34\n");
  Write(g + "/cpu.stat", "usage_usec 5000000\nuser_usec 4000000\nsystem_usec 1000000\n");
  Write(g + "/memory.current", "104857600\n");
  Write(g + "/memory.max", "max\n");
  Write(g + "/memory.stat", "anon 50000000\nfile 40000000\ninactive_file 30000000\n");
  auto u = ReadCgroupUsage({g});
  ASSERT_TRUE(u) << u.error().message;
  EXPECT_EQ(u->cpu_usec, 5000000u);
  EXPECT_EQ(u->mem_usage, 104857600u);
  EXPECT_FALSE(u->mem_limit);  // "max"
  EXPECT_EQ(u->mem_cache, 40000000u);
  EXPECT_EQ(u->mem_inactive_file, 30000000u);
  EXPECT_EQ(u->pids, (std::vector<pid_t>{12, 34}));
  Write(g + "/memory.max", "1073741824\n");
  EXPECT_EQ(ReadCgroupUsage({g})->mem_limit, 1073741824u);
}

TEST(CgroupUsage, ReadsV1AcrossControllers) {
  TempDir tmp;
  const std::string mem = tmp.path() + "/memory/agentbox/x";
  const std::string pids = tmp.path() + "/pids/agentbox/x";
  Write(mem + "/cgroup.procs", "7\n");
  Write(mem + "/memory.usage_in_bytes", "2000000\n");
  Write(mem + "/memory.limit_in_bytes", "9223372036854771712\n");  // unlimited
  Write(mem + "/memory.stat", "cache 10\ninactive_file 5\ntotal_cache 300\ntotal_inactive_file 200\n");
  Write(pids + "/cgroup.procs", "7\n");
  auto u = ReadCgroupUsage({pids, mem, tmp.path() + "/gone"});
  ASSERT_TRUE(u) << u.error().message;
  EXPECT_FALSE(u->cpu_usec);  // no cpuacct group: the processes' own times are used
  EXPECT_EQ(u->mem_usage, 2000000u);
  EXPECT_FALSE(u->mem_limit);
  EXPECT_EQ(u->mem_cache, 300u);  // hierarchical totals
  EXPECT_EQ(u->mem_inactive_file, 200u);
  Write(mem + "/memory.limit_in_bytes", "536870912\n");
  EXPECT_EQ(ReadCgroupUsage({mem})->mem_limit, 536870912u);
  const std::string acct = tmp.path() + "/cpu,cpuacct/agentbox/x";
  Write(acct + "/cpuacct.usage", "2500000000\n");  // nanoseconds
  EXPECT_EQ(ReadCgroupUsage({mem, acct})->cpu_usec, 2500000u);
}

TEST(CgroupUsage, GoneGroupsAreNotFound) {
  auto u = ReadCgroupUsage({"/nonexistent/agentbox/a", "/nonexistent/agentbox/b"});
  ASSERT_FALSE(u);
  EXPECT_EQ(u.error().code, ErrorCode::kNotFound);
}

// A jail without cgroups (unprivileged): init and its descendants, however deep, and nothing
// else; a comm with spaces and ')' does not confuse the parent's field.
TEST(CgroupUsage, ProcessTreeOfAJailWithoutCgroups) {
  TempDir tmp;
  const std::string p = tmp.path();
  auto proc = [&](int pid, const std::string& comm, int ppid, int rss_kib) {
    Write(p + "/" + std::to_string(pid) + "/stat",
          std::to_string(pid) + " (" + comm + ") S " + std::to_string(ppid) + " 1 1 0 -1\n");
    Write(p + "/" + std::to_string(pid) + "/status",
          "Name:\t" + comm + "\nVmRSS:\t" + std::to_string(rss_kib) + " kB\n");
  };
  proc(1, "init", 0, 1000);
  proc(50, "agentboxd", 1, 2000);
  proc(100, "agentbox-guest", 50, 10);  // the jail's init
  proc(101, "bash", 100, 20);
  proc(102, "a) S 1 (odd", 101, 40);
  proc(200, "other", 50, 4000);
  Write(p + "/self/stat", "not a pid\n");
  auto u = ReadProcessTreeUsage(100, p);
  ASSERT_TRUE(u) << u.error().message;
  EXPECT_EQ(u->pids, (std::vector<pid_t>{100, 101, 102}));
  EXPECT_EQ(u->mem_usage, 70u * 1024);
  EXPECT_FALSE(u->cpu_usec);
  auto gone = ReadProcessTreeUsage(300, p);
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code, ErrorCode::kNotFound);
}

TEST(CgroupUsage, ProcessTimesGrowWithWork) {
  TempDir tmp;
  Write(tmp.path() + "/41/stat",
        "41 (a (weird) name) S 1 41 41 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 1 1 1\n");
  const long hz = ::sysconf(_SC_CLK_TCK);
  auto fake = ProcessCpuUsec({41, 42}, tmp.path());
  ASSERT_EQ(fake.size(), 1u);  // 42 does not exist
  EXPECT_EQ(fake[41], 300u * 1'000'000 / static_cast<uint64_t>(hz));

  // Spin until this process has used 200 ms of CPU by the kernel's own clock (however loaded
  // the machine is), then compare: /proc counts in scheduler ticks (10 ms here).
  const pid_t self = ::getpid();
  auto cpu_now = [] {
    timespec ts{};
    ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1'000'000 + static_cast<uint64_t>(ts.tv_nsec) / 1000;
  };
  auto before = ProcessCpuUsec({self});
  const uint64_t start = cpu_now();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  volatile uint64_t spin = 0;
  while (cpu_now() - start < 200'000 && std::chrono::steady_clock::now() < deadline) {
    spin = spin + 1;
  }
  const uint64_t spent = cpu_now() - start;
  auto after = ProcessCpuUsec({self});
  const uint64_t used = CpuUsecBetween(before, after);
  EXPECT_GE(used + 30'000, spent) << "spent " << spent << " us by the kernel's clock";
  EXPECT_LE(used, spent + 30'000) << "spent " << spent << " us by the kernel's clock";
  // A process that appeared in between counts whole; one that went away counts nothing.
  EXPECT_EQ(CpuUsecBetween({{1, 100}, {2, 50}}, {{1, 150}, {3, 70}}), 120u);
}

using JailMetricsTest = JailFixture;

TEST_F(JailMetricsTest, MetricsSeeTheSandboxWorking) {
  SandboxSpec spec;
  spec.limits.memory_bytes = 256ull << 20;
  auto info = CreateOrDie("metrics", spec);
  auto idle = backend_->Metrics("metrics");
  ASSERT_TRUE(idle) << idle.error().message;
  EXPECT_GT(idle->cpu_count, 0);
  EXPECT_GT(idle->mem_total_bytes, 0u);
  EXPECT_LE(idle->mem_total_bytes, 256ull << 20);  // the limit (when cgroups enforce it)
  EXPECT_GT(idle->disk_total_bytes, 0u);
  EXPECT_GT(idle->disk_used_bytes, 0u);
  EXPECT_FALSE(idle->disk_source.empty());
  EXPECT_GT(idle->timestamp, 0);
  EXPECT_GE(idle->window_s, 0.2);
  // Busy: one process spinning, 64 MiB held in memory.
  ASSERT_TRUE(StartProcess(info, "while :; do :; done"));
  ASSERT_TRUE(StartProcess(info, "head -c 67108864 /dev/zero | tail -c 67108864 >/dev/null; "
                                 "sleep 600"));
  // The most of a few readings: on a loaded machine the spinner gets only its share of the CPUs,
  // so a tenth of a core is asked (idle shows about nothing).
  SandboxMetrics m;
  for (int i = 0; i < 10 && m.cpu_used_pct * m.cpu_count < 50; ++i) {
    auto r = backend_->Metrics("metrics");
    ASSERT_TRUE(r) << r.error().message;
    if (r->cpu_used_pct >= m.cpu_used_pct) {
      m = *r;
    }
  }
  EXPECT_GE(m.cpu_used_pct * m.cpu_count, 10)
      << "cpu_used_pct " << m.cpu_used_pct << " of " << m.cpu_count << " cores";
  EXPECT_GT(m.cpu_used_pct, idle->cpu_used_pct);
  EXPECT_GT(m.mem_used_bytes, 0u);
  auto gone = backend_->Metrics("nope");
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code, ErrorCode::kNotFound);
}

}  // namespace
}  // namespace agentbox::jail
