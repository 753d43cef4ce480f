// cp: files and whole directories between this machine and a sandbox. Directories travel as one
// tar stream (/api/v1/file/archive), packed or unpacked on a second thread while libcurl moves
// the bytes, so nothing is staged on disk or held in memory on either side.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <iostream>
#include <thread>

#include "archive/archive.h"
#include "cli/commands.h"
#include "cli/format.h"
#include "cli/progress.h"
#include "cli/raw_post.h"
#include "common/unique_fd.h"

namespace agentbox::cli {

namespace {

struct Location {
  bool remote = false;
  std::string id;
  std::string path;
};

// "ID:PATH" names a path in a sandbox; anything else (including "./a:b" and "/a:b") is local.
Location Parse(const std::string& s) {
  const size_t colon = s.find(':');
  if (colon == std::string::npos || colon == 0 || s.find('/') < colon) {
    return {false, "", s};
  }
  return {true, s.substr(0, colon), s.substr(colon + 1)};
}

std::string Base(std::string p) {
  while (p.size() > 1 && p.back() == '/') {
    p.pop_back();
  }
  const size_t slash = p.rfind('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

// "directory", "file", ... or "" when nothing is there.
Result<std::string> RemoteType(DaemonClient& client, const std::string& id,
                               const std::string& path) {
  Json body = {{"path", path}};
  auto r = client.Call("POST", GuestPath(id, "file/exists"), &body);
  if (!r) {
    return Fail(r.error());
  }
  if (!r->value("exists", false)) {
    return std::string();
  }
  return r->value("type", std::string("other"));
}

struct Pipe {
  UniqueFd r, w;
  static Result<Pipe> Open() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
      return Fail(ErrnoError(errno, "pipe"));
    }
    Pipe p;
    p.r.Reset(fds[0]);
    p.w.Reset(fds[1]);
    ::fcntl(fds[1], F_SETPIPE_SZ, 1 << 20);
    return p;
  }
};

Result<void> WriteFd(int fd, std::string_view b) {
  while (!b.empty()) {
    const ssize_t n = ::write(fd, b.data(), b.size());
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return Fail(ErrnoError(errno, "write to the archive pipe"));
    }
    b.remove_prefix(static_cast<size_t>(n));
  }
  return {};
}

Result<size_t> ReadFd(int fd, char* buf, size_t n) {
  for (;;) {
    const ssize_t got = ::read(fd, buf, n);
    if (got >= 0) {
      return static_cast<size_t>(got);
    }
    if (errno != EINTR) {
      return Fail(ErrnoError(errno, "read from the archive pipe"));
    }
  }
}

// TLS endpoints: libcurl pulls the archive from a pipe that a second thread packs into.
Result<Json> UploadTreeThroughCurl(DaemonClient& client, const std::string& local,
                                   const std::string& path, ProgressBar& bar) {
  auto pipe = Pipe::Open();
  if (!pipe) {
    return Fail(pipe.error());
  }
  Result<archive::Stats> packed = archive::Stats{};
  std::atomic<bool> pack_failed{false};
  std::thread packer([&] {
    packed = archive::Pack(local, archive::Compression::kNone,
                           [&](std::string_view b) { return WriteFd(pipe->w.Get(), b); });
    pack_failed = !packed;
    pipe->w.Reset();  // end of the body (or a cut one when packing failed)
  });
  auto sent = client.PostBody(
      path, "application/x-tar",
      [&](char* buf, size_t n) -> Result<size_t> {
        auto got = ReadFd(pipe->r.Get(), buf, n);
        if (got && *got == 0 && pack_failed) {
          // Never end a cut archive as if it were whole.
          return Fail(ErrorCode::kInternal, "packing " + local + " failed");
        }
        return got;
      },
      -1, [&bar](uint64_t b) { bar.Update(b); });
  pipe->r.Reset();  // a packer still writing gets EPIPE and stops
  packer.join();
  bar.Clear();
  if (!packed) {
    return Fail(packed.error());
  }
  return sent;
}

int UploadTree(DaemonClient& client, const std::string& local, const Location& to) {
  std::string target = to.path;
  if (target.empty()) {
    return ReportError("cp: the remote path is empty");
  }
  auto type = RemoteType(client, to.id, target);
  if (!type) {
    return ReportError(type.error());
  }
  if (*type == "directory" || target.back() == '/') {  // into it, as cp -r does
    target = (target.back() == '/' ? target : target + "/") + Base(local);
  }
  auto measured = archive::Measure(local);
  if (!measured) {
    return ReportError(measured.error());
  }
  const std::string path = GuestPath(to.id, "file/archive") + "?path=" + UrlEscape(target);
  ProgressBar bar("upload " + Base(local), measured->bytes);
  Result<Json> sent = Json();
  if (CanPostRaw(client.endpoint())) {
    // Packed straight into the connection, one chunk per ~1 MiB block: no thread, no pipe. A
    // packing error cuts the body and is what `sent` reports, unless the sandbox answered
    // first (then its answer is the one that matters).
    sent = client.PostChunked(
        path, "application/x-tar",
        [&](const DaemonClient::ChunkSink& sink) -> Result<void> {
          auto packed = archive::Pack(local, archive::Compression::kNone, sink);
          return packed ? Result<void>{} : Fail(packed.error());
        },
        [&bar](uint64_t b) { bar.Update(b); });
    bar.Clear();
  } else {
    sent = UploadTreeThroughCurl(client, local, path, bar);
  }
  if (!sent) {
    return ReportError(sent.error());
  }
  std::cout << to.id << ":" << JsonString(*sent, "path") << " ("
            << JsonInt(*sent, "entries").value_or(0) << " entries, "
            << JsonInt(*sent, "bytes").value_or(0) << " bytes)\n";
  return 0;
}

int DownloadTree(DaemonClient& client, const Location& from, const std::string& local) {
  std::string dest = local;
  struct stat st {};
  if (::stat(local.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    dest = (local.back() == '/' ? local : local + "/") + Base(from.path);
  }
  ProgressBar bar("download " + Base(from.path), 0);
  const std::string path = GuestPath(from.id, "file/archive") + "?path=" + UrlEscape(from.path);
  auto on_header = [&bar](const std::string& name, const std::string& value) {
    if (name == "x-agentbox-content-bytes") {
      bar.SetTotal(std::strtoull(value.c_str(), nullptr, 10));
    }
  };
  if (CanPostRaw(client.endpoint())) {
    // Unpacked straight from the connection in this thread: no pipe, no second thread.
    Result<archive::Stats> unpacked = archive::Stats{};
    auto got = client.GetStream(
        path, on_header,
        [&](const DaemonClient::Source& read) -> Result<void> {
          // The sandbox is not trusted: its archive gets every check (archive.h).
          unpacked = archive::Unpack(read, dest, archive::UnpackOptions{});
          return unpacked ? Result<void>{} : Fail(unpacked.error());
        },
        [&bar](uint64_t b) { bar.Update(b); });
    bar.Clear();
    if (!got) {
      return ReportError(got.error());
    }
    std::cout << dest << " (" << unpacked->entries << " entries, " << unpacked->bytes
              << " bytes)\n";
    return 0;
  }
  auto pipe = Pipe::Open();
  if (!pipe) {
    return ReportError(pipe.error());
  }
  Result<archive::Stats> unpacked = archive::Stats{};
  std::thread unpacker([&] {
    // The sandbox is not trusted: its archive gets every check (archive.h).
    unpacked = archive::Unpack([&](char* buf, size_t n) { return ReadFd(pipe->r.Get(), buf, n); },
                               dest, archive::UnpackOptions{});
    pipe->r.Reset();  // a writer still sending gets EPIPE and stops the transfer
  });
  auto got = client.GetBody(
      path, [&](std::string_view b) { return WriteFd(pipe->w.Get(), b); }, on_header,
      [&bar](uint64_t b) { bar.Update(b); });
  pipe->w.Reset();  // end of input for the unpacker
  unpacker.join();
  bar.Clear();
  if (!unpacked) {
    // The unpacker's error explains a transfer it cut short; a failed transfer explains a
    // truncated archive.
    if (!got && unpacked.error().message.find("truncated") != std::string::npos) {
      return ReportError(got.error());
    }
    return ReportError(unpacked.error());
  }
  if (!got) {
    return ReportError(got.error());
  }
  std::cout << dest << " (" << unpacked->entries << " entries, " << unpacked->bytes << " bytes)\n";
  return 0;
}

}  // namespace

int Copy(DaemonClient& client, const std::string& src, const std::string& dst, bool recursive) {
  // Writing into a pipe whose reader stopped must fail with EPIPE, not kill the process.
  ::signal(SIGPIPE, SIG_IGN);
  const Location from = Parse(src);
  const Location to = Parse(dst);
  if (from.remote == to.remote) {
    return ReportError("cp: exactly one of SRC and DST must be ID:PATH (a path in a sandbox)");
  }
  if (!from.remote) {
    struct stat st {};
    if (::stat(src.c_str(), &st) != 0) {
      return ReportError("cannot read '" + src + "': " + std::strerror(errno));
    }
    if (S_ISDIR(st.st_mode)) {
      if (!recursive) {
        return ReportError("cp: '" + src + "' is a directory (use -r)");
      }
      return UploadTree(client, src, to);
    }
    std::string target = to.path;
    if (!target.empty() && target.back() != '/') {
      auto type = RemoteType(client, to.id, target);
      if (!type) {
        return ReportError(type.error());
      }
      if (*type == "directory") {
        target += "/";
      }
    }
    return Upload(client, to.id, src, target);
  }
  auto type = RemoteType(client, from.id, from.path);
  if (!type) {
    return ReportError(type.error());
  }
  if (type->empty()) {
    return ReportError("cp: " + src + " does not exist");
  }
  if (*type == "directory") {
    if (!recursive) {
      return ReportError("cp: " + src + " is a directory (use -r)");
    }
    return DownloadTree(client, from, dst);
  }
  return Download(client, from.id, from.path, dst);
}

}  // namespace agentbox::cli
