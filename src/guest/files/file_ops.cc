#include "guest/files/file_ops.h"

#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/page_cache_write.h"
#include "common/utf8.h"

namespace agentbox::guest {
namespace {

constexpr size_t kIoChunk = 64 * 1024;
constexpr mode_t kNewFileMode = 0644;
constexpr mode_t kNewDirMode = 0755;
constexpr int kMaxSymlinkHops = 40;
// Longest regex accepted by search. Bounds the recursion of std::regex's compiler (nested
// groups), which runs without the matcher's stack guard.
constexpr size_t kMaxRegexBytes = 8192;
// The search worker's stack, and how much of it matching may use before a line is rejected.
// The rest is headroom for recursion between two guard checks (std::regex walks up to its
// state limit of epsilon transitions without touching the input: ~16 MiB optimised, ~32 MiB
// under ASan) and for compiling a pattern of kMaxRegexBytes.
constexpr size_t kSearchStackBytes = kFileStackBytes;
constexpr uintptr_t kSearchStackBudget = 24u << 20;

// ---------------------------------------------------------------------------------------------
// Paths

// Lexically normalises an absolute path: collapses "//", drops ".", resolves ".." (never above
// "/"), removes the trailing slash. The result always starts with '/'.
std::string NormalizeAbsolute(std::string_view path) {
  std::vector<std::string_view> parts;
  size_t i = 0;
  while (i < path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) {
      j = path.size();
    }
    const std::string_view seg = path.substr(i, j - i);
    if (seg == "..") {
      if (!parts.empty()) {
        parts.pop_back();
      }
    } else if (!seg.empty() && seg != ".") {
      parts.push_back(seg);
    }
    i = j + 1;
  }
  if (parts.empty()) {
    return "/";
  }
  std::string out;
  for (const auto& p : parts) {
    out += '/';
    out += p;
  }
  return out;
}

// Parent of a normalised absolute path ("/a/b" -> "/a", "/a" -> "/", "/" -> "/").
std::string Dirname(const std::string& abs) {
  const size_t slash = abs.rfind('/');
  if (slash == std::string::npos || slash == 0) {
    return "/";
  }
  return abs.substr(0, slash);
}

// Last component of a normalised absolute path ("/" -> "").
std::string Basename(const std::string& abs) {
  const size_t slash = abs.rfind('/');
  return slash == std::string::npos ? abs : abs.substr(slash + 1);
}

// Joins a directory and a relative name without doubling the slash.
std::string JoinPath(const std::string& dir, std::string_view rel) {
  if (rel.empty()) {
    return dir;
  }
  std::string out = dir;
  if (out.empty() || out.back() != '/') {
    out += '/';
  }
  out += rel;
  return out;
}

// Reads `key` as a non-empty path and resolves it. Errors name the field.
Result<std::string> ResolveField(const JsonFields& fields, const char* key, const FileConfig& cfg) {
  auto raw = fields.NonEmptyString(key);
  if (!raw) {
    return Fail(raw.error());
  }
  auto resolved = ResolvePath(*raw, cfg);
  if (!resolved && resolved.error().code == ErrorCode::kValidation) {
    return Fail(FieldError(key, "must not be empty"));
  }
  return resolved;
}

// The guest already runs as root, so an allowed sudo needs no action; a forbidden one is 403.
Result<void> CheckSudo(const JsonFields& fields, const FileConfig& cfg) {
  auto sudo = fields.OptBool("sudo");
  if (!sudo) {
    return Fail(sudo.error());
  }
  if (sudo->value_or(false) && !cfg.can_escalate) {
    return Fail(ErrorCode::kForbidden,
                "sudo is not available: the sandbox user cannot escalate privileges");
  }
  return {};
}

// What every request on one file (read, write, replace, search) checks first: its "file" field,
// resolved as ResolveField does, then its "sudo" flag (CheckSudo). Errors in that order.
Result<std::string> ResolveFileField(const JsonFields& fields, const FileConfig& cfg) {
  auto path = ResolveField(fields, "file", cfg);
  if (!path) {
    return Fail(path.error());
  }
  if (auto s = CheckSudo(fields, cfg); !s) {
    return Fail(s.error());
  }
  return path;
}

const char* TypeName(mode_t mode) {
  if (S_ISREG(mode)) {
    return "file";
  }
  if (S_ISDIR(mode)) {
    return "directory";
  }
  if (S_ISLNK(mode)) {
    return "symlink";
  }
  return "other";
}

std::string ModeString(mode_t mode) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

bool IsHidden(std::string_view name) { return !name.empty() && name.front() == '.'; }

// ---------------------------------------------------------------------------------------------
// Low-level I/O. Every failing system call is turned into an Error by ErrnoError.

// In writes of at most 64 KiB: small page-cache folios (common/page_cache_write.h).
Result<void> WriteAll(int fd, std::string_view data, const std::string& what) {
  return WriteInBlocks(fd, data, what);
}

// pread that retries on EINTR. Returns bytes read (0 at EOF).
Result<size_t> PreadSome(int fd, char* buf, size_t len, uint64_t offset, const std::string& what) {
  while (true) {
    const ssize_t n = ::pread(fd, buf, len, static_cast<off_t>(offset));
    if (n >= 0) {
      return static_cast<size_t>(n);
    }
    if (errno != EINTR) {
      return Fail(ErrnoError(errno, what));
    }
  }
}

struct OpenedFile {
  UniqueFd fd;
  struct stat st {};
};

// Opens `path` for reading and checks that it is a regular file. O_NONBLOCK keeps the open from
// hanging on a FIFO; it is cleared again before returning.
Result<OpenedFile> OpenRegularForRead(const std::string& path) {
  OpenedFile f;
  f.fd = UniqueFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (!f.fd) {
    return Fail(ErrnoError(errno, path));
  }
  if (::fstat(f.fd.Get(), &f.st) != 0) {
    return Fail(ErrnoError(errno, path));
  }
  if (S_ISDIR(f.st.st_mode)) {
    return Fail(ErrorCode::kInvalidArgument, path + " is a directory");
  }
  if (!S_ISREG(f.st.st_mode)) {
    return Fail(ErrorCode::kInvalidArgument, path + " is not a regular file");
  }
  const int flags = ::fcntl(f.fd.Get(), F_GETFL);
  if (flags < 0 || ::fcntl(f.fd.Get(), F_SETFL, flags & ~O_NONBLOCK) != 0) {
    return Fail(ErrnoError(errno, path));
  }
  return f;
}

// Loads a whole regular file, refusing more than `max_bytes` (kTooLarge). Reads to EOF rather
// than trusting st_size, so files that grow or report size 0 (procfs) are handled.
Result<std::string> ReadWholeFile(const std::string& path, uint64_t max_bytes) {
  auto f = OpenRegularForRead(path);
  if (!f) {
    return Fail(f.error());
  }
  const auto too_large = [&] {
    return Fail(ErrorCode::kTooLarge,
                path + " is larger than the limit of " + std::to_string(max_bytes) + " bytes");
  };
  if (static_cast<uint64_t>(f->st.st_size) > max_bytes) {
    return too_large();
  }
  std::string out;
  out.reserve(static_cast<size_t>(f->st.st_size));
  std::vector<char> buf(kIoChunk);
  while (true) {
    auto n = PreadSome(f->fd.Get(), buf.data(), buf.size(), out.size(), path);
    if (!n) {
      return Fail(n.error());
    }
    if (*n == 0) {
      break;
    }
    if (out.size() + *n > max_bytes) {
      return too_large();
    }
    out.append(buf.data(), *n);
  }
  return out;
}

// mkdir -p. A component that exists but is not a directory is kInvalidArgument.
Result<void> MakeDirs(const std::string& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) {
      return {};
    }
    return Fail(ErrorCode::kInvalidArgument, dir + " exists and is not a directory");
  }
  size_t pos = 1;
  while (pos <= dir.size()) {
    size_t next = dir.find('/', pos);
    if (next == std::string::npos) {
      next = dir.size();
    }
    const std::string prefix = dir.substr(0, next);
    if (::mkdir(prefix.c_str(), kNewDirMode) != 0) {
      const int err = errno;
      if (err != EEXIST) {
        return Fail(ErrnoError(err, "create directory " + prefix));
      }
      if (::stat(prefix.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
        return Fail(ErrorCode::kInvalidArgument, prefix + " exists and is not a directory");
      }
    }
    pos = next + 1;
  }
  return {};
}

Result<std::string> ReadLink(const std::string& path) {
  std::string buf(256, '\0');
  while (true) {
    const ssize_t n = ::readlink(path.c_str(), buf.data(), buf.size());
    if (n < 0) {
      return Fail(ErrnoError(errno, path));
    }
    if (static_cast<size_t>(n) < buf.size()) {
      buf.resize(static_cast<size_t>(n));
      return buf;
    }
    buf.resize(buf.size() * 2);
  }
}

// The file a write to `path` should replace: symlinks are followed (a dangling one to the path
// it names), so writing through a link updates its target as open(2) would. A directory or
// another non-regular file there is kInvalidArgument. A missing path is returned as is.
Result<std::string> ResolveWriteTarget(const std::string& path) {
  std::string p = path;
  for (int hop = 0;; ++hop) {
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0) {
      if (errno == ENOENT || errno == ENOTDIR) {
        return p;  // new file; MakeDirs reports a bad parent precisely
      }
      return Fail(ErrnoError(errno, p));
    }
    if (S_ISDIR(st.st_mode)) {
      return Fail(ErrorCode::kInvalidArgument, p + " is a directory");
    }
    if (S_ISREG(st.st_mode)) {
      return p;
    }
    if (!S_ISLNK(st.st_mode)) {
      return Fail(ErrorCode::kInvalidArgument, p + " exists and is not a regular file");
    }
    if (hop >= kMaxSymlinkHops) {
      return Fail(ErrnoError(ELOOP, path));
    }
    // realpath resolves intermediate links correctly; only a dangling link needs a manual hop.
    std::unique_ptr<char, decltype(&std::free)> real(::realpath(p.c_str(), nullptr), &std::free);
    if (real) {
      p = real.get();
      continue;
    }
    auto target = ReadLink(p);
    if (!target) {
      return Fail(target.error());
    }
    p = NormalizeAbsolute(target->starts_with('/') ? *target : Dirname(p) + "/" + *target);
  }
}

// Creates "<dir>/.<hint>.agentbox-XXXXXX" (hint shortened to stay under NAME_MAX), mode 0600.
Result<std::pair<UniqueFd, std::string>> CreateTempFd(const std::string& dir,
                                                      std::string_view hint) {
  hint = hint.substr(0, Utf8CompletePrefix(hint.substr(0, 128)));
  std::string path = JoinPath(dir, "." + std::string(hint) + ".agentbox-XXXXXX");
  const int fd = ::mkostemp(path.data(), O_CLOEXEC);
  if (fd < 0) {
    return Fail(ErrnoError(errno, "create temporary file in " + dir));
  }
  return std::make_pair(UniqueFd(fd), std::move(path));
}

// A temporary file (see CreateTempFd) that is unlinked on destruction unless renamed.
class TempFile {
 public:
  static Result<TempFile> CreateIn(const std::string& dir, std::string_view hint) {
    auto created = CreateTempFd(dir, hint);
    if (!created) {
      return Fail(created.error());
    }
    TempFile t;
    t.fd_ = std::move(created->first);
    t.path_ = std::move(created->second);
    return t;
  }
  TempFile() = default;
  TempFile(TempFile&& o) noexcept : fd_(std::move(o.fd_)), path_(std::exchange(o.path_, {})) {}
  TempFile& operator=(TempFile&& o) noexcept {
    if (this != &o) {
      Unlink();
      fd_ = std::move(o.fd_);
      path_ = std::exchange(o.path_, {});
    }
    return *this;
  }
  ~TempFile() { Unlink(); }

  int fd() const { return fd_.Get(); }
  const std::string& path() const { return path_; }

  // Renames the file to `dest`; afterwards this object owns nothing on disk.
  Result<void> RenameTo(const std::string& dest) {
    if (::rename(path_.c_str(), dest.c_str()) != 0) {
      return Fail(ErrnoError(errno, "rename " + path_ + " to " + dest));
    }
    Forget();
    return {};
  }
  // Gives up the file (after the caller renamed it) without unlinking it.
  void Forget() {
    path_.clear();
    fd_.Reset();
  }

 private:
  void Unlink() {
    if (!path_.empty()) {
      ::unlink(path_.c_str());
      path_.clear();
    }
  }
  UniqueFd fd_;
  std::string path_;
};

// Gives a file about to replace `target` the target's mode and owner (best effort: only root
// may chown), or 0644 for a new file.
void CopyModeAndOwner(int fd, const std::string& target) {
  struct stat st {};
  if (::stat(target.c_str(), &st) != 0) {
    ::fchmod(fd, kNewFileMode);
    return;
  }
  if (st.st_uid != ::geteuid() || st.st_gid != ::getegid()) {
    if (::fchown(fd, st.st_uid, st.st_gid) != 0) {
      // Not root: the file keeps our ownership, as any non-privileged editor would leave it.
    }
  }
  ::fchmod(fd, st.st_mode & 07777);
}

// Replaces `target` (a resolved regular-file path whose parent exists) with the concatenation
// of `pieces`: written to a temporary file in the same directory, then renamed over the
// target, so a concurrent reader sees either the old or the new content, never a mix.
// No fsync: atomicity against readers, not durability across power loss.
Result<void> AtomicReplace(const std::string& target,
                           std::initializer_list<std::string_view> pieces) {
  auto tmp = TempFile::CreateIn(Dirname(target), Basename(target));
  if (!tmp) {
    return Fail(tmp.error());
  }
  for (std::string_view piece : pieces) {
    if (auto w = WriteAll(tmp->fd(), piece, tmp->path()); !w) {
      return w;
    }
  }
  CopyModeAndOwner(tmp->fd(), target);
  if (::rename(tmp->path().c_str(), target.c_str()) == 0) {
    tmp->Forget();
    return {};
  }
  if (errno != EBUSY) {
    return Fail(ErrnoError(errno, "rename " + tmp->path() + " to " + target));
  }
  // The target is a mount point (Docker bind-mounts /etc/hosts and /etc/resolv.conf): it
  // cannot be replaced, only rewritten in place, without atomicity.
  UniqueFd fd(::open(target.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOCTTY));
  if (!fd) {
    return Fail(ErrnoError(errno, target));
  }
  for (std::string_view piece : pieces) {
    if (auto w = WriteAll(fd.Get(), piece, target); !w) {
      return w;
    }
  }
  return {};
}

struct RawEntry {
  std::string name;
  unsigned char d_type = DT_UNKNOWN;
};

struct DirCloser {
  void operator()(DIR* d) const { ::closedir(d); }
};

// All entries of the open directory `dir_fd` except "." and "..", from the start regardless of
// the fd's offset. `dir_fd` stays owned by the caller.
Result<std::vector<RawEntry>> ReadDirEntries(int dir_fd, const std::string& what) {
  UniqueFd dup(::fcntl(dir_fd, F_DUPFD_CLOEXEC, 0));
  if (!dup) {
    return Fail(ErrnoError(errno, what));
  }
  std::unique_ptr<DIR, DirCloser> dir(::fdopendir(dup.Get()));
  if (!dir) {
    return Fail(ErrnoError(errno, what));
  }
  dup.Release();           // now owned by `dir`
  ::rewinddir(dir.get());  // the dup shares the offset with dir_fd
  std::vector<RawEntry> out;
  while (true) {
    errno = 0;
    const dirent* e = ::readdir(dir.get());
    if (e == nullptr) {
      if (errno != 0) {
        return Fail(ErrnoError(errno, what));
      }
      break;
    }
    const std::string_view name = e->d_name;
    if (name == "." || name == "..") {
      continue;
    }
    out.push_back(RawEntry{std::string(name), e->d_type});
  }
  return out;
}

// Whether `name` in `dir_fd` is a directory itself (not a symlink to one).
bool IsRealDir(int dir_fd, const RawEntry& e) {
  if (e.d_type != DT_UNKNOWN) {
    return e.d_type == DT_DIR;
  }
  struct stat st {};
  return ::fstatat(dir_fd, e.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

// Unlinks every non-directory in `dir_fd` and returns the names of its subdirectories.
Result<std::vector<std::string>> RemoveFilesIn(int dir_fd, const std::string& dir_path) {
  auto entries = ReadDirEntries(dir_fd, dir_path);
  if (!entries) {
    return Fail(entries.error());
  }
  std::vector<std::string> subdirs;
  for (const RawEntry& e : *entries) {
    if (IsRealDir(dir_fd, e)) {
      subdirs.push_back(e.name);
      continue;
    }
    if (::unlinkat(dir_fd, e.name.c_str(), 0) != 0) {
      if (errno == ENOENT) {
        continue;
      }
      if (errno == EISDIR) {  // replaced by a directory since readdir
        subdirs.push_back(e.name);
        continue;
      }
      return Fail(ErrnoError(errno, JoinPath(dir_path, e.name)));
    }
  }
  return subdirs;
}

// Removes everything below the directory `root` (not `root` itself) without following
// symlinks: links are unlinked, never traversed. Iterative and holding one directory fd at a
// time, so neither the stack nor the fd table limits the depth; a step back up through ".." is
// checked against the inode it came from, so a concurrent rename cannot redirect the walk.
Result<void> RemoveTreeContents(const std::string& root) {
  UniqueFd cur(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!cur) {
    return Fail(ErrnoError(errno, root));
  }
  struct Frame {
    std::string name;  // within the parent
    dev_t parent_dev = 0;
    ino_t parent_ino = 0;
    std::vector<std::string> pending;  // subdirectories still to empty
  };
  std::string cur_path = root;
  auto first = RemoveFilesIn(cur.Get(), cur_path);
  if (!first) {
    return Fail(first.error());
  }
  std::vector<Frame> frames;
  frames.push_back(Frame{{}, 0, 0, std::move(*first)});
  while (true) {
    Frame& top = frames.back();
    if (!top.pending.empty()) {
      std::string name = std::move(top.pending.back());
      top.pending.pop_back();
      struct stat here {};
      if (::fstat(cur.Get(), &here) != 0) {
        return Fail(ErrnoError(errno, cur_path));
      }
      UniqueFd child(
          ::openat(cur.Get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!child) {
        if (errno == ENOENT) {
          continue;
        }
        return Fail(ErrnoError(errno, JoinPath(cur_path, name)));
      }
      cur = std::move(child);
      cur_path = JoinPath(cur_path, name);
      auto subdirs = RemoveFilesIn(cur.Get(), cur_path);
      if (!subdirs) {
        return Fail(subdirs.error());
      }
      frames.push_back(Frame{std::move(name), here.st_dev, here.st_ino, std::move(*subdirs)});
      continue;
    }
    if (frames.size() == 1) {
      return {};
    }
    const Frame done = std::move(frames.back());
    frames.pop_back();
    UniqueFd parent(::openat(cur.Get(), "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    struct stat st {};
    if (!parent || ::fstat(parent.Get(), &st) != 0) {
      return Fail(ErrnoError(errno, cur_path + "/.."));
    }
    if (st.st_dev != done.parent_dev || st.st_ino != done.parent_ino) {
      return Fail(ErrorCode::kConflict, cur_path + " was moved while it was being deleted");
    }
    cur = std::move(parent);
    cur_path = Dirname(cur_path);
    if (::unlinkat(cur.Get(), done.name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
      return Fail(ErrnoError(errno, JoinPath(cur_path, done.name)));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// read

// Number of lines as str.splitlines() on '\n' would count them: a final line without '\n'
// counts, an empty file has none.
Result<uint64_t> CountLines(int fd, const std::string& path) {
  std::vector<char> buf(kIoChunk);
  uint64_t offset = 0;
  uint64_t newlines = 0;
  char last = '\n';
  while (true) {
    auto n = PreadSome(fd, buf.data(), buf.size(), offset, path);
    if (!n) {
      return Fail(n.error());
    }
    if (*n == 0) {
      break;
    }
    newlines += static_cast<uint64_t>(std::count(buf.data(), buf.data() + *n, '\n'));
    last = buf[*n - 1];
    offset += *n;
  }
  return newlines + (last != '\n' ? 1 : 0);
}

// Python slice index normalisation for a sequence of `n` items.
uint64_t SliceIndex(int64_t i, uint64_t n) {
  if (i < 0) {
    const uint64_t back = static_cast<uint64_t>(-(i + 1)) + 1;  // |i| without overflow
    return back >= n ? 0 : n - back;
  }
  return std::min(static_cast<uint64_t>(i), n);
}

struct ReadSlice {
  std::string content;
  bool truncated = false;
};

// Streams lines [first, last) (last absent: to EOF) of `fd`, keeping line endings, and stops
// once more than `max_len` bytes are collected. A truncated result is cut back to a complete
// UTF-8 character.
//
// `join`: as ai-manus's line-range read ('\n'.join(content.splitlines()[first:last])): each
// line without its ending ("\n" or "\r\n"), joined by "\n", no newline after the last.
Result<ReadSlice> CollectLines(int fd, const std::string& path, uint64_t first,
                               std::optional<uint64_t> last, uint64_t max_len, bool join) {
  ReadSlice out;
  if (last && *last <= first) {
    return out;
  }
  const uint64_t cap = max_len + 1;  // one byte more than returned tells us it was truncated
  std::vector<char> buf(kIoChunk);
  uint64_t offset = 0;
  uint64_t line = 0;
  bool done = false;
  bool separate = false;    // join: a "\n" goes before the next line's first byte
  size_t line_start = 0;    // join: where the current line's bytes start in out.content
  const auto line_bytes = [&line_start](const ReadSlice& s) { return s.content.size() - line_start; };
  while (!done) {
    auto n = PreadSome(fd, buf.data(), buf.size(), offset, path);
    if (!n) {
      return Fail(n.error());
    }
    if (*n == 0) {
      break;
    }
    offset += *n;
    const std::string_view chunk(buf.data(), *n);
    size_t pos = 0;
    while (pos < chunk.size() && !done) {
      const size_t nl = chunk.find('\n', pos);
      const size_t seg_end = nl == std::string_view::npos ? chunk.size() : nl + 1;
      if (line >= first) {
        if (join && separate && !done) {
          out.content.push_back('\n');
          separate = false;
          line_start = out.content.size();
          done = out.content.size() >= cap;
        }
        const size_t take_end = join && nl != std::string_view::npos ? nl : seg_end;
        const uint64_t room = cap - out.content.size();
        out.content.append(chunk.substr(pos, std::min<uint64_t>(room, take_end - pos)));
        done = done || out.content.size() >= cap;
        if (join && nl != std::string_view::npos && !done) {
          if (!out.content.empty() && out.content.back() == '\r' && line_bytes(out) > 0) {
            out.content.pop_back();
          }
          separate = true;
        }
      }
      pos = seg_end;
      if (nl != std::string_view::npos) {
        line_start = out.content.size();
        ++line;
        done = done || (last && line >= *last);
      }
    }
  }
  if (out.content.size() > max_len) {
    out.truncated = true;
    out.content.resize(Utf8CompletePrefix(std::string_view(out.content).substr(0, max_len)));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// search: std::regex with a stack and time guard
//
// libstdc++'s ECMAScript matcher is a recursive backtracker: it never throws error_stack or
// error_complexity; it overflows the stack on long lines and runs for exponential time on
// patterns like (a+)+b. Matching therefore runs on a dedicated thread with a large, known stack
// through an iterator that checks, on every step, how deep the stack is and (every few thousand
// steps) the deadline, throwing std::regex_error to abandon the line.

struct MatchGuard {
  uintptr_t stack_floor = 0;  // lowest frame address allowed (stacks grow down)
  std::chrono::steady_clock::time_point deadline;
  uint32_t steps = 0;

  void Check() {
    const auto frame = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
    if (frame < stack_floor) {
      throw std::regex_error(std::regex_constants::error_stack);
    }
    if ((++steps & 0xfff) == 0 && std::chrono::steady_clock::now() > deadline) {
      throw std::regex_error(std::regex_constants::error_complexity);
    }
  }
};

// A bidirectional iterator over chars that runs MatchGuard::Check() on every access.
class GuardedIterator {
 public:
  using iterator_category = std::bidirectional_iterator_tag;
  using value_type = char;
  using difference_type = std::ptrdiff_t;
  using pointer = const char*;
  using reference = const char&;

  GuardedIterator() = default;
  GuardedIterator(const char* p, MatchGuard* guard) : p_(p), guard_(guard) {}

  reference operator*() const {
    Step();
    return *p_;
  }
  GuardedIterator& operator++() {
    Step();
    ++p_;
    return *this;
  }
  GuardedIterator operator++(int) {
    GuardedIterator old = *this;
    ++*this;
    return old;
  }
  GuardedIterator& operator--() {
    Step();
    --p_;
    return *this;
  }
  GuardedIterator operator--(int) {
    GuardedIterator old = *this;
    --*this;
    return old;
  }
  bool operator==(const GuardedIterator& o) const {
    Step();
    return p_ == o.p_;
  }

 private:
  void Step() const {
    if (guard_ != nullptr) {
      guard_->Check();
    }
  }
  const char* p_ = nullptr;
  MatchGuard* guard_ = nullptr;
};

// Stack size of the calling thread (the main thread reports its rlimit), 0 if unknown.
size_t CurrentThreadStackBytes() {
  pthread_attr_t attr;
  if (pthread_getattr_np(pthread_self(), &attr) != 0) {
    return 0;
  }
  size_t size = 0;
  pthread_attr_getstacksize(&attr, &size);
  pthread_attr_destroy(&attr);
  return size;
}

// Runs `fn` on a new thread with a `stack_bytes` stack and waits for it. An exception escaping
// `fn` (e.g. bad_alloc) becomes kInternal instead of terminating the process.
Result<void> RunOnLargeStack(size_t stack_bytes, const std::function<void()>& fn) {
  struct Task {
    const std::function<void()>* fn;
    bool threw = false;
  } task{&fn};
  pthread_attr_t attr;
  if (int rc = ::pthread_attr_init(&attr); rc != 0) {
    return Fail(ErrnoError(rc, "pthread_attr_init"));
  }
  std::unique_ptr<pthread_attr_t, int (*)(pthread_attr_t*)> attr_guard(&attr,
                                                                       ::pthread_attr_destroy);
  if (int rc = ::pthread_attr_setstacksize(&attr, stack_bytes); rc != 0) {
    return Fail(ErrnoError(rc, "pthread_attr_setstacksize"));
  }
  pthread_t thread;
  const int rc = ::pthread_create(
      &thread, &attr,
      [](void* arg) -> void* {
        auto* t = static_cast<Task*>(arg);
        try {  // boundary: nothing may escape a thread's start routine
          (*t->fn)();
        } catch (...) {
          t->threw = true;
        }
        return nullptr;
      },
      &task);
  if (rc != 0) {
    return Fail(ErrnoError(rc, "start regex search thread"));
  }
  ::pthread_join(thread, nullptr);
  if (task.threw) {
    return Fail(ErrorCode::kInternal, "regex search failed unexpectedly (out of memory?)");
  }
  return {};
}

struct SearchOutcome {
  std::vector<std::string> matches;
  std::vector<uint64_t> line_numbers;
  std::optional<Error> error;
};

// Compiles `pattern` and matches it against every line of `content`. Must run on a thread
// whose stack is kSearchStackBytes large (see RunOnLargeStack).
void SearchLines(const std::string& content, const std::string& pattern, uint32_t timeout_ms,
                 SearchOutcome& out) {
  MatchGuard guard;
  guard.stack_floor = reinterpret_cast<uintptr_t>(__builtin_frame_address(0)) - kSearchStackBudget;
  guard.deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  std::regex re;
  try {  // boundary: std::regex reports syntax errors only by throwing
    re = std::regex(pattern, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    out.error = Error{ErrorCode::kInvalidArgument, std::string("invalid regex: ") + e.what()};
    return;
  }
  const std::string_view all = content;
  uint64_t line_no = 0;
  for (size_t pos = 0; pos < all.size(); ++line_no) {
    size_t nl = all.find('\n', pos);
    if (nl == std::string_view::npos) {
      nl = all.size();
    }
    std::string_view line = all.substr(pos, nl - pos);
    pos = nl + 1;
    if (!line.empty() && line.back() == '\r') {
      line.remove_suffix(1);
    }
    try {  // boundary: the guard aborts a runaway match by throwing through std::regex
      guard.Check();
      const GuardedIterator begin(line.data(), &guard);
      const GuardedIterator end(line.data() + line.size(), &guard);
      if (std::regex_search(begin, end, re)) {
        out.matches.emplace_back(line);
        out.line_numbers.push_back(line_no);
      }
    } catch (const std::regex_error& e) {
      const std::string where = " (line " + std::to_string(line_no) + ")";
      if (e.code() == std::regex_constants::error_stack) {
        out.error = Error{ErrorCode::kInvalidArgument,
                          "regex too complex for a line of " + std::to_string(line.size()) +
                              " bytes: matching would exhaust the stack" + where};
      } else if (e.code() == std::regex_constants::error_complexity) {
        out.error = Error{ErrorCode::kInvalidArgument,
                          "regex search exceeded its time limit of " + std::to_string(timeout_ms) +
                              " ms; the pattern likely backtracks catastrophically" + where};
      } else {
        out.error = Error{ErrorCode::kInvalidArgument,
                          std::string("regex match failed: ") + e.what() + where};
      }
      return;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// find

bool HasGlobMeta(std::string_view seg) {
  return seg.find_first_of("*?[\\") != std::string_view::npos;
}

std::vector<std::string> SplitGlob(std::string_view glob) {
  std::vector<std::string> segs;
  size_t i = 0;
  while (i <= glob.size()) {
    size_t j = glob.find('/', i);
    if (j == std::string_view::npos) {
      j = glob.size();
    }
    if (j > i) {
      segs.emplace_back(glob.substr(i, j - i));
    }
    i = j + 1;
  }
  return segs;
}

// Entries of the directory at `path` (following a symlink there), or nothing if it cannot be
// listed: find skips what it cannot read, like glob(3). `fd_out` receives the open directory,
// for IsRealDir() on the entries.
std::vector<RawEntry> ListOrNothing(const std::string& path, UniqueFd& fd_out) {
  fd_out = UniqueFd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd_out) {
    return {};
  }
  auto entries = ReadDirEntries(fd_out.Get(), path);
  return entries ? std::move(*entries) : std::vector<RawEntry>{};
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Public API

Result<std::string> ResolvePath(const std::string& path, const FileConfig& cfg) {
  if (path.empty()) {
    return Fail(FieldError("path", "must not be empty"));
  }
  if (path.find('\0') != std::string::npos) {
    return Fail(ErrorCode::kInvalidArgument, "path contains a NUL byte");
  }
  if (path.front() == '/') {
    return NormalizeAbsolute(path);
  }
  return NormalizeAbsolute(cfg.base_dir + "/" + path);
}

Result<Json> FileRead(const Json& req, const FileConfig& cfg) {
  const JsonFields fields(req);
  auto path = ResolveFileField(fields, cfg);
  if (!path) {
    return Fail(path.error());
  }
  auto start = fields.OptInt("start_line", INT64_MIN, INT64_MAX);
  if (!start) {
    return Fail(start.error());
  }
  auto end = fields.OptInt("end_line", INT64_MIN, INT64_MAX);
  if (!end) {
    return Fail(end.error());
  }
  auto max_length = fields.OptInt("max_length", 0, INT64_MAX);
  if (!max_length) {
    return Fail(max_length.error());
  }
  // The response is held in memory, so it never exceeds max_file_bytes: more is truncation.
  const uint64_t max_len =
      std::min<uint64_t>(static_cast<uint64_t>(max_length->value_or(10000)), cfg.max_file_bytes);

  auto file = OpenRegularForRead(*path);
  if (!file) {
    return Fail(file.error());
  }
  uint64_t first = 0;
  std::optional<uint64_t> last;
  if (start->value_or(0) < 0 || end->value_or(0) < 0) {
    auto lines = CountLines(file->fd.Get(), *path);  // negative indices count from the end
    if (!lines) {
      return Fail(lines.error());
    }
    first = SliceIndex(start->value_or(0), *lines);
    if (*end) {
      last = SliceIndex(**end, *lines);
    }
  } else {
    first = static_cast<uint64_t>(start->value_or(0));
    if (*end) {
      last = static_cast<uint64_t>(**end);
    }
  }
  // A line range reads as ai-manus reads it: the lines joined by "\n", without their endings.
  const bool join = start->has_value() || end->has_value();
  auto slice = CollectLines(file->fd.Get(), *path, first, last, max_len, join);
  if (!slice) {
    return Fail(slice.error());
  }
  return Json{
      {"content", std::move(slice->content)}, {"file", *path}, {"truncated", slice->truncated}};
}

Result<Json> FileWrite(const Json& req, const FileConfig& cfg) {
  const JsonFields fields(req);
  auto path = ResolveFileField(fields, cfg);
  if (!path) {
    return Fail(path.error());
  }
  auto content = fields.String("content");
  if (!content) {
    return Fail(content.error());
  }
  auto append = fields.OptBool("append");
  if (!append) {
    return Fail(append.error());
  }
  auto leading = fields.OptBool("leading_newline");
  if (!leading) {
    return Fail(leading.error());
  }
  auto trailing = fields.OptBool("trailing_newline");
  if (!trailing) {
    return Fail(trailing.error());
  }
  const std::string_view head = leading->value_or(false) ? "\n" : "";
  const std::string_view tail = trailing->value_or(false) ? "\n" : "";
  const uint64_t total = head.size() + content->size() + tail.size();
  if (total > cfg.max_file_bytes) {
    return Fail(ErrorCode::kTooLarge, "content of " + std::to_string(total) +
                                          " bytes exceeds the limit of " +
                                          std::to_string(cfg.max_file_bytes) + " bytes");
  }

  auto target = ResolveWriteTarget(*path);
  if (!target) {
    return Fail(target.error());
  }
  if (auto d = MakeDirs(Dirname(*target)); !d) {
    return Fail(d.error());
  }
  if (append->value_or(false)) {
    struct stat st {};
    const bool existed = ::lstat(target->c_str(), &st) == 0;
    UniqueFd fd(::open(target->c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY,
                       kNewFileMode));
    if (!fd) {
      return Fail(ErrnoError(errno, *target));
    }
    if (!existed) {
      ::fchmod(fd.Get(), kNewFileMode);  // independent of the umask, like the atomic path
    }
    for (std::string_view piece : {head, std::string_view(*content), tail}) {
      if (auto w = WriteAll(fd.Get(), piece, *target); !w) {
        return Fail(w.error());
      }
    }
  } else if (auto w = AtomicReplace(*target, {head, *content, tail}); !w) {
    return Fail(w.error());
  }
  return Json{{"file", *path}, {"bytes_written", total}};
}

Result<Json> FileExists(const Json& req, const FileConfig& cfg) {
  const JsonFields fields(req);
  auto path = ResolveField(fields, "path", cfg);
  if (!path) {
    return Fail(path.error());
  }
  struct stat st {};
  if (::lstat(path->c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) {
      return Json{{"path", *path}, {"exists", false}};
    }
    return Fail(ErrnoError(errno, *path));
  }
  return Json{{"path", *path}, {"exists", true}, {"type", TypeName(st.st_mode)}};
}

Result<Json> FileDelete(const Json& req, const FileConfig& cfg) {
  const JsonFields fields(req);
  auto path = ResolveField(fields, "path", cfg);
  if (!path) {
    return Fail(path.error());
  }
  auto recursive = fields.OptBool("recursive");
  if (!recursive) {
    return Fail(recursive.error());
  }
  if (*path == "/") {
    return Fail(ErrorCode::kInvalidArgument, "refusing to delete /");
  }
  struct stat st {};
  if (::lstat(path->c_str(), &st) != 0) {
    return Fail(ErrnoError(errno, *path));
  }
  if (S_ISDIR(st.st_mode)) {
    if (recursive->value_or(false)) {
      if (auto r = RemoveTreeContents(*path); !r) {
        return Fail(r.error());
      }
    }
    if (::rmdir(path->c_str()) != 0) {
      if (errno == ENOTEMPTY || errno == EEXIST) {
        return Fail(ErrorCode::kInvalidArgument,
                    *path + ": directory not empty; pass recursive:true");
      }
      return Fail(ErrnoError(errno, *path));
    }
  } else if (::unlink(path->c_str()) != 0) {
    return Fail(ErrnoError(errno, *path));
  }
  return Json{{"path", *path}, {"deleted", true}};
}

Result<Json> FileList(const Json& req, const FileConfig& cfg) {
  const JsonFields fields(req);
  auto path = ResolveField(fields, "path", cfg);
  if (!path) {
    return Fail(path.error());
  }
  auto recursive_opt = fields.OptBool("recursive");
  if (!recursive_opt) {
    return Fail(recursive_opt.error());
  }
  const bool recursive = recursive_opt->value_or(false);
  struct stat root_st {};
  if (::stat(path->c_str(), &root_st) != 0) {
    return Fail(ErrnoError(errno, *path));
  }
  if (!S_ISDIR(root_st.st_mode)) {
    return Fail(ErrorCode::kInvalidArgument, *path + " is not a directory");
  }

  struct Item {
    std::string name;
    struct stat st;
  };
  std::vector<Item> items;
  bool truncated = false;
  // Depth-first over relative directory paths; one fd open at a time. Subdirectories that
  // cannot be opened are listed but not descended into.
  std::vector<std::string> todo{""};
  while (!todo.empty() && !truncated) {
    const std::string rel = std::move(todo.back());
    todo.pop_back();
    const std::string dir_path = JoinPath(*path, rel);
    UniqueFd dir(::open(dir_path.c_str(),
                        O_RDONLY | O_DIRECTORY | O_CLOEXEC | (rel.empty() ? 0 : O_NOFOLLOW)));
    if (!dir) {
      if (rel.empty()) {
        return Fail(ErrnoError(errno, *path));
      }
      continue;
    }
    auto entries = ReadDirEntries(dir.Get(), dir_path);
    if (!entries) {
      if (rel.empty()) {
        return Fail(entries.error());
      }
      continue;
    }
    std::sort(entries->begin(), entries->end(),
              [](const RawEntry& a, const RawEntry& b) { return a.name < b.name; });
    std::vector<std::string> subdirs;
    for (const RawEntry& e : *entries) {
      struct stat st {};
      if (::fstatat(dir.Get(), e.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        continue;  // vanished since readdir
      }
      if (items.size() >= cfg.max_entries) {
        truncated = true;
        break;
      }
      std::string name = rel.empty() ? e.name : rel + "/" + e.name;
      if (recursive && S_ISDIR(st.st_mode)) {
        subdirs.push_back(name);
      }
      items.push_back(Item{std::move(name), st});
    }
    todo.insert(todo.end(), subdirs.rbegin(), subdirs.rend());
  }
  std::sort(items.begin(), items.end(),
            [](const Item& a, const Item& b) { return a.name < b.name; });
  Json entries = Json::array();
  for (const Item& it : items) {
    entries.push_back(Json{{"name", it.name},
                           {"type", TypeName(it.st.st_mode)},
                           {"size", static_cast<int64_t>(it.st.st_size)},
                           {"mode", ModeString(it.st.st_mode)},
                           {"mtime", static_cast<int64_t>(it.st.st_mtim.tv_sec)}});
  }
  return Json{{"path", *path}, {"entries", std::move(entries)}, {"truncated", truncated}};
}

Result<Json> FileReplace(const Json& req, const FileConfig& cfg) {
  const JsonFields fields(req);
  auto path = ResolveFileField(fields, cfg);
  if (!path) {
    return Fail(path.error());
  }
  auto old_str = fields.NonEmptyString("old_str");
  if (!old_str) {
    return Fail(old_str.error());
  }
  auto new_str = fields.String("new_str");
  if (!new_str) {
    return Fail(new_str.error());
  }
  auto target = ResolveWriteTarget(*path);
  if (!target) {
    return Fail(target.error());
  }
  auto content = ReadWholeFile(*target, cfg.max_file_bytes);
  if (!content) {
    return Fail(content.error());
  }
  std::string out;
  uint64_t count = 0;
  size_t pos = 0;
  while (true) {
    const size_t hit = content->find(*old_str, pos);
    if (hit == std::string::npos) {
      break;
    }
    if (count == 0) {
      out.reserve(content->size());
    }
    out.append(*content, pos, hit - pos);
    out += *new_str;
    pos = hit + old_str->size();
    ++count;
    if (out.size() > cfg.max_file_bytes) {
      return Fail(ErrorCode::kTooLarge, "the result of the replacement exceeds the limit of " +
                                            std::to_string(cfg.max_file_bytes) + " bytes");
    }
  }
  if (count > 0) {
    out.append(*content, pos, std::string::npos);
    if (out.size() > cfg.max_file_bytes) {
      return Fail(ErrorCode::kTooLarge, "the result of the replacement exceeds the limit of " +
                                            std::to_string(cfg.max_file_bytes) + " bytes");
    }
    if (auto w = AtomicReplace(*target, {out}); !w) {
      return Fail(w.error());
    }
  }
  return Json{{"file", *path}, {"replaced_count", count}};
}

Result<Json> FileSearch(const Json& req, const FileConfig& cfg) {
  const JsonFields fields(req);
  auto path = ResolveFileField(fields, cfg);
  if (!path) {
    return Fail(path.error());
  }
  auto regex = fields.NonEmptyString("regex");
  if (!regex) {
    return Fail(regex.error());
  }
  if (regex->size() > kMaxRegexBytes) {
    return Fail(
        FieldError("regex", "must be at most " + std::to_string(kMaxRegexBytes) + " bytes"));
  }
  auto content = ReadWholeFile(*path, cfg.max_file_bytes);
  if (!content) {
    return Fail(content.error());
  }
  SearchOutcome outcome;
  if (CurrentThreadStackBytes() >= kSearchStackBytes) {
    SearchLines(*content, *regex, cfg.search_timeout_ms, outcome);  // a WorkerPool thread
  } else {
    auto ran = RunOnLargeStack(
        kSearchStackBytes, [&] { SearchLines(*content, *regex, cfg.search_timeout_ms, outcome); });
    if (!ran) {
      return Fail(ran.error());
    }
  }
  if (outcome.error) {
    return Fail(std::move(*outcome.error));
  }
  return Json{{"file", *path},
              {"matches", std::move(outcome.matches)},
              {"line_numbers", std::move(outcome.line_numbers)}};
}

Result<Json> FileFind(const Json& req, const FileConfig& cfg) {
  const JsonFields fields(req);
  auto path = ResolveField(fields, "path", cfg);
  if (!path) {
    return Fail(path.error());
  }
  auto glob = fields.NonEmptyString("glob");
  if (!glob) {
    return Fail(glob.error());
  }
  if (glob->find('\0') != std::string::npos) {
    return Fail(ErrorCode::kInvalidArgument, "glob contains a NUL byte");
  }
  struct stat root_st {};
  if (::stat(path->c_str(), &root_st) != 0) {
    return Fail(ErrnoError(errno, *path));
  }
  if (!S_ISDIR(root_st.st_mode)) {
    return Fail(ErrorCode::kInvalidArgument, *path + " is not a directory");
  }
  const std::vector<std::string> segs = SplitGlob(*glob);
  const bool dirs_only = glob->back() == '/';
  const std::string& root = *path;

  // Work items are (path relative to root, index of the next glob segment to match). `**`
  // consumes zero or more whole directories, never descending through a symlink, so a link
  // loop cannot make the walk endless; each (dir, index) pair is expanded once.
  std::set<std::pair<std::string, size_t>> seen;
  std::vector<std::pair<std::string, size_t>> todo;
  const auto push = [&](std::string rel, size_t idx) {
    if (seen.emplace(rel, idx).second) {
      todo.emplace_back(std::move(rel), idx);
    }
  };
  const auto join_rel = [](const std::string& rel, const std::string& name) {
    return rel.empty() ? name : rel + "/" + name;
  };
  std::set<std::string> found;
  bool truncated = false;
  push("", 0);
  while (!todo.empty() && !truncated) {
    auto [rel, idx] = std::move(todo.back());
    todo.pop_back();
    if (idx == segs.size()) {
      if (rel.empty()) {
        continue;
      }
      std::string abs = NormalizeAbsolute(JoinPath(root, rel));
      struct stat st {};
      if (dirs_only && (::stat(abs.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))) {
        continue;
      }
      if (found.size() >= cfg.max_entries && !found.contains(abs)) {
        truncated = true;
        break;
      }
      found.insert(std::move(abs));
      continue;
    }
    const std::string& seg = segs[idx];
    if (!HasGlobMeta(seg)) {  // literal: no need to list the directory
      struct stat st {};
      const std::string child = join_rel(rel, seg);
      if (::lstat(JoinPath(root, child).c_str(), &st) == 0) {
        push(child, idx + 1);
      }
      continue;
    }
    UniqueFd dir;
    const std::vector<RawEntry> entries = ListOrNothing(JoinPath(root, rel), dir);
    if (seg == "**") {
      push(rel, idx + 1);  // zero directories
      for (const RawEntry& e : entries) {
        if (IsHidden(e.name)) {
          continue;  // as Python's glob: ** skips hidden entries
        }
        if (IsRealDir(dir.Get(), e)) {
          push(join_rel(rel, e.name), idx);
        } else if (idx + 1 == segs.size()) {
          push(join_rel(rel, e.name), idx + 1);
        }
      }
      continue;
    }
    for (const RawEntry& e : entries) {
      if (::fnmatch(seg.c_str(), e.name.c_str(), FNM_PERIOD) == 0) {
        push(join_rel(rel, e.name), idx + 1);
      }
    }
  }
  return Json{{"path", *path},
              {"files", std::vector<std::string>(found.begin(), found.end())},
              {"truncated", truncated}};
}

// ---------------------------------------------------------------------------------------------
// Download and upload

Result<DownloadFile> OpenForDownload(const std::string& path, const FileConfig& cfg) {
  auto resolved = ResolvePath(path, cfg);
  if (!resolved) {
    return Fail(resolved.error());
  }
  auto file = OpenRegularForRead(*resolved);
  if (!file) {
    return Fail(file.error());
  }
  DownloadFile out;
  out.fd = std::move(file->fd);
  out.size = static_cast<uint64_t>(file->st.st_size);
  out.name = Basename(*resolved);
  return out;
}

Result<UploadSink> UploadSink::Open(const std::string& dest, const FileConfig& cfg) {
  UploadSink sink;
  sink.cfg_ = cfg;
  std::string dir;
  std::string hint = "upload";
  if (!dest.empty()) {
    auto resolved = ResolvePath(dest, cfg);
    if (!resolved) {
      return Fail(resolved.error());
    }
    auto target = ResolveWriteTarget(*resolved);
    if (!target) {
      return Fail(target.error());
    }
    sink.dest_ = *resolved;
    dir = Dirname(*target);
    hint = Basename(*target);
    if (auto d = MakeDirs(dir); !d) {
      return Fail(d.error());
    }
  } else if (!cfg.upload_tmp_dir.empty()) {
    dir = cfg.upload_tmp_dir;
  } else {
    const char* tmp = std::getenv("TMPDIR");
    dir = (tmp != nullptr && tmp[0] == '/') ? tmp : "/tmp";
  }
  auto created = CreateTempFd(dir, hint);
  if (!created) {
    return Fail(created.error());
  }
  sink.fd_ = std::move(created->first);
  sink.temp_path_ = std::move(created->second);
  return sink;
}

UploadSink::UploadSink(UploadSink&& o) noexcept
    : cfg_(std::move(o.cfg_)),
      dest_(std::move(o.dest_)),
      temp_path_(std::exchange(o.temp_path_, {})),
      fd_(std::move(o.fd_)),
      written_(o.written_),
      committed_(o.committed_) {}

UploadSink& UploadSink::operator=(UploadSink&& o) noexcept {
  if (this != &o) {
    if (!committed_ && !temp_path_.empty()) {
      ::unlink(temp_path_.c_str());
    }
    cfg_ = std::move(o.cfg_);
    dest_ = std::move(o.dest_);
    temp_path_ = std::exchange(o.temp_path_, {});
    fd_ = std::move(o.fd_);
    written_ = o.written_;
    committed_ = o.committed_;
  }
  return *this;
}

UploadSink::~UploadSink() {
  if (!committed_ && !temp_path_.empty()) {
    ::unlink(temp_path_.c_str());
  }
}

Result<void> UploadSink::Write(std::string_view bytes) {
  if (committed_ || !fd_) {
    return Fail(ErrorCode::kInternal, "upload sink is not open");
  }
  if (bytes.size() > cfg_.max_upload_bytes - std::min(written_, cfg_.max_upload_bytes)) {
    return Fail(ErrorCode::kTooLarge,
                "upload exceeds the limit of " + std::to_string(cfg_.max_upload_bytes) + " bytes");
  }
  if (auto w = WriteAll(fd_.Get(), bytes, temp_path_); !w) {
    return w;
  }
  written_ += bytes.size();
  return {};
}

Result<void> UploadSink::Wrote(uint64_t n) {
  written_ += n;
  if (written_ > cfg_.max_upload_bytes) {
    return Fail(ErrorCode::kTooLarge,
                "upload exceeds the limit of " + std::to_string(cfg_.max_upload_bytes) + " bytes");
  }
  return {};
}

Result<std::string> UploadSink::Commit(const std::string& dest) {
  if (committed_) {
    return Fail(ErrorCode::kInvalidArgument, "upload already committed");
  }
  if (!fd_) {
    return Fail(ErrorCode::kInternal, "upload sink is not open");
  }
  std::string final_path = dest_;
  if (!dest.empty()) {
    auto resolved = ResolvePath(dest, cfg_);
    if (!resolved) {
      return Fail(resolved.error());
    }
    final_path = std::move(*resolved);
  }
  if (final_path.empty()) {
    return Fail(FieldError("path", "is required"));
  }
  auto target = ResolveWriteTarget(final_path);
  if (!target) {
    return Fail(target.error());
  }
  if (auto d = MakeDirs(Dirname(*target)); !d) {
    return Fail(d.error());
  }
  CopyModeAndOwner(fd_.Get(), *target);
  if (::rename(temp_path_.c_str(), target->c_str()) != 0) {
    if (errno != EXDEV) {
      return Fail(ErrnoError(errno, "rename " + temp_path_ + " to " + *target));
    }
    // Spooled on another file system: copy beside the target, then rename atomically there.
    auto copy = TempFile::CreateIn(Dirname(*target), Basename(*target));
    if (!copy) {
      return Fail(copy.error());
    }
    std::vector<char> buf(kIoChunk);
    for (uint64_t offset = 0;;) {
      auto n = PreadSome(fd_.Get(), buf.data(), buf.size(), offset, temp_path_);
      if (!n) {
        return Fail(n.error());
      }
      if (*n == 0) {
        break;
      }
      if (auto w = WriteAll(copy->fd(), std::string_view(buf.data(), *n), copy->path()); !w) {
        return Fail(w.error());
      }
      offset += *n;
    }
    CopyModeAndOwner(copy->fd(), *target);
    if (auto r = copy->RenameTo(*target); !r) {
      return Fail(r.error());
    }
    ::unlink(temp_path_.c_str());
  }
  temp_path_.clear();
  fd_.Reset();
  committed_ = true;
  return final_path;
}

}  // namespace agentbox::guest
