#include "http/transfer_threads.h"

#include <sys/socket.h>

namespace agentbox::http {

TransferThreads::~TransferThreads() {
  std::list<std::shared_ptr<Transfer>> all;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    for (auto& t : transfers_) {
      if (!t->done && t->fd >= 0) {
        ::shutdown(t->fd, SHUT_RDWR);
      }
    }
    all.swap(transfers_);
  }
  for (auto& t : all) {
    if (t->thread.joinable()) {
      t->thread.join();
    }
  }
}

void TransferThreads::ReapLocked() {
  for (auto it = transfers_.begin(); it != transfers_.end();) {
    if ((*it)->done) {
      (*it)->thread.join();  // it has returned already (done is set last)
      it = transfers_.erase(it);
    } else {
      ++it;
    }
  }
}

Result<void> TransferThreads::Start(UniqueFd fd, std::function<void(int fd)> fn,
                                    UniqueFd* refused) {
  std::lock_guard<std::mutex> lock(mu_);
  ReapLocked();
  if (stopping_ || transfers_.size() >= max_) {
    *refused = std::move(fd);
    return Fail(ErrorCode::kUnavailable,
                "too many bulk transfers at once (" + std::to_string(max_) + "); retry later");
  }
  auto t = std::make_shared<Transfer>();
  t->fd = fd.Get();
  t->thread = std::thread([this, t, fd = std::move(fd), fn = std::move(fn)]() mutable {
    fn(fd.Get());
    std::lock_guard<std::mutex> done_lock(mu_);
    fd.Reset();
    t->fd = -1;
    t->done = true;
  });
  transfers_.push_back(std::move(t));
  return {};
}

size_t TransferThreads::running() const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t n = 0;
  for (const auto& t : transfers_) {
    n += t->done ? 0 : 1;
  }
  return n;
}

}  // namespace agentbox::http
