#include "common/json_util.h"

#include <cmath>

namespace agentbox {

bool JsonDepthWithin(std::string_view text, size_t max_depth) {
  size_t depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (const char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) {
        return false;
      }
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return true;
}

Json ParseUntrustedJson(std::string_view text) {
  if (!JsonDepthWithin(text)) {
    return Json(Json::value_t::discarded);
  }
  try {  // boundary: allow_exceptions=false still lets a few library exceptions through
    return Json::parse(text, nullptr, false);
  } catch (const Json::exception&) {
    return Json(Json::value_t::discarded);
  }
}

Result<Json> ParseJsonObject(std::string_view body) {
  size_t i = 0;
  while (i < body.size() &&
         (body[i] == ' ' || body[i] == '\n' || body[i] == '\r' || body[i] == '\t')) {
    ++i;
  }
  if (i == body.size()) {
    return Json::object();
  }
  if (!JsonDepthWithin(body)) {
    return Fail(ErrorCode::kInvalidArgument, "request body is nested deeper than " +
                                                 std::to_string(kMaxJsonDepth) + " levels");
  }
  Json j;
  try {  // boundary: nlohmann reports the position only through its exception
    j = Json::parse(body);
  } catch (const Json::parse_error& e) {
    return Fail(ErrorCode::kInvalidArgument, std::string("malformed JSON: ") + e.what());
  } catch (const Json::exception& e) {  // e.g. out_of_range: a number literal like 1e400
    return Fail(ErrorCode::kInvalidArgument, std::string("invalid JSON value: ") + e.what());
  }
  if (!j.is_object()) {
    return Fail(ErrorCode::kInvalidArgument,
                std::string("request body must be a JSON object, got ") + j.type_name());
  }
  return j;
}

std::string DumpJson(const Json& j) {
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

Error FieldError(const char* key, std::string_view what) {
  Error e{ErrorCode::kValidation, std::string("field '") + key + "' " + std::string(what)};
  e.field = key;
  return e;
}

bool JsonFields::Has(const char* key) const {
  auto it = obj_.find(key);
  return it != obj_.end() && !it->is_null();
}

Result<std::string> JsonFields::String(const char* key) const {
  auto it = obj_.find(key);
  if (it == obj_.end() || it->is_null()) {
    return Fail(FieldError(key, "is required"));
  }
  if (!it->is_string()) {
    return Fail(FieldError(key, std::string("must be a string, got ") + it->type_name()));
  }
  return it->get<std::string>();
}

Result<std::string> JsonFields::NonEmptyString(const char* key) const {
  auto s = String(key);
  if (s && s->empty()) {
    return Fail(FieldError(key, "must not be empty"));
  }
  return s;
}

Result<std::optional<std::string>> JsonFields::OptString(const char* key) const {
  auto it = obj_.find(key);
  if (it == obj_.end() || it->is_null()) {
    return std::optional<std::string>();
  }
  if (!it->is_string()) {
    return Fail(FieldError(key, std::string("must be a string, got ") + it->type_name()));
  }
  return std::optional<std::string>(it->get<std::string>());
}

Result<std::optional<int64_t>> JsonFields::OptInt(const char* key, int64_t min, int64_t max) const {
  auto it = obj_.find(key);
  if (it == obj_.end() || it->is_null()) {
    return std::optional<int64_t>();
  }
  int64_t v = 0;
  if (it->is_number_integer()) {
    if (it->is_number_unsigned() && it->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
      return Fail(FieldError(key, "is out of range"));
    }
    v = it->get<int64_t>();
  } else if (it->is_number_float()) {
    const double d = it->get<double>();
    if (!std::isfinite(d) || d != std::floor(d) || d < -9.2e18 || d > 9.2e18) {
      return Fail(FieldError(key, "must be an integer"));
    }
    v = static_cast<int64_t>(d);
  } else {
    return Fail(FieldError(key, std::string("must be an integer, got ") + it->type_name()));
  }
  if (v < min || v > max) {
    return Fail(
        FieldError(key, "must be between " + std::to_string(min) + " and " + std::to_string(max)));
  }
  return std::optional<int64_t>(v);
}

Result<std::optional<double>> JsonFields::OptNumber(const char* key, double min, double max) const {
  auto it = obj_.find(key);
  if (it == obj_.end() || it->is_null()) {
    return std::optional<double>();
  }
  if (!it->is_number()) {
    return Fail(FieldError(key, std::string("must be a number, got ") + it->type_name()));
  }
  const double v = it->get<double>();
  if (!std::isfinite(v) || v < min || v > max) {
    // Print bounds without trailing zeros noise.
    auto fmt = [](double d) {
      std::string s = std::to_string(d);
      s.erase(s.find_last_not_of('0') + 1);
      if (!s.empty() && s.back() == '.') {
        s.pop_back();
      }
      return s;
    };
    return Fail(FieldError(key, "must be between " + fmt(min) + " and " + fmt(max)));
  }
  return std::optional<double>(v);
}

Result<std::optional<bool>> JsonFields::OptBool(const char* key) const {
  auto it = obj_.find(key);
  if (it == obj_.end() || it->is_null()) {
    return std::optional<bool>();
  }
  if (!it->is_boolean()) {
    return Fail(FieldError(key, std::string("must be a boolean, got ") + it->type_name()));
  }
  return std::optional<bool>(it->get<bool>());
}

Result<std::vector<std::pair<std::string, std::string>>> JsonFields::OptStringMap(
    const char* key) const {
  std::vector<std::pair<std::string, std::string>> out;
  auto it = obj_.find(key);
  if (it == obj_.end() || it->is_null()) {
    return out;
  }
  if (!it->is_object()) {
    return Fail(FieldError(key, std::string("must be an object, got ") + it->type_name()));
  }
  for (auto& [k, v] : it->items()) {
    if (!v.is_string()) {
      return Fail(FieldError(key, "values must be strings ('" + k + "' is " + v.type_name() + ")"));
    }
    out.emplace_back(k, v.get<std::string>());
  }
  return out;
}

}  // namespace agentbox
