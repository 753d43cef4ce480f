#include "daemon/migration_gate.h"

#include <atomic>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

namespace agentbox::daemon {

struct MigrationGate::Held {
  std::function<void(bool)> resume;
  std::atomic<bool> done{false};
  std::mutex timer_mu;  // the I/O context runs on two threads
  std::unique_ptr<boost::asio::steady_timer> timer;

  // The first of the move's end and the deadline wins; the other does nothing.
  void Fire(bool moved) {
    if (!done.exchange(true)) {
      resume(moved);
    }
  }
};

bool MigrationGate::Close(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  return moving_.try_emplace(id).second;
}

void MigrationGate::Open(const std::string& id) {
  std::vector<std::shared_ptr<Held>> held;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = moving_.find(id);
    if (it == moving_.end()) {
      return;
    }
    held = std::move(it->second);
    moving_.erase(it);
  }
  cv_.notify_all();
  for (auto& h : held) {
    boost::asio::post(io_, [h] {
      h->Fire(true);
      std::lock_guard<std::mutex> timer_lock(h->timer_mu);
      if (h->timer) {
        h->timer->cancel();
      }
    });
  }
}

bool MigrationGate::Moving(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  return moving_.count(id) > 0;
}

bool MigrationGate::TryAdmit(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (moving_.count(id) > 0) {
    return false;
  }
  ++in_flight_[id];
  return true;
}

bool MigrationGate::AdmitOrHold(const std::string& id, std::chrono::milliseconds wait,
                                std::function<void(bool moved)> resume) {
  auto h = std::make_shared<Held>();
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = moving_.find(id);
    if (it == moving_.end()) {
      ++in_flight_[id];
      return true;
    }
    h->resume = std::move(resume);
    it->second.push_back(h);
  }
  // The deadline's timer lives on the I/O context, like every other timer of the daemon.
  boost::asio::post(io_, [this, h, wait] {
    std::lock_guard<std::mutex> timer_lock(h->timer_mu);
    if (h->done) {
      return;
    }
    h->timer = std::make_unique<boost::asio::steady_timer>(io_, wait);
    h->timer->async_wait([h](const boost::system::error_code& ec) {
      if (!ec) {
        h->Fire(false);
      }
    });
  });
  return false;
}

bool MigrationGate::AdmitWaiting(const std::string& id, std::chrono::milliseconds wait) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!cv_.wait_for(lock, wait, [&] { return moving_.count(id) == 0; })) {
    return false;
  }
  ++in_flight_[id];
  return true;
}

void MigrationGate::Leave(const std::string& id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = in_flight_.find(id);
    if (it == in_flight_.end()) {
      return;
    }
    if (--it->second <= 0) {
      in_flight_.erase(it);
    }
  }
  cv_.notify_all();
}

int MigrationGate::WaitIdle(const std::string& id, std::chrono::milliseconds wait) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, wait, [&] { return in_flight_.count(id) == 0; });
  auto it = in_flight_.find(id);
  return it == in_flight_.end() ? 0 : it->second;
}

}  // namespace agentbox::daemon
