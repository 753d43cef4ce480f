#include "backends/jail/unix_http.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "common/unique_fd.h"

namespace agentbox::jail {
namespace {

Result<void> WaitFor(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    struct pollfd p = {fd, events, 0};
    const int n = ::poll(&p, 1, PollTimeoutMs(deadline));
    if (n > 0) {
      return {};
    }
    if (n == 0 && Clock::now() >= deadline) {
      return Fail(ErrorCode::kTimeout, "guest request timed out");
    }
    if (n < 0 && errno != EINTR) {
      return Fail(ErrnoError(errno, "poll"));
    }
  }
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

Result<std::string> Dechunk(std::string_view body) {
  std::string out;
  size_t pos = 0;
  for (;;) {
    const size_t eol = body.find("\r\n", pos);
    if (eol == std::string_view::npos) {
      return Fail(ErrorCode::kInternal, "malformed chunked response");
    }
    const size_t size = std::strtoul(std::string(body.substr(pos, eol - pos)).c_str(), nullptr, 16);
    pos = eol + 2;
    if (size == 0) {
      return out;
    }
    if (pos + size > body.size()) {
      return Fail(ErrorCode::kInternal, "truncated chunked response");
    }
    out.append(body.substr(pos, size));
    pos += size + 2;
  }
}

}  // namespace

Result<UniqueFd> ConnectUnixNoFollow(const std::string& socket_path) {
  UniqueFd target(::open(socket_path.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!target) {
    return Fail(ErrnoError(errno, "open " + socket_path));
  }
  struct stat st {};
  if (::fstat(target.Get(), &st) != 0) {
    return Fail(ErrnoError(errno, "stat " + socket_path));
  }
  if (!S_ISSOCK(st.st_mode)) {
    return Fail(ErrorCode::kForbidden, socket_path + " is not a socket (refusing to follow it)",
                ELOOP);
  }
  struct sockaddr_un addr {};
  addr.sun_family = AF_UNIX;
  const std::string via = "/proc/self/fd/" + std::to_string(target.Get());
  std::memcpy(addr.sun_path, via.c_str(), via.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) {
    return Fail(ErrnoError(errno, "socket"));
  }
  if (::connect(fd.Get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0 &&
      errno != EAGAIN && errno != EINPROGRESS) {
    return Fail(ErrnoError(errno, "connect " + socket_path));
  }
  return fd;
}

Result<HttpResponse> UnixHttpRequest(const std::string& socket_path, std::string_view method,
                                     std::string_view target, std::string_view token,
                                     std::string_view json_body, Clock::time_point deadline) {
  auto connected = ConnectUnixNoFollow(socket_path);
  if (!connected) {
    return Fail(connected.error());
  }
  UniqueFd fd = std::move(*connected);
  if (auto r = WaitFor(fd.Get(), POLLOUT, deadline); !r) {
    return Fail(r.error());
  }
  std::string req;
  req.append(method).append(" ").append(target).append(" HTTP/1.1\r\nHost: guest\r\n");
  req.append("Connection: close\r\nX-Access-Token: ").append(token).append("\r\n");
  if (!json_body.empty()) {
    req.append("Content-Type: application/json\r\nContent-Length: ")
        .append(std::to_string(json_body.size()))
        .append("\r\n");
  }
  req.append("\r\n").append(json_body);
  size_t off = 0;
  while (off < req.size()) {
    const ssize_t n = ::send(fd.Get(), req.data() + off, req.size() - off, MSG_NOSIGNAL);
    if (n > 0) {
      off += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (auto r = WaitFor(fd.Get(), POLLOUT, deadline); !r) {
        return Fail(r.error());
      }
      continue;
    }
    return Fail(ErrnoError(errno, "send to " + socket_path));
  }
  std::string resp;
  char buf[16384];
  for (;;) {
    const ssize_t n = ::read(fd.Get(), buf, sizeof(buf));
    if (n > 0) {
      resp.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) {
      break;
    }
    if (errno == EAGAIN || errno == EINTR) {
      if (auto r = WaitFor(fd.Get(), POLLIN, deadline); !r) {
        return Fail(r.error());
      }
      continue;
    }
    return Fail(ErrnoError(errno, "read from " + socket_path));
  }
  const size_t head_end = resp.find("\r\n\r\n");
  if (resp.compare(0, 9, "HTTP/1.1 ") != 0 || head_end == std::string::npos) {
    return Fail(ErrorCode::kInternal, "malformed HTTP response from " + socket_path);
  }
  HttpResponse out;
  out.status = std::atoi(resp.c_str() + 9);
  const std::string head = Lower(std::string_view(resp).substr(0, head_end));
  std::string_view body = std::string_view(resp).substr(head_end + 4);
  if (head.find("\r\ntransfer-encoding: chunked") != std::string::npos) {
    auto dechunked = Dechunk(body);
    if (!dechunked) {
      return Fail(dechunked.error());
    }
    out.body = std::move(*dechunked);
  } else {
    out.body = body;
  }
  return out;
}

}  // namespace agentbox::jail
