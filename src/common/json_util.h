#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"

namespace agentbox {

using Json = nlohmann::json;

// Deepest nesting of arrays and objects accepted from outside (request bodies, guest answers).
// nlohmann's parser is iterative, but copying, comparing and dumping a value recurse once per
// level: a few hundred kilobytes of "[[[[..." would overflow the stack of whoever copies or
// dumps it (found by fuzz/fuzz_json_request; docs/reliability.md, "Fuzzing").
inline constexpr size_t kMaxJsonDepth = 64;

// True when no array or object in `text` (JSON or not) is nested deeper than `max_depth`;
// brackets inside strings do not count. A linear scan, no allocation.
bool JsonDepthWithin(std::string_view text, size_t max_depth = kMaxJsonDepth);

// Parses an untrusted request body. Malformed JSON -> kInvalidArgument with the parser's
// position; nesting deeper than kMaxJsonDepth -> kInvalidArgument; anything but an object ->
// kInvalidArgument. An empty body is an empty object.
Result<Json> ParseJsonObject(std::string_view body);

// Json::parse(text, nullptr, false) for text from outside (a guest's answer): a discarded value
// (is_discarded()) when malformed or nested deeper than kMaxJsonDepth, never an exception.
Json ParseUntrustedJson(std::string_view text);

// Serialises with invalid UTF-8 replaced by U+FFFD, so arbitrary process output never breaks
// the response.
std::string DumpJson(const Json& j);

// Typed, validated access to a request object. Every failure is kValidation naming the field,
// e.g. "field 'wait_seconds' must be a number".
class JsonFields {
 public:
  explicit JsonFields(const Json& obj) : obj_(obj) {}

  bool Has(const char* key) const;
  Result<std::string> String(const char* key) const;  // required, may be empty
  Result<std::string> NonEmptyString(const char* key) const;
  Result<std::optional<std::string>> OptString(const char* key) const;  // null == absent
  Result<std::optional<int64_t>> OptInt(const char* key, int64_t min, int64_t max) const;
  Result<std::optional<double>> OptNumber(const char* key, double min, double max) const;
  Result<std::optional<bool>> OptBool(const char* key) const;
  // Object of string -> string (e.g. env).
  Result<std::vector<std::pair<std::string, std::string>>> OptStringMap(const char* key) const;

 private:
  const Json& obj_;
};

Error FieldError(const char* key, std::string_view what);

// An optional value as JSON: the value, or null when unset.
template <class T>
Json OptToJson(const std::optional<T>& v) {
  return v ? Json(*v) : Json(nullptr);
}

// The value at `key` of `j`: nullopt when `j` is not an object, has no `key`, or holds null
// there. Throws Json::exception when the value is not a T (for codecs that catch it once).
template <class T>
std::optional<T> OptFromJson(const Json& j, const char* key) {
  if (!j.is_object() || !j.contains(key) || j.at(key).is_null()) {
    return std::nullopt;
  }
  return j.at(key).get<T>();
}

}  // namespace agentbox
