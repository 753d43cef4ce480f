// PUT /v1/flags: the body's checks (CheckFlagsFields, ParseFlagChanges), then the flags as the
// configuration they become and the selection settings parsed from it (Settings::FromConfig),
// as the handler does. A setting that does not parse must be an entry in Settings::errors.

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/config.h"
#include "common/json_util.h"
#include "daemon/flags_body.h"
#include "daemon/request_fields.h"
#include "selector/selector.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto body = agentbox::ParseJsonObject(text);
  if (!body) {
    return 0;
  }
  if (!agentbox::daemon::CheckFlagsFields(*body)) {
    return 0;
  }
  auto parsed = agentbox::daemon::ParseFlagChanges(*body);
  if (!parsed) {
    return 0;
  }
  std::map<std::string, std::string> next;
  for (const auto& [k, v] : parsed->changes) {
    if (v) {
      next[k] = *v;
    }
  }
  static const std::vector<std::string> known = {"docker", "jail", "cloudrun"};
  const auto settings =
      agentbox::selector::Settings::FromConfig(agentbox::Config::FromMap(next), known);
  (void)settings.hash.size();
  return 0;
}
