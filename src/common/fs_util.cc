#include "common/fs_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "common/unique_fd.h"

namespace agentbox {
namespace {

Result<void> RemoveAt(int parent, const std::string& name, dev_t dev, const std::string& display,
                      int depth);

// Removes every entry of the directory `dir` (an open descriptor).
Result<void> EmptyDir(int dir, dev_t dev, const std::string& display, int depth) {
  if (depth > 256) {
    return Fail(ErrorCode::kInvalidArgument, "directory tree too deep at " + display);
  }
  DIR* d = ::fdopendir(::dup(dir));
  if (d == nullptr) {
    return Fail(ErrnoError(errno, "list " + display));
  }
  std::vector<std::string> names;
  while (const dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    if (n != "." && n != "..") {
      names.push_back(n);
    }
  }
  ::closedir(d);
  for (const auto& n : names) {
    if (auto r = RemoveAt(dir, n, dev, display + "/" + n, depth + 1); !r) {
      return r;
    }
  }
  return {};
}

Result<void> RemoveAt(int parent, const std::string& name, dev_t dev, const std::string& display,
                      int depth) {
  struct stat st {};
  if (::fstatat(parent, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return errno == ENOENT ? Result<void>{} : Fail(ErrnoError(errno, "stat " + display));
  }
  if (!S_ISDIR(st.st_mode)) {
    if (::unlinkat(parent, name.c_str(), 0) != 0 && errno != ENOENT) {
      return Fail(ErrnoError(errno, "remove " + display));
    }
    return {};
  }
  if (st.st_dev != dev) {
    return Fail(ErrorCode::kConflict, "refusing to remove across a mount point at " + display);
  }
  if ((st.st_mode & 0700) != 0700) {
    ::fchmodat(parent, name.c_str(), st.st_mode | 0700, 0);
  }
  UniqueFd fd(::openat(parent, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) {
    return Fail(ErrnoError(errno, "open " + display));
  }
  if (auto r = EmptyDir(fd.Get(), dev, display, depth); !r) {
    return r;
  }
  if (::unlinkat(parent, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
    return Fail(ErrnoError(errno, "remove " + display));
  }
  return {};
}

}  // namespace

bool PathExists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

Result<void> EnsureDir(const std::string& path, mode_t mode) {
  if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST) {
    return Fail(ErrnoError(errno, "create " + path));
  }
  return {};
}

Result<std::string> CreateSandboxDir(const std::string& state_dir, const std::string& id) {
  if (auto r = EnsureDir(state_dir, 0700); !r) {
    return Fail(r.error());
  }
  std::string dir = state_dir + "/" + id;
  if (::mkdir(dir.c_str(), 0700) != 0) {
    if (errno == EEXIST) {
      return Fail(ErrorCode::kConflict, "sandbox '" + id + "' already exists");
    }
    return Fail(ErrnoError(errno, "create " + dir));
  }
  return dir;
}

namespace {

Result<void> WriteAndRename(const std::string& path, std::string_view content, mode_t mode,
                            bool durable) {
  const std::string tmp = path + ".tmp";
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode));
  if (!fd) {
    return Fail(ErrnoError(errno, "create " + tmp));
  }
  size_t off = 0;
  while (off < content.size()) {
    const ssize_t n = ::write(fd.Get(), content.data() + off, content.size() - off);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      const int err = n < 0 ? errno : EIO;
      ::unlink(tmp.c_str());
      return Fail(ErrnoError(err, "write " + tmp));
    }
    off += static_cast<size_t>(n);
  }
  if (durable && ::fsync(fd.Get()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return Fail(ErrnoError(err, "fsync " + tmp));
  }
  fd.Reset();
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return Fail(ErrnoError(err, "rename " + tmp));
  }
  return durable ? SyncParentDir(path) : Result<void>{};
}

}  // namespace

Result<void> WriteFileAtomic(const std::string& path, std::string_view content, mode_t mode) {
  return WriteAndRename(path, content, mode, false);
}

Result<void> WriteFileDurable(const std::string& path, std::string_view content, mode_t mode) {
  return WriteAndRename(path, content, mode, true);
}

Result<void> SyncParentDir(const std::string& path) {
  const auto slash = path.find_last_of('/');
  const std::string dir =
      slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) {
    return Fail(ErrnoError(errno, "open " + dir));
  }
  if (::fsync(fd.Get()) != 0) {
    return Fail(ErrnoError(errno, "fsync " + dir));
  }
  return {};
}

Result<std::string> ReadSmallFile(const std::string& path, size_t max_bytes) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    return Fail(ErrnoError(errno, "open " + path));
  }
  std::string out;
  char buf[8192];
  while (out.size() < max_bytes) {
    const ssize_t n = ::read(fd.Get(), buf, std::min(sizeof(buf), max_bytes - out.size()));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return Fail(ErrnoError(errno, "read " + path));
    }
    if (n == 0) {
      break;
    }
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

Result<void> RemoveTree(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (path.empty() || path[0] != '/' || slash == std::string::npos || slash + 1 == path.size()) {
    return Fail(ErrorCode::kInvalidArgument, "RemoveTree needs an absolute path: " + path);
  }
  const std::string parent = slash == 0 ? "/" : path.substr(0, slash);
  UniqueFd pfd(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!pfd) {
    return errno == ENOENT ? Result<void>{} : Fail(ErrnoError(errno, "open " + parent));
  }
  struct stat st {};
  if (::fstatat(pfd.Get(), path.c_str() + slash + 1, &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return errno == ENOENT ? Result<void>{} : Fail(ErrnoError(errno, "stat " + path));
  }
  return RemoveAt(pfd.Get(), path.substr(slash + 1), st.st_dev, path, 0);
}
Result<UniqueFd> OpenUnlinkedFile(const std::string& dir) {
  UniqueFd fd(::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
  if (fd) {
    return fd;
  }
  if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL) {
    return Fail(ErrnoError(errno, "create a file in " + dir));
  }
  std::string path = dir + "/.unlinked-XXXXXX";
  fd = UniqueFd(::mkostemp(path.data(), O_CLOEXEC));
  if (!fd) {
    return Fail(ErrnoError(errno, "create a file in " + dir));
  }
  ::unlink(path.c_str());
  return fd;
}

}  // namespace agentbox
