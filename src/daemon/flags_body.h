#pragma once

#include <map>
#include <optional>
#include <string>

#include "common/error.h"
#include "common/json_util.h"

namespace agentbox::daemon {

// The body of PUT /v1/flags after its fields were checked (CheckFlagsFields): `flags` maps
// runtime flags (selector::Settings::Keys()) to a string, number or bool (set, as text) or null
// (removed); `force` is an optional boolean. Apart from the handler so that it can be tested and
// fuzzed without a daemon (fuzz/fuzz_flags.cc).
struct FlagChanges {
  std::map<std::string, std::optional<std::string>> changes;  // nullopt: remove
  bool force = false;
};

// kValidation naming the field for anything else.
Result<FlagChanges> ParseFlagChanges(const Json& body);

}  // namespace agentbox::daemon
