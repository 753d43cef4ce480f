// JailBackend::ListRootChanges: what a sandbox wrote to its overlay root is exactly the overlay's
// upper directory (rootfs.h), read from the host without entering the jail.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>

#include "backends/jail/jail_backend.h"
#include "backends/jail/jail_config.h"
#include "common/fs_util.h"
#include "common/json_util.h"
#include "common/unique_fd.h"

namespace agentbox::jail {

namespace {

// The upper directory of a big install (a whole toolchain) is not walked to its end: the list
// is capped anyway, and the walk runs while the sandbox's calls are held.
constexpr size_t kMaxWalked = 200000;

struct Walk {
  const std::vector<std::string>& lowers;
  std::vector<RootChange> found;
  size_t walked = 0;

  // Whether an image layer has `path` (relative, no leading '/'): a change rather than an add.
  bool InImage(const std::string& path) const {
    struct stat st {};
    for (const auto& l : lowers) {
      if (::lstat((l + "/" + path).c_str(), &st) == 0) {
        return true;
      }
    }
    return false;
  }

  void Dir(int fd, const std::string& rel) {
    const int dup = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
    DIR* d = dup >= 0 ? ::fdopendir(dup) : nullptr;
    if (d == nullptr) {
      if (dup >= 0) {
        ::close(dup);
      }
      return;
    }
    std::vector<std::string> names;
    while (dirent* e = ::readdir(d)) {
      if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) {
        names.emplace_back(e->d_name);
      }
    }
    ::closedir(d);
    for (const auto& name : names) {
      if (++walked > kMaxWalked) {
        return;
      }
      const std::string path = rel.empty() ? name : rel + "/" + name;
      struct stat st {};
      if (::fstatat(fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        continue;
      }
      if (S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0)) {
        found.push_back({"/" + path, "deleted"});  // overlayfs' whiteout
        continue;
      }
      found.push_back({"/" + path, InImage(path) ? "changed" : "added"});
      // The jail's own mount points (made in the upper directory) are listed, so that the
      // directories holding them are not taken for changes, but not walked.
      if (S_ISDIR(st.st_mode) && !OutsideTheRoot("/" + path)) {
        UniqueFd sub(::openat(fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (sub) {
          Dir(sub.Get(), path);
        }
      }
    }
  }
};

}  // namespace

Result<RootChanges> JailBackend::ListRootChanges(const std::string& id, size_t limit) {
  auto rec = LoadRecord(id);  // kNotFound for an unknown or invalid id
  if (!rec) {
    return Fail(rec.error());
  }
  auto text = ReadSmallFile(SandboxDir(id) + "/jail.json", 16u << 20);
  if (!text) {
    return Fail(text.error());
  }
  auto cfg = JailConfigFromJson(ParseUntrustedJson(*text));
  if (!cfg) {
    return Fail(cfg.error());
  }
  const auto& overlay = cfg->mount.overlay;
  if (!overlay.enabled() || cfg->mount.read_only_root) {
    return RootChanges{};  // the host's directories, or a read-only root: nothing was written
  }
  UniqueFd upper(
      ::open(overlay.upper_dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!upper) {
    return Fail(ErrnoError(errno, "open the root's upper directory " + overlay.upper_dir));
  }
  Walk walk{overlay.lower_dirs, {}, 0};
  walk.Dir(upper.Get(), "");
  return CollapseRootChanges(std::move(walk.found), limit);
}

}  // namespace agentbox::jail
