// The cgroup layer on its own, on whichever hierarchy this machine has: v1 on our CI hosts, v2
// in the VM that tests/vm/run-in-vm.sh boots (ctest jail_cgroup_v2_vm). With
// AGENTBOX_REQUIRE_CGROUP=v1|v2 the hierarchy must be that one and every limit must work, so a
// run meant to cover a version cannot pass by skipping.
#include "backends/jail/cgroup.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "api/cpu_bandwidth.h"
#include "backends/jail/jail_test_util.h"
#include "common/strings.h"

namespace agentbox::jail {
namespace {

using agentbox::jail::testing::ReadText;

std::string Required() {
  const char* v = std::getenv("AGENTBOX_REQUIRE_CGROUP");
  return v == nullptr ? "" : v;
}

TEST(CgroupTest, DiscoversTheHierarchyInUse) {
  auto layout = DiscoverCgroups();
  ASSERT_TRUE(layout) << layout.error().message;
  struct statfs sfs {};
  ASSERT_EQ(::statfs("/sys/fs/cgroup", &sfs), 0);
  const bool unified = sfs.f_type == 0x63677270;  // CGROUP2_SUPER_MAGIC
  if (unified) {
    EXPECT_EQ(layout->version, CgroupVersion::kV2);
    EXPECT_EQ(layout->memory_root, "/sys/fs/cgroup");
  } else if (layout->version == CgroupVersion::kV1) {
    EXPECT_EQ(layout->memory_root.rfind("/sys/fs/cgroup/", 0), 0u) << layout->memory_root;
  }
  const std::string want = Required();
  if (want == "v2") {
    EXPECT_EQ(layout->version, CgroupVersion::kV2);
  } else if (want == "v1") {
    EXPECT_EQ(layout->version, CgroupVersion::kV1);
  }
  if (!want.empty()) {
    // Swap accounting is a kernel boot option on v1; everything else must be usable.
    for (const auto& l : CgroupLimitations(*layout)) {
      EXPECT_EQ(l.rfind("swap not limited", 0), 0u) << l;
    }
  }
}

TEST(CgroupTest, LimitsAreWrittenAndRemovalKillsTheGroup) {
  if (::geteuid() != 0 && Required().empty()) {
    GTEST_SKIP() << "SKIPPED: creating cgroups needs root";
  }
  auto layout = DiscoverCgroups();
  ASSERT_TRUE(layout);
  if (!CgroupLimitations(*layout).empty() && Required().empty()) {
    GTEST_SKIP() << "SKIPPED: " << CgroupLimitations(*layout).front();
  }
  CgroupConfig cfg;
  cfg.name = "agentbox-test/cg-" + RandomId(8);
  cfg.memory_bytes = 64ull << 20;
  cfg.pids = 16;
  cfg.cpus = 0.25;
  auto cg = SandboxCgroup::Create(cfg);
  ASSERT_TRUE(cg) << cg.error().message;
  const bool v2 = layout->version == CgroupVersion::kV2;
  ASSERT_EQ(cg->paths().size(), v2 ? 1u : 3u);
  for (const auto& dir : cg->paths()) {
    if (std::filesystem::exists(dir + "/memory.max")) {
      EXPECT_EQ(ReadText(dir + "/memory.max"), std::to_string(64 << 20) + "\n");
    }
    if (std::filesystem::exists(dir + "/memory.limit_in_bytes")) {
      EXPECT_EQ(ReadText(dir + "/memory.limit_in_bytes"), std::to_string(64 << 20) + "\n");
    }
    if (std::filesystem::exists(dir + "/pids.max")) {
      EXPECT_EQ(ReadText(dir + "/pids.max"), "16\n");
    }
    if (std::filesystem::exists(dir + "/cpu.max")) {
      EXPECT_EQ(ReadText(dir + "/cpu.max"), "2500 10000\n");
    }
    if (std::filesystem::exists(dir + "/cpu.cfs_quota_us")) {
      EXPECT_EQ(ReadText(dir + "/cpu.cfs_quota_us"), "2500\n");
    }
  }
  if (v2) {
    // The group is a leaf directly under the delegated parent, with every controller enabled.
    const std::string controllers = ReadText(cg->paths()[0] + "/cgroup.controllers");
    for (const char* c : {"memory", "pids", "cpu"}) {
      EXPECT_NE(controllers.find(c), std::string::npos) << controllers;
    }
  }

  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    for (;;) {
      ::pause();
    }
  }
  ASSERT_TRUE(cg->Attach(child));
  const std::string own = ReadText("/proc/" + std::to_string(child) + "/cgroup");
  EXPECT_NE(own.find(cfg.name), std::string::npos) << own;

  // Removal kills what is left inside and deletes every directory.
  const auto paths = cg->Release();
  ASSERT_TRUE(RemoveCgroups(paths, std::chrono::seconds(5)));
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
  for (const auto& dir : paths) {
    EXPECT_FALSE(std::filesystem::exists(dir)) << dir;
    ::rmdir(std::filesystem::path(dir).parent_path().c_str());  // agentbox-test/, if now empty
  }
}

// Without a quota, a weight still makes the sandbox's cpu group (one scheduling entity however
// many processes it runs) and weighs its parent (every sandbox together).
TEST(CgroupTest, WeightsMakeTheCpuGroupWithoutAQuota) {
  if (::geteuid() != 0 && Required().empty()) {
    GTEST_SKIP() << "SKIPPED: creating cgroups needs root";
  }
  auto layout = DiscoverCgroups();
  ASSERT_TRUE(layout);
  if (!CgroupLimitations(*layout).empty() && Required().empty()) {
    GTEST_SKIP() << "SKIPPED: " << CgroupLimitations(*layout).front();
  }
  CgroupConfig cfg;
  cfg.name = "agentbox-test-w/cg-" + RandomId(8);
  cfg.cpu_weight = kSandboxCpuWeight;
  cfg.parent_cpu_weight = kSandboxesCpuWeight;
  auto cg = SandboxCgroup::Create(cfg);
  ASSERT_TRUE(cg) << cg.error().message;
  ASSERT_EQ(cg->paths().size(), 1u);
  const std::string dir = cg->paths()[0];
  const std::string parent = std::filesystem::path(dir).parent_path();
  if (layout->version == CgroupVersion::kV2) {
    EXPECT_EQ(ReadText(dir + "/cpu.weight"), "100\n");
    EXPECT_EQ(ReadText(parent + "/cpu.weight"), "50\n");
  } else {
    EXPECT_EQ(ReadText(dir + "/cpu.shares"), "1024\n");
    EXPECT_EQ(ReadText(parent + "/cpu.shares"), "512\n");
  }
  ASSERT_TRUE(RemoveCgroups(cg->Release(), std::chrono::seconds(5)));
  ::rmdir(parent.c_str());
}

TEST(CgroupTest, AnEmptyNameIsRefused) {
  CgroupConfig cfg;
  cfg.pids = 4;
  auto cg = SandboxCgroup::Create(cfg);
  ASSERT_FALSE(cg);
  EXPECT_EQ(cg.error().code, ErrorCode::kInvalidArgument);
}

TEST(CpuBandwidth, TenMillisecondPeriodsAndExactSmallLimits) {
  // A limit of one CPU or more is enforced every 10 ms (a burst on every core is that short).
  EXPECT_EQ(CpuBandwidthOf(1).quota_us, 10000);
  EXPECT_EQ(CpuBandwidthOf(1).period_us, 10000);
  EXPECT_EQ(CpuBandwidthOf(2.5).quota_us, 25000);
  EXPECT_EQ(CpuBandwidthOf(0.25).quota_us, 2500);
  EXPECT_EQ(CpuBandwidthOf(0.1).quota_us, 1000);
  EXPECT_EQ(CpuBandwidthOf(0.1).period_us, 10000);
  // Below 0.1 CPU the quota would fall under the kernel's 1 ms: the period grows instead, so the
  // share stays what was asked for.
  EXPECT_EQ(CpuBandwidthOf(0.05).quota_us, 1000);
  EXPECT_EQ(CpuBandwidthOf(0.05).period_us, 20000);
  EXPECT_EQ(CpuBandwidthOf(0.01).quota_us, 1000);
  EXPECT_EQ(CpuBandwidthOf(0.01).period_us, 100000);
  // The kernel's longest period is 1 s.
  EXPECT_EQ(CpuBandwidthOf(0.0001).period_us, 1000000);
  EXPECT_EQ(CpuBandwidthOf(0.0001).quota_us, 1000);
}

}  // namespace
}  // namespace agentbox::jail
