// Session snapshots: in run-once and job mode the JSON comes from inside a sandbox (untrusted).
// Besides not crashing, a state that parses must survive its own round trip unchanged.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "api/session_state.h"
#include "common/json_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  auto parsed = agentbox::ParseJsonObject(body);
  if (!parsed) {
    return 0;
  }
  auto state = agentbox::SessionStateFromJson(*parsed);
  if (!state) {
    (void)state.error().message;
    return 0;
  }
  const agentbox::Json out = agentbox::SessionStateToJson(*state);
  auto again = agentbox::SessionStateFromJson(out);
  if (!again || !(*again == *state)) {
    __builtin_trap();  // a state that does not read back what it wrote
  }
  (void)agentbox::DumpJson(out);
  return 0;
}
