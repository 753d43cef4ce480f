#include "http/raw_io.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <boost/beast/http/status.hpp>
#include <cerrno>
#include <cstring>
#include <vector>

#include "common/page_cache_write.h"
#include "common/strings.h"

namespace agentbox::http {

namespace {

constexpr size_t kReadBlock = 1u << 20;

// Waits until `fd` is ready for `events`; kTimeout after `idle`.
Result<void> Wait(int fd, short events, Millis idle) {
  pollfd p{fd, events, 0};
  return PollReady(&p, 1, static_cast<int>(idle.count()), "no progress");
}

Error Gone(int err) {
  return Error{ErrorCode::kUnavailable, std::string("connection closed: ") + std::strerror(err),
               err};
}

bool Again(int err) { return err == EAGAIN || err == EWOULDBLOCK; }

}  // namespace

void WidenSendBuffer(int fd) {
  // 4 MiB in flight instead of the default ~208 KiB: a relay or guest thread that waits for the
  // CPU (a busy machine) then stalls the stream far less. SO_SNDBUFFORCE needs CAP_NET_ADMIN
  // (agentboxd as root); elsewhere SO_SNDBUF gives what net.core.wmem_max allows.
  const int size = 4 << 20;
  if (::setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size)) != 0) {
    ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
  }
}

Result<void> PollReady(pollfd* fds, nfds_t n, int timeout_ms, std::string_view stalled) {
  for (;;) {
    const int ready = ::poll(fds, n, timeout_ms);
    if (ready > 0) {
      return {};
    }
    if (ready == 0) {
      return Fail(ErrorCode::kTimeout,
                  std::string(stalled) + " for " + std::to_string(timeout_ms / 1000) + " s");
    }
    if (errno != EINTR) {
      return Fail(ErrnoError(errno, "poll"));
    }
  }
}

void SetNonBlocking(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0 && !(flags & O_NONBLOCK)) {
    ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  }
}

Result<void> WriteAll(int fd, std::string_view bytes, Millis idle) {
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n >= 0) {
      bytes.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (errno == ENOTSOCK) {  // a pipe or file: its errors are not the peer's
      const ssize_t w = ::write(fd, bytes.data(), bytes.size());
      if (w >= 0) {
        bytes.remove_prefix(static_cast<size_t>(w));
        continue;
      }
      if (errno != EINTR && !Again(errno)) {
        return Fail(ErrnoError(errno, "write"));
      }
    }
    if (errno == EINTR) {
      continue;
    }
    if (!Again(errno)) {
      return Fail(Gone(errno));
    }
    if (auto w = Wait(fd, POLLOUT, idle); !w) {
      return w;
    }
  }
  return {};
}

Result<size_t> ReadSome(int fd, char* buf, size_t n, Millis idle) {
  for (;;) {
    const ssize_t r = ::read(fd, buf, n);
    if (r >= 0) {
      return static_cast<size_t>(r);
    }
    if (errno == EINTR) {
      continue;
    }
    if (!Again(errno)) {
      return Fail(Gone(errno));
    }
    if (auto w = Wait(fd, POLLIN, idle); !w) {
      return Fail(w.error());
    }
  }
}

std::string ResponseHead(const Response& r, int64_t content_length) {
  const auto reason =
      boost::beast::http::obsolete_reason(static_cast<boost::beast::http::status>(r.status));
  std::string h = "HTTP/1.1 " + std::to_string(r.status) + " " + std::string(reason) +
                  "\r\nServer: agentbox\r\n";
  if (!r.content_type.empty()) {
    h += "Content-Type: " + r.content_type + "\r\n";
  }
  for (const auto& [k, v] : r.headers) {
    h += k + ": " + v + "\r\n";
  }
  if (content_length >= 0) {
    h += "Content-Length: " + std::to_string(content_length) + "\r\n";
  } else if (content_length == -2) {
    h += "Transfer-Encoding: chunked\r\n";
  }
  h += "Connection: close\r\n\r\n";
  return h;
}

Result<void> WriteResponse(int fd, const Response& r, Millis idle) {
  return WriteAll(fd, ResponseHead(r, static_cast<int64_t>(r.body.size())) + r.body, idle);
}

void DrainBeforeClose(int fd) {
  ::shutdown(fd, SHUT_WR);
  // What the client still sends (the rest of a body the answer refused) is read and dropped
  // before the close: closing with unread bytes resets the connection, and a client still
  // sending then fails its send before it reads the answer (curl then reports the 100 Continue
  // as the final status). Until the client stops (end of stream), falls silent for 2 s, has sent
  // 64 MiB more, or 30 s have passed.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  std::vector<char> sink(65536);
  for (uint64_t total = 0; total < (64u << 20);) {
    const auto left = std::min<Millis>(
        std::chrono::seconds(2),
        std::chrono::duration_cast<Millis>(until - std::chrono::steady_clock::now()));
    if (left.count() <= 0) {
      return;
    }
    auto n = ReadSome(fd, sink.data(), sink.size(), left);
    if (!n || *n == 0) {
      return;
    }
    total += *n;
  }
}

void AnswerAndClose(int fd, const Response& r, Millis idle) {
  if (!WriteResponse(fd, r, idle)) {
    return;
  }
  DrainBeforeClose(fd);
}

// ---- BodyReader

Result<BodyReader> BodyReader::ForRequest(const Request& req, int fd, std::string buffered,
                                          uint64_t limit, Millis idle) {
  BodyReader b;
  b.fd_ = fd;
  b.idle_ = idle;
  b.limit_ = limit;
  b.buf_ = std::move(buffered);
  b.buf_.reserve(kReadBlock);
  const std::string te = AsciiLower(req.Header("transfer-encoding"));
  const std::string cl = req.Header("content-length");
  if (te.find("chunked") != std::string::npos) {
    b.chunked_ = true;
  } else if (!cl.empty()) {
    uint64_t n = 0;
    for (char c : cl) {
      if (c < '0' || c > '9' || n > (UINT64_MAX - 9) / 10) {
        return Fail(ErrorCode::kInvalidArgument, "invalid Content-Length '" + cl + "'");
      }
      n = n * 10 + static_cast<uint64_t>(c - '0');
    }
    if (n > limit) {
      return Fail(ErrorCode::kTooLarge,
                  "request body too large: " + cl + " bytes (limit " + std::to_string(limit) + ")");
    }
    b.left_ = n;
    b.done_ = n == 0;
  } else {
    b.done_ = true;
  }
  if (AsciiLower(req.Header("expect")) == "100-continue" && !b.done_) {
    if (auto w = WriteAll(fd, "HTTP/1.1 100 Continue\r\n\r\n", idle); !w) {
      return Fail(w.error());
    }
  }
  return b;
}

Result<void> BodyReader::Fill() {
  if (pos_ > 0) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  const size_t have = buf_.size();
  buf_.resize(have + 65536);
  auto n = ReadSome(fd_, buf_.data() + have, 65536, idle_);
  buf_.resize(have + (n ? *n : 0));
  if (!n) {
    return Fail(n.error());
  }
  if (*n == 0) {
    return Fail(ErrorCode::kUnavailable, "the client went away before the end of the body");
  }
  return {};
}

Result<void> BodyReader::Count(uint64_t n) {
  consumed_ += n;
  if (consumed_ > limit_) {
    return Fail(ErrorCode::kTooLarge,
                "request body too large (limit " + std::to_string(limit_) + " bytes)");
  }
  return {};
}

Result<void> BodyReader::NextChunk() {
  if (done_ || !chunked_ || left_ > 0) {
    return {};
  }
  // After a chunk's data: its CRLF. Then "HEX[;ext]\r\n".
  auto line = [this]() -> Result<std::string> {
    for (;;) {
      const size_t eol = buf_.find("\r\n", pos_);
      if (eol != std::string::npos) {
        std::string l = buf_.substr(pos_, eol - pos_);
        pos_ = eol + 2;
        return l;
      }
      if (buf_.size() - pos_ > 4096) {
        return Fail(ErrorCode::kInvalidArgument, "malformed chunked body (line too long)");
      }
      if (auto f = Fill(); !f) {
        return Fail(f.error());
      }
    }
  };
  if (chunk_open_) {
    auto crlf = line();
    if (!crlf) {
      return Fail(crlf.error());
    }
    if (!crlf->empty()) {
      return Fail(ErrorCode::kInvalidArgument, "malformed chunked body (no CRLF after data)");
    }
    chunk_open_ = false;
  }
  auto size_line = line();
  if (!size_line) {
    return Fail(size_line.error());
  }
  uint64_t n = 0;
  size_t digits = 0;
  for (char c : *size_line) {
    int v = -1;
    if (c >= '0' && c <= '9') {
      v = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      v = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      v = c - 'A' + 10;
    } else if (c == ';' || c == ' ' || c == '\t') {
      break;
    } else {
      return Fail(ErrorCode::kInvalidArgument, "malformed chunked body (bad chunk size)");
    }
    if (++digits > 15) {
      return Fail(ErrorCode::kInvalidArgument, "malformed chunked body (chunk too large)");
    }
    n = n * 16 + static_cast<uint64_t>(v);
  }
  if (digits == 0) {
    return Fail(ErrorCode::kInvalidArgument, "malformed chunked body (empty chunk size)");
  }
  if (n == 0) {
    // Trailer fields, then an empty line.
    for (;;) {
      auto t = line();
      if (!t) {
        return Fail(t.error());
      }
      if (t->empty()) {
        break;
      }
    }
    done_ = true;
    return {};
  }
  left_ = n;
  chunk_open_ = true;
  return {};
}

Result<size_t> BodyReader::Read(char* out, size_t n) {
  if (auto c = NextChunk(); !c) {
    return Fail(c.error());
  }
  if (done_ || n == 0) {
    return 0;
  }
  const size_t want = static_cast<size_t>(std::min<uint64_t>(n, left_));
  size_t got = 0;
  if (pos_ < buf_.size()) {
    got = std::min(want, buf_.size() - pos_);
    std::memcpy(out, buf_.data() + pos_, got);
    pos_ += got;
  } else {
    auto r = ReadSome(fd_, out, want, idle_);
    if (!r) {
      return Fail(r.error());
    }
    if (*r == 0) {
      return Fail(ErrorCode::kUnavailable, "the client went away before the end of the body");
    }
    got = *r;
  }
  left_ -= got;
  if (!chunked_ && left_ == 0) {
    done_ = true;
  }
  if (auto c = Count(got); !c) {
    return Fail(c.error());
  }
  return got;
}

Result<uint64_t> BodyReader::CopyTo(int out) {
  const uint64_t start = consumed_;
  std::optional<SplicePipe> pipe;
  for (;;) {
    if (auto c = NextChunk(); !c) {
      return Fail(c.error());
    }
    if (done_) {
      return consumed_ - start;
    }
    if (pos_ < buf_.size()) {  // already in user space
      const size_t n = static_cast<size_t>(
          std::min<uint64_t>({left_, buf_.size() - pos_, kPageCacheWriteBlock}));
      if (auto w = WriteAll(out, std::string_view(buf_).substr(pos_, n), idle_); !w) {
        return Fail(w.error());
      }
      pos_ += n;
      left_ -= n;
      if (!chunked_ && left_ == 0) {
        done_ = true;
      }
      if (auto c = Count(n); !c) {
        return Fail(c.error());
      }
      continue;
    }
    if (!pipe) {
      auto p = SplicePipe::Open();
      if (!p) {
        return Fail(p.error());
      }
      pipe.emplace(std::move(*p));
    }
    const size_t want = static_cast<size_t>(std::min<uint64_t>(left_, pipe->capacity));
    const ssize_t in =
        ::splice(fd_, nullptr, pipe->w.Get(), nullptr, want, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (in < 0) {
      if (errno == EINTR) {
        continue;
      }
      if (!Again(errno)) {
        return Fail(Gone(errno));
      }
      if (auto w = Wait(fd_, POLLIN, idle_); !w) {
        return Fail(w.error());
      }
      continue;
    }
    if (in == 0) {
      return Fail(ErrorCode::kUnavailable, "the client went away before the end of the body");
    }
    size_t pending = static_cast<size_t>(in);
    while (pending > 0) {
      // At most 64 KiB per splice: small page-cache folios (common/page_cache_write.h).
      const ssize_t o = ::splice(pipe->r.Get(), nullptr, out, nullptr,
                                 std::min(pending, kPageCacheWriteBlock), SPLICE_F_MOVE);
      if (o < 0) {
        if (errno == EINTR) {
          continue;
        }
        if (Again(errno)) {
          if (auto w = Wait(out, POLLOUT, idle_); !w) {
            return Fail(w.error());
          }
          continue;
        }
        return Fail(ErrnoError(errno, "write"));
      }
      pending -= static_cast<size_t>(o);
    }
    left_ -= static_cast<uint64_t>(in);
    if (!chunked_ && left_ == 0) {
      done_ = true;
    }
    if (auto c = Count(static_cast<uint64_t>(in)); !c) {
      return Fail(c.error());
    }
  }
}

// ---- ChunkedWriter

Result<void> ChunkedWriter::Write(std::string_view bytes) {
  if (bytes.empty()) {
    return {};
  }
  char size[24];
  const int len = std::snprintf(size, sizeof(size), "%zx\r\n", bytes.size());
  iovec iov[3] = {{size, static_cast<size_t>(len)},
                  {const_cast<char*>(bytes.data()), bytes.size()},
                  {const_cast<char*>("\r\n"), 2}};
  size_t total = static_cast<size_t>(len) + bytes.size() + 2;
  int first = 0;
  while (total > 0) {
    const ssize_t n = ::writev(fd_, iov + first, 3 - first);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      if (!Again(errno)) {
        return Fail(Gone(errno));
      }
      if (auto w = Wait(fd_, POLLOUT, idle_); !w) {
        return w;
      }
      continue;
    }
    total -= static_cast<size_t>(n);
    size_t done = static_cast<size_t>(n);
    while (first < 3 && done >= iov[first].iov_len) {
      done -= iov[first].iov_len;
      ++first;
    }
    if (first < 3) {
      iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + done;
      iov[first].iov_len -= done;
    }
  }
  return {};
}

Result<void> ChunkedWriter::End() { return WriteAll(fd_, "0\r\n\r\n", idle_); }

// ---- SendFile

Result<void> SendFile(int sock, int file, uint64_t size, Millis idle) {
  off_t off = 0;
  while (static_cast<uint64_t>(off) < size) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(size - off, 16u << 20));
    const ssize_t n = ::sendfile(sock, file, &off, want);
    if (n > 0) {
      continue;
    }
    if (n == 0) {
      return Fail(ErrorCode::kInternal, "file shrank while it was being sent");
    }
    if (errno == EINTR) {
      continue;
    }
    if (!Again(errno)) {
      return Fail(Gone(errno));
    }
    if (auto w = Wait(sock, POLLOUT, idle); !w) {
      return w;
    }
  }
  return {};
}

Result<SplicePipe> SplicePipe::Open(int size) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) {
    return Fail(ErrnoError(errno, "pipe"));
  }
  SplicePipe p;
  p.r.Reset(fds[0]);
  p.w.Reset(fds[1]);
  // As large as asked, or as an unprivileged process may ask (fs.pipe-max-size, 1 MiB by
  // default).
  for (int want : {size, std::min(size, 256 << 10)}) {
    const int got = ::fcntl(fds[1], F_SETPIPE_SZ, want);
    if (got > 0) {
      p.capacity = static_cast<size_t>(got);
      break;
    }
  }
  return p;
}

// ---- Proxy

namespace {

// One direction of the proxy: from -> pipe -> to.
struct Lane {
  int from = -1;
  int to = -1;
  SplicePipe pipe;
  size_t in_pipe = 0;
  bool eof = false;  // `from` ended
  uint64_t moved = 0;

  Result<void> Pull() {
    if (in_pipe >= pipe.capacity) {
      return {};  // a zero-length splice would read as the end of the stream
    }
    const ssize_t n = ::splice(from, nullptr, pipe.w.Get(), nullptr, pipe.capacity - in_pipe,
                               SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n > 0) {
      in_pipe += static_cast<size_t>(n);
    } else if (n == 0) {
      eof = true;
    } else if (errno != EINTR && !Again(errno)) {
      return Fail(Gone(errno));
    }
    return {};
  }
  Result<void> Push() {
    if (in_pipe == 0) {
      return {};
    }
    const ssize_t n =
        ::splice(pipe.r.Get(), nullptr, to, nullptr, in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n > 0) {
      in_pipe -= static_cast<size_t>(n);
      moved += static_cast<uint64_t>(n);
    } else if (n < 0 && errno != EINTR && !Again(errno)) {
      return Fail(Gone(errno));
    }
    return {};
  }
};

}  // namespace

Result<ProxyResult> Proxy(int client, int upstream, Millis idle,
                          const std::function<void(int status)>& on_head) {
  SetNonBlocking(client);
  SetNonBlocking(upstream);
  // Downloads: up to 4 MiB waiting for the client (which copies what it reads anyway), so a
  // relay thread that waits for the CPU stalls the stream less. Uploads: the upstream's default
  // send buffer and a 256 KiB pipe, because the guest copies every byte into its page cache and
  // that copy ran up to 4x slower with more in flight (measured: the guest's CPU time per
  // 256 MiB). Much of that was later traced to large page-cache folios landing on memory the
  // host had taken back (common/page_cache_write.h, docs/benchmarks.md); whether larger
  // buffers pay off now is still to be measured on a quiet machine.
  WidenSendBuffer(client);
  auto p1 = SplicePipe::Open(256 << 10);
  auto p2 = SplicePipe::Open();
  if (!p1 || !p2) {
    return Fail(p1 ? p2.error() : p1.error());
  }
  Lane up{client, upstream, std::move(*p1)};
  Lane down{upstream, client, std::move(*p2)};
  ProxyResult result;
  // The response head is read into user space first, to learn the status.
  std::string head;
  bool head_done = false;
  bool up_closed = false;  // stopped sending to upstream (it closed, or the client ended)
  for (;;) {
    if (down.eof && down.in_pipe == 0 && head_done) {
      break;
    }
    pollfd p[2] = {{client, 0, 0}, {upstream, 0, 0}};
    if (!up.eof && !up_closed && up.in_pipe < up.pipe.capacity) {
      p[0].events |= POLLIN;
    }
    if (down.in_pipe > 0) {
      p[0].events |= POLLOUT;
    }
    if (!down.eof && down.in_pipe < down.pipe.capacity) {
      p[1].events |= POLLIN;
    }
    if (up.in_pipe > 0 && !up_closed) {
      p[1].events |= POLLOUT;
    }
    if (auto r = PollReady(p, 2, static_cast<int>(idle.count()), "no progress"); !r) {
      return Fail(r.error());
    }
    // The client's side: a failure here means it went away; stop at once.
    if (p[0].revents & (POLLERR | POLLNVAL)) {
      return Fail(ErrorCode::kUnavailable, "the client went away");
    }
    if (p[0].revents & (POLLIN | POLLHUP)) {
      if (up.eof || up_closed) {
        return Fail(ErrorCode::kUnavailable, "the client went away");
      }
      if (auto r = up.Pull(); !r) {
        return Fail(r.error());
      }
      if (up.eof && up.in_pipe == 0 && !up_closed) {
        ::shutdown(upstream, SHUT_WR);
        up_closed = true;
      }
    }
    if (p[0].revents & POLLOUT) {
      if (auto r = down.Push(); !r) {
        return Fail(r.error());
      }
    }
    if (p[1].revents & POLLOUT) {
      if (auto r = up.Push(); !r) {
        // The upstream stopped reading (it answered early, e.g. an error): its answer follows.
        up_closed = true;
      } else if (up.eof && up.in_pipe == 0) {
        ::shutdown(upstream, SHUT_WR);
        up_closed = true;
      }
    }
    if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) {
      if (!head_done) {
        char buf[16384];
        const ssize_t r = ::read(upstream, buf, sizeof(buf));
        if (r == 0 || (r < 0 && errno != EINTR && !Again(errno))) {
          return Fail(ErrorCode::kUnavailable, "the guest closed the connection without answering");
        }
        if (r > 0) {
          head.append(buf, static_cast<size_t>(r));
          if (head.size() > 65536 && head.find("\r\n\r\n") == std::string::npos) {
            return Fail(ErrorCode::kUnavailable, "the guest's response head is too large");
          }
          if (const size_t end = head.find("\r\n\r\n"); end != std::string::npos) {
            // "HTTP/1.1 200 OK"
            if (head.size() >= 12 && head.starts_with("HTTP/1.")) {
              result.status = std::atoi(head.c_str() + 9);
            }
            if (on_head) {
              on_head(result.status);
            }
            head_done = true;
            if (auto w = WriteAll(client, head, idle); !w) {
              return Fail(w.error());
            }
            down.moved += head.size();
          }
        }
      } else if (!down.eof) {
        if (auto r = down.Pull(); !r) {
          return Fail(r.error());
        }
      }
    }
  }
  result.to_upstream = up.moved;
  result.to_client = down.moved;
  return result;
}

}  // namespace agentbox::http

namespace agentbox::http {

Result<UniqueFd> ConnectUnixNoFollow(const std::string& path) {
  UniqueFd path_fd(::open(path.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  struct stat st {};
  if (!path_fd || ::fstat(path_fd.Get(), &st) != 0) {
    return Fail(ErrorCode::kUnavailable,
                "cannot reach guest at " + path + ": " + std::strerror(errno));
  }
  if (!S_ISSOCK(st.st_mode)) {
    return Fail(ErrorCode::kForbidden, path + " is not a socket (refusing to follow it)");
  }
  const std::string via = "/proc/self/fd/" + std::to_string(path_fd.Get());
  UniqueFd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s) {
    return Fail(ErrnoError(errno, "socket"));
  }
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", via.c_str());
  for (;;) {
    if (::connect(s.Get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
      break;
    }
    if (errno != EINTR) {
      return Fail(ErrorCode::kUnavailable,
                  "cannot reach guest at " + path + ": " + std::strerror(errno));
    }
  }
  SetNonBlocking(s.Get());
  return s;
}

}  // namespace agentbox::http
