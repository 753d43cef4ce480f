#include "guest/core/self_protect.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/read.hpp>
#include <cerrno>

#include "common/log.h"

namespace agentbox::guest {

namespace {

// The write end of the signal pipe, for the async-signal-safe handler.
std::atomic<int> g_signal_pipe{-1};

void OnSignal(int sig, siginfo_t* info, void*) {
  const int saved = errno;
  if (!SentFromInsideSandbox(::getpid(), info->si_code, info->si_pid)) {
    const unsigned char b = static_cast<unsigned char>(sig);
    const int fd = g_signal_pipe.load();
    if (fd >= 0) {
      ssize_t n = ::write(fd, &b, 1);
      (void)n;
    }
  }
  errno = saved;
}

}  // namespace

Result<void> ProtectFromSandbox() {
  if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
    return Fail(ErrnoError(errno, "prctl(PR_SET_DUMPABLE, 0)"));
  }
  return {};
}

bool SentFromInsideSandbox(int pid, int code, int sender) {
  return pid == 1 && code <= 0 && sender != 0;
}

ShutdownSignals::ShutdownSignals(boost::asio::io_context& io, std::vector<int> signals)
    : pipe_(io), signals_(std::move(signals)) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) {
    Log(LogLevel::kError, "guest.signal_pipe_failed", "errno={}", errno);
    return;
  }
  pipe_.assign(fds[0]);
  g_signal_pipe.store(fds[1]);
  for (int sig : signals_) {
    struct sigaction sa {};
    sa.sa_sigaction = &OnSignal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    ::sigaction(sig, &sa, nullptr);
  }
}

ShutdownSignals::~ShutdownSignals() {
  for (int sig : signals_) {
    ::signal(sig, SIG_DFL);
  }
  const int fd = g_signal_pipe.exchange(-1);
  if (fd >= 0) {
    ::close(fd);
  }
}

void ShutdownSignals::AsyncWait(std::function<void(int)> fn) {
  fn_ = std::move(fn);
  Arm();
}

void ShutdownSignals::Arm() {
  if (!pipe_.is_open()) {
    return;
  }
  boost::asio::async_read(pipe_, boost::asio::buffer(&byte_, 1),
                          [this](const boost::system::error_code& ec, size_t) {
                            if (ec || !fn_) {
                              return;
                            }
                            auto fn = std::move(fn_);
                            fn_ = nullptr;
                            fn(byte_);
                          });
}

}  // namespace agentbox::guest
