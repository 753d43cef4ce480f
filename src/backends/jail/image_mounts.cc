#include "backends/jail/image_mounts.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "backends/jail/result_util.h"

namespace agentbox::jail {
namespace {

constexpr uint64_t kReadOnlyAttrs = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
constexpr const char* kLayersDir = ".agentbox-layers";
constexpr const char* kStackDir = ".agentbox-image";
constexpr size_t kFdsPerMessage = 200;  // SCM_MAX_FD is 253

Result<void> Check(int rc, const std::string& what) {
  if (rc != 0) {
    return Fail(ErrnoError(errno, what));
  }
  return {};
}

Result<void> SetReadOnly(const char* target, bool recursive) {
  struct mount_attr attr {};
  attr.attr_set = kReadOnlyAttrs;
  return Check(::mount_setattr(AT_FDCWD, target,
                               AT_SYMLINK_NOFOLLOW | (recursive ? AT_RECURSIVE : 0), &attr,
                               sizeof(attr)),
               std::string("mount_setattr /") + target);
}

Result<void> BindReadOnly(const std::string& source, const char* target, bool recursive) {
  JAIL_RETURN_IF_ERROR(Check(::mount(source.c_str(), target, nullptr,
                                     MS_BIND | (recursive ? MS_REC : 0), nullptr),
                             std::string("bind image entry /") + target));
  return SetReadOnly(target, recursive);
}

}  // namespace

bool IdmapImageLayers(const UserNsConfig& user) { return !user.unprivileged && user.count > 1; }

Result<std::vector<UniqueFd>> MakeIdmappedLayers(pid_t child, const MountPlan& plan) {
  const std::string ns_path = "/proc/" + std::to_string(child) + "/ns/user";
  UniqueFd userns(::open(ns_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!userns) {
    return Fail(ErrnoError(errno, "open " + ns_path));
  }
  std::vector<UniqueFd> out;
  for (const MountSource& layer : plan.layers) {
    UniqueFd tree(::open_tree(AT_FDCWD, layer.host_path.c_str(),
                              OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_SYMLINK_NOFOLLOW));
    if (!tree) {
      return Fail(ErrnoError(errno, "open_tree image layer " + layer.host_path));
    }
    struct mount_attr attr {};
    attr.attr_set = kReadOnlyAttrs | MOUNT_ATTR_IDMAP;
    attr.userns_fd = static_cast<uint64_t>(userns.Get());
    if (::mount_setattr(tree.Get(), "", AT_EMPTY_PATH, &attr, sizeof(attr)) != 0) {
      return Fail(ErrnoError(errno, "idmap image layer " + layer.host_path));
    }
    out.push_back(std::move(tree));
  }
  return out;
}

Result<void> SendFds(int sock, const std::vector<UniqueFd>& fds) {
  for (size_t at = 0; at < fds.size(); at += kFdsPerMessage) {
    const size_t n = std::min(kFdsPerMessage, fds.size() - at);
    std::vector<char> control(CMSG_SPACE(sizeof(int) * n));
    char byte = 'f';
    iovec iov{&byte, 1};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * n);
    for (size_t i = 0; i < n; ++i) {
      const int fd = fds[at + i].Get();
      std::memcpy(CMSG_DATA(c) + i * sizeof(int), &fd, sizeof(int));
    }
    ssize_t sent;
    do {
      sent = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
    } while (sent < 0 && errno == EINTR);
    if (sent != 1) {
      return Fail(ErrnoError(errno, "send the image layers to the jail"));
    }
  }
  return {};
}

Result<std::vector<UniqueFd>> ReceiveFds(int sock, size_t count) {
  std::vector<UniqueFd> out;
  while (out.size() < count) {
    const size_t n = std::min(kFdsPerMessage, count - out.size());
    std::vector<char> control(CMSG_SPACE(sizeof(int) * n));
    char byte = 0;
    iovec iov{&byte, 1};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    ssize_t got;
    do {
      got = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    } while (got < 0 && errno == EINTR);
    if (got != 1) {
      return Fail(ErrnoError(got < 0 ? errno : EPIPE, "receive the image layers"));
    }
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) {
        continue;
      }
      const size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < k; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        out.emplace_back(fd);
      }
    }
    if (out.size() % kFdsPerMessage != 0 && out.size() < count) {
      return Fail(ErrorCode::kInternal, "the image layers arrived incomplete");
    }
  }
  return out;
}

Result<void> ExposeImageLayers(const MountPlan& plan) {
  JAIL_RETURN_IF_ERROR(Check(::mkdir(kLayersDir, 0700), "mkdir /.agentbox-layers"));
  std::vector<std::string> points;
  for (size_t i = 0; i < plan.layers.size(); ++i) {
    const std::string point = std::string(kLayersDir) + "/" + std::to_string(i);
    JAIL_RETURN_IF_ERROR(Check(::mkdir(point.c_str(), 0755), "mkdir /" + point));
    if (i < plan.layer_mounts.size()) {
      JAIL_RETURN_IF_ERROR(Check(::move_mount(plan.layer_mounts[i].Get(), "", AT_FDCWD,
                                              point.c_str(), MOVE_MOUNT_F_EMPTY_PATH),
                                 "attach image layer " + std::to_string(i)));
    } else {
      const std::string src = "/proc/self/fd/" + std::to_string(plan.layers[i].fd.Get());
      JAIL_RETURN_IF_ERROR(BindReadOnly(src, point.c_str(), /*recursive=*/false));
    }
    points.push_back(point);
  }
  std::string top = points.empty() ? "" : points[0];
  if (points.size() > 1) {
    // Top layer first in lowerdir; no upperdir: the overlay is read-only.
    std::string lower;
    for (auto it = points.rbegin(); it != points.rend(); ++it) {
      lower += (lower.empty() ? "" : ":") + *it;
    }
    JAIL_RETURN_IF_ERROR(Check(::mkdir(kStackDir, 0755), "mkdir /.agentbox-image"));
    const std::string opts = "lowerdir=" + lower + ",userxattr";
    JAIL_RETURN_IF_ERROR(Check(::mount("overlay", kStackDir, "overlay",
                                       MS_RDONLY | MS_NOSUID | MS_NODEV, opts.c_str()),
                               "mount the image's layers (overlay)"));
    top = kStackDir;
  }
  UniqueFd dirfd(::open(top.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  DIR* d = dirfd ? ::fdopendir(::dup(dirfd.Get())) : nullptr;
  if (d == nullptr) {
    return Fail(ErrnoError(errno, "list the image's root"));
  }
  std::vector<std::string> names;
  while (const dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    if (std::find(ReservedEntries().begin(), ReservedEntries().end(), n) ==
        ReservedEntries().end()) {
      names.push_back(n);
    }
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  for (const auto& n : names) {
    const char* name = n.c_str();
    if (n == kLayersDir || n == kStackDir) {
      continue;
    }
    struct stat st {};
    if (::fstatat(dirfd.Get(), name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      return Fail(ErrnoError(errno, "stat image entry " + n));
    }
    const std::string src = top + "/" + n;
    if (S_ISLNK(st.st_mode)) {
      char buf[4096];
      const ssize_t len = ::readlinkat(dirfd.Get(), name, buf, sizeof(buf) - 1);
      if (len < 0) {
        return Fail(ErrnoError(errno, "readlink image entry " + n));
      }
      JAIL_RETURN_IF_ERROR(Check(::symlink(std::string(buf, static_cast<size_t>(len)).c_str(),
                                           name),
                                 "symlink /" + n));
    } else if (S_ISDIR(st.st_mode)) {
      if (::mkdir(name, 0755) != 0 && errno != EEXIST) {
        return Fail(ErrnoError(errno, "mkdir /" + n));
      }
      JAIL_RETURN_IF_ERROR(BindReadOnly(src, name, /*recursive=*/true));
    } else if (S_ISREG(st.st_mode)) {
      UniqueFd f(::open(name, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644));
      if (!f) {
        return Fail(ErrnoError(errno, "create mount point /" + n));
      }
      JAIL_RETURN_IF_ERROR(BindReadOnly(src, name, /*recursive=*/false));
    }
    // Sockets, fifos and devices at the image's top level are not exposed (as for directories).
  }
  dirfd.Reset();
  // The exposed binds hold the stack; the stacking mounts themselves go.
  if (points.size() > 1) {
    JAIL_RETURN_IF_ERROR(Check(::umount2(kStackDir, MNT_DETACH), "detach the image stack"));
    ::rmdir(kStackDir);
  }
  for (const auto& p : points) {
    JAIL_RETURN_IF_ERROR(Check(::umount2(p.c_str(), MNT_DETACH), "detach " + p));
    ::rmdir(p.c_str());
  }
  ::rmdir(kLayersDir);
  return {};
}

}  // namespace agentbox::jail
