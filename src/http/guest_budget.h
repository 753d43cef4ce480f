#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

namespace agentbox::http {

// What the daemon spends on one guest's buffered answers, per guest socket, process-wide
// (docs/reliability.md §4). A sandbox controls its guest, so its answers are untrusted:
// - held: the bytes its answers hold in memory at once; Take fails past max_held.
// - paced: the bytes read from it, a token bucket of `burst` bytes refilled at `rate` per second;
//   Pace says how long to wait before reading more. Reading a guest's answers costs the daemon's
//   I/O threads, which every sandbox shares: unpaced, one sandbox answering endless bodies to 20
//   calls at once kept them busy reading and took another sandbox's exec p99 from 0.5-1.0 ms to
//   3.5-4.1 ms (hostile bench, guest_chunked); at 32 MiB/s, 1.6 ms. The burst lets a legitimate
//   answer of the largest size (a 64 MiB file/read) through at full speed; bulk data has the
//   streamed download, which this does not pace (its reader, the client, sets its pace).
class GuestBudget {
 public:
  using Clock = std::chrono::steady_clock;

  struct Limits {
    uint64_t max_held = 128ull << 20;
    uint64_t burst = 80ull << 20;  // one answer of the largest size (64 MiB and its framing)
    uint64_t rate = 32ull << 20;   // bytes per second after the burst
    // The shortest wait once in debt. Without it, each read of a few KiB past the burst waited
    // its own few microseconds: thousands of timer wake-ups a second per call kept both of the
    // daemon's I/O threads switching (futex and epoll wake-ups, about one core in all) and took
    // another sandbox's exec p99 to 5.7-7.9x its quiet value (hostile bench, guest_chunked on
    // docker, 1,000 probes). Waiting at least this long lets the tokens build up, so the reads
    // after a wait go on at once: the same rate, at most 1 s / min_wait wake-ups per call. With
    // 20 ms the raw ratios were 2.6-3.7, with 50 ms 1.7-2.5.
    std::chrono::microseconds min_wait{50'000};
  };

  GuestBudget() = default;
  explicit GuestBudget(Limits limits) : limits_(limits) {}

  // The one the daemon's UnixHttpClient uses (never destroyed: used at exit).
  static GuestBudget& Shared();

  const Limits& limits() const { return limits_; }

  // Holds n more bytes for `path`; false (nothing held) when that would pass max_held.
  bool Take(const std::string& path, uint64_t n);
  void Give(const std::string& path, uint64_t n);

  // Counts n bytes read from `path` at `now`: how long to wait before reading on (zero while the
  // bucket has tokens).
  std::chrono::microseconds Pace(const std::string& path, uint64_t n, Clock::time_point now);

  // Guests with state kept (held bytes or a bucket not yet full again): for tests.
  size_t Tracked();

 private:
  struct Use {
    uint64_t held = 0;
    double tokens = 0;
    Clock::time_point at{};
  };
  Use& Of(const std::string& path, Clock::time_point now);
  void Refill(Use& u, Clock::time_point now) const;
  bool Idle(const Use& u, Clock::time_point now) const;
  void Sweep(Clock::time_point now);

  Limits limits_;
  std::mutex mu_;
  std::map<std::string, Use> used_;
};

}  // namespace agentbox::http
