// Unpacking a tar stream into a directory, refusing anything that would land outside it.
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "archive/archive.h"
#include "archive/codec.h"
#include "archive/tar_format.h"
#include "archive/tar_reader.h"
#include "common/page_cache_write.h"
#include "common/unique_fd.h"

namespace agentbox::archive {

namespace {

constexpr int kMaxSymlinkHops = 40;

Error Refused(const std::string& name, const std::string& why) {
  return Error{ErrorCode::kInvalidArgument, "archive entry '" + name.substr(0, 200) + "' " + why};
}

// Splits a member name into clean components: "./" prefixes and empty or "." components are
// dropped; absolute names, ".." and over-long names are refused.
Result<std::vector<std::string>> CleanName(const std::string& name) {
  if (name.size() >= PATH_MAX) {
    return Fail(Refused(name, "has a name of " + std::to_string(name.size()) +
                                  " bytes (PATH_MAX is " + std::to_string(PATH_MAX) + ")"));
  }
  if (name.find('\0') != std::string::npos) {
    return Fail(Refused(name, "has a NUL byte in its name"));
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
      return Fail(
          Refused(name, "has a component over NAME_MAX (" + std::to_string(NAME_MAX) + " bytes)"));
    }
    parts.push_back(std::move(seg));
  }
  return parts;
}

std::string Join(const std::vector<std::string>& parts, size_t n) {
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    if (i > 0) {
      s += '/';
    }
    s += parts[i];
  }
  return s;
}

// Whether `target`, read as a symlink's target from directory `dir` (components below the
// root), stays within the root lexically.
bool LexicallyInside(const std::vector<std::string>& dir, const std::string& target) {
  if (target.empty() || target[0] == '/') {
    return false;
  }
  size_t depth = dir.size();
  size_t i = 0;
  while (i <= target.size()) {
    size_t j = target.find('/', i);
    if (j == std::string::npos) {
      j = target.size();
    }
    const std::string_view seg(target.data() + i, j - i);
    i = j + 1;
    if (seg.empty() || seg == ".") {
      continue;
    }
    if (seg == "..") {
      if (depth == 0) {
        return false;
      }
      --depth;
    } else {
      ++depth;
    }
  }
  return true;
}

// Removes a tree without following symlinks.
void RemoveTree(int parent, const std::string& name) {
  UniqueFd fd(::openat(parent, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (fd) {
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
        if (::unlinkat(fd.Get(), n.c_str(), 0) != 0 && (errno == EISDIR || errno == EPERM)) {
          ::fchmodat(fd.Get(), n.c_str(), 0700, 0);
          RemoveTree(fd.Get(), n);
        }
      }
    } else if (dup >= 0) {
      ::close(dup);
    }
  }
  ::unlinkat(parent, name.c_str(), AT_REMOVEDIR);
}

struct DirFix {
  std::string path;  // relative to the staging root
  Entry entry;
};

class Unpacker {
 public:
  Unpacker(int root, const UnpackOptions& opts, const Progress& progress)
      : root_(root),
        opts_(opts),
        progress_(progress),
        data_(1u << 20),
        umask_(CurrentUmask()),
        uid_(::geteuid()),
        gid_(::getegid()) {}

  Result<void> Run(TarReader& reader) {
    Entry e;
    for (;;) {
      auto more = reader.Next(e);
      if (!more) {
        return Fail(more.error());
      }
      if (!*more) {
        break;
      }
      if (++stats.entries > opts_.max_entries) {
        return Fail(ErrorCode::kTooLarge,
                    "the archive has more than " + std::to_string(opts_.max_entries) + " entries");
      }
      if (auto r = One(reader, e); !r) {
        return r;
      }
    }
    if (auto r = reader.Drain(); !r) {
      return r;
    }
    if (auto r = CheckSymlinks(); !r) {
      return r;
    }
    // Directories last, deepest first: a read-only directory must be filled before.
    std::sort(dirs_.begin(), dirs_.end(),
              [](const DirFix& a, const DirFix& b) { return a.path.size() > b.path.size(); });
    for (const auto& d : dirs_) {
      UniqueFd fd(d.path.empty() ? ::dup(root_)
                                 : ::openat(root_, d.path.c_str(),
                                            O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (fd) {
        Owner(fd.Get(), d.entry);
        ::fchmod(fd.Get(), Mode(d.entry));
        Times(fd.Get(), nullptr, d.entry, 0);
      }
    }
    return {};
  }

  Stats stats;
  bool root_mode_set = false;

 private:
  mode_t Mode(const Entry& e) const { return e.mode & (opts_.keep_owner ? 07777 : 0777); }

  // The process's umask, read without changing it (umask(2) would race other threads).
  static mode_t CurrentUmask() {
    UniqueFd fd(::open("/proc/self/status", O_RDONLY | O_CLOEXEC));
    char buf[4096];
    const ssize_t n = fd ? ::read(fd.Get(), buf, sizeof(buf) - 1) : -1;
    if (n > 0) {
      buf[n] = '\0';
      if (const char* u = std::strstr(buf, "\nUmask:")) {
        return static_cast<mode_t>(std::strtoul(u + 7, nullptr, 8));
      }
    }
    return 07777;  // unknown: every file gets its fchmod
  }

  void Owner(int fd, const Entry& e) {
    // A new file already belongs to the caller: chown only to someone else.
    if (opts_.keep_owner &&
        (static_cast<uid_t>(e.uid) != uid_ || static_cast<gid_t>(e.gid) != gid_)) {
      static_cast<void>(::fchown(fd, static_cast<uid_t>(e.uid), static_cast<gid_t>(e.gid)));
    }
  }

  void Times(int dirfd, const char* name, const Entry& e, int flags) {
    timespec ts[2] = {{0, UTIME_OMIT}, {static_cast<time_t>(e.mtime), 0}};
    if (name) {
      ::utimensat(dirfd, name, ts, flags);
    } else {
      ::futimens(dirfd, ts);
    }
  }

  // The directory holding `parts[0..n)`, created as needed, never through a symlink.
  Result<int> Parent(const std::vector<std::string>& parts, size_t n, const std::string& name) {
    const std::string key = Join(parts, n);
    if (n == 0) {
      return root_;
    }
    if (cached_fd_ && cached_ == key) {
      return cached_fd_.Get();
    }
    UniqueFd cur(::dup(root_));
    for (size_t i = 0; i < n; ++i) {
      int fd =
          ::openat(cur.Get(), parts[i].c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (fd < 0 && errno == ENOENT) {
        if (::mkdirat(cur.Get(), parts[i].c_str(), 0700) != 0 && errno != EEXIST) {
          return Fail(ErrnoError(errno, "create directory " + Join(parts, i + 1)));
        }
        DirFix fix{Join(parts, i + 1), Entry{}};
        fix.entry.mode = 0755;
        fix.entry.mtime = static_cast<int64_t>(::time(nullptr));
        dirs_.push_back(std::move(fix));
        fd = ::openat(cur.Get(), parts[i].c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      }
      if (fd < 0) {
        if (errno == ELOOP || errno == ENOTDIR) {
          return Fail(Refused(
              name, "would be written through a symlink or a file ('" + Join(parts, i + 1) + "')"));
        }
        return Fail(ErrnoError(errno, "open directory " + Join(parts, i + 1)));
      }
      cur.Reset(fd);
    }
    cached_ = key;
    cached_fd_ = std::move(cur);
    return cached_fd_.Get();
  }

  // Removes an earlier entry of the same name (the later one wins, as with tar).
  void Replace(int dirfd, const std::string& leaf) {
    struct stat st {};
    if (::fstatat(dirfd, leaf.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode)) {
      ::unlinkat(dirfd, leaf.c_str(), 0);
    }
  }

  Result<void> One(TarReader& reader, const Entry& e) {
    auto parts = CleanName(e.name);
    if (!parts) {
      return Fail(parts.error());
    }
    if (parts->empty()) {
      if (e.type == tar::kDirectory) {  // "./": the directory itself
        dirs_.push_back({"", e});
        root_mode_set = true;
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
    switch (e.type) {
      case tar::kDirectory: {
        if (::mkdirat(*parent, leaf.c_str(), 0700) != 0) {
          struct stat st {};
          if (errno != EEXIST || ::fstatat(*parent, leaf.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
              !S_ISDIR(st.st_mode)) {
            return Fail(Refused(e.name, "cannot be created as a directory: " +
                                            std::string(std::strerror(errno ? errno : EEXIST))));
          }
        }
        dirs_.push_back({path, e});
        return {};
      }
      case tar::kRegular:
      case tar::kRegularOld:
      case tar::kContiguous:
        return File(reader, e, *parent, leaf);
      case tar::kSymlink: {
        if (e.link.empty()) {
          return Fail(Refused(e.name, "is a symlink without a target"));
        }
        if (e.link.size() >= PATH_MAX) {
          return Fail(Refused(e.name, "has a symlink target over PATH_MAX"));
        }
        std::vector<std::string> dir(parts->begin(), parts->end() - 1);
        if (!LexicallyInside(dir, e.link)) {
          return Fail(Refused(e.name, "is a symlink pointing outside the directory ('" +
                                          e.link.substr(0, 200) + "')"));
        }
        Replace(*parent, leaf);
        if (::symlinkat(e.link.c_str(), *parent, leaf.c_str()) != 0) {
          return Fail(ErrnoError(errno, "create symlink " + path));
        }
        if (opts_.keep_owner) {
          ::fchownat(*parent, leaf.c_str(), static_cast<uid_t>(e.uid), static_cast<gid_t>(e.gid),
                     AT_SYMLINK_NOFOLLOW);
        }
        Times(*parent, leaf.c_str(), e, AT_SYMLINK_NOFOLLOW);
        symlinks_.push_back(path);
        return {};
      }
      case tar::kHardLink: {
        auto target = CleanName(e.link);
        if (!target) {
          return Fail(Refused(
              e.name, "is a hard link to '" + e.link.substr(0, 200) + "', outside the directory"));
        }
        if (target->empty()) {
          return Fail(Refused(e.name, "is a hard link without a target"));
        }
        // Only to what this archive created (the staging directory holds nothing else).
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
                                          "', which is not a file earlier in the archive"));
        }
        Replace(*lparent, leaf);
        if (::linkat(tfd.Get(), target->back().c_str(), *lparent, leaf.c_str(), 0) != 0) {
          return Fail(ErrnoError(errno, "create hard link " + path));
        }
        return {};
      }
      case tar::kCharDev:
      case tar::kBlockDev:
        return Fail(Refused(e.name, "is a device node (refused)"));
      case tar::kFifo: {
        Replace(*parent, leaf);
        if (::mkfifoat(*parent, leaf.c_str(), Mode(e) & 0777) != 0) {
          return Fail(ErrnoError(errno, "create fifo " + path));
        }
        return {};
      }
      default:
        return Fail(Refused(
            e.name, std::string("has an unsupported type '") +
                        (e.type >= 0x20 && e.type < 0x7f ? std::string(1, e.type) : "?") + "'"));
    }
  }

  Result<void> File(TarReader& reader, const Entry& e, int parent, const std::string& leaf) {
    // Created with its final mode when the umask leaves it whole (no fchmod then); an earlier
    // entry of the same name is replaced only when there is one (no fstatat per file).
    const mode_t mode = Mode(e);
    const bool exact = (mode & ~0777) == 0 && (mode & umask_) == 0;
    const int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
    UniqueFd fd(::openat(parent, leaf.c_str(), flags, exact ? mode : 0600));
    if (!fd && errno == EEXIST) {
      Replace(parent, leaf);
      fd.Reset(::openat(parent, leaf.c_str(), flags, exact ? mode : 0600));
    }
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
      // In writes of at most 64 KiB: small page-cache folios (common/page_cache_write.h).
      if (auto w = WriteInBlocks(fd.Get(), std::string_view(data_.data(), *n), "write " + e.name);
          !w) {
        return Fail(w.error());
      }
      stats.bytes += *n;
      if (progress_ && stats.bytes - reported_ >= (4u << 20)) {
        reported_ = stats.bytes;
        progress_(stats.bytes);
      }
    }
    Owner(fd.Get(), e);
    if (!exact) {  // after Owner(): fchown clears setuid/setgid
      ::fchmod(fd.Get(), mode);
    }
    Times(fd.Get(), nullptr, e, 0);
    return {};
  }

  // A symlink may be lexically inside and still lead out through other symlinks
  // ("a -> d/s/..", "d/s -> .."): resolve each one through the unpacked tree.
  Result<void> CheckSymlinks() {
    for (const auto& link : symlinks_) {
      std::vector<std::string> stack;  // resolved components so far
      auto parts = CleanName(link);
      if (!parts) {
        return Fail(parts.error());
      }
      std::vector<std::string> todo(parts->rbegin(), parts->rend());  // reversed
      int hops = 0;
      while (!todo.empty()) {
        std::string seg = std::move(todo.back());
        todo.pop_back();
        if (seg.empty() || seg == ".") {
          continue;
        }
        if (seg == "..") {
          if (stack.empty()) {
            return Fail(Refused(link, "is a symlink that leads outside the directory"));
          }
          stack.pop_back();
          continue;
        }
        stack.push_back(seg);
        const std::string at = Join(stack, stack.size());
        char target[PATH_MAX];
        const ssize_t n = ::readlinkat(root_, at.c_str(), target, sizeof(target) - 1);
        if (n < 0) {
          continue;  // not a symlink (or missing): a plain component
        }
        if (++hops > kMaxSymlinkHops) {
          return Fail(Refused(link, "is part of a symlink loop"));
        }
        target[n] = '\0';
        if (target[0] == '/') {
          return Fail(Refused(link, "is a symlink that leads outside the directory"));
        }
        stack.pop_back();
        std::string t(target);
        std::vector<std::string> segs;
        size_t i = 0;
        while (i <= t.size()) {
          size_t j = t.find('/', i);
          if (j == std::string::npos) {
            j = t.size();
          }
          segs.push_back(t.substr(i, j - i));
          i = j + 1;
        }
        for (auto it = segs.rbegin(); it != segs.rend(); ++it) {
          todo.push_back(*it);
        }
      }
    }
    return {};
  }

  int root_;
  const UnpackOptions& opts_;
  const Progress& progress_;
  std::vector<char> data_;
  uint64_t reported_ = 0;
  std::vector<DirFix> dirs_;
  std::vector<std::string> symlinks_;
  std::string cached_;
  UniqueFd cached_fd_;
  mode_t umask_;
  uid_t uid_;
  gid_t gid_;
};

std::string DirName(const std::string& p) {
  const size_t slash = p.rfind('/');
  if (slash == std::string::npos) {
    return ".";
  }
  return slash == 0 ? "/" : p.substr(0, slash);
}

std::string BaseName(const std::string& p) {
  const size_t slash = p.rfind('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

Result<void> MakeDirs(const std::string& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) == 0) {
    return S_ISDIR(st.st_mode)
               ? Result<void>{}
               : Fail(ErrorCode::kInvalidArgument, "'" + dir + "' is not a directory");
  }
  if (dir != "/" && dir != ".") {
    if (auto r = MakeDirs(DirName(dir)); !r) {
      return r;
    }
  }
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return Fail(ErrnoError(errno, "create directory " + dir));
  }
  return {};
}

bool EmptyDir(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) {
    return false;
  }
  bool empty = true;
  while (dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) {
      empty = false;
      break;
    }
  }
  ::closedir(d);
  return empty;
}

}  // namespace

Result<Stats> Unpack(const Source& source, const std::string& dir_in, const UnpackOptions& options,
                     const Progress& progress) {
  std::string dir = dir_in;
  while (dir.size() > 1 && dir.back() == '/') {
    dir.pop_back();
  }
  if (dir.empty() || dir == "/" || BaseName(dir) == "." || BaseName(dir) == "..") {
    return Fail(ErrorCode::kInvalidArgument, "cannot unpack over '" + dir_in + "'");
  }
  struct stat st {};
  const bool exists = ::lstat(dir.c_str(), &st) == 0;
  if (exists && !options.overwrite && !(S_ISDIR(st.st_mode) && EmptyDir(dir))) {
    return Fail(ErrorCode::kConflict, "'" + dir + "' exists" +
                                          (S_ISDIR(st.st_mode) ? " and is not empty" : "") +
                                          " (overwrite=true replaces it)");
  }
  const std::string parent = DirName(dir);
  if (auto r = MakeDirs(parent); !r) {
    return Fail(r.error());
  }
  std::string staging = parent + "/." + BaseName(dir) + ".agentbox-XXXXXX";
  if (::mkdtemp(staging.data()) == nullptr) {
    return Fail(ErrnoError(errno, "create a staging directory in " + parent));
  }
  UniqueFd parent_fd(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  UniqueFd root(::open(staging.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  bool keep = false;
  struct Cleanup {
    int parent;
    std::string name;
    bool& keep;
    ~Cleanup() {
      if (!keep) {
        RemoveTree(parent, name);
      }
    }
  } cleanup{parent_fd.Get(), BaseName(staging), keep};
  if (!parent_fd || !root) {
    return Fail(ErrnoError(errno, "open the staging directory " + staging));
  }
  TarReader reader(MakeDecoder(source));
  Unpacker unpacker(root.Get(), options, progress);
  if (auto r = unpacker.Run(reader); !r) {
    return Fail(r.error());
  }
  if (!unpacker.root_mode_set) {
    const mode_t mask = ::umask(0);
    ::umask(mask);
    ::fchmod(root.Get(), 0777 & ~mask);
  }
  // Into place in one step: a rename over a missing or empty directory, or an exchange with
  // the old tree, which is then removed.
  if (::rename(staging.c_str(), dir.c_str()) != 0) {
    if (!options.overwrite ||
        (errno != ENOTEMPTY && errno != EEXIST && errno != ENOTDIR && errno != EISDIR)) {
      if (errno == ENOTEMPTY || errno == EEXIST) {
        return Fail(ErrorCode::kConflict, "'" + dir + "' was filled while the archive was read");
      }
      return Fail(ErrnoError(errno, "rename the unpacked tree to " + dir));
    }
    if (::renameat2(AT_FDCWD, staging.c_str(), AT_FDCWD, dir.c_str(), RENAME_EXCHANGE) != 0) {
      return Fail(ErrnoError(errno, "replace " + dir));
    }
    return unpacker.stats;  // `cleanup` removes the old tree, now under the staging name
  }
  keep = true;
  return unpacker.stats;
}

}  // namespace agentbox::archive
