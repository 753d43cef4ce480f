#include "backends/jail/mount_ns.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "backends/jail/result_util.h"

namespace agentbox::jail {
namespace {

constexpr uint64_t kReadOnlyAttrs = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
constexpr uint64_t kWritableAttrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
constexpr const char* kDevNodes[] = {"null", "zero", "full", "random", "urandom", "tty"};

std::string FdPath(const UniqueFd& fd) { return "/proc/self/fd/" + std::to_string(fd.Get()); }

Result<UniqueFd> OpenPath(int dirfd, const std::string& path, int extra_flags) {
  UniqueFd fd(::openat(dirfd, path.c_str(), O_PATH | O_CLOEXEC | extra_flags));
  if (!fd) {
    return Fail(ErrnoError(errno, "open mount source " + path));
  }
  return fd;
}

// Describes `name` under `dirfd` (host path `host_path`) as a mount source. Fails for kinds the
// jail does not expose (sockets, devices, fifos).
Result<MountSource> DescribeEntry(int dirfd, const std::string& name,
                                  const std::string& host_path) {
  struct stat st {};
  if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return Fail(ErrnoError(errno, "stat " + host_path));
  }
  MountSource src;
  src.name = name;
  src.host_path = host_path;
  if (S_ISLNK(st.st_mode)) {
    char buf[4096];
    const ssize_t n = ::readlinkat(dirfd, name.c_str(), buf, sizeof(buf) - 1);
    if (n < 0) {
      return Fail(ErrnoError(errno, "readlink " + host_path));
    }
    src.kind = MountSource::Kind::kSymlink;
    src.link_target.assign(buf, static_cast<size_t>(n));
  } else if (S_ISDIR(st.st_mode)) {
    src.kind = MountSource::Kind::kDir;
  } else if (S_ISREG(st.st_mode)) {
    src.kind = MountSource::Kind::kFile;
  } else {
    return Fail(ErrorCode::kInvalidArgument,
                host_path + " is neither a file, a directory nor a symlink");
  }
  return src;
}

Result<MountSource> DescribePath(const std::string& host_path, const std::string& name,
                                 MountSource::Kind want) {
  struct stat st {};
  if (::stat(host_path.c_str(), &st) != 0) {
    return Fail(ErrnoError(errno, "mount source " + host_path));
  }
  const bool ok = want == MountSource::Kind::kDir ? S_ISDIR(st.st_mode) : !S_ISDIR(st.st_mode);
  if (!ok) {
    return Fail(ErrorCode::kInvalidArgument,
                "mount source " + host_path +
                    (want == MountSource::Kind::kDir ? " is not a directory" : " is a directory"));
  }
  MountSource src;
  src.name = name;
  src.kind = want;
  src.host_path = host_path;
  return src;
}

Result<void> OpenSource(MountSource& src) {
  if (src.kind == MountSource::Kind::kSymlink) {
    return {};
  }
  // Entries were described without following symlinks; a symlink there now was not there then.
  const int flags =
      (src.kind == MountSource::Kind::kDir ? O_DIRECTORY : 0) | (src.follow ? 0 : O_NOFOLLOW);
  auto fd = OpenPath(AT_FDCWD, src.host_path, flags);
  if (!fd) {
    return Fail(fd.error());
  }
  src.fd = std::move(*fd);
  return {};
}

Result<void> Mount(const std::string& source, const char* target, const char* fstype,
                   unsigned long flags, const std::string& data) {
  if (::mount(source.c_str(), target, fstype, flags, data.empty() ? nullptr : data.c_str()) != 0) {
    return Fail(
        ErrnoError(errno, std::string("mount ") + (fstype ? fstype : "bind") + " on /" + target));
  }
  return {};
}

// Sets mount attributes on `target` (and, if recursive, every mount below it). Only adds
// restrictions, so the flags the host locked on the source mount are kept as they are.
Result<void> SetAttrs(const char* target, uint64_t attrs, bool recursive) {
  struct mount_attr attr {};
  attr.attr_set = attrs;
  const unsigned flags = AT_SYMLINK_NOFOLLOW | (recursive ? AT_RECURSIVE : 0);
  if (::mount_setattr(AT_FDCWD, target, flags, &attr, sizeof(attr)) != 0) {
    return Fail(ErrnoError(errno, std::string("mount_setattr /") + target));
  }
  return {};
}

Result<void> Bind(const UniqueFd& source, const char* target, bool recursive, uint64_t attrs) {
  JAIL_RETURN_IF_ERROR(
      Mount(FdPath(source), target, nullptr, MS_BIND | (recursive ? MS_REC : 0), ""));
  return SetAttrs(target, attrs, recursive);
}

Result<void> MakeDir(const char* path, mode_t mode) {
  if (::mkdir(path, mode) != 0 && errno != EEXIST) {
    return Fail(ErrnoError(errno, std::string("mkdir /") + path));
  }
  // mkdir(2) applies the umask; the modes here are the ones the jail promises.
  if (::chmod(path, mode) != 0) {
    return Fail(ErrnoError(errno, std::string("chmod /") + path));
  }
  return {};
}

Result<void> MakeFile(const char* path, mode_t mode) {
  UniqueFd fd(::open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, mode));
  if (!fd) {
    return Fail(ErrnoError(errno, std::string("create mount point /") + path));
  }
  return {};
}

Result<void> MakeSymlink(const std::string& target, const char* path) {
  if (::symlink(target.c_str(), path) != 0) {
    return Fail(ErrnoError(errno, std::string("symlink /") + path));
  }
  return {};
}

Result<void> MountTmpfs(const char* target, uint64_t bytes, const char* mode, unsigned long flags) {
  // uid=0,gid=0 are read in the jail's user namespace: the sandbox's root owns the tmpfs.
  return Mount("tmpfs", target, "tmpfs", flags,
               "size=" + std::to_string(bytes) + ",mode=" + mode + ",uid=0,gid=0");
}

Result<void> ExposeSystemEntries(const MountPlan& plan) {
  const uint64_t attrs = plan.config.system_writable ? kWritableAttrs : kReadOnlyAttrs;
  for (const MountSource& src : plan.system) {
    const char* name = src.name.c_str();
    switch (src.kind) {
      case MountSource::Kind::kSymlink:
        JAIL_RETURN_IF_ERROR(MakeSymlink(src.link_target, name));
        break;
      case MountSource::Kind::kDir:
        JAIL_RETURN_IF_ERROR(MakeDir(name, 0755));
        JAIL_RETURN_IF_ERROR(Bind(src.fd, name, /*recursive=*/true, attrs));
        break;
      case MountSource::Kind::kFile:
        JAIL_RETURN_IF_ERROR(MakeFile(name, 0644));
        JAIL_RETURN_IF_ERROR(Bind(src.fd, name, /*recursive=*/false, attrs));
        break;
    }
  }
  return {};
}

Result<void> MountDev(const MountPlan& plan) {
  JAIL_RETURN_IF_ERROR(MakeDir("dev", 0755));
  JAIL_RETURN_IF_ERROR(MountTmpfs("dev", 1 << 20, "0755", MS_NOSUID | MS_NOEXEC));
  for (const MountSource& node : plan.dev_nodes) {
    JAIL_RETURN_IF_ERROR(MakeFile(node.name.c_str(), 0666));
    // No nodev here: the bind keeps the host devtmpfs's permission to open device nodes.
    JAIL_RETURN_IF_ERROR(Bind(node.fd, node.name.c_str(), /*recursive=*/false,
                              MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC));
  }
  JAIL_RETURN_IF_ERROR(MakeDir("dev/pts", 0755));
  JAIL_RETURN_IF_ERROR(Mount("devpts", "dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
                             "newinstance,ptmxmode=0666,mode=0620"));
  JAIL_RETURN_IF_ERROR(MakeSymlink("pts/ptmx", "dev/ptmx"));
  JAIL_RETURN_IF_ERROR(MakeDir("dev/shm", 01777));
  JAIL_RETURN_IF_ERROR(MountTmpfs("dev/shm", plan.config.shm_bytes, "1777", MS_NOSUID | MS_NODEV));
  JAIL_RETURN_IF_ERROR(MakeSymlink("/proc/self/fd", "dev/fd"));
  JAIL_RETURN_IF_ERROR(MakeSymlink("/proc/self/fd/0", "dev/stdin"));
  JAIL_RETURN_IF_ERROR(MakeSymlink("/proc/self/fd/1", "dev/stdout"));
  JAIL_RETURN_IF_ERROR(MakeSymlink("/proc/self/fd/2", "dev/stderr"));
  return {};
}

bool Contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

}  // namespace

std::vector<std::string> DefaultSystemEntries() {
  return {"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc"};
}

const std::vector<std::string>& ReservedEntries() {
  static const std::vector<std::string> kReserved = {".",   "..",        "proc", "dev",      "sys",
                                                     "tmp", "workspace", "run",  ".agentbox"};
  return kReserved;
}

Result<MountPlan> PrepareMounts(MountNsConfig cfg) {
  MountPlan plan;
  if (cfg.root_dir.empty() || cfg.workspace_dir.empty() || cfg.run_dir.empty() ||
      cfg.guest_binary.empty()) {
    return Fail(ErrorCode::kInvalidArgument,
                "mount namespace: root_dir, workspace_dir, run_dir and guest_binary are required");
  }
  // An overlay root takes nothing from system_source.
  UniqueFd source(::open(cfg.overlay.enabled() ? "/" : cfg.system_source.c_str(),
                         O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!source) {
    return Fail(ErrnoError(errno, "open system source " + cfg.system_source));
  }
  const std::string prefix = cfg.system_source == "/" ? "" : cfg.system_source;
  std::vector<std::string> names =
      cfg.overlay.enabled() ? std::vector<std::string>{} : cfg.system_entries;
  if (names.empty() && !cfg.overlay.enabled()) {
    DIR* dir = ::fdopendir(::dup(source.Get()));
    if (dir == nullptr) {
      return Fail(ErrnoError(errno, "list " + cfg.system_source));
    }
    while (const dirent* e = ::readdir(dir)) {
      if (!Contains(ReservedEntries(), e->d_name)) {
        names.emplace_back(e->d_name);
      }
    }
    ::closedir(dir);
    std::sort(names.begin(), names.end());
  }
  for (const std::string& name : names) {
    if (name.empty() || name.find('/') != std::string::npos || Contains(ReservedEntries(), name)) {
      return Fail(ErrorCode::kInvalidArgument, "system entry '" + name + "' is not allowed");
    }
    auto entry = DescribeEntry(source.Get(), name, prefix + "/" + name);
    if (!entry) {
      if (entry.error().code == ErrorCode::kNotFound || cfg.system_entries.empty()) {
        continue;  // e.g. no lib32 on this host, or a socket at an image's top level
      }
      return Fail(entry.error());
    }
    plan.system.push_back(std::move(*entry));
  }
  for (const char* node : kDevNodes) {
    auto src = DescribePath(std::string("/dev/") + node, std::string("dev/") + node,
                            MountSource::Kind::kFile);
    if (!src) {
      return Fail(src.error());
    }
    plan.dev_nodes.push_back(std::move(*src));
  }
  auto workspace = DescribePath(cfg.workspace_dir, "workspace", MountSource::Kind::kDir);
  auto run = DescribePath(cfg.run_dir, "run/agentbox", MountSource::Kind::kDir);
  auto guest = DescribePath(cfg.guest_binary, ".agentbox/guest", MountSource::Kind::kFile);
  if (guest) {
    guest->follow = true;  // e.g. /usr/local/bin/agentbox-guest -> /opt/agentbox/...
  }
  auto root = DescribePath(cfg.root_dir, "", MountSource::Kind::kDir);
  if (!workspace || !run || !guest || !root) {
    return Fail(!workspace ? workspace.error()
                : !run     ? run.error()
                : !guest   ? guest.error()
                           : root.error());
  }
  plan.workspace = std::move(*workspace);
  plan.run = std::move(*run);
  plan.guest = std::move(*guest);
  if (!cfg.resolv_conf.empty()) {
    auto resolv = DescribePath(cfg.resolv_conf, "etc/resolv.conf", MountSource::Kind::kFile);
    if (!resolv) {
      return Fail(resolv.error());
    }
    plan.resolv_conf = std::move(*resolv);
  }
  for (const auto& x : cfg.extra) {
    if (!x.target.starts_with("/") || x.target.size() < 2 ||
        x.target.find("..") != std::string::npos) {
      return Fail(ErrorCode::kInvalidArgument, "extra mount target '" + x.target + "'");
    }
    struct stat st {};
    const bool dir = ::stat(x.host_path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
    auto src = DescribePath(x.host_path, x.target.substr(1),
                            dir ? MountSource::Kind::kDir : MountSource::Kind::kFile);
    if (!src) {
      return Fail(src.error());
    }
    plan.extra.push_back(std::move(*src));
  }
  plan.config = std::move(cfg);
  return plan;
}

Result<void> EnterMountNamespace(MountPlan& plan) {
  for (MountSource& src : plan.system) {
    JAIL_RETURN_IF_ERROR(OpenSource(src));
  }
  for (MountSource& src : plan.dev_nodes) {
    JAIL_RETURN_IF_ERROR(OpenSource(src));
  }
  JAIL_RETURN_IF_ERROR(OpenSource(plan.workspace));
  JAIL_RETURN_IF_ERROR(OpenSource(plan.run));
  JAIL_RETURN_IF_ERROR(OpenSource(plan.guest));
  if (plan.config.overlay.enabled()) {
    JAIL_RETURN_IF_ERROR(OpenOverlaySources(plan.config.overlay, plan.overlay));
  }
  if (!plan.resolv_conf.host_path.empty()) {
    JAIL_RETURN_IF_ERROR(OpenSource(plan.resolv_conf));
  }
  for (MountSource& src : plan.extra) {
    JAIL_RETURN_IF_ERROR(OpenSource(src));
  }
  // Copies of the host's mounts must neither receive nor send mount events.
  JAIL_RETURN_IF_ERROR(Mount("none", "/", nullptr, MS_REC | MS_PRIVATE, ""));
  const char* root = plan.config.root_dir.c_str();
  JAIL_RETURN_IF_ERROR(MountTmpfs(root, plan.config.root_bytes, "0755", MS_NOSUID | MS_NODEV));
  // Walking the path again (rather than fchdir to an old descriptor) enters the new tmpfs.
  if (::chdir(root) != 0) {
    return Fail(ErrnoError(errno, "chdir to the jail root"));
  }
  return {};
}

// A read-only sysfs of the jail's own network namespace, as Docker gives containers (tools read
// CPU topology and the like from it), with /sys/firmware masked. With the host's network shared
// the kernel refuses sysfs to a user namespace that does not own that network namespace; /sys
// then stays an empty directory rather than exposing the host's.
static Result<void> MountSys(const MountPlan& plan) {
  JAIL_RETURN_IF_ERROR(MakeDir("sys", 0555));
  if (!plan.config.sysfs) {
    return {};
  }
  JAIL_RETURN_IF_ERROR(
      Mount("sysfs", "sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, ""));
  struct stat st {};
  if (::stat("sys/firmware", &st) == 0) {
    JAIL_RETURN_IF_ERROR(Mount("tmpfs", "sys/firmware", "tmpfs",
                               MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=0555"));
  }
  return {};
}

// The sandbox's own resolver list over /etc/resolv.conf. Only a regular file can be covered: a
// symlink would be followed to wherever it points on the host's side of the not yet pivoted root.
static Result<void> BindResolvConf(const MountPlan& plan) {
  if (plan.resolv_conf.host_path.empty()) {
    return {};
  }
  struct stat st {};
  // An overlay root is the sandbox's own copy: a missing file, or a symlink (replaced in the
  // upper directory, never followed), becomes a regular file to bind over.
  const bool own_root = plan.config.system_writable || plan.config.overlay.enabled();
  const int found = ::lstat("etc/resolv.conf", &st);
  if (found == 0 && S_ISLNK(st.st_mode) && plan.config.overlay.enabled()) {
    if (::unlink("etc/resolv.conf") != 0) {
      return Fail(ErrnoError(errno, "replace the image's /etc/resolv.conf symlink"));
    }
    JAIL_RETURN_IF_ERROR(MakeFile("etc/resolv.conf", 0644));
  } else if (found != 0 && errno == ENOENT && own_root) {
    JAIL_RETURN_IF_ERROR(MakeFile("etc/resolv.conf", 0644));
  } else if (::lstat("etc/resolv.conf", &st) != 0 || !S_ISREG(st.st_mode)) {
    return Fail(ErrorCode::kInvalidArgument,
                "network egress: the image's /etc/resolv.conf must be a regular file");
  }
  return Bind(plan.resolv_conf.fd, "etc/resolv.conf", /*recursive=*/false,
              MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
}

// Mounts config.extra over their targets, making missing targets (and parents) on the root
// tmpfs (the current directory).
static Result<void> MountExtra(const MountPlan& plan) {
  for (size_t i = 0; i < plan.extra.size(); ++i) {
    const MountSource& src = plan.extra[i];
    for (size_t slash = src.name.find('/'); slash != std::string::npos;
         slash = src.name.find('/', slash + 1)) {
      const std::string parent = src.name.substr(0, slash);
      struct stat st {};
      if (::stat(parent.c_str(), &st) != 0) {
        JAIL_RETURN_IF_ERROR(MakeDir(parent.c_str(), 0755));
      }
    }
    const char* name = src.name.c_str();
    struct stat st {};
    if (::lstat(name, &st) != 0) {
      JAIL_RETURN_IF_ERROR(src.kind == MountSource::Kind::kDir ? MakeDir(name, 0755)
                                                               : MakeFile(name, 0644));
    }
    JAIL_RETURN_IF_ERROR(Bind(src.fd, name, /*recursive=*/false,
                              plan.config.extra[i].writable ? kWritableAttrs : kReadOnlyAttrs));
  }
  return {};
}

Result<void> BuildRootAndPivot(const MountPlan& plan) {
  if (plan.config.overlay.enabled()) {
    // The staging tmpfs keeps only the layers' mount points; the overlay becomes the root.
    JAIL_RETURN_IF_ERROR(MountOverlayRoot(plan.overlay));
  } else {
    JAIL_RETURN_IF_ERROR(ExposeSystemEntries(plan));
  }
  // After the image: /etc/resolv.conf is bound over the image's own.
  JAIL_RETURN_IF_ERROR(BindResolvConf(plan));
  JAIL_RETURN_IF_ERROR(MakeDir("workspace", 0755));
  JAIL_RETURN_IF_ERROR(Bind(plan.workspace.fd, "workspace", /*recursive=*/false, kWritableAttrs));
  JAIL_RETURN_IF_ERROR(MakeDir("run", 0755));
  JAIL_RETURN_IF_ERROR(MakeDir("run/agentbox", 0700));
  JAIL_RETURN_IF_ERROR(
      Bind(plan.run.fd, "run/agentbox", /*recursive=*/false, kWritableAttrs | MOUNT_ATTR_NOEXEC));
  JAIL_RETURN_IF_ERROR(MakeDir(".agentbox", 0755));
  JAIL_RETURN_IF_ERROR(MakeFile(".agentbox/guest", 0755));
  JAIL_RETURN_IF_ERROR(Bind(plan.guest.fd, ".agentbox/guest", /*recursive=*/false,
                            MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV));
  JAIL_RETURN_IF_ERROR(MakeDir("tmp", 01777));
  JAIL_RETURN_IF_ERROR(MountTmpfs("tmp", plan.config.tmp_bytes, "1777", MS_NOSUID | MS_NODEV));
  JAIL_RETURN_IF_ERROR(MakeDir("proc", 0555));
  JAIL_RETURN_IF_ERROR(Mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, ""));
  JAIL_RETURN_IF_ERROR(MountDev(plan));
  JAIL_RETURN_IF_ERROR(MountSys(plan));
  JAIL_RETURN_IF_ERROR(MountExtra(plan));
  struct stat st {};
  if (::lstat("root", &st) != 0) {
    JAIL_RETURN_IF_ERROR(MakeDir("root", 0700));
  }
  if (plan.config.read_only_root) {
    // Only the root's own mount: /workspace, /tmp, /dev/shm, /run/agentbox stay writable.
    JAIL_RETURN_IF_ERROR(SetAttrs(".", MOUNT_ATTR_RDONLY, /*recursive=*/false));
  }
  // pivot_root(".", ".") stacks the old root on top of the new one; detaching it leaves the
  // jail's tree alone, with no path back to the host's.
  if (::syscall(SYS_pivot_root, ".", ".") != 0) {
    return Fail(ErrnoError(errno, "pivot_root"));
  }
  if (::umount2(".", MNT_DETACH) != 0) {
    return Fail(ErrnoError(errno, "detach the host root"));
  }
  if (::chdir("/") != 0) {
    return Fail(ErrnoError(errno, "chdir /"));
  }
  return {};
}

}  // namespace agentbox::jail
