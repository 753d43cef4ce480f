// The one tar-to-directory writer: archive::Unpack and images::UnpackLayer differ only in their
// options and the layer's whiteout hook (archive/tree_writer.h).
#include "archive/tree_writer.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <string_view>
#include <utility>

#include "archive/tar_format.h"
#include "common/page_cache_write.h"

namespace agentbox::archive {

namespace {

constexpr int kMaxSymlinkHops = 40;
constexpr uint64_t kBlock = 4096;

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

// The process's umask, read without changing it (umask(2) would race other threads).
mode_t CurrentUmask() {
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

void Times(int dirfd, const char* name, const Entry& e, int flags) {
  timespec ts[2] = {{0, UTIME_OMIT}, {static_cast<time_t>(e.mtime), 0}};
  if (name) {
    ::utimensat(dirfd, name, ts, flags);
  } else {
    ::futimens(dirfd, ts);
  }
}

uint64_t Blocks(uint64_t bytes) {
  return bytes == 0 ? kBlock : (bytes + kBlock - 1) / kBlock * kBlock;
}

}  // namespace

void RemoveTreeAt(int parent, const std::string& name) {
  if (::unlinkat(parent, name.c_str(), 0) == 0 || errno == ENOENT) {
    return;
  }
  struct stat st {};
  if (::fstatat(parent, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode)) {
    return;
  }
  ::fchmodat(parent, name.c_str(), 0700, 0);  // a read-only directory is emptied too
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
        RemoveTreeAt(fd.Get(), n);
      }
    } else if (dup >= 0) {
      ::close(dup);
    }
  }
  ::unlinkat(parent, name.c_str(), AT_REMOVEDIR);
}

TreeWriter::TreeWriter(int root, const TreeWriterOptions& options, const Progress& progress)
    : root_(root),
      opts_(options),
      progress_(progress),
      data_(1u << 20),
      umask_(CurrentUmask()),
      uid_(::geteuid()),
      gid_(::getegid()) {}

Error TreeWriter::Refused(const std::string& name, const std::string& why) const {
  return Error{ErrorCode::kInvalidArgument,
               opts_.noun + " entry '" + name.substr(0, 200) + "' " + why};
}

void TreeWriter::Remove(int dirfd, const std::string& leaf) {
  // The cached directory may be inside what goes: the next Parent() opens its path again. The
  // descriptor stays open until then, since `dirfd` may be it.
  cached_.clear();
  RemoveTreeAt(dirfd, leaf);
}

mode_t TreeWriter::Mode(const Entry& e) const { return e.mode & (opts_.keep_owner ? 07777 : 0777); }

void TreeWriter::Owner(int fd, const char* name, const Entry& e, int flags) const {
  // A new file already belongs to the caller: chown only to someone else.
  if (!opts_.keep_owner ||
      (static_cast<uid_t>(e.uid) == uid_ && static_cast<gid_t>(e.gid) == gid_)) {
    return;
  }
  const auto uid = static_cast<uid_t>(e.uid);
  const auto gid = static_cast<gid_t>(e.gid);
  if (name) {
    static_cast<void>(::fchownat(fd, name, uid, gid, flags));
  } else {
    static_cast<void>(::fchown(fd, uid, gid));
  }
}

// Splits a member name into clean components: "./" prefixes and empty or "." components are
// dropped; absolute names, ".." and over-long names are refused.
Result<std::vector<std::string>> TreeWriter::Clean(const std::string& name) const {
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

Result<TreeStats> TreeWriter::Run(TarReader& reader) {
  Entry e;
  for (;;) {
    auto more = reader.Next(e);
    if (!more) {
      return Fail(more.error());
    }
    if (!*more) {
      break;
    }
    if (++stats_.entries > opts_.max_entries) {
      return Fail(ErrorCode::kTooLarge, "the " + opts_.noun + " has more than " +
                                            std::to_string(opts_.max_entries) + " entries");
    }
    if (auto r = One(reader, e); !r) {
      return Fail(r.error());
    }
  }
  if (auto r = reader.Drain(); !r) {
    return Fail(r.error());
  }
  if (auto r = CheckSymlinks(); !r) {
    return Fail(r.error());
  }
  // Directories last, deepest first: a read-only directory must be filled before.
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
  return stats_;
}

// The directory holding `parts[0..n)`, created as needed, never through a symlink or a file.
Result<int> TreeWriter::Parent(const std::vector<std::string>& parts, size_t n,
                               const std::string& name) {
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
      if (::mkdirat(cur.Get(), seg, 0700) != 0 && errno != EEXIST) {
        return Fail(ErrnoError(errno, "create directory " + Join(parts, i + 1)));
      }
      DirFix fix{Join(parts, i + 1), Entry{}};
      fix.entry.mode = 0755;
      fix.entry.uid = uid_;
      fix.entry.gid = gid_;
      fix.entry.mtime = static_cast<int64_t>(::time(nullptr));
      dirs_.push_back(std::move(fix));
      stats_.disk_bytes += kBlock;
      fd = ::openat(cur.Get(), seg, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
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

// Removes an earlier entry of the same name (the later one wins, as with tar). A directory stays
// when `keep_dir` (tar merges into it) or when directories are not replaced.
void TreeWriter::Replace(int dirfd, const std::string& leaf, bool keep_dir) {
  struct stat st {};
  if (::fstatat(dirfd, leaf.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return;
  }
  if (!S_ISDIR(st.st_mode)) {
    ::unlinkat(dirfd, leaf.c_str(), 0);
  } else if (!keep_dir && opts_.replace_directories) {
    Remove(dirfd, leaf);
  }
}

Result<void> TreeWriter::One(TarReader& reader, const Entry& e) {
  auto parts = Clean(e.name);
  if (!parts) {
    return Fail(parts.error());
  }
  if (parts->empty()) {
    if (e.type == tar::kDirectory) {  // "./": the directory itself
      dirs_.push_back({"", e});
      stats_.root_entry = true;
      return {};
    }
    return Fail(Refused(e.name, "has an empty name"));
  }
  auto parent = Parent(*parts, parts->size() - 1, e.name);
  if (!parent) {
    return Fail(parent.error());
  }
  if (opts_.hook) {
    auto handled = opts_.hook(*this, *parent, *parts, e);
    if (!handled) {
      return Fail(handled.error());
    }
    if (*handled) {
      return {};
    }
  }
  const std::string& leaf = parts->back();
  const std::string path = Join(*parts, parts->size());
  stats_.disk_bytes += kBlock;
  switch (e.type) {
    case tar::kDirectory: {
      if (opts_.replace_directories) {
        Replace(*parent, leaf, /*keep_dir=*/true);
      }
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
      stats_.disk_bytes += Blocks(e.size) - kBlock;
      return File(reader, e, *parent, leaf);
    case tar::kSymlink: {
      if (e.link.empty()) {
        return Fail(Refused(e.name, "is a symlink without a target"));
      }
      if (e.link.size() >= PATH_MAX) {
        return Fail(Refused(e.name, "has a symlink target over PATH_MAX"));
      }
      if (opts_.confine_symlinks &&
          !LexicallyInside(std::vector<std::string>(parts->begin(), parts->end() - 1), e.link)) {
        return Fail(Refused(e.name, "is a symlink pointing outside the directory ('" +
                                        e.link.substr(0, 200) + "')"));
      }
      Replace(*parent, leaf, /*keep_dir=*/false);
      if (::symlinkat(e.link.c_str(), *parent, leaf.c_str()) != 0) {
        return Fail(ErrnoError(errno, "create symlink " + path));
      }
      Owner(*parent, leaf.c_str(), e, AT_SYMLINK_NOFOLLOW);
      Times(*parent, leaf.c_str(), e, AT_SYMLINK_NOFOLLOW);
      if (opts_.confine_symlinks) {
        symlinks_.push_back(path);
      }
      return {};
    }
    case tar::kHardLink:
      return HardLink(e, *parts);
    case tar::kCharDev:
    case tar::kBlockDev:
      if (opts_.skip_devices) {
        ++stats_.skipped_devices;
        return {};
      }
      return Fail(Refused(e.name, "is a device node (refused)"));
    case tar::kFifo: {
      Replace(*parent, leaf, /*keep_dir=*/false);
      if (::mkfifoat(*parent, leaf.c_str(), Mode(e) & 0777) != 0) {
        return Fail(ErrnoError(errno, "create fifo " + path));
      }
      Owner(*parent, leaf.c_str(), e, AT_SYMLINK_NOFOLLOW);
      return {};
    }
    default:
      return Fail(Refused(
          e.name, std::string("has an unsupported type '") +
                      (e.type >= 0x20 && e.type < 0x7f ? std::string(1, e.type) : "?") + "'"));
  }
}

Result<void> TreeWriter::HardLink(const Entry& e, const std::vector<std::string>& parts) {
  const std::string path = Join(parts, parts.size());
  auto target = Clean(e.link);
  if (!target) {
    return Fail(Refused(
        e.name, "is a hard link to '" + e.link.substr(0, 200) + "', outside the directory"));
  }
  if (target->empty()) {
    return Fail(Refused(e.name, "is a hard link without a target"));
  }
  // Only to what this tar created (the staging directory holds nothing else).
  auto tparent = Parent(*target, target->size() - 1, e.name);
  if (!tparent) {
    return Fail(tparent.error());
  }
  UniqueFd tfd(::dup(*tparent));
  auto lparent = Parent(parts, parts.size() - 1, e.name);
  if (!lparent) {
    return Fail(lparent.error());
  }
  struct stat st {};
  if (::fstatat(tfd.Get(), target->back().c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
      !S_ISREG(st.st_mode)) {
    return Fail(Refused(e.name, "is a hard link to '" + e.link.substr(0, 200) +
                                    "', which is not a file earlier in the " + opts_.noun));
  }
  if (Join(*target, target->size()) == path) {
    return {};  // a link to itself: nothing to do
  }
  Replace(*lparent, parts.back(), /*keep_dir=*/false);
  if (::linkat(tfd.Get(), target->back().c_str(), *lparent, parts.back().c_str(), 0) != 0) {
    return Fail(ErrnoError(errno, "create hard link " + path));
  }
  return {};
}

Result<void> TreeWriter::File(TarReader& reader, const Entry& e, int parent,
                              const std::string& leaf) {
  // Created with its final mode when the umask leaves it whole (no fchmod then); an earlier
  // entry of the same name is replaced only when there is one (no fstatat per file).
  const mode_t mode = Mode(e);
  const bool exact = (mode & ~0777) == 0 && (mode & umask_) == 0;
  const int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
  UniqueFd fd(::openat(parent, leaf.c_str(), flags, exact ? mode : 0600));
  if (!fd && errno == EEXIST) {
    Replace(parent, leaf, /*keep_dir=*/false);
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
    stats_.bytes += *n;
    if (progress_ && stats_.bytes - reported_ >= (4u << 20)) {
      reported_ = stats_.bytes;
      progress_(stats_.bytes);
    }
  }
  Owner(fd.Get(), nullptr, e, 0);
  if (!exact) {  // after Owner(): fchown clears setuid/setgid
    ::fchmod(fd.Get(), mode);
  }
  Times(fd.Get(), nullptr, e, 0);
  return {};
}

// A symlink may be lexically inside and still lead out through other symlinks
// ("a -> d/s/..", "d/s -> .."): resolve each one through the unpacked tree.
Result<void> TreeWriter::CheckSymlinks() {
  for (const auto& link : symlinks_) {
    std::vector<std::string> stack;  // resolved components so far
    auto parts = Clean(link);
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

}  // namespace agentbox::archive
