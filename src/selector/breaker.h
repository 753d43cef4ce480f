#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <string>

namespace agentbox::selector {

// When a rollout's candidate backend is judged unhealthy (rollout.md, "Guarded rollout and
// automatic rollback"). Every key is configuration; see docs/selection.md.
struct BreakerSettings {
  bool enabled = true;                        // AGENTBOX_BREAKER
  std::chrono::milliseconds window{30000};    // AGENTBOX_BREAKER_WINDOW_MS
  int min_samples = 20;                       // AGENTBOX_BREAKER_MIN_SAMPLES, per window
  double max_error_rate = 0.25;               // AGENTBOX_BREAKER_ERROR_RATE, absolute
  double max_over_baseline = 0.10;            // AGENTBOX_BREAKER_OVER_BASELINE
  int windows = 2;                            // AGENTBOX_BREAKER_WINDOWS, consecutive
  std::chrono::milliseconds cooldown{60000};  // AGENTBOX_BREAKER_COOLDOWN_MS
  int half_open_sandboxes = 3;                // AGENTBOX_BREAKER_HALF_OPEN
};

enum class BreakerState { kClosed = 0, kOpen = 1, kHalfOpen = 2 };
const char* BreakerStateName(BreakerState s);

// A circuit breaker over a rollout candidate's operations, compared with the baseline's, in
// tumbling time windows (after Flagger and resilience4j). A window with fewer than min_samples
// candidate operations is inconclusive: it neither trips nor clears. The candidate breaches a
// window when its error rate exceeds max_error_rate, or exceeds the baseline's (when the baseline
// had min_samples too) by more than max_over_baseline. `windows` breaching windows in a row open
// the breaker: enrolled subjects go to the baseline. After `cooldown` it is half-open: it admits
// up to half_open_sandboxes new sandboxes to the candidate, and the next conclusive window closes
// it (no breach) or opens it again. The trip state is kept apart from the rollout settings: a
// reload keeps it unless the candidate or the baseline changes. Thread-safe.
class Breaker {
 public:
  using TimeSource = std::function<std::chrono::steady_clock::time_point()>;
  // Called on every state change, outside the breaker's lock.
  using OnChange =
      std::function<void(const std::string& candidate, BreakerState state, const std::string& why)>;

  explicit Breaker(TimeSource now = &std::chrono::steady_clock::now);

  // What to compare; an empty candidate or !settings.enabled turns the breaker off. A new
  // candidate or baseline starts closed; the same pair keeps its state (thresholds may change).
  void Configure(const BreakerSettings& settings, const std::string& candidate,
                 const std::string& baseline);
  void SetOnChange(OnChange cb);
  // Replaces the clock (tests); the current window and state restart at its "now".
  void SetTimeSource(TimeSource now);

  // One operation's outcome on `backend` (a create, an exec relayed to the guest, ...).
  void Record(const std::string& backend, bool ok);

  struct Verdict {
    bool allow = true;  // false: send this enrolled subject to the baseline (AUTO_ROLLBACK)
    BreakerState state = BreakerState::kClosed;
    std::string why;  // for the decision's detail when !allow
  };
  // For a subject the rollout enrolled. `consume`: a half-open admission is used up (false for
  // previews, which must not change anything).
  Verdict Admit(bool consume);

  struct Status {
    bool enabled = false;
    std::string candidate, baseline;
    BreakerState state = BreakerState::kClosed;
    std::string why;            // why it opened (or last changed)
    int breaching_windows = 0;  // consecutive, while closed
    double since_s = 0;         // seconds in the current state
    int candidate_ops = 0, candidate_errors = 0, baseline_ops = 0, baseline_errors = 0;  // now
  };
  Status GetStatus();

 private:
  struct Counts {
    int ops = 0;
    int errors = 0;
  };
  using TimePoint = std::chrono::steady_clock::time_point;
  // Closes every window that has ended by `now`, applying transitions; returns the changes made
  // (for OnChange, called by the caller after unlocking).
  void AdvanceLocked(TimePoint now, std::vector<std::pair<BreakerState, std::string>>* changes);
  void EvaluateLocked(TimePoint now, const Counts& cand, const Counts& base,
                      std::vector<std::pair<BreakerState, std::string>>* changes);
  void SetStateLocked(BreakerState s, TimePoint now, std::string why,
                      std::vector<std::pair<BreakerState, std::string>>* changes);
  void Notify(const std::vector<std::pair<BreakerState, std::string>>& changes);

  TimeSource now_;
  std::mutex mu_;
  BreakerSettings settings_;
  std::string candidate_, baseline_;
  bool enabled_ = false;
  BreakerState state_ = BreakerState::kClosed;
  TimePoint state_since_{};
  std::string why_;
  int breaching_ = 0;
  int admitted_ = 0;  // half-open admissions used
  TimePoint window_start_{};
  std::map<std::string, Counts> window_;  // the current window's counts per backend
  OnChange on_change_;
};

}  // namespace agentbox::selector
