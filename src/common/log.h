#pragma once

#include <fmt/format.h>

#include <string_view>

namespace agentbox {

enum class LogLevel { kDebug, kInfo, kWarn, kError };

// Process-wide minimum level; lines below it are dropped. Thread-safe.
void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();

// Writes one structured line to stderr: "<ISO time> <level> <event> <key=value ...>".
// Callers pass already formatted key=value fields. Thread-safe (one write(2) per line).
void LogLine(LogLevel level, std::string_view event, std::string_view fields);

template <class... Args>
void Log(LogLevel level, std::string_view event, fmt::format_string<Args...> f, Args&&... args) {
  if (level < GetLogLevel()) {
    return;
  }
  LogLine(level, event, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace agentbox
