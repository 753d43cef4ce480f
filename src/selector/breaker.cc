#include "selector/breaker.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <utility>
#include <vector>

namespace agentbox::selector {

const char* BreakerStateName(BreakerState s) {
  switch (s) {
    case BreakerState::kClosed:
      return "closed";
    case BreakerState::kOpen:
      return "open";
    case BreakerState::kHalfOpen:
      return "half_open";
  }
  return "closed";
}

Breaker::Breaker(TimeSource now) : now_(std::move(now)) {}

void Breaker::Configure(const BreakerSettings& settings, const std::string& candidate,
                        const std::string& baseline) {
  std::lock_guard<std::mutex> lock(mu_);
  {
    const bool enabled = settings.enabled && !candidate.empty() && candidate != baseline;
    const bool same_pair = enabled_ && enabled && candidate == candidate_ && baseline == baseline_;
    settings_ = settings;
    if (same_pair) {
      return;  // thresholds may change; the trip state stays
    }
    enabled_ = enabled;
    candidate_ = candidate;
    baseline_ = baseline;
    state_ = BreakerState::kClosed;
    state_since_ = now_();
    why_.clear();
    breaching_ = 0;
    admitted_ = 0;
    window_start_ = state_since_;
    window_.clear();
  }
}

void Breaker::SetOnChange(OnChange cb) {
  std::lock_guard<std::mutex> lock(mu_);
  on_change_ = std::move(cb);
}

void Breaker::SetTimeSource(TimeSource now) {
  std::lock_guard<std::mutex> lock(mu_);
  now_ = std::move(now);
  state_since_ = window_start_ = now_();
}

void Breaker::Record(const std::string& backend, bool ok, const std::string& op, double seconds) {
  std::vector<std::pair<BreakerState, std::string>> changes;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!enabled_ || (backend != candidate_ && backend != baseline_)) {
      return;
    }
    AdvanceLocked(now_(), &changes);
    Counts& c = window_[backend];
    ++c.ops;
    c.errors += ok ? 0 : 1;
    if (ok && seconds >= 0 && !op.empty() && op == settings_.latency_op) {
      // A bounded sample of the window (a reservoir keeps it uniform past the bound). Failed
      // operations count as errors, not as latencies.
      ++c.latency_seen;
      if (c.latencies.size() < kMaxLatencySamples) {
        c.latencies.push_back(seconds);
      } else {
        const size_t slot = static_cast<size_t>(rng_()) % static_cast<size_t>(c.latency_seen);
        if (slot < kMaxLatencySamples) {
          c.latencies[slot] = seconds;
        }
      }
    }
  }
  Notify(changes);
}

double Breaker::P99(std::vector<double> v) {
  if (v.empty()) {
    return -1;
  }
  // Nearest rank: the smallest value at or above which 99% of the samples lie.
  const size_t rank = static_cast<size_t>(std::ceil(0.99 * static_cast<double>(v.size())));
  const size_t k = rank == 0 ? 0 : rank - 1;
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

std::string Breaker::LatencyBreachLocked(const Counts& cand, const Counts& base) const {
  const auto min = static_cast<size_t>(settings_.min_samples);
  if (cand.latencies.size() < min ||
      (settings_.max_p99.count() <= 0 && settings_.max_p99_over_baseline <= 0)) {
    return "";
  }
  const double p99 = P99(cand.latencies);
  if (settings_.max_p99.count() > 0 && p99 * 1000 > static_cast<double>(settings_.max_p99.count())) {
    return fmt::format("p99 of {} {:.0f} ms ({} samples) above {} ms", settings_.latency_op,
                       p99 * 1000, cand.latencies.size(), settings_.max_p99.count());
  }
  if (settings_.max_p99_over_baseline > 0 && base.latencies.size() >= min) {
    const double base_p99 = P99(base.latencies);
    if (p99 > settings_.max_p99_over_baseline * base_p99) {
      return fmt::format("p99 of {} {:.1f} ms more than {:g}x {}'s {:.1f} ms", settings_.latency_op,
                         p99 * 1000, settings_.max_p99_over_baseline, baseline_, base_p99 * 1000);
    }
  }
  return "";
}

Breaker::Verdict Breaker::Admit(bool consume) {
  std::vector<std::pair<BreakerState, std::string>> changes;
  Verdict v;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!enabled_) {
      return v;
    }
    AdvanceLocked(now_(), &changes);
    v.state = state_;
    if (state_ == BreakerState::kOpen) {
      v.allow = false;
      v.why = "automatic rollback of " + candidate_ + ": " + why_;
    } else if (state_ == BreakerState::kHalfOpen) {
      if (admitted_ < settings_.half_open_sandboxes) {
        admitted_ += consume ? 1 : 0;
      } else {
        v.allow = false;
        v.why = "automatic rollback of " + candidate_ + ": half-open, its " +
                std::to_string(settings_.half_open_sandboxes) +
                " trial sandboxes are out and no verdict yet (" + why_ + ")";
      }
    }
  }
  Notify(changes);
  return v;
}

Breaker::Status Breaker::GetStatus() {
  std::vector<std::pair<BreakerState, std::string>> changes;
  Status s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (enabled_) {
      AdvanceLocked(now_(), &changes);
    }
    s.enabled = enabled_;
    s.candidate = candidate_;
    s.baseline = baseline_;
    s.state = state_;
    s.why = why_;
    s.breaching_windows = breaching_;
    s.since_s = std::chrono::duration<double>(now_() - state_since_).count();
    s.candidate_ops = window_[candidate_].ops;
    s.candidate_errors = window_[candidate_].errors;
    s.baseline_ops = window_[baseline_].ops;
    s.baseline_errors = window_[baseline_].errors;
    s.candidate_latency_samples = static_cast<int>(window_[candidate_].latencies.size());
    s.baseline_latency_samples = static_cast<int>(window_[baseline_].latencies.size());
    s.candidate_p99_s = P99(window_[candidate_].latencies);
    s.baseline_p99_s = P99(window_[baseline_].latencies);
  }
  Notify(changes);
  return s;
}

void Breaker::AdvanceLocked(TimePoint now,
                            std::vector<std::pair<BreakerState, std::string>>* changes) {
  const auto window = std::max(settings_.window, std::chrono::milliseconds(1));
  if (now - window_start_ >= window) {
    // The window that ended is judged; any further whole windows since were empty (inconclusive).
    const Counts cand = window_[candidate_];
    const Counts base = window_[baseline_];
    window_.clear();
    const auto elapsed = (now - window_start_) / window;
    window_start_ += window * elapsed;
    EvaluateLocked(now, cand, base, changes);
  }
  if (state_ == BreakerState::kOpen && now - state_since_ >= settings_.cooldown) {
    admitted_ = 0;
    SetStateLocked(BreakerState::kHalfOpen, now,
                   "cool-down of " + std::to_string(settings_.cooldown.count()) +
                       " ms over; admitting " + std::to_string(settings_.half_open_sandboxes) +
                       " trial sandboxes (" + why_ + ")",
                   changes);
  }
}

void Breaker::EvaluateLocked(TimePoint now, const Counts& cand, const Counts& base,
                             std::vector<std::pair<BreakerState, std::string>>* changes) {
  if (cand.ops < settings_.min_samples) {
    return;  // no data is inconclusive, never success
  }
  const double rate = static_cast<double>(cand.errors) / cand.ops;
  const bool base_known = base.ops >= settings_.min_samples;
  const double base_rate = base_known ? static_cast<double>(base.errors) / base.ops : 0;
  std::string breach;
  if (rate > settings_.max_error_rate) {
    breach = fmt::format("error rate {:.0f}% ({}/{}) above {:.0f}%", rate * 100, cand.errors,
                         cand.ops, settings_.max_error_rate * 100);
  } else if (base_known && rate > base_rate + settings_.max_over_baseline) {
    breach = fmt::format("error rate {:.0f}% ({}/{}) more than {:.0f} points above {}'s {:.0f}%",
                         rate * 100, cand.errors, cand.ops, settings_.max_over_baseline * 100,
                         baseline_, base_rate * 100);
  } else {
    breach = LatencyBreachLocked(cand, base);
  }
  switch (state_) {
    case BreakerState::kClosed:
      if (breach.empty()) {
        breaching_ = 0;
        return;
      }
      if (++breaching_ >= settings_.windows) {
        SetStateLocked(BreakerState::kOpen, now,
                       breach + " in " + std::to_string(breaching_) + " windows in a row", changes);
        breaching_ = 0;
      }
      return;
    case BreakerState::kHalfOpen:
      if (breach.empty()) {
        SetStateLocked(
            BreakerState::kClosed, now,
            fmt::format("recovered: error rate {:.0f}% ({}/{})", rate * 100, cand.errors, cand.ops),
            changes);
      } else {
        SetStateLocked(BreakerState::kOpen, now, breach + " while half-open", changes);
      }
      return;
    case BreakerState::kOpen:
      return;  // the cool-down decides
  }
}

void Breaker::SetStateLocked(BreakerState s, TimePoint now, std::string why,
                             std::vector<std::pair<BreakerState, std::string>>* changes) {
  state_ = s;
  state_since_ = now;
  why_ = std::move(why);
  changes->emplace_back(s, why_);
}

void Breaker::Notify(const std::vector<std::pair<BreakerState, std::string>>& changes) {
  if (changes.empty()) {
    return;
  }
  OnChange cb;
  std::string candidate;
  {
    std::lock_guard<std::mutex> lock(mu_);
    cb = on_change_;
    candidate = candidate_;
  }
  if (cb) {
    for (const auto& [state, why] : changes) {
      cb(candidate, state, why);
    }
  }
}

}  // namespace agentbox::selector
