#include "cli/raw_post.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <iostream>
#include <optional>
#include <vector>

#include "cli/format.h"
#include "cli/interrupt.h"
#include "common/json_util.h"

namespace agentbox::cli {

namespace {

constexpr auto kIdle = std::chrono::minutes(5);
constexpr int kPollMs = 200;
constexpr size_t kMaxResponse = 4u << 20;
// Blocks of a file upload. Read and sent by this process, rather than sendfile(2) from the
// page cache: the guest copies every byte into its own page cache, and that copy ran 2-4x
// slower on bytes the CPU had not touched for a while (sendfile's pages) than on bytes this
// process had just copied; with small blocks and the socket's default buffer the bytes are
// still in cache when the guest copies them (docs/benchmarks.md; much of that difference was
// later traced to large page-cache folios on memory the host had taken back, now avoided by the
// guest's 64 KiB writes: common/page_cache_write.h).
constexpr size_t kSendBlock = 256u << 10;

bool Again(int err) { return err == EAGAIN || err == EWOULDBLOCK; }

struct Target {
  std::string host;
  std::string port = "80";
  std::string prefix;  // a path the base URL carries, put before every request path
};

// "http://HOST[:PORT][/PREFIX]"; IPv6 hosts in brackets.
Result<Target> ParseHttpUrl(const std::string& url) {
  constexpr std::string_view kScheme = "http://";
  if (!url.starts_with(kScheme)) {
    return Fail(ErrorCode::kInvalidArgument, "not an http:// URL: " + url);
  }
  std::string rest = url.substr(kScheme.size());
  Target t;
  if (const size_t slash = rest.find('/'); slash != std::string::npos) {
    t.prefix = rest.substr(slash);
    rest.resize(slash);
  }
  if (rest.starts_with("[")) {
    const size_t close = rest.find(']');
    if (close == std::string::npos) {
      return Fail(ErrorCode::kInvalidArgument, "invalid agentboxd address '" + url + "'");
    }
    t.host = rest.substr(1, close - 1);
    if (close + 1 < rest.size() && rest[close + 1] == ':') {
      t.port = rest.substr(close + 2);
    }
  } else if (const size_t colon = rest.rfind(':'); colon != std::string::npos) {
    t.host = rest.substr(0, colon);
    t.port = rest.substr(colon + 1);
  } else {
    t.host = rest;
  }
  if (t.host.empty() || t.port.empty()) {
    return Fail(ErrorCode::kInvalidArgument, "invalid agentboxd address '" + url + "'");
  }
  return t;
}

Error Unreachable(const Endpoint& ep, const std::string& why) {
  return Error{ErrorCode::kUnavailable, "cannot reach agentboxd at " + ep.Describe() + ": " + why};
}

// Connects without blocking past kIdle; returns a non-blocking socket.
Result<UniqueFd> ConnectTo(const sockaddr* addr, socklen_t len, int family) {
  UniqueFd s(::socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!s) {
    return Fail(ErrnoError(errno, "socket"));
  }
  if (::connect(s.Get(), addr, len) != 0) {
    if (errno != EINPROGRESS && errno != EAGAIN) {
      return Fail(Error{ErrorCode::kUnavailable, std::strerror(errno), errno});
    }
    pollfd p{s.Get(), POLLOUT, 0};
    if (::poll(&p, 1, 10000) <= 0) {
      return Fail(Error{ErrorCode::kUnavailable, "connection timed out", ETIMEDOUT});
    }
    int err = 0;
    socklen_t el = sizeof(err);
    ::getsockopt(s.Get(), SOL_SOCKET, SO_ERROR, &err, &el);
    if (err != 0) {
      return Fail(Error{ErrorCode::kUnavailable, std::strerror(err), err});
    }
  }
  return s;
}

Result<UniqueFd> Connect(const Endpoint& ep, Target* target) {
  if (ep.base_url.empty()) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (ep.unix_socket.size() >= sizeof(addr.sun_path)) {
      return Fail(Unreachable(ep, "socket path too long"));
    }
    std::memcpy(addr.sun_path, ep.unix_socket.c_str(), ep.unix_socket.size() + 1);
    auto s = ConnectTo(reinterpret_cast<sockaddr*>(&addr), sizeof(addr), AF_UNIX);
    if (!s) {
      return Fail(Unreachable(ep, s.error().message));
    }
    return s;
  }
  auto t = ParseHttpUrl(ep.base_url);
  if (!t) {
    return Fail(t.error());
  }
  *target = *t;
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (const int rc = ::getaddrinfo(t->host.c_str(), t->port.c_str(), &hints, &res); rc != 0) {
    return Fail(Unreachable(ep, ::gai_strerror(rc)));
  }
  std::string last = "no address";
  for (addrinfo* a = res; a; a = a->ai_next) {
    auto s = ConnectTo(a->ai_addr, a->ai_addrlen, a->ai_family);
    if (s) {
      ::freeaddrinfo(res);
      return s;
    }
    last = s.error().message;
  }
  ::freeaddrinfo(res);
  return Fail(Unreachable(ep, last));
}

}  // namespace

bool CanPostRaw(const Endpoint& ep) {
  return ep.base_url.empty() || ep.base_url.starts_with("http://");
}

Result<RawPost> RawPost::Open(const Endpoint& ep, const std::string& method,
                              const std::string& path, const std::string& content_type,
                              int64_t length) {
  // A daemon that answers early and closes must be an error (EPIPE), not the end of the
  // process (send() has MSG_NOSIGNAL, but the caller may write elsewhere too).
  ::signal(SIGPIPE, SIG_IGN);
  Target target;
  auto s = Connect(ep, &target);
  if (!s) {
    return Fail(s.error());
  }
  std::string head = method + " " + target.prefix + path +
                     " HTTP/1.1\r\nHost: " + (target.host.empty() ? "agentboxd" : target.host) +
                     "\r\nUser-Agent: agentbox-cli/0.1\r\n";
  if (!content_type.empty()) {
    head += "Content-Type: " + content_type + "\r\n";
  }
  if (!ep.api_key.empty()) {
    head += "Authorization: Bearer " + ep.api_key + "\r\n";
  }
  if (length > 0 || (length == 0 && method != "GET")) {
    head += "Content-Length: " + std::to_string(length) + "\r\n";
  } else if (length < 0) {
    head += "Transfer-Encoding: chunked\r\n";
  }
  head += "Connection: close\r\n\r\n";
  RawPost post(std::move(*s), ep.Describe());
  if (auto w = post.WriteAll(head); !w) {
    return Fail(w.error());
  }
  return post;
}

Result<void> RawPost::WaitFor(short events) {
  const auto until = std::chrono::steady_clock::now() + kIdle;
  for (;;) {
    if (InterruptPending()) {
      return Fail(ErrorCode::kUnavailable, "interrupted");
    }
    pollfd p{fd_.Get(), events, 0};
    const int n = ::poll(&p, 1, kPollMs);
    if (n > 0) {
      return {};
    }
    if (n < 0 && errno != EINTR) {
      return Fail(ErrnoError(errno, "poll"));
    }
    if (std::chrono::steady_clock::now() > until) {
      return Fail(ErrorCode::kUnavailable,
                  "request to agentboxd at " + describe_ + " failed: no progress for 5 minutes");
    }
  }
}

Result<void> RawPost::WriteAll(std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd_.Get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n >= 0) {
      bytes.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (errno == EINTR) {
      continue;
    }
    if (!Again(errno)) {
      return Fail(Error{ErrorCode::kUnavailable,
                        "request to agentboxd at " + describe_ + " failed: " + std::strerror(errno),
                        errno});
    }
    if (auto w = WaitFor(POLLOUT); !w) {
      return w;
    }
  }
  return {};
}

Result<void> RawPost::SendFrom(int fd, uint64_t size, const Progress& progress) {
  std::vector<char> buf(kSendBlock);
  uint64_t left = size;
  uint64_t reported = 0;
  while (left > 0) {
    const ssize_t n = ::read(fd, buf.data(), std::min<uint64_t>(left, buf.size()));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return Fail(ErrnoError(errno, "read the file to upload"));
    }
    if (n == 0) {
      return Fail(ErrorCode::kInternal, "the file shrank while it was being sent");
    }
    if (auto w = WriteAll(std::string_view(buf.data(), static_cast<size_t>(n))); !w) {
      return w;
    }
    left -= static_cast<uint64_t>(n);
    sent_ += static_cast<uint64_t>(n);
    if (progress && (sent_ - reported >= (4u << 20) || left == 0)) {
      reported = sent_;
      progress(sent_);
    }
  }
  return {};
}

Result<void> RawPost::WriteChunk(std::string_view bytes) {
  if (bytes.empty()) {
    return {};
  }
  char size[24];
  const int len = std::snprintf(size, sizeof(size), "%zx\r\n", bytes.size());
  // Small chunks are joined with their framing; large ones go as they are, between two writes.
  if (bytes.size() <= 65536) {
    std::string chunk;
    chunk.reserve(static_cast<size_t>(len) + bytes.size() + 2);
    chunk.append(size, static_cast<size_t>(len)).append(bytes).append("\r\n");
    if (auto w = WriteAll(chunk); !w) {
      return w;
    }
  } else if (auto w1 = WriteAll(std::string_view(size, static_cast<size_t>(len))); !w1) {
    return w1;
  } else if (auto w2 = WriteAll(bytes); !w2) {
    return w2;
  } else if (auto w3 = WriteAll("\r\n"); !w3) {
    return w3;
  }
  sent_ += bytes.size();
  return {};
}

Result<size_t> RawPost::Recv(char* buf, size_t n) {
  for (;;) {
    const ssize_t got = ::recv(fd_.Get(), buf, n, 0);
    if (got >= 0) {
      return static_cast<size_t>(got);
    }
    if (errno == EINTR) {
      continue;
    }
    if (!Again(errno)) {
      return Fail(Error{ErrorCode::kUnavailable,
                        "request to agentboxd at " + describe_ + " failed: " + std::strerror(errno),
                        errno});
    }
    if (auto w = WaitFor(POLLIN); !w) {
      return Fail(w.error());
    }
  }
}

Result<bool> RawPost::Fill() {
  if (pos_ > 0) {
    in_.erase(0, pos_);
    pos_ = 0;
  }
  const size_t have = in_.size();
  in_.resize(have + 65536);
  auto n = Recv(in_.data() + have, 65536);
  in_.resize(have + (n ? *n : 0));
  if (!n) {
    return Fail(n.error());
  }
  return *n > 0;
}

Result<Reply> RawPost::ReadHead() {
  size_t end = std::string::npos;
  while ((end = in_.find("\r\n\r\n")) == std::string::npos) {
    if (in_.size() > 65536) {
      return Fail(ErrorCode::kUnavailable, "agentboxd's response head is over 64 KiB");
    }
    auto more = Fill();
    if (!more && (more.error().sys_errno != ECONNRESET || in_.empty())) {
      return Fail(more.error());
    }
    if (!more || !*more) {
      break;
    }
  }
  if (end == std::string::npos || !in_.starts_with("HTTP/1.") || in_.size() < 12) {
    return Fail(ErrorCode::kUnavailable, "request to agentboxd at " + describe_ +
                                             " failed: the connection ended without an answer");
  }
  Reply r;
  r.status = std::strtol(in_.c_str() + 9, nullptr, 10);
  size_t pos = in_.find("\r\n") + 2;
  while (pos < end) {
    const size_t eol = in_.find("\r\n", pos);
    const std::string line = in_.substr(pos, eol - pos);
    pos = eol + 2;
    const size_t colon = line.find(':');
    if (colon == std::string::npos) {
      continue;
    }
    std::string name = line.substr(0, colon);
    for (auto& ch : name) {
      ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    }
    std::string value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) {
      value.erase(0, 1);
    }
    while (!value.empty() && value.back() == ' ') {
      value.pop_back();
    }
    if (name == "transfer-encoding") {
      chunked_ = strcasestr(value.c_str(), "chunked") != nullptr;
    } else if (name == "content-length") {
      left_ = std::strtoull(value.c_str(), nullptr, 10);
      sized_ = true;
    } else if (name == "warning") {
      std::cerr << "agentbox: warning: " << WarningText(value) << "\n";
    }
    headers_.emplace_back(std::move(name), std::move(value));
  }
  pos_ = end + 4;
  body_done_ = !chunked_ && sized_ && left_ == 0;
  return r;
}

Result<size_t> RawPost::ReadBody(char* out, size_t n) {
  if (body_done_ || n == 0) {
    return 0;
  }
  if (chunked_ && left_ == 0) {
    // After a chunk's data its CRLF, then "HEX[;ext]\r\n"; a zero size ends the body.
    auto line = [this]() -> Result<std::string> {
      for (;;) {
        if (const size_t eol = in_.find("\r\n", pos_); eol != std::string::npos) {
          std::string l = in_.substr(pos_, eol - pos_);
          pos_ = eol + 2;
          return l;
        }
        if (in_.size() - pos_ > 4096) {
          return Fail(ErrorCode::kUnavailable, "malformed chunked answer from agentboxd");
        }
        auto more = Fill();
        if (!more) {
          return Fail(more.error());
        }
        if (!*more) {
          return Fail(ErrorCode::kUnavailable, "agentboxd's answer ended in the middle");
        }
      }
    };
    if (in_chunk_) {
      auto crlf = line();
      if (!crlf) {
        return Fail(crlf.error());
      }
      in_chunk_ = false;
    }
    auto size = line();
    if (!size) {
      return Fail(size.error());
    }
    char* end = nullptr;
    left_ = std::strtoull(size->c_str(), &end, 16);
    if (end == size->c_str()) {
      return Fail(ErrorCode::kUnavailable, "malformed chunked answer from agentboxd");
    }
    if (left_ == 0) {
      body_done_ = true;
      return 0;
    }
    in_chunk_ = true;
  }
  size_t want = n;
  if (chunked_ || sized_) {
    want = static_cast<size_t>(std::min<uint64_t>(want, left_));
  }
  size_t got = 0;
  if (pos_ < in_.size()) {
    got = std::min(want, in_.size() - pos_);
    std::memcpy(out, in_.data() + pos_, got);
    pos_ += got;
  } else {
    auto r = Recv(out, want);
    if (!r) {
      return Fail(r.error());
    }
    got = *r;
    if (got == 0) {
      if (chunked_ || sized_) {
        return Fail(ErrorCode::kUnavailable, "agentboxd's answer ended in the middle");
      }
      body_done_ = true;
      return 0;
    }
  }
  if (chunked_ || sized_) {
    left_ -= got;
    body_done_ = sized_ && left_ == 0;
  }
  return got;
}

Result<Reply> RawPost::Finish(bool end_chunked) {
  if (end_chunked) {
    static_cast<void>(WriteAll("0\r\n\r\n"));  // a failure shows in the (missing) answer
  }
  auto r = ReadHead();
  if (!r) {
    return r;
  }
  return ReadRest(std::move(*r));
}

Result<Reply> RawPost::ReadRest(Reply reply) {
  auto r = &reply;
  char buf[65536];
  for (;;) {
    auto n = ReadBody(buf, sizeof(buf));
    if (!n) {
      if (n.error().sys_errno == ECONNRESET && !r->body.empty()) {
        break;  // the answer arrived before the reset
      }
      return Fail(n.error());
    }
    if (*n == 0) {
      break;
    }
    if (r->body.size() + *n > kMaxResponse) {
      return Fail(ErrorCode::kUnavailable, "agentboxd's answer is over 4 MiB");
    }
    r->body.append(buf, *n);
  }
  r->envelope = ParseUntrustedJson(r->body);
  if (r->envelope.is_discarded()) {
    r->envelope = nullptr;
  }
  return reply;
}

Result<Reply> RawPostFile(const Endpoint& ep, const std::string& path,
                          const std::string& content_type, int fd, uint64_t size,
                          const DaemonClient::Progress& progress) {
  auto post = RawPost::Open(ep, "POST", path, content_type, static_cast<int64_t>(size));
  if (!post) {
    return Fail(post.error());
  }
  auto sent = post->SendFrom(fd, size, progress);
  auto reply = post->Finish(false);
  if (!sent && (!reply || reply->ok() || InterruptPending())) {
    return Fail(sent.error());
  }
  return reply;
}

Result<Reply> RawPostChunked(const Endpoint& ep, const std::string& path,
                             const std::string& content_type,
                             const std::function<Result<void>(const ChunkSink&)>& produce,
                             const DaemonClient::Progress& progress) {
  auto post = RawPost::Open(ep, "POST", path, content_type, -1);
  if (!post) {
    return Fail(post.error());
  }
  uint64_t reported = 0;
  std::optional<Error> send_error;
  auto produced = produce([&](std::string_view bytes) -> Result<void> {
    if (auto w = post->WriteChunk(bytes); !w) {
      send_error = w.error();
      return w;
    }
    if (progress && post->sent() - reported >= (1u << 20)) {
      reported = post->sent();
      progress(reported);
    }
    return {};
  });
  if (!produced && !send_error) {
    // Never end a cut body as if it were whole: the connection closes without the last chunk.
    return Fail(produced.error());
  }
  auto reply = post->Finish(produced.has_value());
  if (!produced && (!reply || reply->ok() || InterruptPending())) {
    return Fail(produced.error());
  }
  return reply;
}

}  // namespace agentbox::cli

namespace agentbox::cli {

Result<Reply> RawGetStream(const Endpoint& ep, const std::string& path, const HeaderFn& on_header,
                           const std::function<Result<void>(const BodySource&)>& consume,
                           const DaemonClient::Progress& progress) {
  auto get = RawPost::Open(ep, "GET", path, "", 0);
  if (!get) {
    return Fail(get.error());
  }
  auto head = get->ReadHead();
  if (!head) {
    return head;
  }
  if (!head->ok()) {
    return get->ReadRest(std::move(*head));  // the error envelope
  }
  if (on_header) {
    for (const auto& [name, value] : get->headers()) {
      on_header(name, value);
    }
  }
  uint64_t got = 0;
  uint64_t reported = 0;
  auto consumed = consume([&](char* buf, size_t n) -> Result<size_t> {
    auto r = get->ReadBody(buf, n);
    if (r && progress) {
      got += *r;
      if (got - reported >= (1u << 20)) {
        reported = got;
        progress(got);
      }
    }
    return r;
  });
  if (!consumed) {
    return Fail(consumed.error());
  }
  return *head;
}

}  // namespace agentbox::cli
