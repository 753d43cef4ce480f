// DiskMaker with real loop devices: size, ENOSPC at the limit, usage, ready disks, cleanup.
// Needs root; skips with the reason otherwise.
#include "backends/disk/disk.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "common/fs_util.h"
#include "common/strings.h"
#include "common/unique_fd.h"

namespace agentbox::disk {
namespace {

class DiskTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = WhyUnsupported(); !why.empty()) {
      GTEST_SKIP() << why;
    }
    dir_ = std::filesystem::temp_directory_path() / ("agentbox-disk-" + RandomId(8));
    ASSERT_TRUE(std::filesystem::create_directories(dir_));
  }
  void TearDown() override {
    if (dir_.empty()) {
      return;
    }
    for (const auto& m : mounts_) {
      ::umount2(m.c_str(), MNT_DETACH);
    }
    std::filesystem::remove_all(dir_);
  }
  std::string Target(const std::string& name) {
    const std::string t = (dir_ / name).string();
    std::filesystem::create_directories(t);
    mounts_.push_back(t);
    return t;
  }
  std::filesystem::path dir_;
  std::vector<std::string> mounts_;
};

// Writes until the filesystem refuses; returns the bytes written and the errno that stopped it.
std::pair<uint64_t, int> Fill(const std::string& file) {
  int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return {0, errno};
  }
  std::string block(1 << 20, 'x');
  uint64_t total = 0;
  int err = 0;
  for (;;) {
    ssize_t n = ::write(fd, block.data(), block.size());
    if (n < 0) {
      err = errno;
      break;
    }
    total += static_cast<uint64_t>(n);
  }
  if (::fsync(fd) != 0 && err == 0) {
    err = errno;
  }
  ::close(fd);
  return {total, err};
}

TEST_F(DiskTest, FillStopsAtTheLimitWithEnospc) {
  DiskMaker maker((dir_ / "work").string(), 0, 0);
  const uint64_t limit = 64ull << 20;
  const std::string mnt = Target("a");
  ASSERT_TRUE(maker.Provide(limit, (dir_ / "a.img").string(), mnt, 1234, 1234));
  struct stat st {};
  ASSERT_EQ(::stat(mnt.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1234u);
  auto u = UsageOf(mnt);
  ASSERT_TRUE(u) << u.error().message;
  EXPECT_LE(u->size_bytes, limit);
  EXPECT_GT(u->size_bytes, limit * 9 / 10);  // df shows (about) the limit: no reserved blocks
  auto [written, err] = Fill(mnt + "/big");
  EXPECT_EQ(err, ENOSPC);
  EXPECT_LE(written, limit);
  EXPECT_GT(written, limit / 2);
  // What the disk takes from the host is its image file's allocated blocks: at most the limit.
  // (The host's free space, compared before and after, moved with other tests' writes when the
  // suites ran in parallel.)
  struct stat img {};
  ASSERT_EQ(::stat((dir_ / "a.img").c_str(), &img), 0);
  EXPECT_LE(static_cast<uint64_t>(img.st_blocks) * 512, limit);
  auto full = UsageOf(mnt);
  ASSERT_TRUE(full);
  EXPECT_GE(full->used_bytes, written);
}

TEST_F(DiskTest, ReadyDisksAreHandedOutAndRefilled) {
  const uint64_t size = 32ull << 20;
  DiskMaker maker((dir_ / "work").string(), size, 2);
  EXPECT_EQ(maker.ready(), 0u) << "nothing is made before the first disk is asked for";
  const std::string first = Target("first");
  ASSERT_TRUE(maker.Provide(size, (dir_ / "first.img").string(), first, 0, 0));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (maker.ready() < 2 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(maker.ready(), 2u);
  const auto t0 = std::chrono::steady_clock::now();
  const std::string mnt = Target("b");
  ASSERT_TRUE(maker.Provide(size, (dir_ / "b.img").string(), mnt, 0, 0));
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(ms, 50.0);  // a rename and a move_mount; generous for a loaded machine
  EXPECT_TRUE(std::filesystem::exists(dir_ / "b.img"));
  EXPECT_TRUE(UsageOf(mnt));
  // Another size is made on the spot.
  const std::string other = Target("c");
  ASSERT_TRUE(maker.Provide(48ull << 20, (dir_ / "c.img").string(), other, 0, 0));
  auto u = UsageOf(other);
  ASSERT_TRUE(u);
  EXPECT_GT(u->size_bytes, 40ull << 20);
  while (maker.ready() < 2 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(maker.ready(), 2u);
}

TEST_F(DiskTest, TwoDisksAreIndependent) {
  DiskMaker maker((dir_ / "work").string(), 0, 0);
  const std::string a = Target("a");
  const std::string b = Target("b");
  ASSERT_TRUE(maker.Provide(32ull << 20, (dir_ / "a.img").string(), a, 0, 0));
  ASSERT_TRUE(maker.Provide(32ull << 20, (dir_ / "b.img").string(), b, 0, 0));
  EXPECT_EQ(Fill(a + "/big").second, ENOSPC);
  auto [written, err] = Fill(b + "/small");  // b still has its whole size
  EXPECT_EQ(err, ENOSPC);
  EXPECT_GT(written, 24ull << 20);
}

// ext4's s_feature_compat (superblock at 1024, field at 0x5C) has COMPAT_HAS_JOURNAL (0x4).
bool HasJournal(const std::string& image) {
  UniqueFd fd(::open(image.c_str(), O_RDONLY | O_CLOEXEC));
  unsigned char compat[4] = {};
  if (!fd || ::pread(fd.Get(), compat, sizeof(compat), 1024 + 0x5C) != sizeof(compat)) {
    return false;
  }
  return (compat[0] & 0x4) != 0;
}

// Without a journal ext4 skips every inode freed in the last 30 s whose table block is dirty
// (recently_deleted()), which makes unpacking a tree after deleting one quadratic: disks large
// enough for many files have one, small ones keep their whole limit for data. Both stay sparse.
TEST_F(DiskTest, LargeDisksHaveAJournalAndStaySparse) {
  DiskMaker maker((dir_ / "work").string(), 0, 0);
  const std::string big = (dir_ / "big.img").string();
  const std::string small = (dir_ / "small.img").string();
  ASSERT_TRUE(maker.Provide(1ull << 30, big, Target("big"), 0, 0));
  ASSERT_TRUE(maker.Provide(32ull << 20, small, Target("small"), 0, 0));
  EXPECT_TRUE(HasJournal(big));
  EXPECT_FALSE(HasJournal(small));
  struct stat st {};
  ASSERT_EQ(::stat(big.c_str(), &st), 0);
  EXPECT_LT(static_cast<uint64_t>(st.st_blocks) * 512, 64ull << 20);  // far below 1 GiB
}

TEST_F(DiskTest, UsageOfAPlainDirectoryIsNotFound) {
  auto u = UsageOf(dir_.string());
  ASSERT_FALSE(u);
  EXPECT_EQ(u.error().code, ErrorCode::kNotFound);
}

TEST_F(DiskTest, UnmountedDiskReleasesItsLoopDevice) {
  DiskMaker maker((dir_ / "work").string(), 0, 0);
  const std::string a = Target("a");
  const std::string img = (dir_ / "a.img").string();
  ASSERT_TRUE(maker.Provide(32ull << 20, img, a, 0, 0));
  ASSERT_EQ(::umount2(a.c_str(), MNT_DETACH), 0);
  // The loop device clears itself (LO_FLAGS_AUTOCLEAR): no /sys/block/loop*/loop/backing_file
  // names the image any more.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  bool held = true;
  while (held && std::chrono::steady_clock::now() < deadline) {
    held = false;
    for (const auto& e : std::filesystem::directory_iterator("/sys/block")) {
      auto text = ReadSmallFile(e.path().string() + "/loop/backing_file");
      if (text && text->find(img) != std::string::npos) {
        held = true;
      }
    }
    if (held) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  EXPECT_FALSE(held);
}

}  // namespace
}  // namespace agentbox::disk
