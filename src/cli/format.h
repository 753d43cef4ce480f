#pragma once

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "common/error.h"
#include "common/json_util.h"

namespace agentbox::cli {

// Exit status of the CLI's own failures (bad usage, daemon unreachable, HTTP errors).
inline constexpr int kExitError = 2;

// Prints "agentbox: <message>" on stderr and returns kExitError.
int ReportError(const std::string& message);
int ReportError(const Error& e);

// The text of a Warning header value (RFC 7234: `299 agentbox "text"`): the quoted warn-text
// unescaped, or the whole value when it has none.
std::string WarningText(const std::string& value);

// "45s", "12m", "3h5m", "2d4h": a compact duration, rounded down. Negative durations are 0s.
std::string CompactDuration(double seconds);
// "512K", "12.5M", "10G": bytes for a narrow column (powers of 1024).
std::string CompactBytes(uint64_t bytes);
// A sandbox's "disk" object as "USED/LIMIT" ("12.5M/10G"), "-" for what is unknown.
std::string DiskColumn(const Json& sandbox);
// "in 55m" for a time in the future, "3m ago" for one in the past, "-" for 0 (unset).
std::string RelativeTime(double unix_seconds, double now);

// Prints rows as left-aligned columns separated by two spaces; the last column is not padded.
void PrintTable(const std::vector<std::vector<std::string>>& rows, std::ostream& out);

// Splits "KEY=VALUE" at the first '='. A bare "KEY" takes $KEY from the environment when
// `inherit` is set (as docker run -e KEY does); otherwise it is an error.
Result<std::pair<std::string, std::string>> ParseKeyValue(const std::string& kv, bool inherit);

// The command line a user gave after `--`: one argument is a shell command line used as is
// (`exec ID -- 'cd /tmp && ls'`); several are argv words, each quoted unless it is plainly safe,
// so `exec ID -- grep -r "a b" .` runs exactly those words.
std::string JoinCommand(const std::vector<std::string>& words);

// Wraps `command` so it runs in `dir` without changing the session's working directory: a
// subshell for a foreground command; for a background one (trailing `&`) the `cd` joins the
// background command itself.
std::string WithWorkingDirectory(const std::string& command, const std::string& dir);

// Typed reads of a JSON object's field that tolerate absence and wrong types.
std::string JsonString(const Json& obj, const char* key);
std::optional<int64_t> JsonInt(const Json& obj, const char* key);
double JsonNumber(const Json& obj, const char* key);
bool JsonBool(const Json& obj, const char* key);

// Writes all of `bytes` to fd (1 = stdout, 2 = stderr), retrying short writes.
void WriteAll(int fd, const std::string& bytes);

}  // namespace agentbox::cli
