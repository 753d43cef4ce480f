#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace agentbox::cli {

// A one-line progress bar on stderr for bulk transfers, drawn only when stderr is a terminal
// (scripts and pipes see nothing). Not thread-safe: update it from one thread.
class ProgressBar {
 public:
  // `total` 0: unknown (bytes and rate only).
  ProgressBar(std::string label, uint64_t total);
  ~ProgressBar();
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  void SetTotal(uint64_t total) { total_ = total; }
  // Redraws at most ten times a second.
  void Update(uint64_t bytes);
  // Erases the bar (the caller prints its own summary).
  void Clear();

 private:
  void Draw(uint64_t bytes);

  std::string label_;
  uint64_t total_;
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_;
};

// "12.3 MiB".
std::string HumanBytes(double bytes);

}  // namespace agentbox::cli
