#include "common/config.h"

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "common/strings.h"

extern char** environ;

namespace agentbox {
namespace {

std::string Trim(std::string_view s) {
  size_t b = 0;
  size_t e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t' || s[b] == '\r')) {
    ++b;
  }
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '\r')) {
    --e;
  }
  return std::string(s.substr(b, e - b));
}

bool ValidKey(std::string_view k) {
  if (k.empty() || (k[0] >= '0' && k[0] <= '9')) {
    return false;
  }
  for (char c : k) {
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
          c == '.')) {
      return false;
    }
  }
  return true;
}

Result<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Fail(ErrnoError(errno, path));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

Result<std::vector<std::pair<std::string, std::string>>> ParseDotenv(std::string_view text,
                                                                     const std::string& origin) {
  std::vector<std::pair<std::string, std::string>> out;
  size_t pos = 0;
  int line_no = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) {
      eol = text.size();
    }
    std::string line = Trim(text.substr(pos, eol - pos));
    ++line_no;
    pos = eol + 1;
    if (line.empty() || line[0] == '#') {
      continue;
    }
    if (line.starts_with("export ")) {
      line = Trim(std::string_view(line).substr(7));
    }
    const size_t eq = line.find('=');
    auto bad = [&](const std::string& why) {
      return Fail(ErrorCode::kInvalidArgument, origin + ":" + std::to_string(line_no) + ": " + why);
    };
    if (eq == std::string::npos) {
      return bad("expected KEY=VALUE");
    }
    std::string key = Trim(std::string_view(line).substr(0, eq));
    if (!ValidKey(key)) {
      return bad("invalid key '" + key + "'");
    }
    std::string raw = Trim(std::string_view(line).substr(eq + 1));
    std::string value;
    if (!raw.empty() && raw[0] == '\'') {
      const size_t end = raw.find('\'', 1);
      if (end == std::string::npos) {
        return bad("unterminated single quote");
      }
      value = raw.substr(1, end - 1);
    } else if (!raw.empty() && raw[0] == '"') {
      size_t i = 1;
      bool closed = false;
      for (; i < raw.size(); ++i) {
        char c = raw[i];
        if (c == '"') {
          closed = true;
          break;
        }
        if (c == '\\' && i + 1 < raw.size()) {
          char n = raw[++i];
          value += n == 'n' ? '\n' : n == 't' ? '\t' : n;
          continue;
        }
        value += c;
      }
      if (!closed) {
        return bad("unterminated double quote");
      }
    } else {
      const size_t hash = raw.find(" #");
      value = Trim(std::string_view(raw).substr(0, hash));
    }
    out.emplace_back(std::move(key), std::move(value));
  }
  return out;
}

Result<Config> Config::Load(const Sources& src) {
  Config c;
  for (const auto& [k, v] : src.defaults) {
    c.values_[k] = {v, "default"};
  }
  auto layer = [&](const std::string& path, const std::string& tag, bool required) -> Result<void> {
    if (path.empty()) {
      return {};
    }
    auto text = ReadFile(path);
    if (!text) {
      if (!required && text.error().code == ErrorCode::kNotFound) {
        return {};
      }
      return Fail(ErrorCode::kInvalidArgument, "config " + text.error().message);
    }
    auto kvs = ParseDotenv(*text, path);
    if (!kvs) {
      return Fail(kvs.error());
    }
    for (auto& [k, v] : *kvs) {
      c.values_[k] = {v, tag + ":" + path};
    }
    return {};
  };
  if (auto r = layer(src.config_file, "file", true); !r) {
    return Fail(r.error());
  }
  if (auto r = layer(src.dotenv_file, "dotenv", false); !r) {
    return Fail(r.error());
  }
  if (src.use_environment) {
    for (char** e = environ; e && *e; ++e) {
      std::string_view kv(*e);
      const size_t eq = kv.find('=');
      if (eq != std::string_view::npos && eq > 0) {
        c.values_[std::string(kv.substr(0, eq))] = {std::string(kv.substr(eq + 1)), "env"};
      }
    }
  }
  for (const auto& [k, v] : src.overrides) {
    c.values_[k] = {v, "override"};
  }
  return c;
}

Config Config::FromMap(std::map<std::string, std::string> values) {
  Config c;
  for (auto& [k, v] : values) {
    c.values_[k] = {std::move(v), "override"};
  }
  return c;
}

std::optional<std::string> Config::Get(const std::string& key) const {
  auto it = values_.find(key);
  if (it == values_.end()) {
    return std::nullopt;
  }
  return it->second.value;
}

std::string Config::GetOr(const std::string& key, const std::string& fallback) const {
  return Get(key).value_or(fallback);
}

Result<bool> Config::GetBool(const std::string& key, bool fallback) const {
  auto v = Get(key);
  if (!v || Trim(*v).empty()) {
    return fallback;
  }
  const std::string s = AsciiLower(Trim(*v));
  if (s == "true" || s == "1" || s == "yes" || s == "on") {
    return true;
  }
  if (s == "false" || s == "0" || s == "no" || s == "off") {
    return false;
  }
  return Fail(ErrorCode::kInvalidArgument,
              key + "='" + *v + "' is not a boolean (true/false, 1/0, yes/no, on/off)");
}

Result<int64_t> Config::GetInt(const std::string& key, int64_t fallback, int64_t min,
                               int64_t max) const {
  auto v = Get(key);
  if (!v || Trim(*v).empty()) {
    return fallback;
  }
  const std::string s = Trim(*v);
  char* end = nullptr;
  errno = 0;
  const long long n = std::strtoll(s.c_str(), &end, 10);
  if (errno != 0 || end == s.c_str() || *end != '\0') {
    return Fail(ErrorCode::kInvalidArgument, key + "='" + *v + "' is not an integer");
  }
  if (n < min || n > max) {
    return Fail(ErrorCode::kInvalidArgument, key + "=" + s + " is out of range [" +
                                                 std::to_string(min) + ", " + std::to_string(max) +
                                                 "]");
  }
  return static_cast<int64_t>(n);
}

std::vector<std::string> Config::GetList(const std::string& key) const {
  std::vector<std::string> out;
  auto v = Get(key);
  if (!v) {
    return out;
  }
  size_t pos = 0;
  while (pos <= v->size()) {
    size_t comma = v->find(',', pos);
    if (comma == std::string::npos) {
      comma = v->size();
    }
    std::string item = Trim(std::string_view(*v).substr(pos, comma - pos));
    if (!item.empty()) {
      out.push_back(std::move(item));
    }
    pos = comma + 1;
  }
  return out;
}

std::string Config::SourceOf(const std::string& key) const {
  auto it = values_.find(key);
  return it == values_.end() ? std::string() : it->second.source;
}

}  // namespace agentbox
