#include "guest/core/read_only_root.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

namespace agentbox::guest {
namespace {

// What the child found, as its exit status.
enum Check : int {
  kOk = 0,
  kSetupFailed = 10,
  kRootWritable,
  kKeptDirNotWritable,
  kSysAdminInBoundingSet,
  kSysAdminEffective,
  kRemountedWritable,
};

const char* Describe(int code) {
  switch (code) {
    case kSetupFailed: return "MakeRootReadOnly failed";
    case kRootWritable: return "a file could be created in / (or the error was not EROFS)";
    case kKeptDirNotWritable: return "the directory kept writable could not be written";
    case kSysAdminInBoundingSet: return "CAP_SYS_ADMIN is still in the bounding set";
    case kSysAdminEffective: return "CAP_SYS_ADMIN is still effective or permitted";
    case kRemountedWritable: return "the root could be remounted writable";
    default: return "unknown";
  }
}

int InChild(const std::string& kept) {
  if (!MakeRootReadOnly({kept})) {
    return kSetupFailed;
  }
  struct statvfs v {};
  if (::statvfs("/", &v) != 0 || (v.f_flag & ST_RDONLY) == 0) {
    return kSetupFailed;
  }
  const std::string probe = "/agentbox-read-only-probe-" + std::to_string(::getpid());
  const int fd = ::open(probe.c_str(), O_CREAT | O_WRONLY | O_EXCL, 0600);
  if (fd >= 0 || errno != EROFS) {
    if (fd >= 0) {
      ::close(fd);
      ::unlink(probe.c_str());
    }
    return kRootWritable;
  }
  const std::string file = kept + "/w";
  const int wfd = ::open(file.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0600);
  if (wfd < 0 || ::write(wfd, "x", 1) != 1) {
    return kKeptDirNotWritable;
  }
  ::close(wfd);
  if (::prctl(PR_CAPBSET_READ, CAP_SYS_ADMIN, 0, 0, 0) != 0) {
    return kSysAdminInBoundingSet;
  }
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  const uint32_t bit = 1u << (CAP_SYS_ADMIN % 32);
  if (::syscall(SYS_capget, &header, data) != 0 ||
      ((data[CAP_SYS_ADMIN / 32].effective | data[CAP_SYS_ADMIN / 32].permitted) & bit) != 0) {
    return kSysAdminEffective;
  }
  if (::mount(nullptr, "/", nullptr, MS_REMOUNT | MS_BIND, nullptr) == 0) {
    return kRemountedWritable;
  }
  return kOk;
}

// Runs `fn` in a forked child (its mount namespace and capabilities change; this process's must
// not) and returns its exit status.
template <class Fn>
int Forked(Fn fn) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::_exit(fn());
  }
  int status = 0;
  if (pid < 0 || ::waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) {
    return -1;
  }
  return WEXITSTATUS(status);
}

class ReadOnlyRootTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) {
      GTEST_SKIP() << "needs root (CAP_SYS_ADMIN for a mount namespace), as the guest has on "
                      "Cloud Run";
    }
    char tmpl[] = "/var/tmp/agentbox-ro-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    if (!dir_.empty()) {
      std::filesystem::remove_all(dir_);
    }
  }
  std::string dir_;
};

TEST_F(ReadOnlyRootTest, WritesOutsideTheKeptDirectoriesFailWithErofsAndCannotBeUndone) {
  const std::string kept = dir_ + "/kept";
  const int code = Forked([&] { return InChild(kept); });
  EXPECT_EQ(code, kOk) << Describe(code);
  // This process's (the host's) root is untouched, and the kept directory's file is real.
  struct statvfs v {};
  ASSERT_EQ(::statvfs("/", &v), 0);
  EXPECT_EQ(v.f_flag & ST_RDONLY, 0u);
  EXPECT_TRUE(std::filesystem::exists(kept + "/w"));
}

TEST_F(ReadOnlyRootTest, OnlyWhenAskedAndTheRequestLeavesTheEnvironment) {
  // (Never the default directories here: missing ones would be made on this machine's root.)
  const std::vector<std::string> kept = {dir_ + "/kept"};
  // Not asked: nothing changes.
  EXPECT_EQ(Forked([&] {
              ::unsetenv(kReadOnlyRootEnv);
              struct statvfs v {};
              return HardenIfAsked(kept) && ::statvfs("/", &v) == 0 &&
                             (v.f_flag & ST_RDONLY) == 0 &&
                             ::prctl(PR_CAPBSET_READ, CAP_SYS_ADMIN, 0, 0, 0) == 1
                         ? 0
                         : 1;
            }),
            0);
  // Asked: the root becomes read-only and the variable is gone before anything else runs.
  EXPECT_EQ(Forked([&] {
              ::setenv(kReadOnlyRootEnv, "1", 1);
              struct statvfs v {};
              return HardenIfAsked(kept) && std::getenv(kReadOnlyRootEnv) == nullptr &&
                             ::statvfs("/", &v) == 0 && (v.f_flag & ST_RDONLY) != 0
                         ? 0
                         : 1;
            }),
            0);
}

TEST_F(ReadOnlyRootTest, DroppingSysAdminAloneLeavesTheRootWritable) {
  EXPECT_EQ(Forked([] {
              ::unsetenv(kReadOnlyRootEnv);
              ::setenv(kDropSysAdminEnv, "1", 1);
              struct statvfs v {};
              __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
              __user_cap_data_struct data[2] = {};
              const uint32_t bit = 1u << (CAP_SYS_ADMIN % 32);
              return HardenIfAsked({}) && std::getenv(kDropSysAdminEnv) == nullptr &&
                             ::prctl(PR_CAPBSET_READ, CAP_SYS_ADMIN, 0, 0, 0) == 0 &&
                             ::syscall(SYS_capget, &header, data) == 0 &&
                             (data[CAP_SYS_ADMIN / 32].effective & bit) == 0 &&
                             ::statvfs("/", &v) == 0 && (v.f_flag & ST_RDONLY) == 0 &&
                             DropSysAdmin()  // again: nothing left to drop
                         ? 0
                         : 1;
            }),
            0);
}

}  // namespace
}  // namespace agentbox::guest
