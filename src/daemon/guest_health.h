#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "api/sandbox_backend.h"
#include "common/config.h"
#include "common/metrics.h"
#include "http/client.h"
#include "http/server.h"

namespace agentbox::daemon {

// How long the daemon waits for a guest. No relayed call waits without limit: a guest that is
// stopped, deadlocked or starved must turn into a clear 504, not a hung client.
struct GuestDeadlines {
  // Added to what a call itself asks to wait (wait_seconds, seconds, timeout).
  std::chrono::milliseconds margin{std::chrono::seconds(10)};
  // Calls that do not wait by design (view, write, file operations, process calls, ...).
  std::chrono::milliseconds call{std::chrono::seconds(60)};
  // Longest silence of an open stream (event stream, download). The guest sends an event-stream
  // keep-alive every 15 s, so this must stay well above that.
  std::chrono::milliseconds stream_idle{std::chrono::seconds(60)};
  // Uploads: `call` plus their size at this rate.
  double upload_min_bytes_per_s = 1 << 20;
  // The health check of a guest already marked unresponsive (before each call, and in the
  // background every few seconds).
  std::chrono::milliseconds probe{std::chrono::seconds(2)};

  // From AGENTBOX_GUEST_CALL_MARGIN_S, AGENTBOX_GUEST_CALL_TIMEOUT_S, AGENTBOX_GUEST_STREAM_IDLE_S
  // and AGENTBOX_GUEST_UPLOAD_MIN_RATE (bytes per second). kInvalidArgument names a bad key.
  static Result<GuestDeadlines> FromConfig(const Config& cfg);
};

// The deadline of one relayed call `op` ("shell/exec", "file/read", ...) whose JSON request body
// is `body`: shell/exec waits wait_seconds (default 5), shell/wait `seconds` (default 60),
// shell/run its `timeout` (default 120; 0 = unlimited is capped by `max_wait_s`, the sandbox's
// remaining lifetime), shell/kill 10 s; each plus the margin. Any other call: `call`.
// A body that is not JSON (the guest will refuse it) gets the plain `call` deadline.
std::chrono::milliseconds CallDeadline(const GuestDeadlines& d, const std::string& op,
                                       const std::string& body, double max_wait_s);
// The deadline of an upload of `bytes` bytes.
std::chrono::milliseconds UploadDeadline(const GuestDeadlines& d, uint64_t bytes);
// "6.5 s": how a deadline is named in messages.
std::string DeadlineText(std::chrono::milliseconds d);

// Whether a relayed call failed because the guest did not answer within its deadline (the
// client's kTimeout), as opposed to an unreachable guest or a bad response.
template <class T>
bool GuestTimedOut(const Result<T>& r) {
  return !r.has_value() && r.error().code == ErrorCode::kTimeout;
}

// Which guests are unresponsive: marked when a relayed call outlives its deadline, cleared when
// the guest answers again (any call, or a health probe). Counts each guest that becomes
// unresponsive in agentbox_guest_unresponsive_total{backend}. Thread-safe.
class GuestHealth {
 public:
  GuestHealth(http::UnixHttpClient& client, Metrics& metrics, GuestDeadlines deadlines);

  const GuestDeadlines& deadlines() const { return deadlines_; }

  // What says a sandbox cannot be reached at all (its engine is down): the detail, or nothing.
  // Set once, before any call. Such a sandbox shows state unreachable with the detail, and calls
  // to its guest fail at once with 503 and the detail.
  using Gate = std::function<std::optional<std::string>(const SandboxInfo&)>;
  void SetGate(Gate gate) { gate_ = std::move(gate); }

  // A call `what` to the guest of `info` outlived its `deadline`. Probes the guest: when even its
  // health check goes unanswered, marks it unresponsive (counted the first time) and answers
  // `respond` (if set) with a 504 naming the sandbox; when the guest answers, the call itself was
  // slow, and the 504 says so without marking anything.
  void OnTimeout(const SandboxInfo& info, const std::string& what,
                 std::chrono::milliseconds deadline, http::Respond respond);
  // Marks the guest of `info` unresponsive (counted the first time) and returns the 504.
  http::Response MarkUnresponsive(const SandboxInfo& info, const std::string& what,
                                  std::chrono::milliseconds deadline);
  // The guest of `id` answered: back to running.
  void Answered(const std::string& id);
  // The one-sentence detail of an unresponsive guest, or nothing.
  std::optional<std::string> Unresponsive(const std::string& id) const;
  // A sandbox the gate calls unreachable shows state unreachable with its detail (whatever the
  // backend last said); a running sandbox whose guest is unresponsive shows state unresponsive.
  void Overlay(SandboxInfo& info) const;
  // The sandbox is gone (or its guest was replaced): forget it.
  void Forget(const std::string& id);

  // Sends GET /api/v1/health with the probe deadline; marks the guest answered when it does.
  // `done(answered)` runs on an I/O thread.
  void Probe(const SandboxInfo& info, std::function<void(bool answered)> done);
  // Probes every unresponsive guest among `sandboxes` that is not being probed already.
  void ProbeUnresponsive(const std::vector<SandboxInfo>& sandboxes);

  // Before relaying a call to the guest of `info`: answers 503 at once when the gate calls the
  // sandbox unreachable; runs `go` at once when the guest is not marked unresponsive; otherwise
  // probes it first, then runs `go` if it answered, or answers `respond` with 504 without waiting
  // for the call's own deadline.
  void BeforeCall(const SandboxInfo& info, const std::string& what, http::Respond respond,
                  std::function<void()> go);

 private:
  struct Mark {
    std::string detail;
    std::string backend;
  };

  http::UnixHttpClient& client_;
  Metrics& metrics_;
  GuestDeadlines deadlines_;
  Gate gate_;
  mutable std::mutex mu_;
  std::map<std::string, Mark> unresponsive_;  // by sandbox id; guarded by mu_
  std::set<std::string> probing_;             // guarded by mu_
};

}  // namespace agentbox::daemon
