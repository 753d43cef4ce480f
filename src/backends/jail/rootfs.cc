#include "backends/jail/rootfs.h"

#include <fcntl.h>
#include <linux/mount.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "backends/jail/result_util.h"

namespace agentbox::jail {
namespace {

// Docker's overlay2 driver stops at 128 layers too; the mount(2) option string (one page) holds
// that many "layers/<i>:" with room to spare.
constexpr size_t kMaxLayers = 128;

std::string FdPath(const UniqueFd& fd) { return "/proc/self/fd/" + std::to_string(fd.Get()); }

// clone(2) without a new stack: the child continues on a copy of this one, as after fork.
pid_t CloneProcess(unsigned long flags) {
  return static_cast<pid_t>(
      ::syscall(SYS_clone, flags | SIGCHLD, nullptr, nullptr, nullptr, nullptr));
}

// A user namespace with the sandbox's id mapping, held only by the returned descriptor: what
// mount_setattr(MOUNT_ATTR_IDMAP) needs. Its process waits on a pipe and exits once the
// namespace is opened (a namespace outlives its last process while a descriptor holds it).
Result<UniqueFd> MakeUserNamespace(const UserNsConfig& ids) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return Fail(ErrnoError(errno, "pipe2"));
  }
  UniqueFd read_end(fds[0]);
  UniqueFd write_end(fds[1]);
  const pid_t pid = CloneProcess(CLONE_NEWUSER);
  if (pid < 0) {
    return Fail(ErrnoError(errno, "clone a user namespace for the image's idmapped layers"));
  }
  if (pid == 0) {
    write_end.Reset();
    char byte;
    (void)::read(read_end.Get(), &byte, 1);
    ::_exit(0);
  }
  read_end.Reset();
  auto maps = WriteIdMaps(pid, ids);
  UniqueFd ns(::open(("/proc/" + std::to_string(pid) + "/ns/user").c_str(), O_RDONLY | O_CLOEXEC));
  const int open_errno = errno;
  write_end.Reset();
  while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
  }
  if (!maps) {
    return Fail(maps.error());
  }
  if (!ns) {
    return Fail(ErrnoError(open_errno, "open the idmapping user namespace"));
  }
  return ns;
}

Result<UniqueFd> IdmappedClone(const std::string& dir, int userns_fd) {
  UniqueFd tree(static_cast<int>(
      ::syscall(SYS_open_tree, AT_FDCWD, dir.c_str(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC)));
  if (!tree) {
    return Fail(ErrnoError(errno, "open_tree " + dir));
  }
  struct mount_attr attr {};
  attr.attr_set = MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
  attr.userns_fd = static_cast<uint64_t>(userns_fd);
  if (::syscall(SYS_mount_setattr, tree.Get(), "", AT_EMPTY_PATH, &attr, sizeof(attr)) != 0) {
    return Fail(ErrnoError(errno, "idmapped mount of image layer " + dir +
                                      " (its filesystem must support idmapped mounts)"));
  }
  return tree;
}

Result<UniqueFd> OpenDir(const std::string& path, int extra_flags) {
  UniqueFd fd(::open(path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC | extra_flags));
  if (!fd) {
    return Fail(ErrnoError(errno, "open overlay directory " + path));
  }
  return fd;
}

Result<void> MkdirAt(const std::string& path, mode_t mode) {
  if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST) {
    return Fail(ErrnoError(errno, "mkdir " + path));
  }
  return {};
}

}  // namespace

Result<OverlayPlan> PrepareOverlay(const OverlayRootConfig& cfg, const UserNsConfig& ids) {
  OverlayPlan plan;
  if (cfg.upper_dir.empty() || cfg.work_dir.empty()) {
    return Fail(ErrorCode::kInvalidArgument, "overlay root: upper_dir and work_dir are required");
  }
  if (cfg.lower_dirs.size() > kMaxLayers) {
    return Fail(ErrorCode::kInvalidArgument,
                "overlay root: more than " + std::to_string(kMaxLayers) + " image layers");
  }
  for (const std::string& dir : cfg.lower_dirs) {
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      return Fail(ErrorCode::kInvalidArgument, "image layer " + dir + " is not a directory");
    }
  }
  UniqueFd userns;
  if (!ids.unprivileged) {
    auto ns = MakeUserNamespace(ids);
    if (!ns) {
      return Fail(ns.error());
    }
    userns = std::move(*ns);
  }
  for (const std::string& dir : cfg.lower_dirs) {
    OverlayLayer layer;
    layer.host_path = dir;
    if (userns) {
      auto m = IdmappedClone(dir, userns.Get());
      if (!m) {
        return Fail(m.error());
      }
      layer.idmapped = std::move(*m);
    }
    plan.layers.push_back(std::move(layer));
  }
  return plan;
}

Result<void> OpenOverlaySources(const OverlayRootConfig& cfg, OverlayPlan& plan) {
  // The sandbox can write into its upper directory but not replace it: it sits in the state
  // directory, which the sandbox cannot reach; O_NOFOLLOW all the same.
  auto upper = OpenDir(cfg.upper_dir, O_NOFOLLOW);
  if (!upper) {
    return Fail(upper.error());
  }
  auto work = OpenDir(cfg.work_dir, O_NOFOLLOW);
  if (!work) {
    return Fail(work.error());
  }
  plan.upper = std::move(*upper);
  plan.work = std::move(*work);
  for (OverlayLayer& layer : plan.layers) {
    if (!layer.idmapped) {
      auto fd = OpenDir(layer.host_path, 0);
      if (!fd) {
        return Fail(fd.error());
      }
      layer.path = std::move(*fd);
    }
  }
  return {};
}

Result<void> MountOverlayRoot(const OverlayPlan& plan) {
  JAIL_RETURN_IF_ERROR(MkdirAt("layers", 0700));
  std::string lowers;  // overlayfs lists the top layer first
  for (size_t i = 0; i < plan.layers.size(); ++i) {
    const std::string at = "layers/" + std::to_string(i);
    JAIL_RETURN_IF_ERROR(MkdirAt(at, 0755));
    const OverlayLayer& layer = plan.layers[i];
    if (layer.idmapped) {
      if (::syscall(SYS_move_mount, layer.idmapped.Get(), "", AT_FDCWD, at.c_str(),
                    MOVE_MOUNT_F_EMPTY_PATH) != 0) {
        return Fail(ErrnoError(errno, "attach image layer " + layer.host_path));
      }
    } else if (::mount(FdPath(layer.path).c_str(), at.c_str(), nullptr, MS_BIND, nullptr) != 0) {
      return Fail(ErrnoError(errno, "bind image layer " + layer.host_path));
    } else {
      // Layers may be shared (a directory image, the image store's cache): never written. Only
      // adds flags, so a flag the host locked on the source mount stays as it is.
      struct mount_attr attr {};
      attr.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
      if (::syscall(SYS_mount_setattr, AT_FDCWD, at.c_str(), AT_SYMLINK_NOFOLLOW, &attr,
                    sizeof(attr)) != 0) {
        return Fail(ErrnoError(errno, "make image layer " + layer.host_path + " read-only"));
      }
    }
    lowers = at + (lowers.empty() ? "" : ":") + lowers;
  }
  JAIL_RETURN_IF_ERROR(MkdirAt("merged", 0755));
  const std::string options = "lowerdir=" + lowers + ",upperdir=" + FdPath(plan.upper) +
                              ",workdir=" + FdPath(plan.work) + ",userxattr";
  if (::mount("overlay", "merged", "overlay", MS_NOSUID | MS_NODEV, options.c_str()) != 0) {
    return Fail(ErrnoError(
        errno, "mount the overlay root (" +
                   OverlayRootDescription(plan.layers.empty() || plan.layers[0].idmapped) + ")"));
  }
  if (::chdir("merged") != 0) {
    return Fail(ErrnoError(errno, "chdir into the overlay root"));
  }
  return {};
}

std::string OverlayRootDescription(bool privileged) {
  return privileged ? "overlayfs mounted in the sandbox's user namespace with userxattr, "
                      "image layers idmapped into the sandbox's id range"
                    : "overlayfs mounted in the sandbox's user namespace with userxattr, "
                      "image layers as they are (one mapped id: only the caller's files are "
                      "root's inside)";
}

std::string ProbeOverlayRoot(const std::string& scratch_dir) {
  const bool privileged = ::geteuid() == 0;
  // One mapped id is enough to try the mechanism: as root, nobody's id stands for a sandbox's.
  UserNsConfig ids;
  ids.host_uid = privileged ? 65534 : ::getuid();
  ids.host_gid = privileged ? 65534 : ::getgid();
  ids.count = 1;
  ids.unprivileged = !privileged;
  OverlayRootConfig cfg;
  cfg.lower_dirs = {scratch_dir + "/lower"};
  cfg.upper_dir = scratch_dir + "/upper";
  cfg.work_dir = scratch_dir + "/work";
  const std::string stage = scratch_dir + "/stage";
  for (const auto& d : {cfg.lower_dirs[0], cfg.lower_dirs[0] + "/etc",
                        cfg.lower_dirs[0] + "/etc/sub", cfg.upper_dir, cfg.work_dir, stage}) {
    if (::mkdir(d.c_str(), 0755) != 0) {
      return ErrnoError(errno, "mkdir " + d).message;
    }
  }
  std::ofstream(cfg.lower_dirs[0] + "/etc/old") << "x\n";
  for (const auto& d : {cfg.upper_dir, cfg.work_dir}) {
    if (::chown(d.c_str(), ids.host_uid, ids.host_gid) != 0) {
      return ErrnoError(errno, "chown " + d).message;
    }
  }
  auto plan = PrepareOverlay(cfg, ids);
  if (!plan) {
    return plan.error().message;
  }
  int go[2];
  int report[2];
  if (::pipe2(go, O_CLOEXEC) != 0 || ::pipe2(report, O_CLOEXEC) != 0) {
    return "pipe2 failed";
  }
  const pid_t pid = CloneProcess(CLONE_NEWUSER | CLONE_NEWNS);
  if (pid < 0) {
    return ErrnoError(errno, "clone").message;
  }
  if (pid == 0) {
    ::close(go[1]);
    ::close(report[0]);
    char byte;
    if (::read(go[0], &byte, 1) != 1) {
      ::_exit(1);
    }
    auto step = [&]() -> Result<void> {
      JAIL_RETURN_IF_ERROR(OpenOverlaySources(cfg, *plan));
      if (::mount("none", "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
          ::mount("tmpfs", stage.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "size=1m") != 0 ||
          ::chdir(stage.c_str()) != 0) {
        return Fail(ErrnoError(errno, "stage"));
      }
      JAIL_RETURN_IF_ERROR(BecomeNamespaceRoot(ids));
      JAIL_RETURN_IF_ERROR(MountOverlayRoot(*plan));
      UniqueFd f(::open("etc/new", O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
      if (!f) {
        return Fail(ErrnoError(errno, "create a file in a lower directory (copy-up)"));
      }
      if (::unlink("etc/old") != 0) {
        return Fail(ErrnoError(errno, "remove a lower file (whiteout)"));
      }
      // Removing a lower directory and making it again needs an opaque directory: the
      // overlay's xattrs (EIO without userxattr in a user namespace).
      if (::rmdir("etc/sub") != 0 || ::mkdir("etc/sub", 0755) != 0) {
        return Fail(ErrnoError(errno, "replace a lower directory (opaque directory)"));
      }
      return {};
    }();
    if (!step) {
      (void)!::write(report[1], step.error().message.data(), step.error().message.size());
      ::_exit(1);
    }
    ::_exit(0);
  }
  ::close(go[0]);
  ::close(report[1]);
  std::string error;
  if (auto maps = WriteIdMaps(pid, ids); !maps) {
    error = maps.error().message;
    ::kill(pid, SIGKILL);
  } else if (::write(go[1], "g", 1) != 1) {
    error = "cannot release the probe";
  }
  ::close(go[1]);
  char buf[512];
  ssize_t n;
  while ((n = ::read(report[0], buf, sizeof(buf))) > 0) {
    error.append(buf, static_cast<size_t>(n));
  }
  ::close(report[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (error.empty() && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
    error = "the overlay probe failed";
  }
  return error;
}

}  // namespace agentbox::jail
