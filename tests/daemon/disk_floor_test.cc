// The daemon's disk floor (issue 16): below AGENTBOX_MIN_FREE_BYTES of free space in the state
// directory, new sandboxes get 507 and /readyz says why; /v1/info shows the free space; sandbox
// JSON carries the disk limit and usage; /metrics has agentbox_sandbox_disk_bytes.
#include "daemon/disk_floor.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include <string>

#include "fakes/daemon_fixture.h"

namespace agentbox::daemon {
namespace {

using Reply = fakes::HttpReply;

TEST(DiskFloorUnit, BelowTheFloorIsRefusedWithTheNumbers) {
  DiskFloor ok = CheckDiskFloor("/tmp", 0);
  EXPECT_TRUE(ok.ok);
  EXPECT_GT(ok.free_bytes, 0u);
  DiskFloor low = CheckDiskFloor("/tmp", 1ull << 60);
  EXPECT_FALSE(low.ok);
  EXPECT_NE(low.message.find("AGENTBOX_MIN_FREE_BYTES"), std::string::npos) << low.message;
  DiskFloor missing = CheckDiskFloor("/nonexistent/agentbox", 1);
  EXPECT_FALSE(missing.ok);
  EXPECT_NE(missing.message.find("statvfs"), std::string::npos) << missing.message;
}

TEST(DiskFloorUnit, UsageSumsPerBackend) {
  SandboxInfo a, b, c;
  a.backend = b.backend = "jail";
  c.backend = "docker";
  a.disk_used_bytes = 100;
  b.disk_used_bytes = 20;
  auto sums = DiskUsedByBackend({a, b, c});
  EXPECT_EQ(sums["jail"], 120u);
  EXPECT_EQ(sums["docker"], 0u);
  a.spec.limits.disk_bytes = 1 << 30;
  EXPECT_EQ(SandboxDiskJson(a), Json({{"used_bytes", 100}, {"limit_bytes", 1 << 30}}));
  EXPECT_TRUE(SandboxDiskJson(c)["used_bytes"].is_null());
}

// A state directory on a small filesystem the test mounts (tmpfs, 32 MiB) with a 16 MiB floor.
class DiskFloorTest : public fakes::DaemonFixture {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) {
      GTEST_SKIP() << "SKIPPED: mounting a small state filesystem needs root";
    }
    char tmpl[] = "/tmp/agentbox-floor-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    small_ = tmpl;
    ASSERT_EQ(::mount("tmpfs", small_.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "size=32m"), 0);
    options_.state_dir = small_;
    options_.min_free_bytes = 16ull << 20;
    DaemonFixture::SetUp();
  }
  void TearDown() override {
    DaemonFixture::TearDown();
    if (!small_.empty()) {
      ::umount2(small_.c_str(), MNT_DETACH);
      ::rmdir(small_.c_str());
    }
  }
  // Writes `mib` MiB into the small filesystem.
  void Fill(int mib) {
    int fd = ::open((small_ + "/ballast").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    std::string block(1 << 20, 'x');
    for (int i = 0; i < mib; ++i) {
      ASSERT_EQ(::write(fd, block.data(), block.size()), static_cast<ssize_t>(block.size()));
    }
    ::close(fd);
  }
  std::string small_;
};

TEST_F(DiskFloorTest, NewSandboxesGet507BelowTheFloorAndReadyzSaysSo) {
  Reply c = Call("POST", "/v1/sandboxes", R"({"limits":{"disk_bytes":67108864}})", "key-alice");
  ASSERT_EQ(c.status, 201) << c.body;
  const std::string id = c.json["data"]["id"];
  EXPECT_EQ(c.json["data"]["limits"]["disk_bytes"], 67108864);
  EXPECT_EQ(c.json["data"]["disk"]["limit_bytes"], 67108864);
  Reply ready = Call("GET", "/readyz");
  EXPECT_EQ(ready.status, 200) << ready.body;
  EXPECT_EQ(ready.json["data"]["disk"]["ok"], true);
  EXPECT_EQ(ready.json["data"]["disk"]["min_free_bytes"], 16ull << 20);

  Fill(20);  // 12 MiB left, below the 16 MiB floor
  Reply refused = Call("POST", "/v1/sandboxes", "{}", "key-alice");
  EXPECT_EQ(refused.status, 507) << refused.body;
  EXPECT_NE(refused.body.find("AGENTBOX_MIN_FREE_BYTES"), std::string::npos) << refused.body;
  ready = Call("GET", "/readyz");
  EXPECT_EQ(ready.status, 503) << ready.body;
  EXPECT_EQ(ready.json["data"]["ready"], false);
  EXPECT_EQ(ready.json["data"]["disk"]["ok"], false);
  EXPECT_NE(ready.json["data"]["detail"].get<std::string>().find("free"), std::string::npos);
  Reply info = Call("GET", "/v1/info");
  ASSERT_EQ(info.status, 200) << info.body;
  EXPECT_EQ(info.json["data"]["disk"]["ok"], false);
  EXPECT_LT(info.json["data"]["disk"]["free_bytes"].get<uint64_t>(), 16ull << 20);
  // The sandbox that exists keeps working.
  Reply e = Call("POST", "/v1/sandboxes/" + id + "/api/v1/shell/exec", R"({"command":"echo hi"})",
                 "key-alice");
  EXPECT_EQ(e.status, 200) << e.body;

  ::unlink((small_ + "/ballast").c_str());
  EXPECT_EQ(Call("POST", "/v1/sandboxes", "{}", "key-alice").status, 201);
  EXPECT_EQ(Call("GET", "/readyz").status, 200);
}

class DiskJsonTest : public fakes::DaemonFixture {};

TEST_F(DiskJsonTest, SandboxJsonAndMetricsCarryDiskFields) {
  Reply bad = Call("POST", "/v1/sandboxes", R"({"limits":{"disk_bytes":1024}})", "key-alice");
  EXPECT_EQ(bad.status, 422) << bad.body;
  EXPECT_NE(bad.body.find("disk_bytes"), std::string::npos) << bad.body;
  const std::string id = CreateAs("key-alice", R"({"limits":{"disk_bytes":1073741824}})");
  Reply g = Call("GET", "/v1/sandboxes/" + id, "", "key-alice");
  ASSERT_EQ(g.status, 200);
  EXPECT_EQ(g.json["data"]["disk"]["limit_bytes"], 1073741824);
  EXPECT_TRUE(g.json["data"]["disk"].contains("used_bytes"));
  Reply m = Call("GET", "/metrics");
  ASSERT_EQ(m.status, 200);
  EXPECT_NE(m.body.find("agentbox_sandbox_disk_bytes{backend=\"process\"}"), std::string::npos)
      << m.body;
  EXPECT_NE(m.body.find("agentbox_state_dir_free_bytes"), std::string::npos);
}

}  // namespace
}  // namespace agentbox::daemon
