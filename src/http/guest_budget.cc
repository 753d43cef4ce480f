#include "http/guest_budget.h"

#include <algorithm>

namespace agentbox::http {

namespace {
// More guests than this with state kept: drop the ones whose state is back to a new guest's.
constexpr size_t kSweepAbove = 1024;
}  // namespace

GuestBudget& GuestBudget::Shared() {
  static GuestBudget* budget = new GuestBudget();
  return *budget;
}

void GuestBudget::Refill(Use& u, Clock::time_point now) const {
  if (now > u.at) {
    const double seconds = std::chrono::duration<double>(now - u.at).count();
    u.tokens = std::min(static_cast<double>(limits_.burst),
                        u.tokens + seconds * static_cast<double>(limits_.rate));
    u.at = now;
  }
}

bool GuestBudget::Idle(const Use& u, Clock::time_point now) const {
  if (u.held != 0) {
    return false;
  }
  Use copy = u;
  Refill(copy, now);
  return copy.tokens >= static_cast<double>(limits_.burst);
}

void GuestBudget::Sweep(Clock::time_point now) {
  for (auto it = used_.begin(); it != used_.end();) {
    it = Idle(it->second, now) ? used_.erase(it) : std::next(it);
  }
}

GuestBudget::Use& GuestBudget::Of(const std::string& path, Clock::time_point now) {
  auto it = used_.find(path);
  if (it == used_.end()) {
    if (used_.size() >= kSweepAbove) {
      Sweep(now);
    }
    it = used_.emplace(path, Use{0, static_cast<double>(limits_.burst), now}).first;
  }
  Refill(it->second, now);
  return it->second;
}

bool GuestBudget::Take(const std::string& path, uint64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  Use& u = Of(path, Clock::now());
  if (u.held + n > limits_.max_held) {
    return false;
  }
  u.held += n;
  return true;
}

void GuestBudget::Give(const std::string& path, uint64_t n) {
  if (n == 0) {
    return;
  }
  std::lock_guard<std::mutex> lock(mu_);
  auto it = used_.find(path);
  if (it == used_.end()) {
    return;
  }
  it->second.held -= std::min(it->second.held, n);
  if (Idle(it->second, Clock::now())) {
    used_.erase(it);
  }
}

std::chrono::microseconds GuestBudget::Pace(const std::string& path, uint64_t n,
                                            Clock::time_point now) {
  if (limits_.rate == 0) {
    return std::chrono::microseconds(0);  // not paced
  }
  std::lock_guard<std::mutex> lock(mu_);
  Use& u = Of(path, now);
  u.tokens -= static_cast<double>(n);
  if (u.tokens >= 0) {
    return std::chrono::microseconds(0);
  }
  return std::max(limits_.min_wait,
                  std::chrono::microseconds(static_cast<int64_t>(
                                                -u.tokens * 1e6 / static_cast<double>(limits_.rate)) +
                                            1));
}

size_t GuestBudget::Tracked() {
  std::lock_guard<std::mutex> lock(mu_);
  Sweep(Clock::now());
  return used_.size();
}

}  // namespace agentbox::http
