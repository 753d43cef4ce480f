#pragma once

#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <thread>

#include "common/error.h"
#include "common/unique_fd.h"

namespace agentbox::http {

// Runs bulk transfers (raw connections, see raw_io.h) on threads of their own: a transfer blocks
// for as long as its data flows, which must not hold the event loop or a shared worker pool.
// Thread-safe.
class TransferThreads {
 public:
  explicit TransferThreads(size_t max_running = 64) : max_(max_running) {}
  // Shuts the connections of running transfers down (so their I/O fails at once) and joins them.
  ~TransferThreads();
  TransferThreads(const TransferThreads&) = delete;
  TransferThreads& operator=(const TransferThreads&) = delete;

  // Runs `fn(fd)` on a new thread, which owns `fd` and closes it when `fn` returns. Returns the
  // descriptor back (not started) when max_running transfers are running already.
  Result<void> Start(UniqueFd fd, std::function<void(int fd)> fn, UniqueFd* refused);

  size_t running() const;

 private:
  struct Transfer {
    std::thread thread;
    int fd = -1;  // valid while !done; guarded by mu_
    bool done = false;
  };
  void ReapLocked();

  const size_t max_;
  mutable std::mutex mu_;
  bool stopping_ = false;
  std::list<std::shared_ptr<Transfer>> transfers_;
};

}  // namespace agentbox::http
