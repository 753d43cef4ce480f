// upload and download: files streamed between this machine and a sandbox.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <utility>

#include "cli/commands.h"
#include "cli/format.h"
#include "cli/progress.h"
#include "common/unique_fd.h"

namespace agentbox::cli {

namespace {

std::string BaseName(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') {
    p.pop_back();
  }
  const size_t slash = p.rfind('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

std::string DirName(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) {
    return ".";
  }
  return slash == 0 ? "/" : path.substr(0, slash);
}

bool IsDirectory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// A temporary file next to its destination, removed unless Commit() renamed it into place, so
// an interrupted or failed download never leaves a partial file under the final name.
class TempFile {
 public:
  static Result<TempFile> CreateFor(const std::string& destination) {
    std::string tmpl = DirName(destination) + "/." + BaseName(destination) + ".agentbox-XXXXXX";
    UniqueFd fd(::mkostemp(tmpl.data(), O_CLOEXEC));
    if (!fd) {
      return Fail(ErrnoError(errno, "create a temporary file in " + DirName(destination)));
    }
    return TempFile(std::move(tmpl), std::move(fd));
  }

  TempFile(TempFile&& o) noexcept : path_(std::exchange(o.path_, {})), fd_(std::move(o.fd_)) {}
  TempFile& operator=(TempFile&&) = delete;
  ~TempFile() {
    if (!path_.empty()) {
      ::unlink(path_.c_str());
    }
  }

  int fd() const { return fd_.Get(); }

  // Gives the file the mode a newly created file would have, closes it and renames it.
  Result<void> Commit(const std::string& destination) {
    const mode_t mask = ::umask(0);
    ::umask(mask);
    ::fchmod(fd_.Get(), 0666 & ~mask);
    if (::close(fd_.Release()) != 0) {
      return Fail(ErrnoError(errno, "write " + destination));
    }
    if (::rename(path_.c_str(), destination.c_str()) != 0) {
      return Fail(ErrnoError(errno, "rename the download to " + destination));
    }
    path_.clear();
    return {};
  }

 private:
  TempFile(std::string path, UniqueFd fd) : path_(std::move(path)), fd_(std::move(fd)) {}

  std::string path_;
  UniqueFd fd_;
};

}  // namespace

int Upload(DaemonClient& client, const std::string& id, const std::string& local,
           const std::string& remote) {
  struct stat st {};
  if (::stat(local.c_str(), &st) != 0) {
    return ReportError("cannot read '" + local + "': " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) {
    return ReportError("'" + local + "' is not a regular file");
  }
  if (::access(local.c_str(), R_OK) != 0) {
    return ReportError("cannot read '" + local + "': " + std::strerror(errno));
  }
  if (remote.empty()) {
    return ReportError("upload: the remote path is empty");
  }
  // "dir/" means "into dir", as with cp.
  const std::string target = remote.back() == '/' ? remote + BaseName(local) : remote;
  ProgressBar bar("upload " + BaseName(local), static_cast<uint64_t>(st.st_size));
  auto r = client.Upload(GuestPath(id, "file/upload") + "?path=" + UrlEscape(target), local,
                         [&bar](uint64_t b) { bar.Update(b); });
  bar.Clear();
  if (!r) {
    return ReportError(r.error());
  }
  std::cout << JsonString(*r, "file_path") << " (" << JsonInt(*r, "file_size").value_or(0)
            << " bytes)\n";
  return 0;
}

int Download(DaemonClient& client, const std::string& id, const std::string& remote,
             const std::string& local) {
  if (remote.empty() || local.empty()) {
    return ReportError("download: the remote and local paths must not be empty");
  }
  const std::string path = GuestPath(id, "file/download") + "?path=" + UrlEscape(remote);
  if (local == "-") {
    std::cout.flush();
    auto r = client.Download(path, STDOUT_FILENO);
    return r ? 0 : ReportError(r.error());
  }
  std::string destination = local;
  if (local.back() == '/' || IsDirectory(local)) {
    destination = (local.back() == '/' ? local : local + "/") + BaseName(remote);
  }
  auto tmp = TempFile::CreateFor(destination);
  if (!tmp) {
    return ReportError(tmp.error());
  }
  ProgressBar bar("download " + BaseName(remote), 0);
  auto got = client.Download(path, tmp->fd(), [&bar](uint64_t b) { bar.Update(b); });
  bar.Clear();
  if (!got) {
    return ReportError(got.error());
  }
  struct stat st {};
  ::fstat(tmp->fd(), &st);
  if (auto r = tmp->Commit(destination); !r) {
    return ReportError(r.error());
  }
  std::cout << destination << " (" << st.st_size << " bytes)\n";
  return 0;
}

}  // namespace agentbox::cli
