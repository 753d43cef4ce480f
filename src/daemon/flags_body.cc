#include "daemon/flags_body.h"

#include <algorithm>

#include "common/strings.h"
#include "selector/selector.h"

namespace agentbox::daemon {

Result<FlagChanges> ParseFlagChanges(const Json& body) {
  if (!body.contains("flags") || !body["flags"].is_object()) {
    return Fail(FieldError("flags", "must be an object of KEY: value (null removes)"));
  }
  const auto& keys = selector::Settings::Keys();
  FlagChanges out;
  for (const auto& [k, v] : body["flags"].items()) {
    const std::string field = "flags." + k;
    if (std::find(keys.begin(), keys.end(), k) == keys.end()) {
      return Fail(FieldError(
          field.c_str(), "is not a runtime flag; the selection settings are: " + Join(keys, ", ") +
                             " (anything else needs a restart)"));
    }
    if (v.is_null()) {
      out.changes[k] = std::nullopt;
    } else if (v.is_string()) {
      out.changes[k] = v.get<std::string>();
    } else if (v.is_boolean() || v.is_number()) {
      out.changes[k] = v.dump();
    } else {
      return Fail(FieldError(field.c_str(), "must be a string, number, bool or null"));
    }
  }
  if (body.contains("force") && !body["force"].is_boolean()) {
    return Fail(FieldError("force", "must be a boolean"));
  }
  out.force = body.value("force", false);
  return out;
}

}  // namespace agentbox::daemon
