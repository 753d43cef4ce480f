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

// Additionally hands every emitted line (after level filtering) to `sink`, e.g. so that tests can
// assert what was logged. nullptr removes it. Thread-safe; the sink must be too.
using LogSink = void (*)(LogLevel level, std::string_view event, std::string_view fields);
void SetLogSink(LogSink sink);

template <class... Args>
void Log(LogLevel level, std::string_view event, fmt::format_string<Args...> f, Args&&... args) {
  if (level < GetLogLevel()) {
    return;
  }
  LogLine(level, event, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace agentbox
