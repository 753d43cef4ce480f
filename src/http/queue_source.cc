#include "http/queue_source.h"

namespace agentbox::http {

bool QueueSource::TakeQueuedLocked() {
  current_.clear();
  for (auto& q : queue_) {
    current_ += q;
  }
  queue_.clear();
  return done_;
}

void QueueSource::Push(std::string bytes, bool last) {
  Callback cb;
  bool end = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (done_) {
      return;
    }
    queue_.push_back(std::move(bytes));
    done_ = last;
    if (!pending_) {
      return;
    }
    cb = std::move(pending_);
    pending_ = nullptr;
    end = TakeQueuedLocked();
  }
  cb(std::string_view(current_), end);
}

void QueueSource::Next(Callback cb) {
  bool end = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (queue_.empty() && !done_) {
      pending_ = std::move(cb);
      return;
    }
    end = TakeQueuedLocked();
  }
  cb(std::string_view(current_), end);
}

}  // namespace agentbox::http
