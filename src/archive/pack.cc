// Writing a directory as a tar stream.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <utility>
#include <vector>

#include "archive/archive.h"
#include "archive/codec.h"
#include "archive/tar_format.h"
#include "common/unique_fd.h"

namespace agentbox::archive {

namespace {

constexpr size_t kFlushAt = 1u << 20;

Result<UniqueFd> OpenDir(const std::string& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) {
    const int err = errno;
    if (err == ENOTDIR) {
      return Fail(ErrorCode::kInvalidArgument, "'" + dir + "' is not a directory");
    }
    if (err == ENOENT) {
      return Fail(ErrorCode::kNotFound, "directory '" + dir + "' not found");
    }
    return Fail(ErrnoError(err, "open " + dir));
  }
  return fd;
}

// The names in a directory, sorted (stable archives), without "." and "..". Takes `fd`.
Result<std::vector<std::string>> ListDir(int fd, const std::string& what) {
  const int dup = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  DIR* d = dup >= 0 ? ::fdopendir(dup) : nullptr;
  if (!d) {
    if (dup >= 0) {
      ::close(dup);
    }
    return Fail(ErrnoError(errno, "read directory " + what));
  }
  std::vector<std::string> names;
  errno = 0;
  while (dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) {
      names.emplace_back(e->d_name);
    }
  }
  const int err = errno;
  ::closedir(d);
  if (err != 0) {
    return Fail(ErrnoError(err, "read directory " + what));
  }
  std::sort(names.begin(), names.end());
  return names;
}

class Packer {
 public:
  Packer(Encoder& enc, const Progress& progress) : enc_(enc), progress_(progress) {
    buf_.reserve(kFlushAt + tar::kBlock * 4);
  }

  Result<void> Dir(int dirfd, const std::string& rel, const std::string& shown) {
    auto names = ListDir(dirfd, shown);
    if (!names) {
      return Fail(names.error());
    }
    for (const auto& name : *names) {
      const std::string path = rel.empty() ? name : rel + "/" + name;
      struct stat st {};
      if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) {
          continue;  // removed while we walked
        }
        return Fail(ErrnoError(errno, "stat " + shown + "/" + name));
      }
      if (S_ISDIR(st.st_mode)) {
        UniqueFd sub(
            ::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!sub) {
          return Fail(ErrnoError(errno, "open " + shown + "/" + name));
        }
        if (auto h = Header(path + "/", tar::kDirectory, st, 0, ""); !h) {
          return h;
        }
        if (auto r = Dir(sub.Get(), path, shown + "/" + name); !r) {
          return r;
        }
      } else if (S_ISLNK(st.st_mode)) {
        std::string target(static_cast<size_t>(st.st_size) + 1, '\0');
        const ssize_t n = ::readlinkat(dirfd, name.c_str(), target.data(), target.size());
        if (n < 0) {
          return Fail(ErrnoError(errno, "readlink " + shown + "/" + name));
        }
        target.resize(std::min(static_cast<size_t>(n), target.size()));
        if (auto h = Header(path, tar::kSymlink, st, 0, target); !h) {
          return h;
        }
      } else if (S_ISREG(st.st_mode)) {
        if (st.st_nlink > 1) {
          auto key = std::make_pair(st.st_dev, st.st_ino);
          if (auto it = links_.find(key); it != links_.end()) {
            if (auto h = Header(path, tar::kHardLink, st, 0, it->second); !h) {
              return h;
            }
            continue;
          }
          links_.emplace(key, path);
        }
        if (auto f = File(dirfd, name, path, shown + "/" + name, st); !f) {
          return f;
        }
      }
      // Sockets, fifos and device nodes are not data: skipped.
    }
    return {};
  }

  Result<void> End() {
    buf_.append(tar::kBlock * 2, '\0');
    if (auto f = Flush(); !f) {
      return f;
    }
    return enc_.Finish();
  }

  Stats stats;

 private:
  Result<void> Flush() {
    if (buf_.empty()) {
      return {};
    }
    auto w = enc_.Write(buf_);
    buf_.clear();
    return w;
  }

  Result<void> Header(const std::string& name, char type, const struct stat& st, uint64_t size,
                      const std::string& link) {
    char b[tar::kBlock];
    std::memset(b, 0, sizeof(b));
    std::string pax;
    if (name.size() > tar::kName.len) {
      pax += tar::PaxRecord("path", name);
    }
    if (link.size() > tar::kLinkname.len) {
      pax += tar::PaxRecord("linkpath", link);
    }
    std::memcpy(b + tar::kName.off, name.data(), std::min(name.size(), tar::kName.len));
    std::memcpy(b + tar::kLinkname.off, link.data(), std::min(link.size(), tar::kLinkname.len));
    tar::PutOctal(b, tar::kMode, st.st_mode & 07777);
    if (!tar::PutOctal(b, tar::kUid, st.st_uid)) {
      pax += tar::PaxRecord("uid", std::to_string(st.st_uid));
      tar::PutOctal(b, tar::kUid, 0);
    }
    if (!tar::PutOctal(b, tar::kGid, st.st_gid)) {
      pax += tar::PaxRecord("gid", std::to_string(st.st_gid));
      tar::PutOctal(b, tar::kGid, 0);
    }
    if (!tar::PutOctal(b, tar::kSize, size)) {
      pax += tar::PaxRecord("size", std::to_string(size));
      tar::PutOctal(b, tar::kSize, 0);
    }
    tar::PutOctal(b, tar::kMtime, st.st_mtime < 0 ? 0 : static_cast<uint64_t>(st.st_mtime));
    b[tar::kType.off] = type;
    std::memcpy(b + tar::kMagic.off, "ustar", 6);
    std::memcpy(b + tar::kVersion.off, "00", 2);
    tar::SetChecksum(b);
    if (!pax.empty()) {
      char x[tar::kBlock];
      std::memset(x, 0, sizeof(x));
      std::memcpy(x, "././@PaxHeader", 14);
      tar::PutOctal(x, tar::kMode, 0644);
      tar::PutOctal(x, tar::kUid, 0);
      tar::PutOctal(x, tar::kGid, 0);
      tar::PutOctal(x, tar::kSize, pax.size());
      tar::PutOctal(x, tar::kMtime, 0);
      x[tar::kType.off] = tar::kPaxLocal;
      std::memcpy(x + tar::kMagic.off, "ustar", 6);
      std::memcpy(x + tar::kVersion.off, "00", 2);
      tar::SetChecksum(x);
      buf_.append(x, tar::kBlock);
      buf_ += pax;
      Pad(pax.size());
    }
    buf_.append(b, tar::kBlock);
    ++stats.entries;
    return buf_.size() >= kFlushAt ? Flush() : Result<void>{};
  }

  void Pad(uint64_t size) {
    if (size % tar::kBlock != 0) {
      buf_.append(tar::kBlock - size % tar::kBlock, '\0');
    }
  }

  Result<void> File(int dirfd, const std::string& name, const std::string& path,
                    const std::string& shown, const struct stat& st) {
    UniqueFd fd(::openat(dirfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) {
      return Fail(ErrnoError(errno, "open " + shown));
    }
    const uint64_t size = static_cast<uint64_t>(st.st_size);
    if (auto h = Header(path, tar::kRegular, st, size, ""); !h) {
      return h;
    }
    uint64_t left = size;
    while (left > 0) {
      if (buf_.size() >= kFlushAt) {
        if (auto f = Flush(); !f) {
          return f;
        }
      }
      // Read straight into the output buffer's tail.
      const size_t room = kFlushAt + tar::kBlock * 4 - buf_.size();
      const size_t want = static_cast<size_t>(std::min<uint64_t>(left, room));
      const size_t at = buf_.size();
      buf_.resize(at + want);
      const ssize_t n = ::read(fd.Get(), buf_.data() + at, want);
      if (n <= 0) {
        if (n < 0 && errno == EINTR) {
          buf_.resize(at);
          continue;
        }
        // The size in the header is a promise: a file that shrank cannot be stored.
        return Fail(n == 0 ? Error{ErrorCode::kConflict, shown + " shrank while it was archived"}
                           : ErrnoError(errno, "read " + shown));
      }
      buf_.resize(at + static_cast<size_t>(n));
      left -= static_cast<uint64_t>(n);
      stats.bytes += static_cast<uint64_t>(n);
      if (progress_ && (stats.bytes - reported_) >= (4u << 20)) {
        reported_ = stats.bytes;
        progress_(stats.bytes);
      }
    }
    Pad(size);
    return {};
  }

  Encoder& enc_;
  const Progress& progress_;
  std::string buf_;
  uint64_t reported_ = 0;
  std::map<std::pair<dev_t, ino_t>, std::string> links_;
};

Result<void> MeasureDir(int dirfd, const std::string& shown, Stats& stats) {
  auto names = ListDir(dirfd, shown);
  if (!names) {
    return Fail(names.error());
  }
  for (const auto& name : *names) {
    struct stat st {};
    if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      continue;
    }
    ++stats.entries;
    if (S_ISREG(st.st_mode)) {
      stats.bytes += static_cast<uint64_t>(st.st_size);
    } else if (S_ISDIR(st.st_mode)) {
      UniqueFd sub(::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (sub) {
        if (auto r = MeasureDir(sub.Get(), shown + "/" + name, stats); !r) {
          return r;
        }
      }
    }
  }
  return {};
}

}  // namespace

Result<Compression> ParseCompression(std::string_view name) {
  if (name.empty() || name == "none" || name == "tar") {
    return Compression::kNone;
  }
  if (name == "gzip" || name == "gz") {
    return Compression::kGzip;
  }
  if (name == "zstd" || name == "zst") {
    return Compression::kZstd;
  }
  return Fail(ErrorCode::kInvalidArgument,
              "unknown compression '" + std::string(name) + "' (none, gzip or zstd)");
}

const char* ContentType(Compression c) {
  switch (c) {
    case Compression::kGzip:
      return "application/gzip";
    case Compression::kZstd:
      return "application/zstd";
    case Compression::kNone:
      break;
  }
  return "application/x-tar";
}

Result<Stats> Measure(const std::string& dir) {
  auto fd = OpenDir(dir);
  if (!fd) {
    return Fail(fd.error());
  }
  Stats stats;
  if (auto r = MeasureDir(fd->Get(), dir, stats); !r) {
    return Fail(r.error());
  }
  return stats;
}

Result<Stats> Pack(const std::string& dir, Compression compression, const Sink& sink,
                   const Progress& progress) {
  auto fd = OpenDir(dir);
  if (!fd) {
    return Fail(fd.error());
  }
  auto enc = MakeEncoder(compression, sink);
  if (!enc) {
    return Fail(enc.error());
  }
  Packer packer(**enc, progress);
  if (auto r = packer.Dir(fd->Get(), "", dir); !r) {
    return Fail(r.error());
  }
  if (auto r = packer.End(); !r) {
    return Fail(r.error());
  }
  if (progress) {
    progress(packer.stats.bytes);
  }
  return packer.stats;
}

}  // namespace agentbox::archive
