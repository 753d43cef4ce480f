#include "common/log.h"
#include "common/log_budget.h"

#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <ctime>
#include <string>

namespace agentbox {
namespace {
std::atomic<LogLevel> g_level{LogLevel::kInfo};
std::atomic<LogSink> g_sink{nullptr};
std::atomic<uint64_t> g_budget_total{0};  // 0: unbounded
std::atomic<uint64_t> g_budget_line{0};
std::atomic<uint64_t> g_written{0};

const char* LevelName(LogLevel l) {
  switch (l) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kError:
      return "error";
  }
  return "info";
}
}  // namespace

void SetLogLevel(LogLevel level) { g_level.store(level); }
LogLevel GetLogLevel() { return g_level.load(); }
void SetLogSink(LogSink sink) { g_sink.store(sink); }
void SetLogBudget(uint64_t max_total, uint64_t max_line) {
  g_budget_total.store(max_total);
  g_budget_line.store(max_line);
}

void LogLine(LogLevel level, std::string_view event, std::string_view fields) {
  if (level < GetLogLevel()) {
    return;
  }
  if (LogSink sink = g_sink.load()) {
    sink(level, event, fields);
  }
  timeval tv{};
  gettimeofday(&tv, nullptr);
  tm t{};
  gmtime_r(&tv.tv_sec, &t);
  std::string line = fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z {} {} {}\n",
                                 t.tm_year + 1900, t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min,
                                 t.tm_sec, tv.tv_usec / 1000, LevelName(level), event, fields);
  if (const uint64_t cap = g_budget_line.load(); cap != 0 && line.size() > cap) {
    const size_t cut = line.size() - static_cast<size_t>(cap);
    line.resize(static_cast<size_t>(cap));
    line += fmt::format(" ...(cut {} bytes)\n", cut);
  }
  if (const uint64_t total = g_budget_total.load(); total != 0) {
    const uint64_t before = g_written.fetch_add(line.size());
    if (before + line.size() > total) {
      if (before <= total) {  // the one line that crosses the budget says so, once
        line = fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z warn log.budget_spent "
                           "bytes={} (further lines are dropped)\n",
                           t.tm_year + 1900, t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min,
                           t.tm_sec, tv.tv_usec / 1000, total);
      } else {
        return;
      }
    }
  }
  ssize_t ignored = ::write(STDERR_FILENO, line.data(), line.size());
  (void)ignored;
}

}  // namespace agentbox
