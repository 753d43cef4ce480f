#include "guest/port_api.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/log.h"
#include "common/strings.h"
#include "http/byte_pipe.h"
#include "http/envelope.h"
#include "http/raw_io.h"

namespace agentbox::guest {

namespace {

constexpr http::Millis kAnswerIdle{std::chrono::seconds(10)};
constexpr int kConnectTimeoutMs = 10000;

// 1..65535 in plain digits, or 0.
int ParsePort(const std::string& s) {
  if (s.empty() || s.size() > 5) {
    return 0;
  }
  int port = 0;
  for (char c : s) {
    if (c < '0' || c > '9') {
      return 0;
    }
    port = port * 10 + (c - '0');
  }
  return port <= 65535 ? port : 0;
}

// Connects to `port` on the loopback address of `family`: the socket, or the errno.
Result<UniqueFd> ConnectLoopback(int family, int port) {
  UniqueFd s(::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!s.Valid()) {
    return Fail(ErrnoError(errno, "socket"));
  }
  sockaddr_storage addr{};
  socklen_t len = 0;
  if (family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&addr);
    a->sin_family = AF_INET;
    a->sin_port = htons(static_cast<uint16_t>(port));
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    len = sizeof(*a);
  } else {
    auto* a = reinterpret_cast<sockaddr_in6*>(&addr);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(static_cast<uint16_t>(port));
    a->sin6_addr = in6addr_loopback;
    len = sizeof(*a);
  }
  if (::connect(s.Get(), reinterpret_cast<sockaddr*>(&addr), len) != 0) {
    if (errno != EINPROGRESS) {
      return Fail(ErrnoError(errno, "connect"));
    }
    pollfd p{s.Get(), POLLOUT, 0};
    int n;
    do {
      n = ::poll(&p, 1, kConnectTimeoutMs);
    } while (n < 0 && errno == EINTR);
    if (n == 0) {
      return Fail(ErrnoError(ETIMEDOUT, "connect"));
    }
    int err = 0;
    socklen_t elen = sizeof(err);
    ::getsockopt(s.Get(), SOL_SOCKET, SO_ERROR, &err, &elen);
    if (err != 0) {
      return Fail(ErrnoError(err, "connect"));
    }
  }
  const int one = 1;
  ::setsockopt(s.Get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return s;
}

}  // namespace

bool PortConnector::Wants(const http::Request& req) { return req.path == "/api/v1/port/connect"; }

void PortConnector::Handle(http::Request req, http::RawConnection conn, bool authorized) {
  UniqueFd refused;
  auto work = [this, req = std::move(req), buffered = std::move(conn.buffered),
               authorized](int fd) { Relay(req, fd, buffered, authorized); };
  if (auto started = threads_.Start(std::move(conn.fd), std::move(work), &refused); !started) {
    static_cast<void>(
        http::WriteResponse(refused.Get(), http::ErrorResponse(started.error()), kAnswerIdle));
  }
}

void PortConnector::Relay(const http::Request& req, int fd, const std::string& buffered,
                          bool authorized) {
  auto answer = [fd](const http::Response& r) { http::AnswerAndClose(fd, r, kAnswerIdle); };
  if (!authorized) {
    return answer(http::ErrorResponse({ErrorCode::kUnauthorized, "missing or wrong X-Access-Token"}));
  }
  if (req.method != "GET") {
    return answer(http::ErrorResponse(405, "use GET on /api/v1/port/connect"));
  }
  // Only a client that expects the connection to turn into a pipe may have it (not a plain
  // request relayed by accident).
  if (AsciiLower(req.Header("upgrade")) != "agentbox-port") {
    return answer(http::ErrorResponse(
        {ErrorCode::kInvalidArgument, "port connections need Upgrade: agentbox-port"}));
  }
  const int port = ParsePort(req.QueryParam("port").value_or(""));
  if (port == 0) {
    return answer(http::ErrorResponse(
        {ErrorCode::kInvalidArgument, "port must be a number from 1 to 65535"}));
  }
  auto s = ConnectLoopback(AF_INET, port);
  if (!s && s.error().sys_errno == ECONNREFUSED) {
    // A server bound to localhost may listen on IPv6 only.
    if (auto v6 = ConnectLoopback(AF_INET6, port); v6) {
      s = std::move(v6);
    }
  }
  if (!s) {
    const bool refused = s.error().sys_errno == ECONNREFUSED;
    Log(LogLevel::kDebug, "port.connect_failed", "port={} error=\"{}\"", port, s.error().message);
    return answer(http::ErrorResponse(
        502, refused ? "nothing is listening on port " + std::to_string(port) +
                           " inside the sandbox (connection refused)"
                     : "cannot connect to port " + std::to_string(port) +
                           " inside the sandbox: " + s.error().message));
  }
  if (auto w = http::WriteAll(
          fd, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: agentbox-port\r\n\r\n",
          kAnswerIdle);
      !w) {
    return;
  }
  if (!buffered.empty()) {
    if (auto w = http::WriteAll(s->Get(), buffered, kAnswerIdle); !w) {
      return;
    }
  }
  // No idle limit here: a WebSocket may be quiet for hours. The daemon's side bounds it, and
  // either side closing ends the pipe.
  auto piped = http::PipeBoth(fd, s->Get(), std::chrono::milliseconds(0));
  if (!piped) {
    Log(LogLevel::kDebug, "port.relay_cut", "port={} reason=\"{}\"", port, piped.error().message);
  }
}

}  // namespace agentbox::guest
