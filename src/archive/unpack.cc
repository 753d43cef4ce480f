// Unpacking a tar stream into a directory, refusing anything that would land outside it: a
// staging directory beside it, filled by the TreeWriter (archive/tree_writer.h), then renamed.
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "archive/archive.h"
#include "archive/codec.h"
#include "archive/tar_reader.h"
#include "archive/tree_writer.h"
#include "common/unique_fd.h"

namespace agentbox::archive {

namespace {

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
        RemoveTreeAt(parent, name);
      }
    }
  } cleanup{parent_fd.Get(), BaseName(staging), keep};
  if (!parent_fd || !root) {
    return Fail(ErrnoError(errno, "open the staging directory " + staging));
  }
  TarReader reader(MakeDecoder(source));
  TreeWriterOptions wo;
  wo.keep_owner = options.keep_owner;
  wo.max_entries = options.max_entries;
  TreeWriter writer(root.Get(), wo, progress);
  auto written = writer.Run(reader);
  if (!written) {
    return Fail(written.error());
  }
  const Stats stats{written->entries, written->bytes};
  if (!written->root_entry) {
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
    return stats;  // `cleanup` removes the old tree, now under the staging name
  }
  keep = true;
  return stats;
}

}  // namespace agentbox::archive
