#include "cli/progress.h"

#include <unistd.h>

#include <cstdio>

namespace agentbox::cli {

std::string HumanBytes(double bytes) {
  static const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) {
    bytes /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), u == 0 ? "%.0f %s" : "%.1f %s", bytes, kUnits[u]);
  return buf;
}

ProgressBar::ProgressBar(std::string label, uint64_t total)
    : label_(std::move(label)),
      total_(total),
      enabled_(::isatty(STDERR_FILENO) == 1),
      start_(std::chrono::steady_clock::now()),
      last_(start_) {}

ProgressBar::~ProgressBar() { Clear(); }

void ProgressBar::Update(uint64_t bytes) {
  if (!enabled_) {
    return;
  }
  const auto now = std::chrono::steady_clock::now();
  if (drawn_ && now - last_ < std::chrono::milliseconds(100)) {
    return;
  }
  last_ = now;
  Draw(bytes);
}

void ProgressBar::Draw(uint64_t bytes) {
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const std::string rate = secs > 0 ? HumanBytes(static_cast<double>(bytes) / secs) + "/s" : "";
  std::string line;  // built by append: GCC 12 warns (falsely) on "\r" + label_
  line.append("\r").append(label_).append(" ");
  if (total_ > 0) {
    const double frac = std::min(1.0, static_cast<double>(bytes) / static_cast<double>(total_));
    constexpr int kWidth = 30;
    const int filled = static_cast<int>(frac * kWidth);
    line.append("[").append(filled, '#').append(kWidth - filled, ' ').append("] ");
    char pct[16];
    std::snprintf(pct, sizeof(pct), "%3d%% ", static_cast<int>(frac * 100));
    line += pct;
    line.append(HumanBytes(static_cast<double>(bytes)))
        .append(" / ")
        .append(HumanBytes(static_cast<double>(total_)));
  } else {
    line += HumanBytes(static_cast<double>(bytes));
  }
  line.append("  ").append(rate).append("\033[K");
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
  drawn_ = true;
}

void ProgressBar::Clear() {
  if (enabled_ && drawn_) {
    std::fputs("\r\033[K", stderr);
    std::fflush(stderr);
    drawn_ = false;
  }
}

}  // namespace agentbox::cli
