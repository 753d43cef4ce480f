#pragma once

#include <string>
#include <string_view>

#include "common/json_util.h"

namespace agentbox::guest {

// The `message` of a successful answer, as ai-manus's sandbox API words it for the endpoints it
// has (clients written against it may show or check it); "ok" for agentbox's own endpoints.
// `endpoint` is the path after /api/v1/ ("shell/exec", "file/replace"); `data` is the answer's
// data, for the messages that count something.
std::string AiManusMessage(std::string_view endpoint, const Json& data);

}  // namespace agentbox::guest
