#include "http/byte_pipe.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "http/raw_io.h"

namespace agentbox::http {

namespace {

bool Again(int err) { return err == EAGAIN || err == EWOULDBLOCK; }

// One direction: from -> pipe -> to.
struct Direction {
  int from = -1;
  int to = -1;
  SplicePipe pipe;
  size_t in_pipe = 0;
  bool eof = false;       // `from` ended
  bool shut = false;      // the end was passed on to `to`
  uint64_t moved = 0;

  bool Done() const { return shut; }
  bool WantsRead() const { return !eof && in_pipe < pipe.capacity; }
  bool WantsWrite() const { return in_pipe > 0; }

  Result<void> Pull() {
    const ssize_t n = ::splice(from, nullptr, pipe.w.Get(), nullptr, pipe.capacity - in_pipe,
                               SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n > 0) {
      in_pipe += static_cast<size_t>(n);
    } else if (n == 0) {
      eof = true;
    } else if (errno != EINTR && !Again(errno)) {
      return Fail(ErrnoError(errno, "read from the relayed connection"));
    }
    return {};
  }
  Result<void> Push() {
    const ssize_t n =
        ::splice(pipe.r.Get(), nullptr, to, nullptr, in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n > 0) {
      in_pipe -= static_cast<size_t>(n);
      moved += static_cast<uint64_t>(n);
    } else if (n < 0 && errno != EINTR && !Again(errno)) {
      return Fail(ErrnoError(errno, "write to the relayed connection"));
    }
    return {};
  }
  void PassEnd() {
    if (eof && in_pipe == 0 && !shut) {
      ::shutdown(to, SHUT_WR);
      shut = true;
    }
  }
};

}  // namespace

Result<PipeStats> PipeBoth(int a, int b, std::chrono::milliseconds idle) {
  SetNonBlocking(a);
  SetNonBlocking(b);
  auto p1 = SplicePipe::Open();
  auto p2 = SplicePipe::Open();
  if (!p1 || !p2) {
    return Fail(p1 ? p2.error() : p1.error());
  }
  Direction ab{a, b, std::move(*p1)};
  Direction ba{b, a, std::move(*p2)};
  const int timeout = idle.count() > 0 ? static_cast<int>(idle.count()) : -1;
  while (!ab.Done() || !ba.Done()) {
    pollfd p[2] = {{a, 0, 0}, {b, 0, 0}};
    if (ab.WantsRead()) {
      p[0].events |= POLLIN;
    }
    if (ba.WantsWrite()) {
      p[0].events |= POLLOUT;
    }
    if (ba.WantsRead()) {
      p[1].events |= POLLIN;
    }
    if (ab.WantsWrite()) {
      p[1].events |= POLLOUT;
    }
    if (auto r = PollReady(p, 2, timeout, "no traffic either way"); !r) {
      return Fail(r.error());
    }
    for (int i = 0; i < 2; ++i) {
      if (p[i].revents & POLLNVAL) {
        return Fail(ErrorCode::kUnavailable, "a relayed connection was closed");
      }
    }
    // POLLHUP/POLLERR with nothing left to read: the reads below see the end or the error.
    if (p[0].revents & (POLLIN | POLLHUP | POLLERR) && ab.WantsRead()) {
      if (auto r = ab.Pull(); !r) {
        return Fail(ErrorCode::kUnavailable, r.error().message);
      }
    }
    if (p[1].revents & (POLLIN | POLLHUP | POLLERR) && ba.WantsRead()) {
      if (auto r = ba.Pull(); !r) {
        return Fail(ErrorCode::kUnavailable, r.error().message);
      }
    }
    if (p[1].revents & (POLLOUT | POLLERR) && ab.WantsWrite()) {
      if (auto r = ab.Push(); !r) {
        return Fail(ErrorCode::kUnavailable, r.error().message);
      }
    }
    if (p[0].revents & (POLLOUT | POLLERR) && ba.WantsWrite()) {
      if (auto r = ba.Push(); !r) {
        return Fail(ErrorCode::kUnavailable, r.error().message);
      }
    }
    ab.PassEnd();
    ba.PassEnd();
    // A side that hung up entirely (or was reset) after its end of stream can take nothing
    // more: whatever the other side still sends has nowhere to go.
    if ((p[0].revents & (POLLHUP | POLLERR)) && ab.eof && ab.in_pipe == 0 && !ba.Done()) {
      break;
    }
    if ((p[1].revents & (POLLHUP | POLLERR)) && ba.eof && ba.in_pipe == 0 && !ab.Done()) {
      break;
    }
  }
  return PipeStats{ab.moved, ba.moved};
}

}  // namespace agentbox::http
