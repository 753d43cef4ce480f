#include "images/layer_unpack.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "archive/codec.h"
#include "archive/tar_reader.h"
#include "common/unique_fd.h"
#include "images/digest.h"

namespace agentbox::images {
namespace {

namespace tar = archive::tar;
constexpr std::string_view kWhiteout = ".wh.";
constexpr std::string_view kOpaque = ".wh..wh..opq";
constexpr std::string_view kMeta = ".wh..wh.";

Error Refused(const std::string& name, const std::string& why) {
  return Error(ErrorCode::kInvalidArgument,
               "image layer entry '" + name.substr(0, 200) + "' " + why);
}

Result<std::vector<std::string>> SplitName(const std::string& name) {
  if (name.size() >= PATH_MAX || name.find('\0') != std::string::npos) {
    return Fail(Refused(name, "has an invalid name"));
  }
  if (!name.empty() && name[0] == '/') {
    return Fail(Refused(name, "has an absolute name"));
  }
  std::vector<std::string> parts;
  size_t i = 0;
  while (i <= name.size()) {
    size_t j = name.find('/', i);
    if (j == std::string::npos) {
      j = name.size();
    }
    std::string seg = name.substr(i, j - i);
    i = j + 1;
    if (seg.empty() || seg == ".") {
      continue;
    }
    if (seg == "..") {
      return Fail(Refused(name, "has a '..' component"));
    }
    if (seg.size() > NAME_MAX) {
      return Fail(Refused(name, "has a component over NAME_MAX"));
    }
    parts.push_back(std::move(seg));
  }
  return parts;
}

std::string Join(const std::vector<std::string>& parts, size_t n) {
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    s += (i ? "/" : "") + parts[i];
  }
  return s;
}

uint64_t Blocks(uint64_t bytes) { return (bytes + 4095) / 4096 * 4096; }

// Removes `name` under `dirfd` whatever it is (a tree too), never following symlinks.
void RemoveAt(int dirfd, const std::string& name) {
  if (::unlinkat(dirfd, name.c_str(), 0) == 0 || errno == ENOENT) {
    return;
  }
  UniqueFd fd(::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) {
    return;
  }
  const int dup = ::fcntl(fd.Get(), F_DUPFD_CLOEXEC, 0);
  if (DIR* d = dup >= 0 ? ::fdopendir(dup) : nullptr) {
    std::vector<std::string> names;
    while (dirent* e = ::readdir(d)) {
      if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) {
        names.emplace_back(e->d_name);
      }
    }
    ::closedir(d);
    for (const auto& n : names) {
      RemoveAt(fd.Get(), n);
    }
  }
  ::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR);
}

// Counts and hashes what passes through.
struct Hashing {
  archive::Source inner;
  Sha256 hash;
  uint64_t bytes = 0;
  Result<size_t> Read(char* buf, size_t n) {
    auto got = inner(buf, n);
    if (got && *got > 0) {
      hash.Update(std::string_view(buf, *got));
      bytes += *got;
    }
    return got;
  }
};

struct DirFix {
  std::string path;
  archive::Entry entry;
};

class LayerWriter {
 public:
  LayerWriter(int root, const LayerUnpackOptions& o) : root_(root), opts_(o), data_(1u << 20) {}

  Result<void> Run(archive::TarReader& reader) {
    archive::Entry e;
    for (;;) {
      auto more = reader.Next(e);
      if (!more) {
        return Fail(more.error());
      }
      if (!*more) {
        break;
      }
      if (++result.entries > opts_.max_entries) {
        return Fail(ErrorCode::kTooLarge, "the image layer has more than " +
                                              std::to_string(opts_.max_entries) + " entries");
      }
      if (auto r = One(reader, e); !r) {
        return r;
      }
    }
    // Directories last, deepest first, so that a read-only directory is filled before.
    std::sort(dirs_.begin(), dirs_.end(),
              [](const DirFix& a, const DirFix& b) { return a.path.size() > b.path.size(); });
    for (const auto& d : dirs_) {
      UniqueFd fd(d.path.empty() ? ::dup(root_)
                                 : ::openat(root_, d.path.c_str(),
                                            O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (fd) {
        Owner(fd.Get(), nullptr, d.entry, 0);
        ::fchmod(fd.Get(), Mode(d.entry));
        Times(fd.Get(), nullptr, d.entry, 0);
      }
    }
    return {};
  }

  LayerUnpackResult result;

 private:
  mode_t Mode(const archive::Entry& e) const { return e.mode & (opts_.keep_owner ? 07777 : 0777); }

  void Owner(int fd, const char* name, const archive::Entry& e, int flags) {
    if (!opts_.keep_owner) {
      return;
    }
    const auto uid = static_cast<uid_t>(e.uid);
    const auto gid = static_cast<gid_t>(e.gid);
    if (name) {
      ::fchownat(fd, name, uid, gid, flags);
    } else {
      ::fchown(fd, uid, gid);
    }
  }

  void Times(int fd, const char* name, const archive::Entry& e, int flags) {
    timespec ts[2] = {{0, UTIME_OMIT}, {static_cast<time_t>(e.mtime), 0}};
    if (name) {
      ::utimensat(fd, name, ts, flags);
    } else {
      ::futimens(fd, ts);
    }
  }

  // The directory holding parts[0..n), created as needed, never through a symlink or a file.
  Result<int> Parent(const std::vector<std::string>& parts, size_t n, const std::string& name) {
    if (n == 0) {
      return root_;
    }
    const std::string key = Join(parts, n);
    if (cached_fd_ && cached_ == key) {
      return cached_fd_.Get();
    }
    UniqueFd cur(::dup(root_));
    for (size_t i = 0; i < n; ++i) {
      const char* seg = parts[i].c_str();
      int fd = ::openat(cur.Get(), seg, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (fd < 0 && errno == ENOENT) {
        if (::mkdirat(cur.Get(), seg, 0755) != 0 && errno != EEXIST) {
          return Fail(ErrnoError(errno, "create directory " + Join(parts, i + 1)));
        }
        result.disk_bytes += 4096;
        fd = ::openat(cur.Get(), seg, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      }
      if (fd < 0) {
        if (errno == ELOOP || errno == ENOTDIR) {
          return Fail(Refused(name, "would be written through a symlink or a file ('" +
                                        Join(parts, i + 1) + "')"));
        }
        return Fail(ErrnoError(errno, "open directory " + Join(parts, i + 1)));
      }
      cur.Reset(fd);
    }
    cached_ = key;
    cached_fd_ = std::move(cur);
    return cached_fd_.Get();
  }

  // A later entry of the same name replaces an earlier one (a directory stays: tar merges).
  void Replace(int dirfd, const std::string& leaf, bool keep_dir) {
    struct stat st {};
    if (::fstatat(dirfd, leaf.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      return;
    }
    if (S_ISDIR(st.st_mode)) {
      if (!keep_dir) {
        cached_fd_.Reset();
        cached_.clear();
        RemoveAt(dirfd, leaf);
      }
      return;
    }
    ::unlinkat(dirfd, leaf.c_str(), 0);
  }

  Result<void> SetOpaque(int dirfd, const std::string& name) {
    bool any = false;
    for (const char* key : {"trusted.overlay.opaque", "user.overlay.opaque"}) {
      if (::fsetxattr(dirfd, key, "y", 1, 0) == 0) {
        any = true;
      }
    }
    if (!any) {
      return Fail(ErrnoError(errno, "mark " + name + " opaque (xattr)"));
    }
    return {};
  }

  Result<void> One(archive::TarReader& reader, const archive::Entry& e) {
    auto parts = SplitName(e.name);
    if (!parts) {
      return Fail(parts.error());
    }
    if (parts->empty()) {
      if (e.type == tar::kDirectory) {
        dirs_.push_back({"", e});
        return {};
      }
      return Fail(Refused(e.name, "has an empty name"));
    }
    auto parent = Parent(*parts, parts->size() - 1, e.name);
    if (!parent) {
      return Fail(parent.error());
    }
    const std::string& leaf = parts->back();
    const std::string path = Join(*parts, parts->size());
    if (leaf.starts_with(kWhiteout)) {
      if (leaf == kOpaque) {
        const std::string dir = Join(*parts, parts->size() - 1);
        return SetOpaque(*parent, dir.empty() ? "/" : dir);
      }
      if (leaf.starts_with(kMeta)) {
        return {};  // aufs hard-link bookkeeping: not part of the tree
      }
      const std::string hidden = leaf.substr(kWhiteout.size());
      if (hidden.empty() || hidden == "." || hidden == "..") {
        return Fail(Refused(e.name, "is a whiteout without a name"));
      }
      Replace(*parent, hidden, /*keep_dir=*/false);
      if (::mknodat(*parent, hidden.c_str(), S_IFCHR | 0000, makedev(0, 0)) != 0) {
        return Fail(ErrnoError(errno, "create the whiteout for " + path));
      }
      result.disk_bytes += 4096;
      return {};
    }
    result.disk_bytes += 4096;
    switch (e.type) {
      case tar::kDirectory: {
        Replace(*parent, leaf, /*keep_dir=*/true);
        if (::mkdirat(*parent, leaf.c_str(), 0755) != 0 && errno != EEXIST) {
          return Fail(ErrnoError(errno, "create directory " + path));
        }
        dirs_.push_back({path, e});
        return {};
      }
      case tar::kRegular:
      case tar::kRegularOld:
      case tar::kContiguous:
        return File(reader, e, *parent, leaf);
      case tar::kSymlink: {
        if (e.link.empty() || e.link.size() >= PATH_MAX) {
          return Fail(Refused(e.name, "is a symlink with an invalid target"));
        }
        Replace(*parent, leaf, /*keep_dir=*/false);
        if (::symlinkat(e.link.c_str(), *parent, leaf.c_str()) != 0) {
          return Fail(ErrnoError(errno, "create symlink " + path));
        }
        Owner(*parent, leaf.c_str(), e, AT_SYMLINK_NOFOLLOW);
        Times(*parent, leaf.c_str(), e, AT_SYMLINK_NOFOLLOW);
        return {};
      }
      case tar::kHardLink: {
        auto target = SplitName(e.link);
        if (!target || target->empty()) {
          return Fail(Refused(e.name, "is a hard link to '" + e.link.substr(0, 200) +
                                          "', outside the layer"));
        }
        auto tparent = Parent(*target, target->size() - 1, e.name);
        if (!tparent) {
          return Fail(tparent.error());
        }
        UniqueFd tfd(::dup(*tparent));
        auto lparent = Parent(*parts, parts->size() - 1, e.name);
        if (!lparent) {
          return Fail(lparent.error());
        }
        struct stat st {};
        if (::fstatat(tfd.Get(), target->back().c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
            !S_ISREG(st.st_mode)) {
          return Fail(Refused(e.name, "is a hard link to '" + e.link.substr(0, 200) +
                                          "', which is not a file earlier in the layer"));
        }
        if (Join(*target, target->size()) == path) {
          return {};  // a link to itself: nothing to do
        }
        Replace(*lparent, leaf, /*keep_dir=*/false);
        if (::linkat(tfd.Get(), target->back().c_str(), *lparent, leaf.c_str(), 0) != 0) {
          return Fail(ErrnoError(errno, "create hard link " + path));
        }
        return {};
      }
      case tar::kCharDev:
      case tar::kBlockDev:
        ++result.skipped_devices;
        return {};
      case tar::kFifo:
        Replace(*parent, leaf, /*keep_dir=*/false);
        if (::mkfifoat(*parent, leaf.c_str(), Mode(e) & 0777) != 0) {
          return Fail(ErrnoError(errno, "create fifo " + path));
        }
        Owner(*parent, leaf.c_str(), e, AT_SYMLINK_NOFOLLOW);
        return {};
      default:
        return Fail(Refused(e.name, "has an unsupported type"));
    }
  }

  Result<void> File(archive::TarReader& reader, const archive::Entry& e, int parent,
                    const std::string& leaf) {
    Replace(parent, leaf, /*keep_dir=*/false);
    UniqueFd fd(
        ::openat(parent, leaf.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd) {
      return Fail(Refused(e.name, std::string("cannot be created: ") + std::strerror(errno)));
    }
    for (;;) {
      auto n = reader.Read(data_.data(), data_.size());
      if (!n) {
        return Fail(n.error());
      }
      if (*n == 0) {
        break;
      }
      size_t off = 0;
      while (off < *n) {
        const ssize_t w = ::write(fd.Get(), data_.data() + off, *n - off);
        if (w < 0) {
          if (errno == EINTR) {
            continue;
          }
          return Fail(ErrnoError(errno, "write " + e.name));
        }
        off += static_cast<size_t>(w);
      }
    }
    result.disk_bytes += Blocks(e.size) - 4096 + (e.size == 0 ? 4096 : 0);
    Owner(fd.Get(), nullptr, e, 0);
    ::fchmod(fd.Get(), Mode(e));
    Times(fd.Get(), nullptr, e, 0);
    return {};
  }

  int root_;
  const LayerUnpackOptions& opts_;
  std::vector<char> data_;
  std::vector<DirFix> dirs_;
  std::string cached_;
  UniqueFd cached_fd_;
};

}  // namespace

Result<LayerUnpackResult> UnpackLayer(const archive::Source& source, int dirfd,
                                      const LayerUnpackOptions& options) {
  auto raw = std::make_shared<Hashing>();
  raw->inner = source;
  auto plain = std::make_shared<Hashing>();
  plain->inner = archive::MakeDecoder([raw](char* b, size_t n) { return raw->Read(b, n); });
  archive::TarReader reader([plain](char* b, size_t n) { return plain->Read(b, n); });
  LayerWriter writer(dirfd, options);
  if (auto r = writer.Run(reader); !r) {
    return Fail(r.error());
  }
  // The digests cover every byte: read what follows the end marker (tar pads to a record).
  char sink[65536];
  for (;;) {
    auto n = plain->Read(sink, sizeof(sink));
    if (!n) {
      return Fail(n.error());
    }
    if (*n == 0) {
      break;
    }
  }
  for (;;) {
    auto n = raw->Read(sink, sizeof(sink));
    if (!n) {
      return Fail(n.error());
    }
    if (*n == 0) {
      break;
    }
  }
  LayerUnpackResult out = writer.result;
  out.blob_digest = raw->hash.Finish();
  out.diff_id = plain->hash.Finish();
  if (!options.want_blob_digest.empty() && out.blob_digest != options.want_blob_digest) {
    return Fail(ErrorCode::kInvalidArgument, "corrupt image: layer blob " +
                                                 options.want_blob_digest + " has the digest " +
                                                 out.blob_digest);
  }
  if (!options.want_diff_id.empty() && out.diff_id != options.want_diff_id) {
    return Fail(ErrorCode::kInvalidArgument, "corrupt image: layer " + options.want_diff_id +
                                                 " unpacks to content with the digest " +
                                                 out.diff_id);
  }
  return out;
}

}  // namespace agentbox::images
