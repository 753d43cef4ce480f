#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"

namespace agentbox {

// Layered KEY=VALUE configuration. Precedence, lowest first: built-in defaults < config file <
// .env file < process environment < runtime overrides. Every value remembers where it came from
// so decisions can be explained ("SANDBOX_BACKEND=docker from .env").
// Immutable after Load(); safe to share between threads.
class Config {
 public:
  struct Sources {
    std::map<std::string, std::string> defaults;
    std::string config_file;  // optional; KEY=VALUE lines (same syntax as .env)
    std::string dotenv_file;  // optional; a missing file is not an error
    bool use_environment = true;
    std::map<std::string, std::string> overrides;
  };

  // Loads every source. A config file that was named but is missing or malformed is an error
  // (kInvalidArgument naming the file and line); a missing .env is skipped.
  static Result<Config> Load(const Sources& sources);
  // Builds a config from explicit values only (tests).
  static Config FromMap(std::map<std::string, std::string> values);

  std::optional<std::string> Get(const std::string& key) const;
  std::string GetOr(const std::string& key, const std::string& fallback) const;
  // Accepts true/false, 1/0, yes/no, on/off (any case); kInvalidArgument names the key otherwise.
  Result<bool> GetBool(const std::string& key, bool fallback) const;
  Result<int64_t> GetInt(const std::string& key, int64_t fallback, int64_t min, int64_t max) const;
  // Comma-separated list, items trimmed, empty items dropped.
  std::vector<std::string> GetList(const std::string& key) const;
  // "default", "file:<path>", "dotenv:<path>", "env" or "override"; empty when unset.
  std::string SourceOf(const std::string& key) const;

 private:
  struct Value {
    std::string value;
    std::string source;
  };
  std::map<std::string, Value> values_;
};

// Parses .env text: KEY=VALUE per line, optional `export `, '#' comments, single quotes (literal),
// double quotes (\n \t \" \\ \$ escapes), unquoted values trimmed with trailing ` #comment`
// removed. `origin` names the text in error messages.
Result<std::vector<std::pair<std::string, std::string>>> ParseDotenv(std::string_view text,
                                                                     const std::string& origin);

}  // namespace agentbox
