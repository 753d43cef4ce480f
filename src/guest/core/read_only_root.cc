#include "guest/core/read_only_root.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <system_error>
#include <utility>

namespace agentbox::guest {

namespace {

// mount_setattr(2) (Linux 5.12); glibc 2.36's <sys/mount.h> does not declare it everywhere.
constexpr long kSysMountSetattr = 442;
constexpr uint64_t kMountAttrRdonly = 0x00000001;
struct MountAttr {
  uint64_t attr_set = 0;
  uint64_t attr_clr = 0;
  uint64_t propagation = 0;
  uint64_t userns_fd = 0;
};

// Whether `path` is the top of a mount of another filesystem than its parent directory (a
// volume, a tmpfs). A bind mount within one filesystem is not seen, and is bound again: harmless.
bool IsOtherFilesystem(const std::string& path) {
  struct stat self {};
  struct stat parent {};
  return ::stat(path.c_str(), &self) == 0 && ::stat((path + "/..").c_str(), &parent) == 0 &&
         self.st_dev != parent.st_dev;
}

Result<void> KeepWritable(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return Fail(ErrorCode::kInternal, "read-only root: create " + dir + ": " + ec.message());
  }
  if (IsOtherFilesystem(dir)) {
    return {};  // its own mount: the root's flags do not reach it
  }
  if (::mount(dir.c_str(), dir.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0) {
    return Fail(ErrnoError(errno, "read-only root: bind " + dir + " onto itself"));
  }
  return {};
}

Result<void> RemountRootReadOnly() {
  MountAttr attr;
  attr.attr_set = kMountAttrRdonly;
  if (::syscall(kSysMountSetattr, AT_FDCWD, "/", 0, &attr, sizeof(attr)) == 0) {
    return {};
  }
  // Without mount_setattr (an older kernel, or a seccomp filter that does not know it): a bind
  // remount, which keeps the mount's other flags only when they are given again (and must, for
  // flags locked by a user namespace).
  struct statvfs v {};
  if (::statvfs("/", &v) != 0) {
    return Fail(ErrnoError(errno, "read-only root: statvfs /"));
  }
  unsigned long flags = MS_REMOUNT | MS_BIND | MS_RDONLY;
  const std::pair<unsigned long, unsigned long> keep[] = {
      {ST_NOSUID, MS_NOSUID},       {ST_NODEV, MS_NODEV},     {ST_NOEXEC, MS_NOEXEC},
      {ST_NOATIME, MS_NOATIME},     {ST_NODIRATIME, MS_NODIRATIME},
      {ST_RELATIME, MS_RELATIME}};
  for (const auto& [st, ms] : keep) {
    if ((v.f_flag & st) != 0) {
      flags |= ms;
    }
  }
  if (::mount(nullptr, "/", nullptr, flags, nullptr) != 0) {
    return Fail(ErrnoError(errno, "read-only root: remount / read-only"));
  }
  return {};
}

}  // namespace

std::vector<std::string> DefaultWritableDirs() {
  return {"/workspace", "/tmp", "/dev/shm", "/run/agentbox"};
}

Result<void> MakeRootReadOnly(const std::vector<std::string>& writable) {
  if (::unshare(CLONE_NEWNS) != 0) {
    const int err = errno;
    return Fail(ErrnoError(err, "read-only root: a mount namespace of its own (unshare "
                                "CLONE_NEWNS needs CAP_SYS_ADMIN, which Cloud Run's "
                                "second-generation environment gives)"));
  }
  // Changes made here stay here; mounts the platform makes later still arrive.
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) != 0) {
    return Fail(ErrnoError(errno, "read-only root: make / a slave mount"));
  }
  for (const std::string& dir : writable) {
    if (auto r = KeepWritable(dir); !r) {
      return r;
    }
  }
  if (auto r = RemountRootReadOnly(); !r) {
    return r;
  }
  struct statvfs v {};
  if (::statvfs("/", &v) != 0 || (v.f_flag & ST_RDONLY) == 0) {
    return Fail(ErrorCode::kInternal, "read-only root: / is still writable after the remount");
  }
  return DropSysAdmin();
}

Result<void> DropSysAdmin() {
  if (::prctl(PR_CAPBSET_READ, CAP_SYS_ADMIN, 0, 0, 0) == 0) {
    return {};  // never had it (docker's default capabilities, a jail)
  }
  if (::prctl(PR_CAPBSET_DROP, CAP_SYS_ADMIN, 0, 0, 0) != 0) {
    return Fail(ErrnoError(errno, "read-only root: drop CAP_SYS_ADMIN from the bounding set"));
  }
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (::syscall(SYS_capget, &header, data) != 0) {
    return Fail(ErrnoError(errno, "read-only root: capget"));
  }
  const uint32_t bit = 1u << (CAP_SYS_ADMIN % 32);
  auto& word = data[CAP_SYS_ADMIN / 32];
  word.effective &= ~bit;
  word.permitted &= ~bit;
  word.inheritable &= ~bit;
  if (::syscall(SYS_capset, &header, data) != 0) {
    return Fail(ErrnoError(errno, "read-only root: capset"));
  }
  ::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_LOWER, CAP_SYS_ADMIN, 0, 0);  // absent is fine
  return {};
}

Result<void> HardenIfAsked(const std::vector<std::string>& writable) {
  const bool read_only = std::getenv(kReadOnlyRootEnv) != nullptr;
  const bool drop = std::getenv(kDropSysAdminEnv) != nullptr;
  ::unsetenv(kReadOnlyRootEnv);
  ::unsetenv(kDropSysAdminEnv);
  if (read_only) {
    return MakeRootReadOnly(writable);
  }
  return drop ? DropSysAdmin() : Result<void>{};
}

}  // namespace agentbox::guest
