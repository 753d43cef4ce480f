#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
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

// The value at `key` when `j` is an object holding a T there, `fallback` otherwise: `j` not an
// object, a missing key, another type, or a number out of T's range (1e30 for an int64_t, -1 for
// a uint64_t, NaN for an int). Never throws, unlike Json::value(), which throws type_error on
// another type or a `j` that is not an object: for JSON from outside (a guest's answer, an
// engine's, an object a sandbox wrote), read where an exception would reach an event loop or a
// worker thread. T is Json (any value), std::string, bool, a number type, or a container that
// nlohmann converts to (std::map<std::string, std::string>, std::vector<std::string>).
template <class T>
T ValueOr(const Json& j, const char* key, T fallback) {
  if (!j.is_object()) {
    return fallback;
  }
  const auto it = j.find(key);
  if (it == j.end()) {
    return fallback;
  }
  if constexpr (std::is_same_v<T, Json>) {
    return *it;
  } else if constexpr (std::is_same_v<T, std::string>) {
    return it->is_string() ? it->template get<std::string>() : fallback;
  } else if constexpr (std::is_same_v<T, bool>) {
    return it->is_boolean() ? it->template get<bool>() : fallback;
  } else if constexpr (std::is_floating_point_v<T>) {
    return it->is_number() ? it->template get<T>() : fallback;
  } else if constexpr (!std::is_integral_v<T>) {
    // Containers (a map of strings, a vector): nlohmann's conversion, its type_error caught.
    try {
      return it->template get<T>();
    } catch (const Json::exception&) {
      return fallback;
    }
  } else {
    if (it->is_number_float()) {
      // T's range is [lo, 2^digits), both ends exact as doubles (NaN fails both tests).
      const double d = it->template get<double>();
      const double hi = std::ldexp(1.0, std::numeric_limits<T>::digits);
      const double lo = std::is_signed_v<T> ? -hi : 0.0;
      return d >= lo && d < hi ? static_cast<T>(d) : fallback;
    }
    if (it->is_number_unsigned()) {
      const auto u = it->template get<uint64_t>();
      return std::in_range<T>(u) ? static_cast<T>(u) : fallback;
    }
    if (it->is_number_integer()) {
      const auto v = it->template get<int64_t>();
      return std::in_range<T>(v) ? static_cast<T>(v) : fallback;
    }
    return fallback;
  }
}

// ValueOr for a string literal fallback: ValueOr(j, "message", "") is a std::string.
inline std::string ValueOr(const Json& j, const char* key, const char* fallback) {
  return ValueOr<std::string>(j, key, std::string(fallback));
}

}  // namespace agentbox
