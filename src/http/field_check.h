#pragma once

#include <string_view>
#include <vector>

#include "common/known_fields.h"
#include "http/client.h"
#include "http/server.h"

namespace agentbox::http {

// The hook every request parser calls once it has the body (see common/known_fields.h):
// answers a rejected unknown field with its 422 and returns false; otherwise logs each ignored
// field (event request.unknown_field, naming `endpoint`), makes `respond` put a Warning header
// for each on whatever response it is given, and returns true.
bool AcceptFields(const Result<std::vector<UnknownField>>& checked, std::string_view endpoint,
                  Respond& respond);

// Wraps `respond` so that its response also carries `headers` (appended); `respond` unchanged
// when there are none.
Respond WithHeaders(Respond respond, std::vector<std::pair<std::string, std::string>> headers);

// Copies the Warning headers of a relayed response (a guest's) onto the response relaying it.
void RelayWarnings(const ClientResponse& from, Response& to);

}  // namespace agentbox::http
