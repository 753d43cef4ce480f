#pragma once

#include <optional>

#include "common/json_util.h"
#include "http/server.h"

namespace agentbox::guest {

// The JSON object a POST to the guest API carries, for the guest and for the cloudrun backend's
// guest server alike (once their GET endpoints are served). Otherwise answers through `respond`
// and returns nullopt: 405 "use GET" for /api/v1/health and /api/v1/file/download, 405 for
// another method on /api/v1/, 404 elsewhere, the parse error for a body that is not an object.
std::optional<Json> PostedObject(const http::Request& req, const http::Respond& respond);

}  // namespace agentbox::guest
