// limits.disk_bytes on the jail backend (issue 16): the sandbox's /workspace is its own
// filesystem of that size; a write past it fails with ENOSPC in that sandbox only.
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "backends/disk/disk.h"
#include "backends/disk/disk_testing.h"
#include "backends/jail/jail_test_fixture.h"

namespace agentbox::jail {
namespace {

using namespace agentbox::jail::testing;

using JailDiskTest = JailFixture;

constexpr uint64_t kLimit = 64ull << 20;

using agentbox::disk::testing::AllocatedBytes;

SandboxSpec WithDisk(uint64_t bytes) {
  SandboxSpec spec;
  spec.limits.disk_bytes = bytes;
  return spec;
}

TEST_F(JailDiskTest, DiskLimitFillFailsWithEnospcAndOthersKeepWriting) {
  if (!disk::WhyUnsupported().empty()) {
    GTEST_SKIP() << "SKIPPED: " << disk::WhyUnsupported();
  }
  expect_clean_destroy_ = true;
  auto a = CreateOrDie("full", WithDisk(kLimit));
  auto b = CreateOrDie("other", WithDisk(kLimit));
  ASSERT_EQ(a.spec.limits.disk_bytes, kLimit);
  ASSERT_TRUE(a.disk_used_bytes);

  // df inside shows the sandbox's own size, not the host's disk.
  auto df = Exec(a, "df -B1 --output=size /workspace | tail -1");
  ASSERT_EQ(df.returncode, 0) << df.output << df.error;
  const uint64_t size = std::stoull(df.output);
  EXPECT_LE(size, kLimit);
  EXPECT_GT(size, kLimit * 9 / 10);

  const uint64_t before = AllocatedBytes(state_dir_);
  auto fill = Exec(a, "dd if=/dev/zero of=/workspace/big bs=1M count=256 conv=fsync 2>&1");
  EXPECT_NE(fill.returncode, 0) << fill.output;
  EXPECT_NE(fill.output.find("No space left on device"), std::string::npos) << fill.output;
  const uint64_t after = AllocatedBytes(state_dir_);
  // The host lost at most the limit (with slack for the filesystem's own metadata).
  EXPECT_LE(after > before ? after - before : 0, kLimit + (32ull << 20));

  // The full sandbox's usage shows in Get; the other sandbox still writes.
  auto got = backend_->Get("full");
  ASSERT_TRUE(got);
  ASSERT_TRUE(got->disk_used_bytes);
  EXPECT_GT(*got->disk_used_bytes, kLimit * 8 / 10);
  auto ok = Exec(b, "dd if=/dev/zero of=/workspace/f bs=1M count=16 conv=fsync 2>&1 && echo ok");
  EXPECT_EQ(ok.returncode, 0) << ok.output;
  auto got_b = backend_->Get("other");
  ASSERT_TRUE(got_b && got_b->disk_used_bytes);
  EXPECT_GE(*got_b->disk_used_bytes, 16ull << 20);
  EXPECT_LT(*got_b->disk_used_bytes, kLimit / 2);
  // Deleting frees the space again inside the sandbox.
  EXPECT_EQ(Exec(a, "rm /workspace/big && echo x > /workspace/small").returncode, 0);
}

TEST_F(JailDiskTest, DiskLimitDestroyReleasesTheLoopDevice) {
  if (!disk::WhyUnsupported().empty()) {
    GTEST_SKIP() << "SKIPPED: " << disk::WhyUnsupported();
  }
  auto a = CreateOrDie("gone", WithDisk(kLimit));
  const std::string image = backend_->SandboxDir("gone") + "/disk.img";
  ASSERT_TRUE(std::filesystem::exists(image));
  ASSERT_TRUE(backend_->Destroy("gone"));
  EXPECT_FALSE(std::filesystem::exists(backend_->SandboxDir("gone")));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  bool held = true;
  while (held && std::chrono::steady_clock::now() < deadline) {
    held = false;
    for (const auto& e : std::filesystem::directory_iterator("/sys/block")) {
      if (ReadText(e.path().string() + "/loop/backing_file").find(image) != std::string::npos) {
        held = true;
      }
    }
    if (held) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  EXPECT_FALSE(held) << "a loop device still holds " << image;
}

// Explicitly asked for: enforced with root, refused with a clear error without (never a silent
// no-limit). A default limit without root is only noted in the sandbox's detail.
TEST_F(JailDiskTest, ExplicitDiskBytesIsEnforcedOrRefused) {
  const std::string why = disk::WhyUnsupported();
  auto info = backend_->Create("asked", WithDisk(kLimit));
  if (why.empty()) {
    ASSERT_TRUE(info) << info.error().message;
    EXPECT_TRUE(info->disk_used_bytes);
  } else {
    ASSERT_FALSE(info);
    EXPECT_EQ(info.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(info.error().message.find("limits.disk_bytes"), std::string::npos);
    auto dflt = CreateOrDie("default");
    EXPECT_NE(dflt.detail.find("disk limit not enforced"), std::string::npos) << dflt.detail;
    EXPECT_FALSE(dflt.disk_used_bytes);
    const ProbeResult p = backend_->Probe();
    bool listed = false;
    for (const auto& l : p.limitations) {
      listed = listed || l.find("limits.disk_bytes") != std::string::npos;
    }
    EXPECT_TRUE(listed);
  }
  auto tiny = backend_->Create("tiny", WithDisk(1 << 20));
  ASSERT_FALSE(tiny);
  EXPECT_EQ(tiny.error().code, ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace agentbox::jail
