#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <vector>

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
  // Latency: the p99 of one operation (latency_op) per window, judged once the candidate has
  // min_samples of them. A window breaches when the candidate's p99 exceeds max_p99 (0: off), or
  // exceeds max_p99_over_baseline times the baseline's p99 when the baseline had min_samples too
  // (0: off). Off by default: backends differ in speed by design (a Cloud Run create takes
  // seconds), so the operator chooses the operation and the bound.
  std::chrono::milliseconds max_p99{0};       // AGENTBOX_BREAKER_P99_MS
  double max_p99_over_baseline = 0;           // AGENTBOX_BREAKER_P99_OVER_BASELINE (a factor)
  std::string latency_op = "shell/exec";      // AGENTBOX_BREAKER_LATENCY_OP
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

  // One operation's outcome on `backend` (a create, an exec relayed to the guest, ...); `op` and
  // `seconds` feed the latency check when op is the configured latency_op.
  void Record(const std::string& backend, bool ok, const std::string& op = "",
              double seconds = -1);

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
    int candidate_latency_samples = 0, baseline_latency_samples = 0;                     // now
    double candidate_p99_s = -1, baseline_p99_s = -1;  // now; -1 without samples
  };
  Status GetStatus();

 private:
  struct Counts {
    int ops = 0;
    int errors = 0;
    int latency_seen = 0;
    std::vector<double> latencies;  // of latency_op, at most kMaxLatencySamples (reservoir)
  };
  static constexpr size_t kMaxLatencySamples = 4096;
  static double P99(std::vector<double> v);  // -1 when empty
  std::string LatencyBreachLocked(const Counts& cand, const Counts& base) const;
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
  std::minstd_rand rng_{20261205};  // the latency reservoir's slots
};

}  // namespace agentbox::selector
