#include "backends/docker/host_dir.h"

#include <fcntl.h>
#include <ftw.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <sstream>

#include "common/json_util.h"
#include "common/unique_fd.h"

namespace agentbox::docker {

bool PathExists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

Result<void> WriteFileAtomic(const std::string& path, const std::string& content, mode_t mode) {
  const std::string tmp = path + ".tmp";
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode));
  if (!fd) {
    return Fail(ErrnoError(errno, "create " + tmp));
  }
  size_t off = 0;
  while (off < content.size()) {
    const ssize_t n = ::write(fd.Get(), content.data() + off, content.size() - off);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      const int err = errno;
      ::unlink(tmp.c_str());
      return Fail(ErrnoError(err, "write " + tmp));
    }
    off += static_cast<size_t>(n);
  }
  // No fsync: the rename is atomic for every reader and survives a daemon restart, which is
  // what the metadata must survive; a machine crash takes the containers with it anyway. An
  // fsync here cost milliseconds on every claim (the warm pool's hand-out path).
  if (::fchmod(fd.Get(), mode) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return Fail(ErrnoError(err, "chmod " + tmp));
  }
  fd.Reset();
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return Fail(ErrnoError(err, "rename " + tmp));
  }
  return {};
}

Result<SandboxMeta> LoadMeta(const std::string& dir) {
  const std::string path = dir + "/" + kMetaFile;
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT || errno == ENOTDIR) {
      return Fail(ErrorCode::kNotFound, path + " does not exist");
    }
    return Fail(ErrnoError(errno, "open " + path));
  }
  std::string text;
  char buf[8192];
  for (;;) {
    const ssize_t n = ::read(fd.Get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return Fail(ErrnoError(errno, "read " + path));
    }
    if (n == 0 || text.size() > (1 << 20)) {
      break;
    }
    text.append(buf, static_cast<size_t>(n));
  }
  auto j = ParseJsonObject(text);
  if (!j) {
    return Fail(ErrorCode::kInternal, path + ": " + j.error().message);
  }
  try {
    SandboxMeta m;
    if (j->at("version").get<int>() != 1) {
      return Fail(ErrorCode::kInternal, path + ": unsupported version");
    }
    m.token = j->at("token").get<std::string>();
    m.owner = j->at("owner").get<std::string>();
    m.labels = j->at("labels").get<std::map<std::string, std::string>>();
    m.expires_at = j->at("expires_at").get<double>();
    m.claimed = j->value("claimed", false);
    return m;
  } catch (const Json::exception& e) {
    return Fail(ErrorCode::kInternal, path + ": " + e.what());
  }
}

Result<void> SaveMeta(const std::string& dir, const SandboxMeta& m) {
  const Json j = {{"version", 1},       {"token", m.token},           {"owner", m.owner},
                  {"labels", m.labels}, {"expires_at", m.expires_at}, {"claimed", m.claimed}};
  return WriteFileAtomic(dir + "/" + kMetaFile, DumpJson(j) + "\n", 0600);
}

namespace {
int RemoveOne(const char* path, const struct stat*, int type, struct FTW*) {
  const int rc = type == FTW_DP ? ::rmdir(path) : ::unlink(path);
  return rc == 0 || errno == ENOENT ? 0 : errno;
}
}  // namespace

Result<void> RemoveTree(const std::string& path) {
  if (!PathExists(path)) {
    return {};
  }
  // FTW_PHYS: symlinks are removed, never followed. FTW_MOUNT: stay on this file system.
  const int rc = ::nftw(path.c_str(), RemoveOne, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
  if (rc != 0) {
    return Fail(ErrnoError(rc > 0 ? rc : errno, "remove " + path));
  }
  return {};
}

}  // namespace agentbox::docker
