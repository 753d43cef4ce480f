#include "cli/format.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <iostream>

#include "common/shell_quote.h"
#include "common/time_util.h"

namespace agentbox::cli {

int ReportError(const std::string& message) {
  std::cerr << "agentbox: " << message << "\n";
  return kExitError;
}

int ReportError(const Error& e) { return ReportError(e.message); }

std::string WarningText(const std::string& value) {
  const size_t open = value.find('"');
  if (open == std::string::npos) {
    return value;
  }
  std::string text;
  for (size_t i = open + 1; i < value.size(); ++i) {
    if (value[i] == '\\' && i + 1 < value.size()) {
      text += value[++i];
    } else if (value[i] == '"') {
      return text;
    } else {
      text += value[i];
    }
  }
  return value;  // unterminated: show it as it came
}

std::string CompactDuration(double seconds) {
  const int64_t s = seconds > 0 ? static_cast<int64_t>(seconds) : 0;
  if (s < 60) {
    return std::to_string(s) + "s";
  }
  if (s < 3600) {
    return std::to_string(s / 60) + "m";
  }
  if (s < 86400) {
    const int64_t m = (s % 3600) / 60;
    return std::to_string(s / 3600) + "h" + (m ? std::to_string(m) + "m" : "");
  }
  const int64_t h = (s % 86400) / 3600;
  return std::to_string(s / 86400) + "d" + (h ? std::to_string(h) + "h" : "");
}

std::string CompactBytes(uint64_t bytes) {
  const char* units[] = {"B", "K", "M", "G", "T"};
  double v = static_cast<double>(bytes);
  size_t u = 0;
  while (v >= 1024 && u + 1 < std::size(units)) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  const bool whole = v == static_cast<double>(static_cast<uint64_t>(v)) || v >= 100;
  std::snprintf(buf, sizeof(buf), whole ? "%.0f%s" : "%.1f%s", v, units[u]);
  return buf;
}

std::string DiskColumn(const Json& sandbox) {
  if (!sandbox.is_object() || !sandbox.contains("disk") || !sandbox["disk"].is_object()) {
    return "-";
  }
  const Json& d = sandbox["disk"];
  auto part = [&](const char* key) {
    return d.contains(key) && d[key].is_number_unsigned() ? CompactBytes(d[key].get<uint64_t>())
                                                          : std::string("-");
  };
  const std::string used = part("used_bytes");
  const std::string limit = part("limit_bytes");
  return used == "-" && limit == "-" ? "-" : used + "/" + limit;
}

std::string RelativeTime(double unix_seconds, double now) {
  if (unix_seconds <= 0) {
    return "-";
  }
  if (unix_seconds >= now) {
    return "in " + CompactDuration(unix_seconds - now);
  }
  return CompactDuration(now - unix_seconds) + " ago";
}

void PrintTable(const std::vector<std::vector<std::string>>& rows, std::ostream& out) {
  std::vector<size_t> width;
  for (const auto& row : rows) {
    width.resize(std::max(width.size(), row.size()), 0);
    for (size_t i = 0; i < row.size(); ++i) {
      width[i] = std::max(width[i], row[i].size());
    }
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) {
        line += std::string(width[i] - row[i].size() + 2, ' ');
      }
    }
    out << line << "\n";
  }
}

Result<std::pair<std::string, std::string>> ParseKeyValue(const std::string& kv, bool inherit) {
  const size_t eq = kv.find('=');
  if (eq == 0) {
    return Fail(ErrorCode::kInvalidArgument, "'" + kv + "' has an empty key (want KEY=VALUE)");
  }
  if (eq != std::string::npos) {
    return std::make_pair(kv.substr(0, eq), kv.substr(eq + 1));
  }
  if (inherit) {
    const char* v = std::getenv(kv.c_str());
    if (!v) {
      return Fail(ErrorCode::kInvalidArgument,
                  "'" + kv + "' has no value and is not set in the environment");
    }
    return std::make_pair(kv, std::string(v));
  }
  return Fail(ErrorCode::kInvalidArgument, "'" + kv + "' is not KEY=VALUE");
}

namespace {

bool PlainWord(const std::string& w) {
  if (w.empty()) {
    return false;
  }
  return std::all_of(w.begin(), w.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) ||
           std::string_view("_-./:=@%+,").find(c) != std::string_view::npos;
  });
}

// True when `cmd` ends in a single '&' (the guest then runs it as a background process).
bool EndsInBackground(const std::string& cmd) {
  const size_t end = cmd.find_last_not_of(" \t\n\r");
  return end != std::string::npos && cmd[end] == '&' && (end == 0 || cmd[end - 1] != '&');
}

}  // namespace

std::string JoinCommand(const std::vector<std::string>& words) {
  if (words.size() == 1) {
    return words[0];
  }
  std::string out;
  for (const auto& w : words) {
    if (!out.empty()) {
      out += ' ';
    }
    out += PlainWord(w) ? w : ShellQuote(w);
  }
  return out;
}

std::string WithWorkingDirectory(const std::string& command, const std::string& dir) {
  const std::string cd = "cd -- " + ShellQuote(dir) + " || exit; ";
  if (EndsInBackground(command)) {
    return cd + command;
  }
  return "(" + cd + command + "\n)";
}

std::string JsonString(const Json& obj, const char* key) {
  if (!obj.is_object()) {
    return "";
  }
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : "";
}

std::optional<int64_t> JsonInt(const Json& obj, const char* key) {
  if (!obj.is_object()) {
    return std::nullopt;
  }
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_number()) {
    return std::nullopt;
  }
  return it->is_number_integer() ? it->get<int64_t>() : static_cast<int64_t>(it->get<double>());
}

double JsonNumber(const Json& obj, const char* key) {
  if (!obj.is_object()) {
    return 0;
  }
  auto it = obj.find(key);
  return it != obj.end() && it->is_number() ? it->get<double>() : 0;
}

bool JsonBool(const Json& obj, const char* key) {
  if (!obj.is_object()) {
    return false;
  }
  auto it = obj.find(key);
  return it != obj.end() && it->is_boolean() && it->get<bool>();
}

void WriteAll(int fd, const std::string& bytes) {
  std::cout.flush();
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + off, bytes.size() - off);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return;  // stdout closed (EPIPE): nothing useful left to do with the output
    }
    off += static_cast<size_t>(n);
  }
}

}  // namespace agentbox::cli
